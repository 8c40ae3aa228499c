"""Model files: safetensors only, self-describing, written atomically.

A file holds tensors under prefixes (``generator.``, ``ema.``, ``discriminator.``, ``optim_g.``,
...) and string metadata: ``format`` (:data:`FORMAT`), ``recipe`` (the resolved recipe as JSON),
``step`` and whatever the writer adds. ``restore``/``eval`` need only the file: the generator is
rebuilt from the recipe in the metadata, then its weights are checked tensor by tensor.

Legacy pickle checkpoints (``.pt``/``.pth``/``.ckpt``) are refused: unpickling can run code.
``facerestore convert`` turns one into safetensors with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import itertools
import json
import os
import pathlib
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from .errors import CheckpointError

FORMAT = "facerestore/1"
PICKLE_SUFFIXES = {".pt", ".pth", ".ckpt", ".pkl", ".bin", ".tar"}
SAFETENSORS_MAGIC_MAX_HEADER = 100 * 1024 * 1024


class CheckpointWriteError(CheckpointError, OSError):
    """A model file could not be written (disk full, no permission); whatever the path held before
    is untouched. Also an ``OSError`` (``errno`` kept), so existing ``except OSError`` still apply."""

    def __init__(self, message: str, errno: int | None = None):
        super().__init__(message)
        self.errno = errno


def current_umask() -> int:
    """The process umask (read by setting and restoring it: there is no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike[str], writer) -> None:
    """Call ``writer(tmp_path)`` then rename onto ``path``: readers never see a half-written file,
    and a failure (disk full, kill) leaves the previous file intact."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        writer(tmp)
        # mkstemp makes 0600, and some writers (safetensors) recreate the file 0600: outputs follow the umask
        os.chmod(tmp, 0o666 & ~current_umask())
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def save_tensors(path: str | os.PathLike[str], tensors: Mapping[str, Tensor], metadata: Mapping[str, Any]) -> None:
    """Write tensors + metadata (non-string values JSON-encoded) atomically as safetensors."""
    from safetensors.torch import save_file

    meta = {"format": FORMAT}
    for k, v in metadata.items():
        meta[k] = v if isinstance(v, str) else json.dumps(v)
    flat = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    try:
        atomic_write_bytes(path, lambda tmp: save_file(flat, tmp, metadata=meta))
    except CheckpointWriteError:
        raise
    except OSError as exc:
        why = exc.strerror or str(exc) or type(exc).__name__
        raise CheckpointWriteError(f"cannot write {path}: {why}; the file was not changed (a previous version, "
                                   "if any, is intact)", exc.errno) from exc


def check_model_file(path: str | os.PathLike[str]) -> pathlib.Path:
    """Refuse anything that is not a readable safetensors file, with a message saying what to do."""
    path = pathlib.Path(path)
    if not path.exists():
        raise CheckpointError(f"model file not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, expected a .safetensors file")
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise CheckpointError(
            f"{path}: pickle checkpoints are not loaded (unpickling can run code). Convert it once with "
            f"`facerestore convert {path} OUT.safetensors --recipe RECIPE.toml`.")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if len(head) < 8:
        raise CheckpointError(f"{path}: not a safetensors file (too short)")
    n = int.from_bytes(head, "little")
    if n <= 1 or n > SAFETENSORS_MAGIC_MAX_HEADER or n + 8 > path.stat().st_size:
        raise CheckpointError(f"{path}: not a safetensors file (bad header)")
    return path


def load_tensors(path: str | os.PathLike[str], prefix: str | None = None,
                 device: str | torch.device = "cpu") -> tuple[dict[str, Tensor], dict[str, str]]:
    """Read a safetensors file; with ``prefix``, only those tensors, prefix stripped."""
    from safetensors import safe_open

    path = check_model_file(path)
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as fh:
            meta = dict(fh.metadata() or {})
            keys = [k for k in fh.keys() if prefix is None or k.startswith(prefix)]
            tensors = {(k[len(prefix):] if prefix else k): fh.get_tensor(k) for k in keys}
    except CheckpointError:
        raise
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"{path}: cannot read safetensors file: {exc}") from None
    return tensors, meta


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    from safetensors import safe_open

    path = check_model_file(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            return dict(fh.metadata() or {})
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot read safetensors file: {exc}") from None


def load_state_strict(module: nn.Module, tensors: Mapping[str, Tensor], what: str) -> None:
    """Load a state dict, failing with the first mismatching tensor's name (missing, unexpected,
    or wrong shape) instead of a wall of text."""
    expected = module.state_dict()
    for name, ref in expected.items():
        if name not in tensors:
            raise CheckpointError(f"{what}: tensor {name!r} missing from checkpoint (recipe and weights disagree)")
        if tuple(tensors[name].shape) != tuple(ref.shape):
            raise CheckpointError(f"{what}: tensor {name!r} has shape {tuple(tensors[name].shape)}, "
                                  f"the recipe's model expects {tuple(ref.shape)}")
    extra = sorted(set(tensors) - set(expected))
    if extra:
        raise CheckpointError(f"{what}: unexpected tensor {extra[0]!r} in checkpoint (recipe and weights disagree)")
    module.load_state_dict({k: v.to(expected[k].dtype) for k, v in tensors.items()}, strict=True)


def average_into(module: nn.Module, others: Iterable[nn.Module], what: str) -> nn.Module:
    """Uniform weight average (a "model soup", or SWA over checkpoints) of ``module`` and
    ``others`` (taken one at a time), written into ``module``: points of one run, or fine-tunes of
    one model, that share a basin often average into a model as good as each or better. Integer
    buffers keep ``module``'s values. Fails on the first tensor whose name or shape differs."""
    own = module.state_dict()
    total = {k: v.double() for k, v in own.items() if v.is_floating_point()}
    n = 1
    for other in others:
        n += 1
        theirs = other.state_dict()
        if theirs.keys() != own.keys():
            name = sorted(set(own) ^ set(theirs))[0]
            raise CheckpointError(f"{what}: model {n} differs from model 1 in tensor {name!r} (not one architecture)")
        for k in total:
            if theirs[k].shape != own[k].shape:
                raise CheckpointError(f"{what}: tensor {k!r} has shape {tuple(theirs[k].shape)} in model {n}, "
                                      f"{tuple(own[k].shape)} in model 1")
            total[k] += theirs[k].double()
    module.load_state_dict({k: (v / n).to(own[k].dtype) for k, v in total.items()}, strict=False)
    return module


