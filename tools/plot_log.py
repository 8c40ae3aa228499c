"""Plot losses of a training run's ``log.jsonl`` over the steps (PNG, drawn with Pillow: no
plotting library needed), e.g. the discriminator's loss to see whether it collapses.

    .venv/bin/python tools/plot_log.py runs/masked_any --keys d adversarial_sr --out docs/img/masked_any_gan.png
    .venv/bin/python tools/plot_log.py runs/masked_any --summary   # wall time, img/s, validation

``d`` is logged weighted (the recipe's adversarial ``weight`` times the critic's loss);
``--unweight W`` divides it by W to show the critic's own loss (ln 2 = 0.693 is chance for
the relativistic loss).
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib

from PIL import Image, ImageDraw

COLORS = [(220, 50, 47), (38, 139, 210), (133, 153, 0), (211, 54, 130), (42, 161, 152)]


def series(run: pathlib.Path, keys: list[str], unweight: float) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = {k: [] for k in keys}
    last: dict[int, dict] = {}
    for line in (run / "log.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("event") == "train":
            last[rec["step"]] = rec["losses"]  # a resumed run re-logs steps: keep the last
    for step in sorted(last):
        for k in keys:
            if k in last[step]:
                v = last[step][k] / (unweight if k == "d" else 1.0)
                out[k].append((step, v))
    return out


def summary(run: pathlib.Path) -> str:
    """A run in a few lines: steps, wall time between the first and last train record, median
    images/s over the logged intervals, and the validation PSNR at each validation."""
    import statistics

    recs = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    train = [r for r in recs if r.get("event") == "train"]
    if not train:
        return f"{run}: no train records"
    minutes = (train[-1]["time"] - train[0]["time"]) / 60
    ips = statistics.median(r["images_per_s"] for r in train)
    vals = ", ".join(f"{r['step']}: {r['psnr']:.2f}" for r in recs if r.get("event") == "val" and "psnr" in r)
    return (f"{run}: steps {train[0]['step']}-{train[-1]['step']} logged, {minutes:.1f} min between the first and last "
            f"train record, median {ips:.1f} img/s\nvalidation PSNR (step: dB): {vals or 'none'}")


def draw(data: dict[str, list[tuple[int, float]]], title: str, size=(900, 420)) -> Image.Image:
    w, h = size
    left, right, top, bottom = 70, 20, 40, 50
    img = Image.new("RGB", size, "white")
    g = ImageDraw.Draw(img)
    pts = [p for s in data.values() for p in s]
    if not pts:
        g.text((left, top), "no data", fill="black")
        return img
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = 0.0, max(p[1] for p in pts) * 1.05
    sx = lambda x: left + (x - x0) / max(x1 - x0, 1) * (w - left - right)  # noqa: E731
    sy = lambda y: h - bottom - (y - y0) / max(y1 - y0, 1e-9) * (h - top - bottom)  # noqa: E731
    g.rectangle([left, top, w - right, h - bottom], outline="black")
    for i in range(6):
        y = y0 + (y1 - y0) * i / 5
        g.line([left - 4, sy(y), left, sy(y)], fill="black")
        g.text((5, sy(y) - 6), f"{y:.3g}", fill="black")
        x = x0 + (x1 - x0) * i / 5
        g.text((sx(x) - 15, h - bottom + 6), f"{int(x)}", fill="black")
    g.text((w // 2 - 20, h - 20), "step", fill="black")
    g.text((left, 10), title, fill="black")
    if y0 <= math.log(2) <= y1:
        g.line([left, sy(math.log(2)), w - right, sy(math.log(2))], fill=(180, 180, 180))
    for i, (k, s) in enumerate(data.items()):
        c = COLORS[i % len(COLORS)]
        if len(s) > 1:
            g.line([(sx(x), sy(y)) for x, y in s], fill=c, width=2)
        g.text((w - right - 160, top + 8 + 14 * i), k, fill=c)
    return img


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=pathlib.Path)
    p.add_argument("--keys", nargs="+", default=["d", "adversarial_sr"])
    p.add_argument("--unweight", type=float, default=1.0, help="divide the logged d by this (the adversarial weight)")
    p.add_argument("--out", type=pathlib.Path, help="PNG to write (required unless --summary)")
    p.add_argument("--summary", action="store_true", help="print steps, wall time, img/s and validation PSNR")
    args = p.parse_args()
    if args.summary:
        print(summary(args.run))
        if args.out is None:
            return 0
    if args.out is None:
        p.error("--out is required unless --summary")
    data = series(args.run, args.keys, args.unweight)
    title = f"{args.run.name}: " + ", ".join(args.keys) + (f" (d / {args.unweight:g}; grey: ln 2)" if args.unweight != 1 else "")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    draw(data, title).save(args.out)
    for k, s in data.items():
        if s:
            print(f"{k}: {len(s)} points, first {s[0][1]:.4f} at {s[0][0]}, last {s[-1][1]:.4f} at {s[-1][0]}, "
                  f"min {min(v for _, v in s):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
