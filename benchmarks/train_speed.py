"""Training speed: images/s of one full training step (degradation on the device, generator
forward/backward with every loss switched on, discriminator step) per recipe.

    .venv/bin/python -m benchmarks.train_speed [--steps 5] [--device cpu cuda] [--write-docs]

Faces are generated in memory (smooth random colour fields at the recipe's ``hq_size``), so the
figure is the model's cost, not JPEG decoding; every loss's ``start`` is set to 0 so the
adversarial term and the discriminator step are included (the slowest phase of a run). Recipes
whose degradation or losses need something missing on this machine are listed as skipped with
the reason. ``--write-docs`` replaces the table in docs/training.md.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import re
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- train_speed:begin -->", "<!-- train_speed:end -->"


class SyntheticFaces(torch.utils.data.Dataset):
    def __init__(self, n: int, size: int):
        g = torch.Generator().manual_seed(0)
        self.images = F.interpolate(torch.rand(n, 3, 8, 8, generator=g), size=(size, size), mode="bilinear",
                                    align_corners=False)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"hq": self.images[i]}


def measure(recipe_path: pathlib.Path, device: str, steps: int, warmup: int,
            overrides: list[str] | None = None) -> tuple[float, float, int]:
    """``(images/s, seconds per step, batch size)`` of ``steps`` full training steps after ``warmup`` ones."""
    from facerestore.recipe import load_recipe
    from facerestore.train import Trainer
    from facerestore.train.schedule import stage_at

    r = load_recipe(recipe_path, overrides)
    for loss in r.losses:
        loss.start = 0
    r.data.val = ""
    r.data.workers = 0
    bs = r.train.batch_size
    with tempfile.TemporaryDirectory() as tmp:
        t = Trainer(r, tmp, device=device, dataset=SyntheticFaces(bs * 4, r.hq_size), tensorboard=False,
                    echo=lambda m: None)
        t.apply_stage(stage_at(t.plan, 0))
        batches = t._loader()
        for _ in range(warmup):
            t.train_step(*next(batches))
        if t.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            t.train_step(*next(batches))
        if t.device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
    return steps * bs / elapsed, elapsed / steps, bs


def machine(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name(0)
    return f"{os.cpu_count()}-core {platform.machine()} CPU, {torch.get_num_threads()} threads"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", nargs="*", default=None, help="default: cpu, plus cuda when available")
    ap.add_argument("--recipes", nargs="*", default=None)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="recipe override for every recipe, e.g. train.cpu_amp=true (repeatable)")
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    recipes = [pathlib.Path(p) for p in args.recipes] if args.recipes else sorted((REPO / "recipes").glob("*.toml"))
    os.chdir(REPO)  # recipes name data relative to the repository
    lines = [f"torch {torch.__version__}; {args.steps} timed steps after {args.warmup} warm-up steps; "
             "generated faces; all losses on (adversarial included)"
             + (f"; overrides: {' '.join(args.set)}" if args.set else "") + ".", "",
             "| recipe | device | images/s | detail |", "|---|---|---|---|"]
    for device in devices:
        for path in recipes:
            try:
                rate, seconds, bs = measure(path, device, args.steps, args.warmup, args.set)
                ips, detail = f"{rate:.1f}", f"{seconds * 1000:.0f} ms/step, batch {bs}"
            except Exception as exc:  # noqa: BLE001 - report and go on with the other recipes
                ips, detail = "skipped", str(exc).splitlines()[0][:120]
            row = f"| {path.stem} | {machine(device)} | {ips} | {detail} |"
            print(row if len(lines) > 4 else "\n".join(lines + [row]), flush=True)
            lines.append(row)
    table = "\n".join(lines)
    if args.write_docs:
        doc = REPO / "docs" / "training.md"
        text = doc.read_text(encoding="utf-8")
        new = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), f"{BEGIN}\n{table}\n{END}", text, flags=re.S)
        doc.write_text(new, encoding="utf-8")
        print(f"wrote the table into {doc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
