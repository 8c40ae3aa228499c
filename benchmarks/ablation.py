"""Shared by the ablation benchmarks (`gan_ablation.py`, `train_levers.py`): train a recipe with
overrides in a subprocess (reused when its last checkpoint exists), and score checkpoints at x4 the
way ``by_scale.py`` scores its r4 row (celeba/val degraded by the jdsr_gan recipe, seed 0)."""

from __future__ import annotations

import hashlib
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


def score_r4(ckpts: list[pathlib.Path], val: str, limit: int | None):
    """``(paired data, report)``: PSNR, SSIM and LPIPS of each checkpoint's EMA generator at r4."""
    import torch

    from facerestore import evaluate as E
    from facerestore.recipe import load_recipe
    from by_scale import paired, protocols

    torch.set_num_threads(min(2, torch.get_num_threads()))
    recipe = load_recipe(ROOT / "recipes/jdsr_gan.toml")
    data = paired(recipe, "r4", protocols(recipe)["r4"], val, limit, 0)
    models = [E.adaptive_model(str(c), data.hq_size) for c in ckpts]
    return data, E.evaluate(models, data, "cpu", batch_size=16, skip=["landmarks", "speed", "identity"], grid_faces=0)


def score_row(name: str, values: dict[str, float]) -> str:
    return f"| {name} | {values['psnr']:.2f} | {values['ssim']:.4f} | {values['lpips']:.4f} |"
