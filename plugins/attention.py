"""Built-in attention components: squeeze-excitation, CBAM spatial, CBAM, and a no-op.

Hosts build them with ``attention(channels=C)`` (a :class:`facerestore.registry.Factory`), so a
recipe swaps the attention of a whole network by changing one ``type``. All of them map
``(B, C, H, W) -> (B, C, H, W)`` and only use ops that keep ``channels_last`` tensors in that
layout (1x1/kxk convs, reductions, broadcasts).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from facerestore.interfaces import Attention
from facerestore.same_bits import pointwise, spatial_mean


def gate_mlp(mlp: nn.Sequential, v: Tensor) -> Tensor:
    """The channel MLP (1x1 conv, ReLU, 1x1 conv) on a pooled descriptor (B, C, 1, 1), each layer
    in float64 (:mod:`facerestore.same_bits`: its bits must not follow the thread count)."""
    return pointwise(mlp[2], pointwise(mlp[0], v).relu())


def _hidden(channels: int, reduction: int) -> int:
    return max(4, channels // max(1, reduction))


class SqueezeExcitation(Attention):
    """Channel attention (squeeze-and-excitation): global average -> MLP -> per-channel gate."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__(channels)
        if reduction < 1:
            raise ValueError("reduction must be >= 1")
        hidden = _hidden(channels, reduction)
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True),
                                 nn.Conv2d(hidden, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(gate_mlp(self.mlp, spatial_mean(x)))


class ChannelGate(nn.Module):
    """CBAM's channel attention: one MLP shared by the average- and max-pooled descriptors."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        hidden = _hidden(channels, reduction)
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True),
                                 nn.Conv2d(hidden, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        avg = spatial_mean(x)
        mx = x.amax((2, 3), keepdim=True)
        return x * torch.sigmoid(gate_mlp(self.mlp, avg) + gate_mlp(self.mlp, mx))


class SpatialAttention(Attention):
    """Spatial attention (CBAM): channel mean and max -> kxk conv -> per-pixel gate."""

    def __init__(self, channels: int, kernel_size: int = 7):
        super().__init__(channels)
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError("kernel_size must be a positive odd number")
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, x: Tensor) -> Tensor:
        desc = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
        return x * torch.sigmoid(self.conv(desc))


class CBAM(Attention):
    """CBAM: channel attention (avg+max pooled MLP) followed by spatial attention."""

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7):
        super().__init__(channels)
        self.channel = ChannelGate(channels, reduction)
        self.spatial = SpatialAttention(channels, kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.spatial(self.channel(x))


class NoAttention(Attention):
    """No attention (identity): the ablation / plain residual-block baseline."""

    def __init__(self, channels: int):
        super().__init__(channels)

    def forward(self, x: Tensor) -> Tensor:
        return x


def register(registry) -> None:
    registry.register("attention", "se", SqueezeExcitation)
    registry.register("attention", "spatial", SpatialAttention)
    registry.register("attention", "cbam", CBAM)
    registry.register("attention", "identity", NoAttention)