def load_matching(module: nn.Module, tensors: Mapping[str, Tensor], what: str) -> list[str]:
    """Warm start: load every tensor whose name and shape match ``module``'s; the module's other
    tensors keep their initialisation. Returns the names not loaded; fails if nothing matches.
    A module with ``adapt_tensors`` (:class:`~facerestore.interfaces.Generator`) first translates
    an older layout's tensors."""
    adapt = getattr(module, "adapt_tensors", None)
    tensors = adapt(tensors) if adapt is not None else tensors
    own = module.state_dict()
    match = {k: v.to(own[k].dtype) for k, v in tensors.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    if not match:
        raise CheckpointError(f"{what}: no tensor matches the recipe's generator (a different architecture)")
    module.load_state_dict(match, strict=False)
    return sorted(set(own) - set(match))


def _ranges(nums: list[int]) -> str:
    """``[12, 13, 14, 16]`` -> ``"12-14,16"``: consecutive numbers share ``n - position``."""
    runs = [[n for _, n in g] for _, g in itertools.groupby(enumerate(sorted(nums)), lambda t: t[1] - t[0])]
    return ",".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)


def module_summary(new: list[str], every: list[str]) -> str:
    """Names the modules a warm start left fresh, in one line: each name in ``new`` (tensor
    names, a subset of ``every``) is folded into the largest module whose tensors are all new,
    numbered siblings as ranges: ``core.upsampler.blocks[12-23] (144 tensors)``."""
    def prefixes(name: str) -> list[str]:
        parts = name.split(".")
        return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]

    total = Counter(p for n in every for p in prefixes(n))
    fresh = Counter(p for n in new for p in prefixes(n))
    modules = dict.fromkeys(next(p for p in prefixes(n) if fresh[p] == total[p]) for n in new)
    groups: dict[str, list[int]] = {}  # parent -> numbered children; plain names keep their own key
    for m in modules:
        parent, _, last = m.rpartition(".")
        if last.isdigit():
            groups.setdefault(parent, []).append(int(last))
        else:
            groups[m] = []
    out = []
    for key, nums in groups.items():
        if not nums:
            out.append(key)
        else:
            out.append(f"{key}[{_ranges(nums)}]" if key else _ranges(nums))
    return f"{', '.join(out)} ({len(new)} tensor{'s' if len(new) != 1 else ''})"


def save_generator(path: str | os.PathLike[str], generator: nn.Module, recipe, *, step: int = 0,
                   extra: Mapping[str, Any] | None = None, half: bool = False) -> None:
    """A generator-only file (``generator.`` prefix) carrying its recipe: enough for restore/eval."""
    sd = {f"generator.{k}": (v.half() if half and v.is_floating_point() else v)
          for k, v in generator.state_dict().items()}
    save_tensors(path, sd, {"recipe": recipe.to_json(), "step": str(step), "contents": "generator",
                            **(extra or {})})


def recipe_from_metadata(meta: Mapping[str, str], path: str | os.PathLike[str]):
    from .recipe import load_recipe

    if meta.get("format") != FORMAT or "recipe" not in meta:
        raise CheckpointError(f"{path}: not a facerestore checkpoint (no recipe in its metadata)")
    try:
        data = json.loads(meta["recipe"])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: recipe metadata is not valid JSON: {exc}") from None
    return load_recipe(data)


def load_generator(path: str | os.PathLike[str], device: str | torch.device = "cpu",
                   prefer_ema: bool = True):
    """Rebuild the generator from the file's recipe and load its weights (EMA ones if present).
    Returns ``(generator in eval mode on device, recipe)``."""
    from .components import build_generator

    meta = read_metadata(path)
    recipe = recipe_from_metadata(meta, path)
    generator = build_generator(recipe)
    load_state_strict(generator, generator_tensors(path, prefer_ema), str(path))
    return generator.to(device).eval(), recipe


def generator_tensors(path: str | os.PathLike[str], prefer_ema: bool = True) -> dict[str, Tensor]:
    """A file's generator weights, prefix stripped: the EMA ones when present (and preferred)."""
    tensors, _ = load_tensors(path, "ema." if prefer_ema else "generator.")
    if not tensors:
        tensors, _ = load_tensors(path, "generator.")
    if not tensors:
        raise CheckpointError(f"{path}: no generator weights (expected tensors prefixed 'generator.' or 'ema.')")
    return tensors
