"""Turn a folder of face photos into aligned training faces (``facerestore prepare SRC DST``).

Each photo: detect faces and 5 landmarks (a registry ``detector``), keep it only when exactly one
confident face is there, large enough, sharp enough and mostly inside the photo; warp it with a
similarity transform onto :data:`facerestore.landmarks.TEMPLATE_5` (the framing every model,
mask and heatmap here uses) at ``size`` px; write ``DST/<relative path>.png`` and a landmark cache
(``DST/landmarks.json``) with the face's own landmarks in the crop. Every rejected or unreadable
file is reported with its reason, and the run goes on.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from . import align
from .interfaces import Detection
from .io import luma

#: Laplacian variance of a grey 128 px aligned face below which it is called blurred: about the
#: 0.5th percentile of celeba/train (5th percentile 37e-4, median 106e-4; measured on 150 faces)
BLUR_THRESHOLD = 10e-4


@dataclasses.dataclass
class PrepareRules:
    """What a photo must satisfy to become a training face."""

    size: int = 256
    min_score: float = 0.95
    #: eye distance in the photo, px: 28 is the template's at 128 px (no upsampling for training)
    min_eye: float = 28.0
    blur_threshold: float = BLUR_THRESHOLD
    #: largest share of the aligned crop that may lie outside the photo (padded, not real)
    max_outside: float = 0.15
    #: a second face at least this large (eye distance, relative to the main one) rejects the photo
    second_face: float = 0.5


@dataclasses.dataclass
class PrepareResult:
    written: list[str] = dataclasses.field(default_factory=list)
    rejected: list[tuple[str, str]] = dataclasses.field(default_factory=list)


def sharpness(face: Tensor) -> float:
    """Variance of the Laplacian of the grey face ``(3, S, S)`` resized to 128 px."""
    x = F.interpolate(face[None].float(), size=(128, 128), mode="area")[0]
    g = luma(x)[None]
    lap = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
    return float(F.conv2d(g, lap).var())


def outside_fraction(matrix: Tensor, photo_hw: tuple[int, int], size: int) -> float:
    """Share of the ``size`` crop whose source lies outside the photo (``matrix`` (2, 3))."""
    ones = torch.ones(1, 1, *photo_hw)
    inside = align.warp_affine(ones, matrix[None], (size, size), padding_mode="zeros")
    return float(1 - inside.clamp(0, 1).mean())


def judge(img: Tensor, det: Detection, rules: PrepareRules) -> tuple[Optional[Tensor], Optional[Tensor], str]:
    """``(crop (3, S, S), landmarks in the crop (5, 2), "")`` or ``(None, None, reason)``."""
    keep = det.scores >= rules.min_score
    if not bool(keep.any()):
        best = f"best score {float(det.scores.max()):.2f}" if det.scores.numel() else "nothing detected"
        return None, None, f"no confident face: {best} < {rules.min_score:g}"
    lms, eyes = det.landmarks[keep].float(), align.face_size(det.landmarks[keep].float())
    order = eyes.argsort(descending=True)
    if len(order) > 1 and float(eyes[order[1]]) >= rules.second_face * float(eyes[order[0]]):
        return None, None, f"several faces: {int(keep.sum())}"
    lm, eye = lms[order[0]], float(eyes[order[0]])
    if eye < rules.min_eye:
        return None, None, f"too small: eye distance {eye:.0f}px < {rules.min_eye:g}"
    m = align.alignment_matrices(lm[None], rules.size)
    out = outside_fraction(m[0], tuple(img.shape[-2:]), rules.size)
    if out > rules.max_outside:
        return None, None, f"crop outside the photo: {out:.0%} of the aligned crop (> {rules.max_outside:.0%})"
    crop = align.warp_crops(img, m, rules.size)[0]
    sharp = sharpness(crop)
    if sharp < rules.blur_threshold:
        return None, None, f"blurred: sharpness {sharp * 1e4:.1f}e-4 < {rules.blur_threshold * 1e4:.1f}e-4"
    pts = torch.cat([lm, torch.ones(5, 1)], 1) @ m[0].T
    return crop, pts, ""


def prepare_folder(src: str | pathlib.Path, dst: str | pathlib.Path, detector, rules: PrepareRules = PrepareRules(),
                   *, limit: Optional[int] = None, group: int = 16, report: Callable[[str], None] = print,
                   progress: Optional[Callable[[int], None]] = None) -> PrepareResult:
    """Align every photo under ``src`` into ``dst`` (see the module docstring)."""
    from .errors import InputImageError
    from .io import iter_inputs, read_image, write_image
    from .landmark_cache import LandmarkCache, file_hash

    dst = pathlib.Path(dst)
    items = [it for it in iter_inputs([src])][:limit]
    cache = LandmarkCache(dst / "landmarks.json", dst)
    cache.detector = getattr(detector, "__class__", type(detector)).__name__
    result = PrepareResult()

    def reject(path, why: str) -> None:
        result.rejected.append((str(path), why))
        report(f"skipped {path}: {why}")

    for start in range(0, len(items), group):
        batch = []
        for it in items[start:start + group]:
            try:
                if it.error:
                    raise InputImageError(f"unreadable: {it.error}")
                batch.append((it, read_image(it.path)[0]))
            except InputImageError as exc:
                reject(it.path, str(exc))
        dets = detector.detect([img for _, img in batch]) if batch else []
        for (it, img), det in zip(batch, dets):
            crop, pts, why = judge(img, det, rules)
            if crop is None:
                reject(it.path, why)
                continue
            rel = pathlib.Path(*it.relative.parts[1:]) if pathlib.Path(src).is_dir() else it.relative
            out = dst / rel.with_suffix(".png")
            write_image(out, crop)
            cache.entries[cache.key(out)] = {"sha1": file_hash(out), "landmarks": (pts / rules.size).tolist()}
            result.written.append(str(out))
        if progress is not None:
            progress(len(items[start:start + group]))
    cache.save()
    return result
