"""Training state <-> safetensors: optimiser/scheduler state flattened into tensors + JSON, RNG
states, the run folder's checkpoint files (keep last N, ``last``, ``best``), and which recipe
settings a resumed run changed.

safetensors holds only tensors and string metadata, so each ``state_dict`` is split: tensors go
under a prefix (``optim_g.state.3.exp_avg``), everything else into one JSON metadata entry.
"""

from __future__ import annotations

import json
import os
import pathlib
import random
import re
import shutil
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..checkpoint import load_tensors, read_metadata
from ..errors import CheckpointError

CKPT_RE = re.compile(r"^ckpt_(\d{8,})\.safetensors$")


# --------------------------------------------------------------------------------------------
# Nested state dicts -> (tensors, JSON)
# --------------------------------------------------------------------------------------------
def flatten_state(state: Any, prefix: str) -> tuple[dict[str, Tensor], Any]:
    """Split a nested dict/list of tensors and plain values: tensors keyed ``prefix.a.b``, the
    rest returned as a JSON-able skeleton where each tensor is ``{"__tensor__": key}``."""
    tensors: dict[str, Tensor] = {}

    def walk(node: Any, key: str) -> Any:
        if isinstance(node, Tensor):
            tensors[key] = node.detach().clone().cpu()
            return {"__tensor__": key}
        if isinstance(node, Mapping):
            return {"__dict__": [[_key_json(k), walk(v, f"{key}.{k}")] for k, v in node.items()]}
        if isinstance(node, (list, tuple)):
            return {"__list__": [walk(v, f"{key}.{i}") for i, v in enumerate(node)],
                    "tuple": isinstance(node, tuple)}
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        raise TypeError(f"cannot store {type(node).__name__} at {key} in a checkpoint")

    return tensors, walk(state, prefix)


def unflatten_state(skeleton: Any, tensors: Mapping[str, Tensor]) -> Any:
    if isinstance(skeleton, dict):
        if "__tensor__" in skeleton:
            return tensors[skeleton["__tensor__"]]
        if "__dict__" in skeleton:
            return {_key_back(k): unflatten_state(v, tensors) for k, v in skeleton["__dict__"]}
        if "__list__" in skeleton:
            items = [unflatten_state(v, tensors) for v in skeleton["__list__"]]
            return tuple(items) if skeleton.get("tuple") else items
    return skeleton


def _key_json(k: Any) -> Any:
    return {"int": k} if isinstance(k, int) else k


def _key_back(k: Any) -> Any:
    return k["int"] if isinstance(k, dict) else k


# --------------------------------------------------------------------------------------------
# RNG states
# --------------------------------------------------------------------------------------------
def capture_rng(degrade_generator: torch.Generator | None) -> dict[str, Any]:
    """Every random stream a training step draws from (torch CPU/CUDA, numpy, python, the
    degradation generator)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    out: dict[str, Any] = {
        "torch_cpu": torch.get_rng_state(),
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["torch_cuda"] = list(torch.cuda.get_rng_state_all())
    if degrade_generator is not None:
        out["degrade"] = degrade_generator.get_state()
    return out


def restore_rng(state: Mapping[str, Any], degrade_generator: torch.Generator | None) -> None:
    torch.set_rng_state(state["torch_cpu"].to(torch.uint8))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))
    if "torch_cuda" in state and torch.cuda.is_available():
        cuda_states = [s.to(torch.uint8) for s in state["torch_cuda"]]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
    if degrade_generator is not None and "degrade" in state:
        degrade_generator.set_state(state["degrade"].to(torch.uint8))


# --------------------------------------------------------------------------------------------
# Run folder
# --------------------------------------------------------------------------------------------
def ckpt_name(step: int) -> str:
    return f"ckpt_{step:08d}.safetensors"


def list_checkpoints(run_dir: str | os.PathLike[str]) -> list[tuple[int, pathlib.Path]]:
    """``(step, path)`` of the numbered checkpoints, oldest first."""
    run_dir = pathlib.Path(run_dir)
    found = []
    if run_dir.is_dir():
        for p in run_dir.iterdir():
            m = CKPT_RE.match(p.name)
            if m:
                found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(run_dir: str | os.PathLike[str]) -> pathlib.Path | None:
    """The newest readable training checkpoint (``last.safetensors`` or the highest step)."""
    candidates = [p for _, p in reversed(list_checkpoints(run_dir))]
    last = pathlib.Path(run_dir) / "last.safetensors"
    if last.exists():
        candidates.insert(0, last)
    for path in candidates:
        try:
            meta = read_metadata(path)
        except CheckpointError:
            continue  # e.g. a file truncated by something other than our atomic writes
        if meta.get("contents") == "train_state":
            return path
    return None


def point_last(run_dir: pathlib.Path, target: pathlib.Path) -> None:
    """``last.safetensors`` = ``target`` (hard link, or a copy where links are not possible),
    replaced atomically."""
    tmp = run_dir / f".last.{os.getpid()}.tmp"
    if tmp.exists():
        tmp.unlink()
    try:
        os.link(target, tmp)
    except OSError:
        shutil.copyfile(target, tmp)
    os.replace(tmp, run_dir / "last.safetensors")


def prune(run_dir: pathlib.Path, keep_last: int) -> None:
    for _, path in list_checkpoints(run_dir)[:-keep_last]:
        path.unlink(missing_ok=True)


def load_train_state(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """All tensors and the decoded metadata of a training checkpoint."""
    tensors, meta = load_tensors(path)
    if meta.get("contents") != "train_state":
        raise CheckpointError(f"{path}: not a training checkpoint (contents={meta.get('contents')!r})")
    decoded: dict[str, Any] = {}
    for k, v in meta.items():
        try:
            decoded[k] = json.loads(v)
        except json.JSONDecodeError:
            decoded[k] = v
    decoded["recipe"] = meta.get("recipe", "")
    return tensors, decoded


def sub_tensors(tensors: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted paths where two JSON-like trees differ (lists compared whole)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            out += changed_keys(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [prefix.rstrip(".")]
