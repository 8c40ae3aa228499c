"""LPIPS-VGG on known distortions of skimage's astronaut (identical, JPEG, blur, noise).

    .venv/bin/python -m benchmarks.lpips_sanity
"""

from __future__ import annotations

import io
import platform

import numpy as np
import torch
from PIL import Image, ImageFilter
from skimage import data

from facerestore.pretrained.lpips import lpips_distance


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(a)).permute(2, 0, 1).float().div(255).unsqueeze(0)


def _jpeg(pil: Image.Image, q: int) -> np.ndarray:
    buf = io.BytesIO()
    pil.save(buf, "JPEG", quality=q)
    return np.asarray(Image.open(buf).convert("RGB"))


def main() -> None:
    torch.set_num_threads(2)
    a = data.astronaut()
    pil = Image.fromarray(a)
    noisy = np.clip(a + np.random.default_rng(0).normal(0, 25, a.shape), 0, 255).astype(np.uint8)
    pairs = [("identical", a), ("JPEG q90", _jpeg(pil, 90)), ("JPEG q30", _jpeg(pil, 30)), ("JPEG q10", _jpeg(pil, 10)),
             ("Gaussian blur sigma 2 (PIL)", np.asarray(pil.filter(ImageFilter.GaussianBlur(2)))),
             ("Gaussian noise sigma 25 (default_rng(0))", noisy)]
    print(f"skimage.data.astronaut() 512x512, LPIPS-VGG v0.1; {platform.machine()}, torch {torch.__version__}")
    x = _t(a)
    for name, img in pairs:
        print(f"{name:<42} {float(lpips_distance(x, _t(img))):.3f}")


if __name__ == "__main__":
    main()
