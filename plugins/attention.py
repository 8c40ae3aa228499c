"""Built-in attention components: squeeze-excitation, CBAM spatial, CBAM, and a no-op.

Hosts build them with ``attention(channels=C)`` (a :class:`facerestore.registry.Factory`), so a
recipe swaps the attention of a whole network by changing one ``type``. All of them map
``(B, C, H, W) -> (B, C, H, W)`` and only use ops that keep ``channels_last`` tensors in that
layout (1x1/kxk convs, reductions, broadcasts).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facerestore.interfaces import Attention


def spatial_mean(x: Tensor) -> Tensor:
    """``x.mean((2, 3), keepdim=True)`` summed in float64: the same value on any number of threads.

    A float32 sum split over threads adds in an order that follows the thread count (channels_last
    on the CPU), so its last bit, and after the network a few 8-bit output values, did too: a Ray
    worker on 1 thread and the local engine on 2 wrote different bytes. In float64 the orders
    differ by ~1e-16, far below float32's step, so the rounded mean is the same. (B, C, H, W) ->
    (B, C, 1, 1), in ``x``'s dtype."""
    return x.double().mean((2, 3), keepdim=True).to(x.dtype)


def gate_mlp(mlp: nn.Sequential, v: Tensor) -> Tensor:
    """The channel MLP (1x1 conv, ReLU, 1x1 conv) on a pooled descriptor (B, C, 1, 1), in float64
    for the reason of :func:`spatial_mean` (oneDNN's 1x1 convs on channels_last vectors pick a
    kernel by thread count, and their float32 sums follow it). The result is in ``v``'s dtype."""
    first, last = mlp[0], mlp[2]
    h = F.linear(v.flatten(1).double(), first.weight.flatten(1).double(), first.bias.double()).relu()
    out = F.linear(h, last.weight.flatten(1).double(), last.bias.double())
    return out.to(v.dtype)[..., None, None]


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
