"""Throughput of the batched on-device degradation vs a per-image CPU pipeline in DataLoader workers.

Both sides start from the same decoded 128x128 uint8 faces in memory (decoding is not timed) and
run the JDSR recipe's steps: mask -> Gaussian blur -> x4 bicubic downscale -> Gaussian noise ->
JPEG. "ours" is facerestore's pipeline (``random_mask`` procedural only, ``gaussian_blur``,
``downscale``, ``gaussian_noise``, ``jpeg``) on whole batches in the main process; "per-image" is
the BasicSR/GFPGAN way: a Dataset whose ``__getitem__`` degrades one face with OpenCV/numpy
(``cv2.fillPoly`` mask with pleat lines and ear loops, ``cv2.GaussianBlur``, ``cv2.resize``
INTER_CUBIC, numpy noise, ``cv2.imencode`` JPEG), in a DataLoader with 2 worker processes.

Usage: ``python -m benchmarks.degradation [--images 512] [--no-jpeg-table]``. Prints Markdown: the
throughput tables, then where our pipeline's time goes at batch 32, step by step.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from facerestore.degrade import build_pipeline, degrade_batch, make_generator
from facerestore.landmarks import TEMPLATE_5

SIZE = 128
BATCHES = (1, 8, 32, 128)
SPECS = [
    {"type": "random_mask", "template_prob": 0.0},
    {"type": "gaussian_blur", "sigma": [0.2, 1.5]},
    {"type": "downscale", "scale": 4, "mode": "bicubic"},
    {"type": "gaussian_noise", "sigma": [0.0, 0.03]},
    {"type": "jpeg", "quality": [40.0, 95.0]},
]


def make_faces(n: int) -> np.ndarray:
    """Face-like test images: skimage's astronaut aligned to the template, with shifted crops."""
    from PIL import Image
    from skimage.data import astronaut

    img = Image.fromarray(astronaut())
    out = []
    rng = np.random.default_rng(0)
    for _ in range(n):
        dx, dy = rng.integers(-6, 7, 2)
        box = (127 + dx, 1 + max(dy, -1), 321 + dx, 195 + max(dy, -1))
        out.append(np.asarray(img.crop(box).resize((SIZE, SIZE), Image.Resampling.BICUBIC)))
    return np.stack(out)


