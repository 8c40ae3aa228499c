"""Training-throughput levers for the full `jdsr_gan` recipe (issue 14): what each one buys.

    .venv/bin/python -m benchmarks.train_levers [--repeats 3] [--steps 4] [--quality 150] [--seeds 0,1,2]
        [--variants all,compensated,full-size,every-step,critic-too,fp32] [--out docs/training.md]

One full training step of ``recipes/jdsr_gan.toml`` with every loss on (adversarial included,
generated faces, as ``train_speed.py``) is timed as the recipe is and with each lever alone, then
all together; the configurations are timed in turn, ``--repeats`` rounds, and each one's median
images/s is reported with its ratio to the recipe as it is *in the same run* (the machine is noisy).
The levers are recipe settings a user can set with ``--set``:

* the SR-side perceptual term at 64 px (``size = 64``: VGG16 on a quarter of the pixels);
* both perceptual terms every 4th step (``every = 4``; the style term, on the 32 px face, unchanged);
* the adversarial term every 2nd step (its critic trains only when the term is on);
* the identity term every 2nd step;
* bf16 autocast (``train.cpu_amp``), timed only on a CPU with native bf16 (AVX512-BF16/AMX).

``--quality STEPS`` then trains the recipe as it is, with all levers, with all levers and each
every-k perceptual term at k times its weight, with all levers but ``size = 64``, with all levers
but the every-4th perceptual terms, and with that set but the critic every step or but bf16 (these
four are timed too), from scratch, for each of
``--seeds`` (the same seed and data order for both), ``STEPS`` steps of 16 each (equal images
seen; lr 2e-4 constant after 20 warm-up steps; the adversarial term from ``STEPS // 4``, its
critic alone for the ``STEPS // 8`` steps before, as the recipe starts it late) and scores each
EMA generator on celeba/val at the recipe's x4 (``by_scale.py``'s r4): PSNR, SSIM, LPIPS, and
each variant's mean difference to the recipe over the seeds (``--variants`` picks some; scores are
cached beside each checkpoint). Writes a section of ``--out`` between markers.
"""

from __future__ import annotations

import argparse
import datetime
import os
import pathlib
import shlex
import statistics
import sys
import time

from benchmarks.common import ROOT, run_dir, score_r4, score_row, train_run, write
from benchmarks.train_speed import measure

os.environ.setdefault("HF_HUB_OFFLINE", "1")

RECIPE = "recipes/jdsr_gan.toml"
BEGIN, END = "<!-- train_levers:begin -->", "<!-- train_levers:end -->"
COMPENSATED = "all levers, perceptual weight x every"
FULL_SIZE = "all levers but the perceptual term at 128 px"
EVERY_STEP = "all levers but the perceptual terms every step"
CRITIC_TOO = "perceptual (sr) at 64 px, identity every 2nd step, bf16"
FP32 = "perceptual (sr) at 64 px, critic and identity every 2nd step, fp32"
#: ``--variants`` keys of the quality variants (the recipe as it is is always trained)
VARIANTS = {"all": "all of the above", "compensated": COMPENSATED, "full-size": FULL_SIZE, "every-step": EVERY_STEP,
            "critic-too": CRITIC_TOO, "fp32": FP32}


def levers(bf16: bool) -> dict[str, list[str]]:
    """Lever name -> ``--set`` overrides of the jdsr_gan recipe (loss indices looked up by type/output)."""
    from facerestore.recipe import load_recipe

    losses = load_recipe(ROOT / RECIPE).losses

    def at(type_: str, on: str | None = None) -> list[int]:
        return [i for i, s in enumerate(losses) if s.type == type_ and on in (None, s.on)]

    out = {"recipe as it is": [],
           "perceptual (sr) at 64 px": [f"loss.{i}.size=64" for i in at("perceptual", "sr")],
           "perceptual terms every 4th step": [f"loss.{i}.every=4" for i in at("perceptual")],
           "adversarial + critic every 2nd step": [f"loss.{i}.every=2" for i in at("adversarial")],
           "identity every 2nd step": [f"loss.{i}.every=2" for i in at("identity")]}
    if bf16:
        out["bf16 autocast"] = ["train.cpu_amp=true"]
    all_ = out["all of the above"] = [s for sets in list(out.values())[1:] for s in sets]

    def but(sets: list[str], lever: str) -> list[str]:
        return [x for x in sets if x not in out.get(lever, [])]

    # left out one at a time, to find where the LPIPS cost at equal images comes from
    out[FULL_SIZE] = but(all_, "perceptual (sr) at 64 px")
    out[EVERY_STEP] = but(all_, "perceptual terms every 4th step")
    out[CRITIC_TOO] = but(out[EVERY_STEP], "adversarial + critic every 2nd step")
    out[FP32] = but(out[EVERY_STEP], "bf16 autocast")
    return out


