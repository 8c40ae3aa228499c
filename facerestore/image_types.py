"""Any photo object -> a (3, H, W) float tensor and back to the caller's type: tensors, numpy
arrays (uint8, uint16, float; grey, RGB, RGBA) and PIL images (mode, alpha and 16 bits kept),
for :meth:`facerestore.restore.Restorer.restore`."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .io import luma
from .pixels import to_uint8


def to_tensor(image: Any) -> tuple[Tensor, Any]:
    """Any supported photo -> (3, H, W) float tensor, and a function turning a result back into
    the caller's type (tensor, numpy array or PIL image, with its dtype, grey level and alpha)."""
    if isinstance(image, Tensor):
        return _from_tensor(image)
    if isinstance(image, np.ndarray):
        return _from_numpy(image)
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        Image = None
    if Image is not None and isinstance(image, Image.Image):
        return _from_pil(image)
    raise TypeError(f"cannot restore a {type(image).__name__}; give a tensor, numpy array or PIL image")


def _from_tensor(image: Tensor) -> tuple[Tensor, Any]:
    if image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"expected a (3, H, W) tensor, got {tuple(image.shape)}")
    dtype = image.dtype
    t = image.float() / 255.0 if dtype == torch.uint8 else image.float()
    t = t.expand(3, -1, -1) if t.shape[0] == 1 else t

    def back(out: Tensor) -> Tensor:
        out = out.to(image.device)
        return to_uint8(out) if dtype == torch.uint8 else out.to(dtype)

    return t, back


def _resize_alpha(a: Tensor, size: tuple[int, int]) -> Tensor:
    """(1, h, w) alpha -> (1, H, W): the restored photo may be upscaled."""
    return a if tuple(a.shape[-2:]) == tuple(size) else F.interpolate(a[None], size=size, mode="bilinear")[0]


def _from_numpy(image: np.ndarray) -> tuple[Tensor, Any]:
    arr = image[..., None] if image.ndim == 2 else image
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an (H, W, 3) array, got {image.shape}")
    alpha = arr[..., 3:4] if arr.shape[2] == 4 else None
    rgb = arr[..., :3] if arr.shape[2] >= 3 else np.repeat(arr, 3, axis=2)
    scale = 255.0 if arr.dtype == np.uint8 else (65535.0 if arr.dtype == np.uint16 else 1.0)
    t = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)).astype(np.float32) / scale)

    def back(out: Tensor) -> np.ndarray:
        res = out.detach().cpu().clamp(0, 1).permute(1, 2, 0).numpy()
        if image.ndim == 2 or image.shape[2] == 1:
            res = luma(res, dim=-1)
            res = res[..., 0] if image.ndim == 2 else res
        if alpha is not None:
            a = torch.from_numpy(alpha.astype(np.float32) / scale).permute(2, 0, 1)
            res = np.concatenate([res, _resize_alpha(a, res.shape[:2]).permute(1, 2, 0).numpy()], axis=2)
        if scale != 1.0:
            return np.round(res * scale).astype(image.dtype)
        return res.astype(image.dtype)

    return t, back


def _from_pil(image: Any) -> tuple[Tensor, Any]:
    from PIL import Image

    from .image_decode import pil_to_tensor
    from .pixels import to_hwc_uint8  # (H, W, C) numpy, what PIL takes

    t, info = pil_to_tensor(image, "<image>", image.format, 1, 8)

    def back(out: Tensor):
        pil = Image.fromarray(to_hwc_uint8(out))
        if info.grayscale:
            pil = pil.convert("L")
        if info.alpha is not None:
            pil.putalpha(Image.fromarray(to_hwc_uint8(_resize_alpha(info.alpha, tuple(out.shape[-2:])))[..., 0]))
        return pil

    return t, back
