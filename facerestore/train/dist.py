"""torch.distributed for ``torchrun``: environment detection, process group, gradient averaging.

Gradients are averaged with one bucketed ``all_reduce`` per model per step instead of wrapping
models in ``DistributedDataParallel``: a staged schedule freezes and unfreezes parts, the
discriminator is called twice per loss and from the generator's loss, and outputs without a loss
leave parameters unused, all of which DDP's reducer handles badly. The maths is the same
(synchronous data parallelism, identical weights on every rank).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable

import torch
import torch.distributed as td
from torch import nn


@dataclasses.dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def detect() -> DistInfo:
    """``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` as set by ``torchrun``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    return DistInfo(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def init(info: DistInfo, device: torch.device) -> None:
    if info.enabled and not td.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        td.init_process_group(backend=backend, rank=info.rank, world_size=info.world)


def shutdown(info: DistInfo) -> None:
    if info.enabled and td.is_initialized():
        td.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        td.barrier()


@torch.no_grad()
def broadcast_module(module: nn.Module, info: DistInfo) -> None:
    """Make every rank start from rank 0's weights and buffers."""
    if not info.enabled:
        return
    for t in list(module.parameters()) + list(module.buffers()):
        td.broadcast(t.data, src=0)


@torch.no_grad()
def average_gradients(params: Iterable[nn.Parameter], info: DistInfo) -> None:
    """Mean of the gradients over ranks (missing gradients count as zero), one flat all_reduce."""
    if not info.enabled:
        return
    params = [p for p in params if p.requires_grad]
    if not params:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    grads = [p.grad for p in params]
    flat = torch.cat([g.reshape(-1).float() for g in grads])
    td.all_reduce(flat)
    flat /= info.world
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset:offset + n].view_as(g).to(g.dtype))
        offset += n


def all_true(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True only if ``flag`` holds on every rank (a NaN on one rank stops all of them)."""
    if not info.enabled:
        return flag
    t = torch.tensor([0.0 if flag else 1.0], device=device)
    td.all_reduce(t)
    return bool(t.item() == 0)


def gather_objects(obj, info: DistInfo) -> list:
    if not info.enabled:
        return [obj]
    out = [None] * info.world
    td.all_gather_object(out, obj)
    return out