def compensated(all_levers: list[str]) -> list[str]:
    """The weights that put each every-k perceptual term of ``all_levers`` at k times its weight: the
    recipe's expected gradient per step, so that texture is not given up only because the term is
    weighted less often."""
    from facerestore.recipe import load_recipe

    losses, every = load_recipe(ROOT / RECIPE).losses, {}
    for s in all_levers:
        if ".every=" in s:
            every[int(s.split(".")[1])] = int(s.split("=")[1])
    return [f"loss.{i}.weight={losses[i].weight * k:g}" for i, k in every.items() if losses[i].type == "perceptual"]


def throughput(configs: dict[str, list[str]], steps: int, repeats: int) -> dict[str, list[float]]:
    """Images/s of each configuration, measured in turn ``repeats`` times (``train_speed.measure``)."""
    runs: dict[str, list[float]] = {name: [] for name in configs}
    for r in range(repeats):
        for name, sets in configs.items():
            runs[name].append(measure(ROOT / RECIPE, "cpu", steps, 1, sets)[0])
            print(f"round {r + 1}: {name}: {runs[name][-1]:.2f} img/s", file=sys.stderr, flush=True)
    return runs


def quality(configs: dict[str, list[str]], args) -> list[str]:
    """Table rows: equal-images runs of the recipe as it is, with all levers, and with all levers and
    the perceptual weight compensated, per seed, scored at x4; each variant's mean gap to the recipe."""
    from facerestore.recipe import load_recipe

    adv = load_recipe(ROOT / RECIPE).loss_index("adversarial")
    # the recipe's adversarial term starts late, after a critic warm-up: so here, scaled to the run
    gan = [f"loss.{adv}.start={args.quality // 4}", f"train.d_warmup={args.quality // 8}", "train.lr=2e-4",
           "train.scheduler='constant'", "train.warmup_steps=20"]
    weights = compensated(configs["all of the above"])
    known = {**configs, COMPENSATED: [*configs["all of the above"], *weights]}
    variants = {"recipe as it is": [], **{VARIANTS[k]: known[VARIANTS[k]] for k in args.variants}}
    t0, trained, runs = time.perf_counter(), [], []
    for seed in dict.fromkeys(args.seeds):
        # seed 0 is the recipe's own (no override, so the runs of earlier versions are reused)
        for name, levers_ in variants.items():
            sets = [*gan, *levers_, *([f"train.seed={seed}"] if seed else [])]
            ckpt, fresh = train_run(RECIPE, run_dir(args.runs, sets), sets, args.quality)
            runs.append((f"{name}, seed {seed}", ckpt))
            trained += [f"{name} (seed {seed})"] if fresh else []
    minutes = (time.perf_counter() - t0) / 60
    faces, scores = score_r4([c for _, c in runs], args.val, args.limit)
    rows = [score_row(n, v) for (n, _), v in zip(runs, scores)]
    n = len(variants)
    for j, name in enumerate(list(variants)[1:], 1):
        gaps = [{k: b[k] - a[k] for k in ("psnr", "ssim", "lpips")} for a, b in zip(scores[::n], scores[j::n])]
        rows.append(score_row(f"{name} minus recipe, mean over seeds",
                              {k: statistics.mean(g[k] for g in gaps) for k in gaps[0]}))
        if len(gaps) >= 3:  # is the mean gap more than run-to-run spread?
            rows.append(score_row(f"{name} minus recipe, standard error of that mean ({len(gaps)} seeds)",
                                  {k: statistics.stdev(g[k] for g in gaps) / len(gaps) ** 0.5 for k in gaps[0]}))
    return ["", f"Equal images seen (`--quality {args.quality}`): from scratch, {args.quality} steps x 16, "
            f"training seeds {', '.join(map(str, args.seeds))} (weights, data order, degradation), lr 2e-4 constant "
            f"after 20 warm-up steps, the adversarial term from step {args.quality // 4} "
            f"(its critic alone for the {args.quality // 8} steps before); "
            + (f"'{COMPENSATED}' adds {' '.join(f'`{s}`' for s in weights)}; " if COMPENSATED in variants else "")
            + "trained now: "
            f"{', '.join(trained) or 'none (cached runs)'} ({minutes:.1f} min). Scored on {faces} faces of "
            f"`{args.val}` at the recipe's x4, degradation seed 0 (by_scale's r4):",
            "", "| run | PSNR | SSIM | LPIPS |", "|---|---|---|---|", *rows]


