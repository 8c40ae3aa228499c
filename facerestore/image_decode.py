"""An opened Pillow image -> a ``(3, H, W)`` float RGB tensor in [0, 1] and the :class:`ImageInfo`
a result needs to be written back alike (modes, bit depth, EXIF orientation, CMYK, alpha), for
:func:`facerestore.io.read_image` and PIL images given to ``Restorer.restore``.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np
import torch
from torch import Tensor


@dataclasses.dataclass
class ImageInfo:
    """What ``read_image`` learned about a file, enough to write a result in the same spirit."""

    path: Optional[str] = None
    format: Optional[str] = None
    #: Pillow mode of the file before conversion (``RGB``, ``RGBA``, ``L``, ``I;16``, ``CMYK``...)
    mode: str = "RGB"
    #: bit depth per channel of the file (8 or 16)
    bits: int = 8
    grayscale: bool = False
    #: (1, H, W) float alpha in [0, 1], or None
    alpha: Optional[Tensor] = None
    #: EXIF orientation that was applied (1 = none)
    orientation: int = 1
    frames: int = 1
    icc_profile: Optional[bytes] = None


def source_bits(img) -> int:
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        return 16
    if img.format == "PNG":
        try:  # IHDR bit depth: 16-bit RGB(A) PNGs are decoded as 8-bit by Pillow
            fp = img.fp
            pos = fp.tell()
            fp.seek(24)
            depth = fp.read(1)
            fp.seek(pos)
            if depth and depth[0] == 16:
                return 16
        except Exception:  # noqa: BLE001 - only informative
            pass
    return 8


def pil_to_tensor(img, shown: str, fmt: Optional[str], frames: int, bits: int) -> tuple[Tensor, ImageInfo]:
    from PIL import ImageOps

    orientation = 1
    try:
        orientation = int(img.getexif().get(0x0112, 1) or 1)
    except Exception:  # noqa: BLE001 - broken EXIF: keep the pixels as stored
        orientation = 1
    if orientation != 1:
        try:
            img = ImageOps.exif_transpose(img)
        except Exception:  # noqa: BLE001
            orientation = 1
    mode = img.mode
    icc = img.info.get("icc_profile")
    info = ImageInfo(path=shown, format=fmt, mode=mode, bits=bits, orientation=orientation, frames=frames,
                     icc_profile=icc if mode != "CMYK" else None)
    alpha: Optional[np.ndarray] = None

    if mode == "P" or mode == "PA":
        img = img.convert("RGBA" if ("transparency" in img.info or mode == "PA") else "RGB")
        mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img).astype(np.float32)
        arr = np.clip(arr, 0, 1) if mode == "F" else np.clip(arr, 0, 65535) / 65535.0
        rgb = np.repeat(arr[..., None], 3, axis=2)
        info.grayscale = True
    elif mode in ("1", "L", "LA", "La"):
        if mode in ("LA", "La"):
            la = np.asarray(img.convert("LA"))
            gray, alpha = la[..., 0], la[..., 1]
        else:
            gray = np.asarray(img.convert("L"))
        rgb = np.repeat(gray[..., None], 3, axis=2).astype(np.float32) / 255.0
        info.grayscale = True
    elif mode == "CMYK":
        rgb = np.asarray(_cmyk_to_rgb(img)).astype(np.float32) / 255.0
    else:
        if mode in ("RGBA", "RGBa") or "A" in mode:
            rgba = np.asarray(img.convert("RGBA"))
            rgb, alpha = rgba[..., :3].astype(np.float32) / 255.0, rgba[..., 3]
        else:
            rgb = np.asarray(img.convert("RGB")).astype(np.float32) / 255.0
    if alpha is not None:
        a = torch.from_numpy(np.ascontiguousarray(alpha)).float().div_(255.0).unsqueeze(0)
        info.alpha = None if bool((a >= 1).all()) else a
    tensor = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float()
    return tensor, info


def _cmyk_to_rgb(img):
    icc = img.info.get("icc_profile")
    if icc:
        try:
            import io as _io

            from PIL import ImageCms

            src = ImageCms.ImageCmsProfile(_io.BytesIO(icc))
            dst = ImageCms.createProfile("sRGB")
            return ImageCms.profileToProfile(img, src, dst, outputMode="RGB")
        except Exception:  # noqa: BLE001 - a broken profile: fall back to the naive conversion
            pass
    return img.convert("RGB")
