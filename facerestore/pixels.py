"""Pixel conversions: the one float -> 8-bit rule of the package, as a tensor and as an image array.

A leaf module (torch and numpy only), so that I/O, data, evaluation, video, restoration and the
detector plugins share one rule without importing each other. Float images are RGB in [0, 1].
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def to_uint8(x: Tensor) -> Tensor:
    """float in [0, 1] (any shape, any device) -> uint8 with the same shape, on the same device:
    clamp, scale by 255, round half to even. The one float -> 8-bit rule of the package (image
    files, evaluation's 8-bit outputs, validation, detectors' inputs, video frames)."""
    return x.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8)


def quantize(x: Tensor) -> Tensor:
    """``x`` as float again after :func:`to_uint8`: what a user gets back from a saved PNG."""
    return to_uint8(x).float().div(255)


def to_hwc_uint8(image: Tensor) -> np.ndarray:
    """An image ``(C, H, W)`` float in [0, 1] -> a C-contiguous ``(H, W, C)`` uint8 numpy array on
    the CPU (what PIL, PyAV and dlib take), by :func:`to_uint8`'s rule."""
    if image.ndim != 3:
        raise ValueError(f"expected a (C, H, W) image tensor, got shape {tuple(image.shape)}")
    return np.ascontiguousarray(to_uint8(image).permute(1, 2, 0).cpu().numpy())
