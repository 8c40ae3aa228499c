"""Shared by the ablation benchmarks (`gan_ablation.py`, `train_levers.py`): train a recipe with
overrides in a subprocess (reused when its last checkpoint exists), and score checkpoints at x4 the
way ``by_scale.py`` scores its r4 row (celeba/val degraded by the jdsr_gan recipe, seed 0)."""

from __future__ import annotations

import hashlib
import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


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
    from facerestore.recipe import load_recipe
    from by_scale import paired, protocols

    keys = [{"sha256": hashlib.sha256(c.read_bytes()).hexdigest(), "val": val, "limit": limit} for c in ckpts]
    cached = [_cached(c, k) for c, k in zip(ckpts, keys)]
    todo = [i for i, v in enumerate(cached) if v is None]
    if todo:
        torch.set_num_threads(min(2, torch.get_num_threads()))
        recipe = load_recipe(ROOT / "recipes/jdsr_gan.toml")
        data = paired(recipe, "r4", protocols(recipe)["r4"], val, limit, 0)
        models = [E.adaptive_model(str(ckpts[i]), data.hq_size) for i in todo]
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
