"""Built-in denoisers: JDSR-GAN's CBDNet-style de-occlusion network at low resolution.

Everything runs at the LQ resolution (32x32 for x4), which is where most of JDSR-GAN's compute
budget can be saved: the U-Net's three levels are 32, 16 and 8 pixels wide.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facerestore.interfaces import Denoiser, DenoiserOutput


def clamp01(x: Tensor) -> Tensor:
    """Clamp to [0, 1] in the forward pass but let the gradient through (straight-through), so
    pixels that overshoot early in training still get a learning signal."""
    return x + (x.clamp(0.0, 1.0) - x).detach()


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1)


def scale_init_(layer: nn.Module, gain: float) -> None:
    """Scale a fresh layer's weights by ``gain`` (0: zero them) and zero its bias: a residual branch
    that starts small (or silent) leaves a network close to (or exactly) what it was without it."""
    with torch.no_grad():
        if gain:
            layer.weight.mul_(gain)
        else:
            layer.weight.zero_()
        layer.bias.zero_()


class ConvBlock(nn.Sequential):
    """``n`` (conv 3x3 + ReLU) layers at a fixed width."""

    def __init__(self, cin: int, cout: int, n: int = 2):
        layers: list[nn.Module] = []
        for i in range(n):
            layers += [conv3x3(cin if i == 0 else cout, cout), nn.ReLU(inplace=True)]
        super().__init__(*layers)


class ResBlock(nn.Module):
    """conv-ReLU-conv with a residual add. ``zero_init_last``: the last conv starts at zero, so the
    block starts as the identity and a trained network deepened with it gives the same output."""

    def __init__(self, channels: int, zero_init_last: bool = False):
        super().__init__()
        self.body = nn.Sequential(conv3x3(channels, channels), nn.ReLU(inplace=True), conv3x3(channels, channels))
        if zero_init_last:
            scale_init_(self.body[-1], 0.0)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class NoiseEstimator(nn.Sequential):
    """CBDNet's noise-estimation subnet: plain convs, no pooling, sigmoid map in [0, 1]."""

    def __init__(self, layers: int, channels: int):
        if layers < 2:
            raise ValueError("estimator_layers must be >= 2")
        mods: list[nn.Module] = [conv3x3(3, channels), nn.ReLU(inplace=True)]
        for _ in range(layers - 2):
            mods += [conv3x3(channels, channels), nn.ReLU(inplace=True)]
        mods += [conv3x3(channels, 1), nn.Sigmoid()]
        super().__init__(*mods)


class JDSRDenoiser(Denoiser):
    """CBDNet-style de-occlusion at LQ size: occlusion/noise-map estimator, then a U-Net on (lq, map).

    ``channels`` is the U-Net's first-level width (doubled at each of the ``depth`` downsamplings);
    ``blocks`` the number of 3x3 convs per level; skips are additive as in CBDNet. The U-Net
    predicts a residual added to the input, so an untrained denoiser is close to the identity.
    ``bottleneck_blocks`` residual blocks at the coarsest level (8x8 for a 32 px input at depth 2:
    they see the whole face, what filling a mask needs; each ~0.5 % of masked_any's FLOPs) start
    as the identity, so a trained denoiser deepened with them loads (``train.init``) unchanged.
    """

    def __init__(self, channels: int = 32, depth: int = 2, blocks: int = 2, estimator_layers: int = 5,
                 estimator_channels: int = 32, use_map: bool = True, bottleneck_blocks: int = 0):
        super().__init__()
        if channels < 1 or depth < 0 or blocks < 1 or bottleneck_blocks < 0:
            raise ValueError("channels and blocks must be >= 1, depth and bottleneck_blocks >= 0")
        self.depth = depth
        self.use_map = use_map
        self.estimator = NoiseEstimator(estimator_layers, estimator_channels)
        widths = [channels * 2 ** i for i in range(depth + 1)]
        self.head = nn.Sequential(conv3x3(4 if use_map else 3, channels), nn.ReLU(inplace=True))
        self.encoders = nn.ModuleList(ConvBlock(w, w, blocks) for w in widths[:-1])
        self.downs = nn.ModuleList(nn.Sequential(conv3x3(widths[i], widths[i + 1], stride=2), nn.ReLU(inplace=True))
                                   for i in range(depth))
        self.bottleneck = ConvBlock(widths[-1], widths[-1], blocks)
        self.bottleneck_res = nn.Sequential(*(ResBlock(widths[-1], zero_init_last=True)
                                              for _ in range(bottleneck_blocks)))
        self.ups = nn.ModuleList(nn.Sequential(nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2),
                                               nn.ReLU(inplace=True)) for i in range(depth))
        self.decoders = nn.ModuleList(ConvBlock(w, w, blocks) for w in widths[:-1])
        self.tail = conv3x3(channels, 3)
        scale_init_(self.tail, 0.1)  # start near the identity mapping, keep every gradient non-zero

    def forward(self, lq: Tensor) -> DenoiserOutput:
        noise_map = self.estimator(lq)
        h, w = lq.shape[-2:]
        m = 2 ** self.depth
        ph, pw = (-h) % m, (-w) % m
        x = torch.cat([lq, noise_map], 1) if self.use_map else lq
        if ph or pw:  # sizes that the U-Net cannot halve `depth` times: pad, then crop back
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        f = self.head(x)
        skips = []
        for enc, down in zip(self.encoders, self.downs):
            f = enc(f)
            skips.append(f)
            f = down(f)
        f = self.bottleneck_res(self.bottleneck(f))
        for i in reversed(range(self.depth)):
            f = self.decoders[i](self.ups[i](f) + skips[i])
        residual = self.tail(f)[..., :h, :w]
        return DenoiserOutput(image=clamp01(lq + residual), noise_map=noise_map)


def register(registry) -> None:
    registry.register("denoiser", "jdsr_denoiser", JDSRDenoiser)
