"""Joint vs separate vs SR-only vs bicubic: train three recipes on one budget, evaluate all four.

    .venv/bin/python -m benchmarks.quality --steps 4000          # hours on 2 CPU cores
    .venv/bin/python -m benchmarks.quality --steps 5 --limit 32  # end-to-end smoke run, minutes
    .venv/bin/python -m benchmarks.quality --steps 4000 --skip-train   # re-evaluate finished runs

What it does, in order (each step is skipped when its output already exists, so a killed run
is resumed by starting the same command again):

1. a fixed degraded evaluation set from ``../shared/data/celeba/val`` (identities disjoint from
   training), made once with the recipes' common ``[[degradation]]`` pipeline and ``--eval-seed``
   (default 0), written in the ``facerestore degrade`` format under ``RUNS/eval_set_seed<S>``;
2. ``facerestore train`` for ``jdsr_gan_small``, ``two_stage`` and ``sr_only`` with the same data
   (``celeba/train``), steps, batch size and seed, so the same number of images is seen;
   step-denominated schedule values (warm-up, stage lengths, adversarial ``start``, checkpoint
   interval) are scaled by ``steps / train.steps`` so a short budget keeps each schedule's shape;
   in-training validation is off (no model selection on the evaluation identities); the final
   checkpoint (EMA weights) is evaluated;
3. ``facerestore eval`` of ``bicubic`` and the three checkpoints on the evaluation set (JSON,
   table, comparison grid under ``RUNS``);
4. ``docs/benchmarks.md``: command, machine, budget, training times, the table.

The grid shows CelebA faces and therefore stays under ``runs/`` (never committed).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import shlex
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_RECIPES = ("jdsr_gan_small", "two_stage", "sr_only")


def log(msg: str) -> None:
    print(f"[{datetime.datetime.now():%H:%M:%S}] {msg}", flush=True)


def facerestore_cmd() -> list[str]:
    return [sys.executable, "-m", "facerestore.cli"]


def run(cmd: list[str], logfile: pathlib.Path | None = None) -> None:
    log("$ " + " ".join(shlex.quote(c) for c in cmd))
    if logfile is None:
        subprocess.run(cmd, check=True, cwd=ROOT)
        return
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with open(logfile, "a") as fh:
        fh.write(f"\n$ {' '.join(shlex.quote(c) for c in cmd)}\n")
        fh.flush()
        proc = subprocess.run(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode:
        tail = logfile.read_text().splitlines()[-15:]
        raise SystemExit(f"command failed (exit {proc.returncode}); last lines of {logfile}:\n" + "\n".join(tail))


# --------------------------------------------------------------------------------------------
# 1. evaluation set
# --------------------------------------------------------------------------------------------
def make_eval_set(recipe_path: pathlib.Path, val_dir: pathlib.Path, out: pathlib.Path, seed: int,
                  count: int | None) -> pathlib.Path:
    """Degrade ``val_dir`` once (every face, sorted, or the first ``count``) into ``out``."""
    if (out / "manifest.json").is_file():
        log(f"evaluation set exists: {out}")
        return out
    import torch

    from facerestore import degrade as D
    from facerestore.data import FaceFolder, to_float
    from facerestore.recipe import load_recipe

    recipe = load_recipe(recipe_path)
    ds = FaceFolder([str(val_dir)], recipe.hq_size, limit=count)
    n = len(ds)
    pipeline = D.build_pipeline(recipe.degradation)
    gen = D.make_generator(seed, "cpu")
    batch_size = 32

    def batches():
        for start in range(0, n, batch_size):
            items = [ds[i] for i in range(start, min(start + batch_size, n))]
            hq = to_float(torch.stack([it["hq"] for it in items]))
            yield D.degrade_batch(hq, pipeline, gen, None), [str(ds.files[it["index"]]) for it in items]

    tmp = out.with_name(out.name + ".partial")
    with torch.no_grad():
        D.write_paired_set(tmp, batches(), {
            "seed": seed, "recipe": str(recipe_path.relative_to(ROOT)) if recipe_path.is_relative_to(ROOT) else str(recipe_path), "degradation": recipe.degradation,
            "hq_size": recipe.hq_size, "lq_size": recipe.lq_size, "scale": recipe.scale,
            "source": str(val_dir), "batch_size": batch_size, "device": "cpu",
            "command": "benchmarks/quality.py (facerestore.degrade: build_pipeline, degrade_batch, write_paired_set)"})
    tmp.rename(out)
    log(f"wrote evaluation set {out} ({n} faces)")
    return out


# --------------------------------------------------------------------------------------------
# 2. training
# --------------------------------------------------------------------------------------------
def scaled_overrides(recipe_path: pathlib.Path, steps: int, batch_size: int | None, seed: int,
                     train_dir: pathlib.Path) -> list[str]:
    """``--set`` overrides giving every recipe the same budget, data and seed (see module doc)."""
    from facerestore.recipe import load_recipe

    r = load_recipe(recipe_path)
    f = steps / r.train.steps
    sets = [f"train.steps={steps}", f"train.seed={seed}", f'data.train=["{train_dir}"]', 'data.val=""',
            f"train.warmup_steps={int(round(r.train.warmup_steps * f))}",
            f"train.ckpt_every={max(1, min(steps, int(round(r.train.ckpt_every * f))))}",
            f"train.val_every={steps + 1}", f"train.log_every={max(1, min(r.train.log_every, steps // 10 or 1))}"]
    if batch_size:
        sets.append(f"train.batch_size={batch_size}")
    if r.train.stages:
        total = sum(s.steps for s in r.train.stages)
        done = 0
        for i, s in enumerate(r.train.stages):
            n = steps - done if i == len(r.train.stages) - 1 else max(1, int(round(s.steps * steps / total)))
            sets.append(f"train.stages.{i}.steps={n}")
            done += n
    for i, loss in enumerate(r.losses):
        if loss.start:
            sets.append(f"loss.{i}.start={int(round(loss.start * f))}")
    return sets


def final_checkpoint(run_dir: pathlib.Path, steps: int) -> pathlib.Path:
    return run_dir / f"ckpt_{steps:08d}.safetensors"


def train_recipe(name: str, run_dir: pathlib.Path, overrides: list[str], steps: int, device: str,
                 times: dict, times_path: pathlib.Path) -> None:
    final = final_checkpoint(run_dir, steps)
    if final.is_file():
        log(f"{name}: trained ({final})")
        return
    resume = any(run_dir.glob("ckpt_*.safetensors"))
    cmd = [*facerestore_cmd(), "train", str(ROOT / "recipes" / f"{name}.toml"), "--out", str(run_dir),
           "--device", device, "--no-progress", "--no-tensorboard"]
    for s in overrides:
        cmd += ["--set", s]
    if resume:
        cmd.append("--resume")
    t0 = time.perf_counter()
    run(cmd, run_dir / "train.out")
    times[name] = times.get(name, 0.0) + time.perf_counter() - t0
    times_path.write_text(json.dumps(times, indent=1))
    if not final.is_file():
        raise SystemExit(f"{name}: training ended without {final}")


# --------------------------------------------------------------------------------------------
# 4. report
# --------------------------------------------------------------------------------------------
def train_device(name: str) -> str:
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "n/a"
    return f"{s / 3600:.2f} h" if s >= 3600 else (f"{s / 60:.1f} min" if s >= 60 else f"{s:.0f} s")


def write_report(path: pathlib.Path, args, command: str, results: dict, table: str, times: dict,
                 recipes: list[str], eval_set: pathlib.Path, images_seen: int, batch: int,
                 total_seconds: float, overrides: dict[str, list[str]]) -> None:

    data = results["data"]
    man = data.get("manifest", {})
    lines = [
        "# Benchmark: joint vs separate vs SR-only vs bicubic",
        "",
        "Measured by `benchmarks/quality.py`; rerun it to reproduce (numbers change with the machine,",
        "the budget and torch version, not with anything else: data order, degradation and",
        "initialisation are seeded).",
        "",
        f"- command: `{command}`",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; total time "
        f"{fmt_seconds(total_seconds)} (this invocation)",
        f"- machine: {results.get('machine', '?')}; {platform.platform()}",
        f"- training: recipes {', '.join(f'`recipes/{r}.toml`' for r in recipes)} on "
        f"`{args.train_data}`, {args.steps} steps x batch {batch} = **{images_seen:,} images seen** each, "
        f"seed {args.seed}, device {train_device(args.device)}; step-denominated schedule values scaled by "
        f"steps / recipe steps; no in-training validation; final EMA weights evaluated",
        "- training time: " + ", ".join(f"{r} {fmt_seconds(times.get(r))}" for r in recipes),
        f"- evaluation set: {data.get('count')} faces of `{args.val_data}` (identities disjoint from training), "
        f"degraded once with the recipes' common `[[degradation]]` list "
        f"(`{man.get('recipe', args.recipes[0])}`), seed {man.get('seed', args.eval_seed)}, "
        f"{data.get('lq_size')} px -> {data.get('hq_size')} px; set folder `{eval_set}` (not committed: CelebA)",
        f"- evaluation: `facerestore eval`, device {results['settings']['device']}, outputs rounded to 8 bits; "
        "faces/s = generator forward at batch 16 after 2 warm-up batches "
        f"({results['settings'].get('torch_threads')} torch threads). Metric definitions: `docs/metrics.md`.",
        "",
        table.rstrip(),
        "",
    ]
    if args.steps < 1000:
        lines += ["**Smoke-test budget**: at this few steps the trained models have barely moved from their",
                  "initialisation; the table shows that the pipeline runs end to end, not how the methods compare.", ""]
    lines += ["Overrides passed to `facerestore train` (`--set`):", ""]
    for r in recipes:
        lines.append(f"- {r}: `{' '.join(overrides.get(r, []))}`")
    lines.append("")
    lines.append(f"Comparison grid (CelebA faces, kept out of the repository): `{args.runs}/grid.png`.")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    log(f"wrote {path}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=4000, help="training steps per recipe (same for all)")
    p.add_argument("--batch-size", type=int, default=None, help="override train.batch_size (default: the recipes', 16)")
    p.add_argument("--seed", type=int, default=0, help="training seed (train.seed)")
    p.add_argument("--eval-seed", type=int, default=0, help="seed of the degraded evaluation set")
    p.add_argument("--skip-train", action="store_true", help="only evaluate finished runs (fails if one is missing)")
    p.add_argument("--recipes", nargs="+", default=list(DEFAULT_RECIPES))
    p.add_argument("--train-data", default="../shared/data/celeba/train")
    p.add_argument("--val-data", default="../shared/data/celeba/val")
    p.add_argument("--limit", type=int, default=None, help="evaluate on the first N faces of celeba/val only")
    p.add_argument("--runs", default="runs/quality", help="run folders, evaluation set, results (git-ignored)")
    p.add_argument("--device", default="auto")
    p.add_argument("--eval-batch-size", type=int, default=16)
    p.add_argument("--eval-skip", default="", help="metric groups not to compute (lpips,identity,landmarks,speed)")
    p.add_argument("--out", default="docs/benchmarks.md", help="report to write ('' = none)")
    args = p.parse_args(argv)
    if args.steps < 1:
        p.error("--steps must be >= 1")
    command = "python -m benchmarks.quality " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    t_start = time.perf_counter()
    os.chdir(ROOT)
    for d in (args.train_data, args.val_data):
        if not pathlib.Path(d).is_dir():
            raise SystemExit(f"data folder not found: {d} (see ../shared/data/README.md)")
    from facerestore.recipe import load_recipe

    recipes = list(args.recipes)
    loaded = {r: load_recipe(ROOT / "recipes" / f"{r}.toml") for r in recipes}
    first = loaded[recipes[0]]
    for r, rec in loaded.items():
        if rec.degradation != first.degradation or (rec.hq_size, rec.scale) != (first.hq_size, first.scale):
            raise SystemExit(f"recipes/{r}.toml degrades differently from recipes/{recipes[0]}.toml: not comparable")
    batch = args.batch_size or first.train.batch_size
    if any((args.batch_size or rec.train.batch_size) != batch for rec in loaded.values()):
        raise SystemExit("the recipes use different batch sizes; pass --batch-size")
    runs = pathlib.Path(args.runs)
    budget_dir = runs / f"steps{args.steps}_b{batch}_seed{args.seed}"
    eval_set = make_eval_set(ROOT / "recipes" / f"{recipes[0]}.toml", pathlib.Path(args.val_data),
                             runs / f"eval_set_seed{args.eval_seed}", args.eval_seed, None)
    times_path = budget_dir / "train_times.json"
    times = json.loads(times_path.read_text()) if times_path.is_file() else {}
    budget_dir.mkdir(parents=True, exist_ok=True)
    overrides = {}
    for r in recipes:
        overrides[r] = scaled_overrides(ROOT / "recipes" / f"{r}.toml", args.steps, args.batch_size, args.seed,
                                        pathlib.Path(args.train_data))
        run_dir = budget_dir / r
        if args.skip_train:
            if not final_checkpoint(run_dir, args.steps).is_file():
                raise SystemExit(f"--skip-train: {final_checkpoint(run_dir, args.steps)} does not exist")
            continue
        train_recipe(r, run_dir, overrides[r], args.steps, args.device, times, times_path)
    results_json = budget_dir / "results.json"
    table_md = budget_dir / "table.md"
    cmd = [*facerestore_cmd(), "eval", "--model", "bicubic"]
    for r in recipes:
        cmd += ["--model", str(final_checkpoint(budget_dir / r, args.steps))]
    cmd += ["--data", str(eval_set), "--json", str(results_json), "--markdown", str(table_md),
            "--grid", str(runs / "grid.png"), "--device", args.device, "--batch-size", str(args.eval_batch_size)]
    if args.limit:
        cmd += ["--limit", str(args.limit)]
    if args.eval_skip:
        cmd += ["--skip", args.eval_skip]
    run(cmd)
    results = json.loads(results_json.read_text())
    if args.out:
        write_report(pathlib.Path(args.out), args, command, results, table_md.read_text(), times, recipes,
                     eval_set, args.steps * batch, batch, time.perf_counter() - t_start, overrides)
    print(table_md.read_text())


if __name__ == "__main__":
    main()
