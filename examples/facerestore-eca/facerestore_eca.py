"""ECA attention as a third-party facerestore plugin.

Wang et al., "ECA-Net: Efficient Channel Attention for Deep Convolutional Neural Networks",
CVPR 2020: channel weights from a 1-D convolution over the pooled channel descriptor, no
dimensionality reduction (cheaper than squeeze-excitation).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from facerestore.interfaces import Attention
from facerestore.plugins import hookimpl


class ECA(Attention):
    """Efficient channel attention: 1-D conv over pooled channels, no reduction (ECA-Net)."""

    def __init__(self, channels: int, kernel_size: int = 0, gamma: float = 2.0, beta: float = 1.0):
        super().__init__(channels)
        if kernel_size <= 0:  # the paper's adaptive size: nearest odd to log2(C)/gamma + beta/gamma
            t = int(abs(math.log2(channels) / gamma + beta / gamma))
            kernel_size = t if t % 2 else t + 1
        self.conv = nn.Conv1d(1, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.mean(dim=(2, 3)).unsqueeze(1)  # (B, 1, C)
        w = torch.sigmoid(self.conv(w)).transpose(1, 2).unsqueeze(-1)  # (B, C, 1, 1)
        return x * w


@hookimpl
def facerestore_register(registry) -> None:
    registry.register("attention", "eca", ECA)
