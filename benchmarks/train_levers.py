"""Training-throughput levers for the full `jdsr_gan` recipe (issue 14): what each one buys.

    .venv/bin/python benchmarks/train_levers.py [--repeats 3] [--steps 4] [--quality 150] [--out docs/training.md]

One full training step of ``recipes/jdsr_gan.toml`` with every loss on (adversarial included,
generated faces, as ``train_speed.py``) is timed as the recipe is and with each lever alone, then
all together; the configurations are timed in turn, ``--repeats`` rounds, and each one's median
images/s is reported with its ratio to the recipe as it is *in the same run* (the machine is noisy).
The levers are recipe settings a user can set with ``--set``:

* the SR-side perceptual term at 64 px (``size = 64``: VGG16 on a quarter of the pixels);
* the perceptual terms every 4th step (``every = 4``);
* the adversarial term every 2nd step (its critic trains only when the term is on);
* the identity term every 2nd step;
* bf16 autocast (``train.cpu_amp``), timed only on a CPU with native bf16 (AVX512-BF16/AMX).

``--quality STEPS`` then trains the recipe as it is and with all levers, from scratch, same seed
and data order, ``STEPS`` steps of 16 each (equal images seen; all losses on from step 0, lr 2e-4
constant after 20 warm-up steps) and scores both EMA generators on celeba/val at the recipe's x4
(``by_scale.py``'s r4): PSNR, SSIM, LPIPS. Writes a section of ``--out`` between markers.
"""

from __future__ import annotations

import argparse
import datetime
import os
import pathlib
import shlex
import statistics
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = pathlib.Path(__file__).resolve().parents[1]
RECIPE = "recipes/jdsr_gan.toml"
BEGIN, END = "<!-- train_levers:begin -->", "<!-- train_levers:end -->"


def levers(bf16: bool) -> dict[str, list[str]]:
    """Lever name -> ``--set`` overrides of the jdsr_gan recipe (loss indices looked up by type/output)."""
    from facerestore.recipe import load_recipe

    losses = load_recipe(ROOT / RECIPE).losses
    at = lambda type_, on=None: [i for i, s in enumerate(losses) if s.type == type_ and on in (None, s.on)]  # noqa: E731
    out = {"recipe as it is": [],
           "perceptual (sr) at 64 px": [f"loss.{i}.size=64" for i in at("perceptual", "sr")],
           "perceptual every 4th step": [f"loss.{i}.every=4" for i in at("perceptual")],
           "adversarial + critic every 2nd step": [f"loss.{i}.every=2" for i in at("adversarial")],
           "identity every 2nd step": [f"loss.{i}.every=2" for i in at("identity")]}
    if bf16:
        out["bf16 autocast"] = ["train.cpu_amp=true"]
    out["all of the above"] = [s for sets in list(out.values())[1:] for s in sets]
    return out


