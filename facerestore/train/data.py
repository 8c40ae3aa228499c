"""The trainer's side of the data: face folders -> batches of HQ faces (+ landmarks), degraded
on the device, and the fixed validation set.

Reading and framing faces is :mod:`facerestore.data`'s job and the degradation pipeline is
:mod:`facerestore.degrade`'s; this module only adapts them to a resumable batch order
(:class:`~facerestore.train.sampler.ResumableBatchSampler`), checks the recipe's folders and
picks the batch tensors the losses compare with.
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..errors import FaceRestoreError
from ..interfaces import Degradation, DegradationBatch
from ..landmarks import MIRROR_5, mirror_landmarks, render_heatmaps, template_landmarks
from .sampler import ResumableBatchSampler


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
    from ..data import FaceFolder

    ds = FaceFolder([str(p) for p in paths], hq_size=recipe.hq_size, extensions=tuple(recipe.data.extensions))
    if len(ds) == 0:
        raise FaceRestoreError(f"{key}: no images ({', '.join(recipe.data.extensions)}) in {', '.join(map(str, paths))}")
    return ds


def collate(items: list[Any]) -> tuple[Tensor, Tensor | None]:
    """Dataset items (a tensor, or a dict with ``hq`` and optional ``landmarks``) -> ``(hq, landmarks)``;
    ``hq`` stays as the dataset gives it (uint8 from FaceFolder: 4x less to move between processes)."""
    if isinstance(items[0], dict):
        hq = torch.stack([it["hq"] for it in items])
        lms = [it.get("landmarks") for it in items]
        landmarks = torch.stack(lms) if all(l is not None for l in lms) else None
        return hq, landmarks
    if isinstance(items[0], (tuple, list)):
        return torch.stack([it[0] for it in items]), None
    return torch.stack(items), None


def random_hflip(hq: Tensor, landmarks: Tensor | None, p: float,
                 generator: torch.Generator) -> tuple[Tensor, Tensor | None]:
    """Mirror each face with probability ``p`` (BasicSR's ``use_hflip``), before degradation, so
    the target and the degraded input stay one face; landmarks ``(B, 5, 2)`` pixels follow.
    ``hq``: ``(B, C, H, W)``. Draws from ``generator`` only when ``p > 0`` (resume stays exact)."""
    if p <= 0:
        return hq, landmarks
    flip = torch.rand(hq.shape[0], generator=generator, device=generator.device) < p
    flip = flip.to(hq.device)
    hq = torch.where(flip.view(-1, 1, 1, 1), hq.flip(-1), hq)
    if landmarks is not None:
        if landmarks.shape[1] != len(MIRROR_5):
            raise FaceRestoreError(f"data.hflip mirrors 5-point landmarks; got {landmarks.shape[1]} points per face")
        landmarks = torch.where(flip.view(-1, 1, 1), mirror_landmarks(landmarks, hq.shape[-1]), landmarks)
    return hq, landmarks


def degrade(pipeline: Sequence[Degradation], hq: Tensor, landmarks: Tensor | None,
            generator: torch.Generator) -> DegradationBatch:
    """Run the recipe's degradations on a batch already on the device."""
    from ..degrade import degrade_batch

    return degrade_batch(hq, pipeline, generator, landmarks)


def batch_iterator(ds, batch_size: int, seed: int, rank: int, world: int, consumed: int, workers: int,
                   pin_memory: bool = False):
    """Endless ``(hq, landmarks)`` batches of ``ds`` in the resumable order, from batch ``consumed``
    on, decoded by ``workers`` DataLoader processes."""
    try:
        sampler = ResumableBatchSampler(len(ds), batch_size, seed, rank, world, consumed=consumed)
    except ValueError as exc:
        raise FaceRestoreError(f"data.train: {exc}") from None
    # its own generator: iter() draws worker seeds from it, not from the global stream that
    # components (dropout) use, so a resumed run stays in step with an uninterrupted one
    gen = torch.Generator().manual_seed(seed * 1_000_003 + rank)
    loader = torch.utils.data.DataLoader(ds, batch_sampler=sampler, num_workers=workers, collate_fn=collate,
                                         generator=gen, pin_memory=pin_memory,
                                         persistent_workers=workers > 0, prefetch_factor=2 if workers else None)
    return iter(loader)


def stop_workers(batches) -> None:
    """Stop the DataLoader workers before saving on an interrupt. A signal sent to the whole
    process group (Slurm's scancel, `kill -- -PGID`) kills them too, and torch's SIGCHLD handler
    would raise 'worker killed by signal' in the middle of the save; stopped, they are no longer
    watched. ``_shutdown_workers`` is torch's own clean-up (private; absent with 0 workers)."""
    stop = getattr(batches, "_shutdown_workers", None)
    if stop is not None:
        try:
            stop()
        except RuntimeError:  # the handler fired while they stopped; torch unregisters them anyway
            pass


def loss_targets(batch: DegradationBatch, out: dict[str, Tensor], needed: set[str], hq_size: int) -> dict[str, Tensor]:
    """The batch tensors the active losses compare with, by name; ``heatmaps`` are rendered from the
    batch's landmarks (the template's when it has none) at the size of the generator's output."""
    t: dict[str, Tensor] = {}
    for name in needed:
        if name == "heatmaps":
            if "heatmaps" not in out:
                raise FaceRestoreError("a loss targets 'heatmaps' but the generator has no 'heatmaps' output")
            lm = batch.landmarks
            if lm is None:  # aligned faces follow the template framing
                lm = template_landmarks(hq_size, batch.hq.shape[0], batch.hq.device)
            t[name] = render_heatmaps(lm, hq_size, heatmap_size=out["heatmaps"].shape[-1])
        else:
            t[name] = getattr(batch, name)
    return t
