"""Face folders as a dataset whose workers only decode: all degradation happens on the device.

:class:`FaceFolder` lists images recursively (sorted, so an index is stable), centre-crops each to a
square and resizes it to ``hq_size`` with PIL (bicubic with antialiasing; CelebA 178x218 ->
178x178 -> 128x128) and returns ``uint8`` CHW tensors, which are 4x smaller than float to pass
between processes. :func:`to_float` moves a batch to the device and converts it there.
"""

from __future__ import annotations

import pathlib
import warnings
from collections.abc import Sequence
from typing import Any, Optional

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from .errors import FaceRestoreError
from .pixels import quantize, to_uint8  # noqa: F401  (the rule lives in pixels; long-standing names here)

EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")


def list_images(folders: str | pathlib.Path | Sequence[str | pathlib.Path],
                extensions: Sequence[str] = EXTENSIONS) -> list[pathlib.Path]:
    """Image files under ``folders`` (recursive), sorted per folder; a missing folder is an error."""
    if isinstance(folders, (str, pathlib.Path)):
        folders = [folders]
    exts = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions}
    out: list[pathlib.Path] = []
    for f in folders:
        root = pathlib.Path(f).expanduser()
        if root.is_file() and root.suffix.lower() in exts:
            out.append(root)
            continue
        if not root.is_dir():
            raise FaceRestoreError(f"image folder not found: {root}")
        out.extend(sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in exts))
    return out


def load_face(path: str | pathlib.Path, size: int) -> Tensor:
    """One image as a ``(3, size, size)`` uint8 tensor: centre square crop, PIL bicubic resize.

    Decoded by :func:`facerestore.io.read_image`, so training reads files exactly as ``restore``
    does: more pixels than the limit are refused before decoding, EXIF orientation is applied,
    16-bit and CMYK images are converted properly; alpha is dropped."""
    from PIL import Image

    from .io import read_image
    from .pixels import to_hwc_uint8

    rgb, _ = read_image(path)
    with Image.fromarray(to_hwc_uint8(rgb)) as im:
        im = im.convert("RGB")
        s = min(im.size)
        left, top = (im.width - s) // 2, (im.height - s) // 2
        im = im.crop((left, top, left + s, top + s))
        if s != size:
            im = im.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=None)
        data = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
    return data.view(size, size, 3).permute(2, 0, 1).contiguous()


class FaceFolder(Dataset):
    """Faces from folders of images; items are dicts ``{"hq": uint8 (3,S,S), "index": int,
    "landmarks": float (5,2) HQ pixels}`` (``landmarks`` only with a landmark cache; where the
    cache has no face for an image, the aligned template is returned).

    Unreadable files are skipped with a warning (the next readable image is returned instead), so
    one broken file does not end a training run.
    """

    def __init__(self, folders: str | pathlib.Path | Sequence[str | pathlib.Path], hq_size: int = 128,
                 extensions: Sequence[str] = EXTENSIONS, landmark_cache: Optional[Any] = None,
                 limit: int | None = None):
        self.files = list_images(folders, extensions)
        if limit is not None:
            self.files = self.files[:limit]
        if not self.files:
            raise FaceRestoreError(f"no images ({', '.join(extensions)}) found in {folders}")
        self.hq_size = int(hq_size)
        self.landmark_cache = landmark_cache
        self._bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self.files)
        for k in range(n):
            i = (index + k) % n
            if i in self._bad:
                continue
            try:
                img = load_face(self.files[i], self.hq_size)
            except Exception as exc:  # noqa: BLE001 - any decoder failure means "skip this file"
                self._bad.add(i)
                why = str(exc).removeprefix(f"{self.files[i]}: ")  # read_image's messages start with the path
                warnings.warn(f"skipping unreadable image {self.files[i]}: {why}", stacklevel=2)
                continue
            item: dict[str, Any] = {"hq": img, "index": i}
            if self.landmark_cache is not None:
                item["landmarks"] = self.landmark_cache.get(self.files[i], self.hq_size)
            return item
        raise FaceRestoreError(f"none of the {n} images could be read")


def make_loader(folders: str | pathlib.Path | Sequence[str | pathlib.Path], hq_size: int = 128,
                batch_size: int = 16, workers: int = 2, seed: int = 0, shuffle: bool = True,
                drop_last: bool = True, extensions: Sequence[str] = EXTENSIONS,
                landmark_cache: Optional[Any] = None, limit: int | None = None,
                persistent_workers: bool | None = None) -> DataLoader:
    """A DataLoader over :class:`FaceFolder`: seeded shuffling, workers that only decode,
    pinned memory, uint8 batches (convert with :func:`to_float` on the device)."""
    ds = FaceFolder(folders, hq_size, extensions, landmark_cache, limit)
    g = torch.Generator()
    g.manual_seed(int(seed))
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, num_workers=workers, generator=g,
                      drop_last=drop_last and len(ds) >= batch_size, pin_memory=torch.cuda.is_available(),
                      persistent_workers=(workers > 0) if persistent_workers is None else persistent_workers)


def to_float(batch: dict[str, Any] | Tensor, device: torch.device | str = "cpu",
             channels_last: bool = False) -> Tensor:
    """uint8 (or float) ``(B, 3, H, W)`` (or a loader batch dict) -> float32 in [0, 1] on ``device``;
    converted after the move, so only uint8 crosses to the GPU."""
    x = batch["hq"] if isinstance(batch, dict) else batch
    x = x.to(device, non_blocking=True)
    x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x