class PerImage(Dataset):
    """The per-image CPU pipeline (what a BasicSR-style dataset does in each worker)."""

    def __init__(self, faces: np.ndarray, n: int, jpeg: bool):
        self.faces, self.n, self.jpeg = faces, n, jpeg

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        import cv2

        cv2.setNumThreads(1)
        rng = np.random.default_rng(i)
        img = self.faces[i % len(self.faces)].copy()
        s = SIZE
        lm = TEMPLATE_5.numpy() * s + rng.normal(0, 0.02 * s, (5, 2))
        eyes, nose, mouth = lm[:2].mean(0), lm[2], lm[3:].mean(0)
        de = np.linalg.norm(lm[1] - lm[0])
        top = eyes[1] + rng.uniform(0.3, 0.6) * (nose[1] - eyes[1])
        chin = mouth[1] + rng.uniform(0.6, 0.9) * (mouth[1] - eyes[1])
        hw = rng.uniform(1.02, 1.22) * de
        cx = eyes[0]
        poly = np.array([[cx - hw, top + 3], [cx, top], [cx + hw, top + 3], [cx + 0.9 * hw, mouth[1] + 6],
                         [cx, chin], [cx - 0.9 * hw, mouth[1] + 6]], np.int32)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.fillPoly(img, [poly], colour)
        dark = tuple(int(c * 0.8) for c in colour)
        for k in range(3):  # pleats
            y = int(top + (k + 1) * (chin - top) / 4)
            cv2.line(img, (int(cx - 0.9 * hw), y), (int(cx + 0.9 * hw), y), dark, 1)
        for sx in (-1, 1):  # ear loops
            cv2.ellipse(img, (int(cx + sx * hw), int((top + mouth[1]) / 2)), (int(0.25 * hw), int(0.35 * (chin - top))),
                        0, -90 * sx - 90, 90 - 90 * sx, (230, 230, 230), 1)
        sigma = rng.uniform(0.2, 1.5)
        img = cv2.GaussianBlur(img, (0, 0), sigma)
        img = cv2.resize(img, (s // 4, s // 4), interpolation=cv2.INTER_CUBIC)
        img = img.astype(np.float32) / 255 + rng.normal(0, rng.uniform(0, 0.03), img.shape).astype(np.float32)
        img = np.clip(img, 0, 1)
        if self.jpeg:
            q = int(rng.uniform(40, 95))
            ok, enc = cv2.imencode(".jpg", (img * 255 + 0.5).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, q])
            img = cv2.imdecode(enc, cv2.IMREAD_UNCHANGED).astype(np.float32) / 255
        return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


def time_ours(faces: np.ndarray, batch: int, n: int, device: str, jpeg: bool) -> float:
    specs = SPECS if jpeg else SPECS[:-1]
    pipe = build_pipeline(specs)
    gen = make_generator(0, device)
    src = torch.from_numpy(faces).permute(0, 3, 1, 2).contiguous()
    reps = max(1, n // batch)
    idx = torch.arange(batch) % len(faces)
    hq8 = src[idx]
    degrade_batch(hq8.to(device).float() / 255, pipe, gen)  # warm-up
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        hq = hq8.to(device, non_blocking=True).float() / 255
        out = degrade_batch(hq, pipe, gen)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    del out
    return reps * batch / (time.perf_counter() - t)


def step_breakdown(faces: np.ndarray, batch: int, device: str, repeats: int = 7) -> list[tuple[str, float]]:
    """Milliseconds per batch of each step of ``SPECS`` on ``device`` (median of ``repeats``),
    measured as differences of growing prefixes of the pipeline, so the blur is timed fused into
    the downscale as ``degrade_batch`` runs it."""
    hq = (torch.from_numpy(faces).permute(0, 3, 1, 2)[torch.arange(batch) % len(faces)].float() / 255).to(device)
    cuts = [(1, "mask (random_mask, procedural)"), (3, "blur + downscale x4 (one fused linear map)"),
            (4, "Gaussian noise"), (5, "JPEG")]
    rows, before = [], 0.0
    for n, label in cuts:
        pipe, gen = build_pipeline(SPECS[:n]), make_generator(0, device)
        degrade_batch(hq, pipe, gen)
        times = []
        for _ in range(repeats):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t = time.perf_counter()
            degrade_batch(hq, pipe, gen)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append((time.perf_counter() - t) * 1000)
        total = sorted(times)[repeats // 2]
        rows.append((label, total - before))
        before = total
    return rows


def time_per_image(faces: np.ndarray, batch: int, n: int, jpeg: bool, workers: int = 2) -> float:
    ds = PerImage(faces, max(n, batch * 2), jpeg)
    loader = DataLoader(ds, batch_size=batch, num_workers=workers, persistent_workers=False)
    it = iter(loader)
    next(it)  # workers started and warm
    t = time.perf_counter()
    count = 0
    for b in it:
        count += b.shape[0]
    return count / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=512, help="images timed per cell (at least 2 batches)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-jpeg-table", action="store_true", help="skip the table without JPEG")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    faces = make_faces(64)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
          f"torch threads {args.threads}, load average before: {os.getloadavg()[0]:.1f}"
          + (f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""))
    for jpeg in ([True] if args.no_jpeg_table else [True, False]):
        name = "mask -> blur -> downscale x4 -> noise" + (" -> JPEG" if jpeg else "")
        print(f"\n**{name}**, 128x128 -> 32x32, images/s\n")
        head = "| batch | per-image OpenCV, 2 workers |" + "".join(f" ours {d} | ratio {d} |" for d in devices)
        print(head)
        print("|" + "---|" * (2 + 2 * len(devices)))
        for b in BATCHES:
            n = max(args.images if b > 1 else args.images // 4, 2 * b)
            base = time_per_image(faces, b, n, jpeg)
            row = f"| {b} | {base:.0f} |"
            for d in devices:
                ours = time_ours(faces, b, n, d, jpeg)
                row += f" {ours:.0f} | {ours / base:.2f}x |"
            print(row, flush=True)
    for d in devices:
        print(f"\n**Where the time goes**, ours on {d}, batch 32, ms per batch (median of 7)\n")
        print("| step | ms | share |\n|---|---:|---:|")
        rows = step_breakdown(faces, 32, d)
        total = sum(ms for _, ms in rows)
        for label, ms in rows:
            print(f"| {label} | {ms:.1f} | {100 * ms / total:.0f} % |")
        print(f"| total | {total:.1f} | |")
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
