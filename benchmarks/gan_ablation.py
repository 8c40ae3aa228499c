"""Does the adversarial term help? Two fine-tunes of `masked_any` that differ only in it (issue 14).

    .venv/bin/python -m benchmarks.gan_ablation [--steps 400] [--limit 600]

Both runs start from the same weights (``--init``, default the bundled ``masked-any``), with the
same seed, data order, degradation stream and schedule (``--steps`` steps of batch 16, lr 1e-4
constant after 20 warm-up steps, the identity term off to save time). One keeps the recipe's
adversarial term with weight 0.01 (from step ``--steps // 8``, its critic warmed up alone for the
``--steps // 8`` steps before, ``train.d_warmup``), the other keeps the recipe's weight 0 (the
term is not computed and no critic trains). Both EMA
generators are then scored on celeba/val degraded by the jdsr_gan recipe at x4 (seed 0), the way
``by_scale.py`` scores its r4 row: PSNR, SSIM, LPIPS. The issue's bar: the adversarial term lowers
LPIPS at a cost of at most 0.3 dB PSNR. Writes a section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import pathlib
import shlex
import sys
import time

from benchmarks.common import ROOT, score_r4, score_row, train_run, write

os.environ.setdefault("HF_HUB_OFFLINE", "1")

BEGIN, END = "<!-- gan_ablation:begin -->", "<!-- gan_ablation:end -->"


def finetune(out: pathlib.Path, adv_weight: float, args) -> pathlib.Path:
    from facerestore.recipe import load_recipe

    recipe = load_recipe("recipes/masked_any.toml")
    ident, adv = recipe.loss_index("identity"), recipe.loss_index("adversarial")
    sets = [f"train.init='{args.init}'", "train.lr=1e-4", "train.scheduler='constant'", "train.warmup_steps=20",
            f"loss.{ident}.every=1000000000", f"loss.{adv}.weight={adv_weight}", f"loss.{adv}.start={args.steps // 8}",
            f"train.d_warmup={args.steps // 8}"]
    return train_run("recipes/masked_any.toml", out, sets, args.steps)[0]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--init", default="masked-any")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--val", default="../shared/data/celeba/val")
    p.add_argument("--runs", default="runs/gan_ablation")
    p.add_argument("--out", default="docs/benchmarks.md", help="Markdown file to update ('' = print only)")
    args = p.parse_args(argv)
    os.chdir(ROOT)
    t0 = time.perf_counter()
    ckpts = {w: finetune(pathlib.Path(args.runs) / f"adv_{w:g}", w, args) for w in (0.01, 0.0)}
    from facerestore import evaluate as E

    faces, scores = score_r4(list(ckpts.values()), args.val, args.limit)
    rows = [score_row(f"{'with' if w else 'without'} adversarial term ({w:g})", v)
            for w, v in zip(ckpts, scores)]
    (a, b) = scores
    verdict = (f"adversarial term: LPIPS {a['lpips'] - b['lpips']:+.4f}, "
               f"PSNR {a['psnr'] - b['psnr']:+.2f} dB")
    table = "\n".join([
        "## Adversarial term ablation (issue 14)", "",
        f"Command: `python -m benchmarks.gan_ablation {shlex.join(sys.argv[1:] if argv is None else argv)}`; "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {E.machine_description('cpu')}, "
        f"{(time.perf_counter() - t0) / 60:.1f} min. Two fine-tunes of `masked_any` from `{args.init}`, "
        f"{args.steps} steps x 16, identical but for the adversarial weight; scored on {faces} faces of "
        f"`{args.val}` degraded by the jdsr_gan recipe at x4, seed 0 (by_scale's r4).", "",
        "| run | PSNR | SSIM | LPIPS |", "|---|---|---|---|", *rows, "", verdict, ""])
    print(table)
    if args.out:
        write(pathlib.Path(args.out), table, BEGIN, END)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
