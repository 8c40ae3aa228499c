"""Restoration speed on CPU: aligned faces/s (batch 1 vs batched) and seconds per whole photo.

    python -m benchmarks.restore_speed [--model bicubic|NAME|PATH] [--photo PATH] [--threads 2] [--tta]

Aligned faces are random tensors at the model's input size (speed does not depend on content).
The photo is ``../shared/data/scenes/insightface/t1.jpg`` (6 faces): read, MTCNN detection,
alignment, restoration of all faces in one pass, paste-back; writing is not timed.
Prints a Markdown table. The machine is shared, so the same run also times a reference, a
64-channel 3x3 convolution (batch 16, 64x64, channels_last, float32), and gives the model's
batch-16 throughput as a share of that conv peak: the ratio moves less than the absolute figures.
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


def conv_peak(repeats: int) -> float:
    """GFLOP/s of a 64-channel 3x3 conv forward (multiply-add = 2): this CPU's practical peak."""
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).eval().to(memory_format=torch.channels_last)
    x = torch.rand(16, 64, 64, 64).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        sec = timed(lambda: [conv(x) for _ in range(4)], repeats) / 4
    return 2 * 16 * 64 * 64 * 64 * 64 * 9 / sec / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="bicubic")
    ap.add_argument("--photo", default=str(DEFAULT_PHOTO))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--tta", action="store_true", help="time `restore --tta` (the mirrored self-ensemble)")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)

    from facerestore.io import read_image
    from facerestore.modelstats import flops_per_face
    from facerestore.restore import Restorer

    r = Restorer.from_pretrained(args.model, device="cpu", batch_size=16, precision=args.precision, tta=args.tta)
    flops = flops_per_face(r.generator, r.lq_size) * (2 if args.tta else 1)
    peak = conv_peak(args.repeats)
    rows = [("reference: 64-ch 3x3 conv, batch 16", f"{peak:.0f} GFLOP/s", "same run, same threads")]
    for b in (1, 16):
        faces = torch.rand(b, 3, r.lq_size, r.lq_size, generator=torch.Generator().manual_seed(0))
        n = max(1, 32 // b)
        sec = timed(lambda: [r.restore_faces(faces) for _ in range(n)], args.repeats) / (n * b)
        share = f", {flops / sec / 1e9:.0f} GFLOP/s = {100 * flops / sec / 1e9 / peak:.0f} % of the conv" if flops else ""
        rows.append((f"aligned faces, batch {b}", f"{1 / sec:.1f} faces/s", f"{sec * 1000:.2f} ms/face{share}"))
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
    print(f"model `{args.model}`{' with --tta' if args.tta else ''} (LQ {r.lq_size}px -> {r.hq_size}px, "
          f"{flops / 1e9:.2f} GFLOP/face), {args.threads} threads, {platform.machine()} CPU, "
          f"torch {torch.__version__.split('+')[0]}, median of {args.repeats}, "
          f"load average before: {os.getloadavg()[0]:.1f}\n")
    print("| case | speed | note |\n|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
