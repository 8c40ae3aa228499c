"""How kornia's differentiable JPEG (the ``jpeg`` degradation) compares with libjpeg (Pillow) at
the same quality number: PSNR against the uncompressed face, and the libjpeg quality that gives
the same PSNR. Faces: 64 crops of ``skimage.data.astronaut()`` (shifted, flipped), at 32 and
128 px, so the figures need no data folder.

    .venv/bin/python -m benchmarks.jpeg_calibration
"""

from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def faces(size: int) -> torch.Tensor:
    from skimage import data

    img = torch.from_numpy(data.astronaut().copy()).permute(2, 0, 1).float() / 255
    crops = []
    for i in range(64):
        dx, dy = (i % 8) * 6, (i // 8) * 6
        c = img[:, 40 + dy:200 + dy, 150 + dx:310 + dx]
        crops.append(c.flip(-1) if i % 2 else c)
    return F.interpolate(torch.stack(crops), size=(size, size), mode="area").clamp(0, 1)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = ((a - b) ** 2).mean(dim=(1, 2, 3)).clamp_min(1e-12)
    return float((10 * torch.log10(1 / mse)).mean())


def libjpeg(x: torch.Tensor, q: int) -> torch.Tensor:
    from facerestore.pixels import to_uint8

    out = []
    for im in to_uint8(x).permute(0, 2, 3, 1).numpy():
        buf = io.BytesIO()
        Image.fromarray(im).save(buf, format="JPEG", quality=int(q))
        out.append(torch.from_numpy(np.array(Image.open(buf))).permute(2, 0, 1).float() / 255)
    return torch.stack(out)


def main() -> int:
    from kornia.enhance import jpeg_codec_differentiable

    print("| size | quality | kornia PSNR | libjpeg PSNR | libjpeg quality with kornia's PSNR |")
    print("|---|---:|---:|---:|---:|")
    for size in (32, 128):
        x = faces(size)
        lib = {q: psnr(libjpeg(x, q), x) for q in range(10, 101, 1)}
        for q in (30, 40, 50, 60, 70, 80, 90, 95):
            k = psnr(jpeg_codec_differentiable(x, torch.full((len(x),), float(q))).clamp(0, 1), x)
            match = min(lib, key=lambda qq: abs(lib[qq] - k))
            print(f"| {size} | {q} | {k:.2f} | {lib[q]:.2f} | {match} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