def throughput(configs: dict[str, list[str]], steps: int, repeats: int) -> dict[str, list[float]]:
    """Images/s of each configuration, measured in turn ``repeats`` times (``train_speed.measure``)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from train_speed import measure

    runs: dict[str, list[float]] = {name: [] for name in configs}
    for r in range(repeats):
        for name, sets in configs.items():
            ips, _ = measure(ROOT / RECIPE, "cpu", steps, 1, sets)
            runs[name].append(float(ips))
            print(f"round {r + 1}: {name}: {ips} img/s", file=sys.stderr, flush=True)
    return runs


def train(out: pathlib.Path, sets: list[str], steps: int) -> pathlib.Path:
    """A from-scratch run of the recipe with ``sets``; every loss on from step 0."""
    from facerestore.recipe import load_recipe

    n = len(load_recipe(ROOT / RECIPE).losses)
    sets = [*sets, *(f"loss.{i}.start=0" for i in range(n)), f"train.steps={steps}", "train.lr=2e-4",
            "train.scheduler='constant'", "train.warmup_steps=20", f"train.val_every={steps}",
            f"train.ckpt_every={steps}", "data.workers=1", "train.log_every=25"]
    ckpt = out / f"ckpt_{steps:08d}.safetensors"
    if not ckpt.exists():
        cmd = [sys.executable, "-m", "facerestore.cli", "train", RECIPE, "--out", str(out), "--no-progress",
               "--no-tensorboard"]
        subprocess.run(cmd + [a for s in sets for a in ("--set", s)], check=True)
    return ckpt


def quality(configs: dict[str, list[str]], args) -> list[str]:
    """Table rows: equal-images runs of the recipe as it is and with all levers, scored at x4."""
    import torch

    from facerestore import evaluate as E
    from facerestore.recipe import load_recipe

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from by_scale import paired, protocols

    names = ["recipe as it is", "all of the above"]
    t0 = time.perf_counter()
    ckpts = [train(pathlib.Path(args.runs) / f"run{k}", configs[n], args.quality) for k, n in enumerate(names)]
    minutes = (time.perf_counter() - t0) / 60
    torch.set_num_threads(min(2, torch.get_num_threads()))
    recipe = load_recipe(ROOT / RECIPE)
    data = paired(recipe, "r4", protocols(recipe)["r4"], args.val, args.limit, 0)
    models = [E.adaptive_model(str(c), data.hq_size) for c in ckpts]
    report = E.evaluate(models, data, "cpu", batch_size=16, skip=["landmarks", "speed", "identity"], grid_faces=0)
    return ["", f"Equal images seen (`--quality {args.quality}`: {args.quality} steps x 16 from scratch, seed 0, "
            f"both runs {minutes:.1f} min together; {len(data)} faces of `{args.val}` at the recipe's x4, seed 0):",
            "", "| run | PSNR | SSIM | LPIPS |", "|---|---|---|---|",
            *(f"| {n} | {m.values['psnr']:.2f} | {m.values['ssim']:.4f} | {m.values['lpips']:.4f} |"
              for n, m in zip(names, report.models))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=4,
                   help="timed steps per measurement, after 1 warm-up step; a multiple of 4 so that every "
                        "k-th-step term is timed at its share")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quality", type=int, default=0, help="also train both ways for this many steps (0: no)")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--val", default="../shared/data/celeba/val")
    p.add_argument("--runs", default="runs/train_levers")
    p.add_argument("--out", default="docs/training.md", help="Markdown file to update ('' = print only)")
    args = p.parse_args(argv)
    if args.steps % 4:
        p.error("--steps must be a multiple of 4 (the levers' every = 2 and 4)")
    os.chdir(ROOT)
    import torch

    from facerestore import evaluate as E
    from facerestore.device import cpu_has_bf16

    torch.set_num_threads(min(2, torch.get_num_threads()))
    configs = levers(cpu_has_bf16())
    t0, load = time.perf_counter(), os.getloadavg()[0]
    runs = throughput(configs, args.steps, args.repeats)
    base = statistics.median(runs["recipe as it is"])
    rows = [f"| {name} | {statistics.median(v):.2f} | {statistics.median(v) / base:.2f}x | "
            f"{' '.join(f'{x:.2f}' for x in v)} | {' '.join(f'`{s}`' for s in configs[name]) or '-'} |"
            for name, v in runs.items()]
    when = f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC"
    lines = [f"Command: `python benchmarks/train_levers.py {shlex.join(sys.argv[1:])}`; {when}, "
             f"{E.machine_description('cpu')}, load average at the start {load:.2f}, "
             f"{(time.perf_counter() - t0) / 60:.1f} min; {args.steps} timed steps of batch 16 after 1 warm-up step, "
             f"{args.repeats} rounds taken in turn, medians; bf16 "
             f"{'timed' if cpu_has_bf16() else 'not timed (this CPU has no native bf16)'}.", "",
             "| configuration | images/s | vs the recipe | rounds | overrides |", "|---|---|---|---|---|", *rows]
    if args.quality:
        lines += quality(configs, args)
    table = "\n".join(lines)
    print(table)
    if args.out:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from by_scale import write

        write(pathlib.Path(args.out), table + "\n", BEGIN, END)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
