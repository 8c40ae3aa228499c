"""The trainer's side of the data: face folders -> batches of HQ faces (+ landmarks), degraded
on the device, and the fixed validation set.

Reading and framing faces is :mod:`facerestore.data`'s job and the degradation pipeline is
:mod:`facerestore.degrade`'s; this module only adapts them to a resumable batch order
(:class:`~facerestore.train.sampler.ResumableBatchSampler`) and checks the recipe's folders.
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..errors import FaceRestoreError
from ..interfaces import Degradation, DegradationBatch


def check_folders(folders: Sequence[str], key: str) -> list[pathlib.Path]:
    """Missing data folders are a user error naming the recipe key and the path."""
    if not folders:
        raise FaceRestoreError(f"{key}: no data folder given (set it in the recipe or with --set {key}=[\"DIR\"])")
    out = []
    for i, f in enumerate(folders):
        p = pathlib.Path(f).expanduser()
        if not p.is_dir():
            where = f"{key}[{i}]" if len(folders) > 1 or key.endswith("train") else key
            raise FaceRestoreError(f"{where}: data folder not found: {p} (resolved: {p.resolve()})")
        out.append(p)
    return out


def open_faces(folders: Sequence[str], recipe, key: str):
    """A map-style dataset of HQ faces of ``recipe.hq_size`` from ``folders``."""
    paths = check_folders(folders, key)
    try:
        from ..data import FaceFolder
    except ImportError:  # facerestore.data not installed in this tree yet: the plain reader below
        FaceFolder = _FolderFaces
    ds = FaceFolder([str(p) for p in paths], size=recipe.hq_size, extensions=tuple(recipe.data.extensions))
    if len(ds) == 0:
        raise FaceRestoreError(f"{key}: no images ({', '.join(recipe.data.extensions)}) in {', '.join(map(str, paths))}")
    return ds


def collate(items: list[Any]) -> tuple[Tensor, Tensor | None]:
    """Dataset items (a tensor, or a dict with ``hq`` and optional ``landmarks``) -> ``(hq, landmarks)``."""
    if isinstance(items[0], dict):
        hq = torch.stack([it["hq"] for it in items])
        lms = [it.get("landmarks") for it in items]
        landmarks = torch.stack(lms) if all(l is not None for l in lms) else None
        return hq, landmarks
    if isinstance(items[0], (tuple, list)):
        return torch.stack([it[0] for it in items]), None
    return torch.stack(items), None


def degrade(pipeline: Sequence[Degradation], hq: Tensor, landmarks: Tensor | None,
            generator: torch.Generator) -> DegradationBatch:
    """Run the recipe's degradations on a batch already on the device."""
    from ..degrade import degrade_batch

    return degrade_batch(hq, pipeline, generator, landmarks)


class _FolderFaces(torch.utils.data.Dataset):
    """Stand-in for ``facerestore.data.FaceFolder``: sorted image files under the folders, centre
    square crop, resized to ``size``; unreadable files are skipped with a warning."""

    def __init__(self, folders: Sequence[str], size: int, extensions: Sequence[str] = (".jpg", ".png")):
        exts = {e.lower() for e in extensions}
        self.files = sorted(p for f in folders for p in pathlib.Path(f).rglob("*") if p.suffix.lower() in exts)
        self.size = size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        import warnings

        from PIL import Image

        for j in range(len(self.files)):
            path = self.files[(i + j) % len(self.files)]
            try:
                with Image.open(path) as im:
                    im = im.convert("RGB")
                    w, h = im.size
                    s = min(w, h)
                    im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
                    im = im.resize((self.size, self.size), Image.BICUBIC)
                    arr = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
            except OSError as exc:
                warnings.warn(f"skipping unreadable image {path}: {exc}")
                continue
            return {"hq": arr.view(self.size, self.size, 3).permute(2, 0, 1).float() / 255}
        raise FaceRestoreError("no readable image in the data folders")
