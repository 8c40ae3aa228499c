"""Exponential moving average of the generator's weights (what checkpoints ship as ``ema.``)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """Shadow copy updated after every optimiser step.

    The decay ramps up as ``min(decay, (1 + n) / (10 + n))`` so that short runs are not dominated
    by the random initialisation.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, updates: int) -> None:
        d = min(self.decay, (1 + updates) / (10 + updates))
        src = model.state_dict()
        for name, shadow in self.module.state_dict().items():
            value = src[name]
            if shadow.is_floating_point():
                shadow.mul_(d).add_(value.detach().to(shadow.dtype), alpha=1 - d)
            else:
                shadow.copy_(value)
