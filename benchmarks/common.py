"""What several benchmarks share (lab code, not part of the installed package).

* :func:`protocol`: one of the evaluation protocols in ``benchmarks/protocols/`` by its name
  (``"r4"``, ``"r1 masked"``, ...), read by :func:`facerestore.protocols.load_protocol`, the loader
  of ``facerestore eval --protocol``;
* :func:`write`: replace a marked section of a Markdown file (``docs/benchmarks.md``) with a table;
* the ablations (``gan_ablation``, ``train_levers``): :func:`train_run` trains a recipe with
  overrides in a subprocess (reused when its last checkpoint exists), :func:`score_r4` scores
  checkpoints the way ``by_scale`` scores its r4 row (celeba/val, the ``r4`` protocol, seed 0).

Import it as ``from benchmarks.common import ...``; scripts run from the repository root as
``python -m benchmarks.NAME``.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
#: the protocol files: ``NAME.toml`` holds the protocol called NAME with ``_`` for each space
PROTOCOLS = ROOT / "benchmarks" / "protocols"


def protocol(name: str):
    """The :class:`facerestore.protocols.Protocol` called ``name`` (``benchmarks/protocols/``)."""
    from facerestore.protocols import load_protocol

    path = PROTOCOLS / f"{name.replace(' ', '_')}.toml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem.replace("_", " ") for p in PROTOCOLS.glob("*.toml")))
        raise SystemExit(f"unknown protocol {name!r}; known: {known}")
    return load_protocol(path)


def write(path: pathlib.Path, table: str, begin: str, end: str) -> None:
    """Replace the section between ``begin`` and ``end`` markers (appended when absent)."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    block = f"{begin}\n{table}{end}"
    if begin in text:
        text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}", file=sys.stderr)


def run_dir(base: str | pathlib.Path, sets: list[str]) -> pathlib.Path:
    """``base/<hash of the overrides>``: a cached run is reused only for the same settings."""
    return pathlib.Path(base) / hashlib.sha256("\n".join(sets).encode()).hexdigest()[:10]


def train_run(recipe: str, out: pathlib.Path, sets: list[str], steps: int) -> tuple[pathlib.Path, bool]:
    """``(last checkpoint, trained now?)`` of ``facerestore train recipe --out out`` with ``sets``
    (``train.steps`` = ``steps``, validation and checkpoint only at the end)."""
    from facerestore.train.state import ckpt_name

    ckpt = out / ckpt_name(steps)
    if ckpt.exists():
        return ckpt, False
    sets = [*sets, f"train.steps={steps}", f"train.val_every={steps}", f"train.ckpt_every={steps}",
            "data.workers=1", "train.log_every=25"]
    cmd = [sys.executable, "-m", "facerestore.cli", "train", recipe, "--out", str(out), "--no-progress",
           "--no-tensorboard"]
    subprocess.run(cmd + [a for s in sets for a in ("--set", s)], check=True, cwd=ROOT)
    return ckpt, True


def score_r4(ckpts: list[pathlib.Path], val: str, limit: int | None) -> tuple[int, list[dict[str, float]]]:
    """``(faces scored, PSNR/SSIM/LPIPS of each checkpoint's EMA generator at r4)``. Each score is
    cached beside its checkpoint (``<ckpt>.r4.json``), keyed by the checkpoint's bytes, ``val`` and
    ``limit``, so that adding a variant to an ablation scores only the new runs."""
    import torch

    from facerestore import evaluate as E
    from facerestore.eval_models import adaptive_model

    keys = [{"sha256": hashlib.sha256(c.read_bytes()).hexdigest(), "val": val, "limit": limit} for c in ckpts]
    cached = [_cached(c, k) for c, k in zip(ckpts, keys)]
    todo = [i for i, v in enumerate(cached) if v is None]
    if todo:
        torch.set_num_threads(min(2, torch.get_num_threads()))
        data = protocol("r4").degrade(val, seed=0, limit=limit)
        models = [adaptive_model(str(ckpts[i]), data.hq_size) for i in todo]
        report = E.evaluate(models, data, "cpu", batch_size=16, skip=["landmarks", "speed", "identity"],
                            grid_faces=0)
        for i, m in zip(todo, report.models):
            cached[i] = {"faces": len(data), **{k: m.values[k] for k in ("psnr", "ssim", "lpips")}}
            _cache_path(ckpts[i]).write_text(json.dumps({**keys[i], **cached[i]}))
    return cached[0]["faces"] if cached else 0, cached


def _cache_path(ckpt: pathlib.Path) -> pathlib.Path:
    return ckpt.with_name(ckpt.name + ".r4.json")


def _cached(ckpt: pathlib.Path, key: dict) -> dict[str, float] | None:
    path = _cache_path(ckpt)
    if not path.exists():
        return None
    entry = json.loads(path.read_text())
    return entry if all(entry.get(k) == v for k, v in key.items()) else None


def score_row(name: str, values: dict[str, float]) -> str:
    return f"| {name} | {values['psnr']:.2f} | {values['ssim']:.4f} | {values['lpips']:.4f} |"
