"""The paired sets an evaluation scores: degraded inputs and their targets in memory, read from a
folder written by ``facerestore degrade`` or degraded on the fly from a recipe.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import FaceRestoreError
from .pixels import quantize


@dataclasses.dataclass
class PairedSet:
    """Degraded inputs and their targets, in memory (``N`` faces)."""

    stems: list[str]
    lq: Tensor            # (N, 3, h, w)
    hq: Tensor            # (N, 3, H, W)
    occlusion_hq: Optional[Tensor] = None  # (N, 1, H, W) 1 = covered, or None
    description: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.stems)

    @property
    def lq_size(self) -> int:
        return int(self.lq.shape[-1])

    @property
    def hq_size(self) -> int:
        return int(self.hq.shape[-1])

    def limit(self, n: Optional[int]) -> "PairedSet":
        if not n or n >= len(self):
            return self
        return PairedSet(self.stems[:n], self.lq[:n], self.hq[:n],
                         None if self.occlusion_hq is None else self.occlusion_hq[:n],
                         {**self.description, "limit": n})


def load_paired_dir(root: str | os.PathLike[str], limit: Optional[int] = None) -> PairedSet:
    """A paired set on disk (``facerestore degrade``'s format, read by the one reader,
    :func:`facerestore.degrade.load_paired_set`) as the scoring view."""
    from .degrade import load_paired_set

    ps = load_paired_set(root, limit=limit)
    desc: dict[str, Any] = {"path": str(root), "count": len(ps),
                            "manifest": {k: ps.manifest[k] for k in _MANIFEST_KEYS if k in ps.manifest}}
    if ps.manifest.get("skipped_unreadable"):
        desc["skipped_unreadable"] = ps.manifest["skipped_unreadable"]
    return PairedSet(list(ps.stems), ps.lq, ps.hq, ps.occlusion_hq, desc)


_MANIFEST_KEYS = ("source", "recipe", "seed", "count", "degradation", "hq_size", "lq_size", "scale", "command")


def degrade_faces(faces_dir: str | os.PathLike[str], recipe, seed: int, limit: Optional[int] = None,
                  device: torch.device | str = "cpu", batch_size: int = 32) -> PairedSet:
    """Degrade a folder of faces on the fly with a recipe's ``[[degradation]]`` pipeline.

    Faces are read by :class:`facerestore.data.FaceFolder` (sorted, centre square crop, resized to
    the recipe's ``hq_size``) and degraded by :mod:`facerestore.degrade` in batches of
    ``batch_size`` with one generator seeded ``seed`` on the CPU: the pairs a seed gives depend on
    the batch size, as for ``facerestore degrade``.
    """
    from . import degrade as D
    from .data import FaceFolder, to_float

    if not pathlib.Path(faces_dir).is_dir():
        raise FaceRestoreError(f"face folder not found: {faces_dir}")
    ds = FaceFolder([str(faces_dir)], recipe.hq_size, limit=limit)
    pipeline = D.build_pipeline(recipe.degradation)
    gen = D.make_generator(seed, "cpu")
    lq, hq, occ, stems = [], [], [], []
    with torch.no_grad():
        for start in range(0, len(ds), batch_size):
            items = [ds[i] for i in range(start, min(start + batch_size, len(ds)))]
            items = [it for k, it in enumerate(items) if it["index"] == start + k]  # unreadable: skipped
            if not items:
                continue
            batch = D.degrade_batch(to_float(torch.stack([it["hq"] for it in items])), pipeline, gen, None)
            lq.append(batch.lq)
            hq.append(batch.hq)
            occ.append(batch.occlusion_hq)
            stems += [pathlib.Path(ds.files[it["index"]]).stem for it in items]
    desc = {"path": str(faces_dir), "recipe": getattr(recipe, "source", "") or recipe.name, "seed": seed,
            "degradation": recipe.degradation, "on_the_fly": True, "batch_size": batch_size}
    return _paired_from({"lq": torch.cat(lq), "hq": torch.cat(hq), "occlusion_hq": torch.cat(occ),
                         "stems": stems}, desc)


def _paired_from(obj: Any, desc: dict[str, Any]) -> PairedSet:
    """Accept the degrade module's in-memory result (a PairedSet-like object or a dict)."""
    if isinstance(obj, PairedSet):
        return obj
    get = (lambda k: obj.get(k)) if isinstance(obj, dict) else (lambda k: getattr(obj, k, None))
    lq, hq = get("lq"), get("hq")
    occ = get("occlusion_hq")
    if occ is None:
        occ = get("occlusion")
    if occ is not None and occ.shape[-2:] != hq.shape[-2:]:
        occ = F.interpolate(occ.float(), size=hq.shape[-2:], mode="bilinear", align_corners=False)
    stems = list(get("stems") or get("names") or [f"{i:06d}" for i in range(len(lq))])
    q = lambda t: None if t is None else quantize(t.cpu())  # noqa: E731
    return PairedSet(stems, q(lq), q(hq), None if occ is None else occ.detach().float().cpu().clamp(0, 1),
                     {**desc, "count": len(stems)})