def timing_rows(configs: dict[str, list[str]], args) -> list[str]:
    """Throughput table rows: each configuration's median images/s and its ratio to the recipe."""
    runs = throughput(configs, args.steps, args.repeats)
    base = runs["recipe as it is"]
    return [f"| {name} | {statistics.median(v):.2f} | {statistics.median(x / b for x, b in zip(v, base)):.2f}x | "
            f"{' '.join(f'{x:.2f}' for x in v)} | {' '.join(f'`{s}`' for s in configs[name]) or '-'} |"
            for name, v in runs.items()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=4,
                   help="timed steps per measurement, after 1 warm-up step; a multiple of 4 so that every "
                        "k-th-step term is timed at its share")
    p.add_argument("--repeats", type=int, default=3, help="timing rounds (0: no timing, --quality only)")
    p.add_argument("--quality", type=int, default=0, help="also train both ways for this many steps (0: no)")
    p.add_argument("--seeds", type=lambda v: [int(x) for x in v.split(",")], default=[0],
                   help="training seeds of the --quality pairs, comma-separated")
    p.add_argument("--variants", type=lambda v: v.split(","), default=list(VARIANTS),
                   help=f"quality variants beside the recipe, comma-separated from {','.join(VARIANTS)}")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--val", default="../shared/data/celeba/val")
    p.add_argument("--runs", default="runs/train_levers")
    p.add_argument("--out", default="docs/training.md", help="Markdown file to update ('' = print only)")
    args = p.parse_args(argv)
    if args.steps % 4:
        p.error("--steps must be a multiple of 4 (the levers' every = 2 and 4)")
    if set(args.variants) - set(VARIANTS):
        p.error(f"unknown --variants {sorted(set(args.variants) - set(VARIANTS))}; known: {', '.join(VARIANTS)}")
    os.chdir(ROOT)
    import torch

    from facerestore import evaluate as E
    from facerestore.device import cpu_has_bf16

    torch.set_num_threads(min(2, torch.get_num_threads()))
    configs = levers(cpu_has_bf16())
    t0, load = time.perf_counter(), os.getloadavg()[0]
    rows = timing_rows(configs, args) if args.repeats else []
    when = f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC"
    command = shlex.join(sys.argv[1:] if argv is None else argv)
    lines = [f"Command: `python -m benchmarks.train_levers {command}`; {when}, "
             f"{E.machine_description('cpu')}, load average at the start {load:.2f}"]
    if rows:
        lines[0] += (f", {(time.perf_counter() - t0) / 60:.1f} min; {args.steps} timed steps of batch 16 after 1 "
                     f"warm-up step, {args.repeats} rounds taken in turn; medians, the ratio the median of each "
                     f"round's; bf16 {'timed' if cpu_has_bf16() else 'not timed (this CPU has no native bf16)'}.")
        lines += ["", "| configuration | images/s | vs the recipe | rounds | overrides |", "|---|---|---|---|---|",
                  *rows]
    else:
        lines[0] += "; no timing (`--repeats 0`)."
    if args.quality:
        lines += quality(configs, args)
    table = "\n".join(lines)
    print(table)
    if args.out:
        write(pathlib.Path(args.out), table + "\n", BEGIN, END)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
