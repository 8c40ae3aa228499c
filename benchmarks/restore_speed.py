"""Restoration speed on CPU: aligned faces/s (batch 1 vs batched) and seconds per whole photo.

    python benchmarks/restore_speed.py [--model bicubic|NAME|PATH] [--photo PATH] [--threads 2]

Aligned faces are random tensors at the model's input size (speed does not depend on content).
The photo is ``../shared/data/scenes/insightface/t1.jpg`` (6 faces): read, MTCNN detection,
alignment, restoration of all faces in one pass, paste-back; writing is not timed.
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import statistics
import time

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_PHOTO = ROOT.parent / "shared" / "data" / "scenes" / "insightface" / "t1.jpg"


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="bicubic")
    ap.add_argument("--photo", default=str(DEFAULT_PHOTO))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)

    from facerestore.io import read_image
    from facerestore.restore import Restorer

    r = Restorer.from_pretrained(args.model, device="cpu", batch_size=16, precision=args.precision)
    rows = []
    for b in (1, 16):
        faces = torch.rand(b, 3, r.lq_size, r.lq_size, generator=torch.Generator().manual_seed(0))
        n = max(1, 32 // b)
        sec = timed(lambda: [r.restore_faces(faces) for _ in range(n)], args.repeats) / (n * b)
        rows.append((f"aligned faces, batch {b}", f"{1 / sec:.1f} faces/s", f"{sec * 1000:.2f} ms/face"))
    if pathlib.Path(args.photo).exists():
        img, _ = read_image(args.photo)
        res = r.restore_many([img])[0]
        det = r.detector.detect([img])
        sec = timed(lambda: r.restore_many([img]), args.repeats)
        sec_det = timed(lambda: r.detector.detect([img]), args.repeats)
        name = pathlib.Path(args.photo).name
        rows.append((f"photo {name} {img.shape[2]}x{img.shape[1]}, {res.n_restored} faces",
                     f"{sec:.2f} s/photo", f"of which detection {sec_det:.2f} s"))
        del det
    else:
        rows.append((f"photo {args.photo}", "not found (needs ../shared/data)", ""))
    print(f"model `{args.model}` (LQ {r.lq_size}px -> {r.hq_size}px), {args.threads} threads, "
          f"{platform.machine()} CPU, torch {torch.__version__.split('+')[0]}, median of {args.repeats}\n")
    print("| case | speed | note |\n|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
