"""Built-in upsamplers: JDSR-GAN's face-SR module and a parameter-free bicubic baseline.

``jdsr_sr`` does all its heavy work at the input (LQ) resolution: residual blocks with
attention and identity FiLM at 32x32, then pixel-shuffle steps that halve the width at each x2,
so the 128x128 stage only carries a few channels. The output is ``bicubic(x) + residual``: an
untrained network already returns (almost) the bicubic upsampling.
"""

from __future__ import annotations

import math
from typing import Optional

import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from facerestore.interfaces import Attention, Upsampler, UpsamplerOutput
from facerestore.components import factory
from facerestore.registry import Factory

from .denoisers import clamp01, conv3x3, scale_init_

_SCALES = (1, 2, 4, 8)


def _check_scale(scale: int) -> int:
    if scale not in _SCALES:
        raise ValueError(f"scale must be one of {_SCALES}, got {scale}")
    return scale


def bicubic(x: Tensor, scale: int) -> Tensor:
    if scale == 1:
        return x
    return F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)


class FiLM(nn.Module):
    """Feature-wise linear modulation by an embedding: ``x * (1 + gamma(e)) + beta(e)``."""

    def __init__(self, dim: int, channels: int):
        super().__init__()
        self.linear = nn.Linear(dim, 2 * channels)
        scale_init_(self.linear, 0.1)  # near-identity at start, but not exactly (gradients must flow)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        gamma, beta = rearrange(self.linear(emb), "b (two c) -> two b c 1 1", two=2)
        return x * (1 + gamma) + beta


class ResidualAttentionBlock(nn.Module):
    """conv-ReLU-conv, attention, optional identity FiLM, scaled residual add.

    ``zero_init_last`` (timm's name): the last conv and the FiLM start at zero, so the block starts
    as the identity; blocks added to a trained trunk (``train.init``) then leave its output as it
    was, and gradients still reach them (the body's last conv sees a non-zero input). Exact for
    attentions that gate their input (att(0) = 0, as every built-in one does)."""

    def __init__(self, channels: int, attention: Factory[Attention], identity_dim: int = 0,
                 res_scale: float = 1.0, zero_init_last: bool = False):
        super().__init__()
        self.body = nn.Sequential(conv3x3(channels, channels), nn.ReLU(inplace=True), conv3x3(channels, channels))
        self.attention = attention(channels=channels)
        self.film = FiLM(identity_dim, channels) if identity_dim > 0 else None
        self.res_scale = res_scale
        if zero_init_last:
            for layer in (self.body[-1], *((self.film.linear,) if self.film else ())):
                scale_init_(layer, 0.0)

    def forward(self, x: Tensor, emb: Optional[Tensor] = None) -> Tensor:
        y = self.attention(self.body(x))
        if self.film is not None and emb is not None:
            y = self.film(y, emb)
        return x + y * self.res_scale if self.res_scale != 1.0 else x + y


class PixelShuffleUpsampler(nn.Sequential):
    """log2(scale) x (conv 3x3 -> pixel shuffle x2 -> ReLU), halving the width at each step
    (not below ``min_channels``) so the high-resolution steps stay cheap."""

    def __init__(self, channels: int, scale: int, min_channels: int = 16):
        layers: list[nn.Module] = []
        c = channels
        for _ in range(int(math.log2(scale))):
            out = max(min_channels, c // 2)
            layers += [conv3x3(c, 4 * out), nn.PixelShuffle(2), nn.ReLU(inplace=True)]
            c = out
        super().__init__(*layers)
        self.out_channels = c


class JDSRSR(Upsampler):
    """JDSR-GAN face SR: attention residual blocks with identity FiLM, landmark-heatmap prior, pixel shuffle.

    ``blocks`` residual blocks of width ``channels`` at LQ resolution, each with the recipe's
    ``attention`` and, when ``identity_dim > 0``, a FiLM layer driven by an identity embedding
    (applied in every ``film_every``-th block). After ``prior_at`` blocks (default: half way) a
    face-prior branch predicts ``landmarks`` heatmaps at output resolution (sub-pixel conv, so
    the peaks can be sharper than an LQ pixel) and feeds its features back into the trunk;
    ``landmarks = 0`` removes it. ``zero_init_last``: every block starts as the identity (see
    ResidualAttentionBlock), the way to deepen a trained trunk; set ``prior_at`` explicitly
    then (its default, ``blocks // 2``, moves with the depth). Output: ``bicubic(x) + residual``
    in [0, 1].
    """

    def __init__(self, channels: int = 64, blocks: int = 12, scale: int = 4,
                 attention: Factory[Attention] = "cbam", identity_dim: int = 0, film_every: int = 1,
                 landmarks: int = 5, prior_channels: int = 32, prior_at: int = -1,
                 res_scale: float = 1.0, min_channels: int = 16, zero_init_last: bool = False):
        super().__init__()
        self.scale = _check_scale(scale)
        if channels < 1 or blocks < 1 or identity_dim < 0 or landmarks < 0 or film_every < 1:
            raise ValueError("channels, blocks, film_every >= 1; identity_dim, landmarks >= 0")
        self.identity_dim = identity_dim
        attention = factory(attention, "attention")
        self.head = conv3x3(3, channels)
        self.blocks = nn.ModuleList(
            ResidualAttentionBlock(channels, attention, identity_dim if i % film_every == 0 else 0, res_scale,
                                   zero_init_last)
            for i in range(blocks))
        self.trunk_tail = conv3x3(channels, channels)
        self.landmarks = landmarks
        self.prior_at = (blocks // 2 if prior_at < 0 else min(prior_at, blocks)) if landmarks else -1
        if landmarks:
            self.prior = nn.Sequential(conv3x3(channels, prior_channels), nn.ReLU(inplace=True))
            self.heatmap_head = nn.Sequential(conv3x3(prior_channels, landmarks * scale * scale),
                                              nn.PixelShuffle(scale))
            self.prior_feedback = nn.Conv2d(prior_channels, channels, 1)
        self.upsample = PixelShuffleUpsampler(channels, scale, min_channels)
        self.tail = conv3x3(self.upsample.out_channels, 3)
        scale_init_(self.tail, 0.1)  # start close to plain bicubic

    def _prior(self, f: Tensor) -> tuple[Tensor, Tensor]:
        p = self.prior(f)
        return f + self.prior_feedback(p), self.heatmap_head(p)

    def forward(self, x: Tensor, identity: Optional[Tensor] = None) -> UpsamplerOutput:
        emb = identity if self.identity_dim > 0 else None
        f0 = self.head(x)
        f = f0
        heatmaps = None
        for i, block in enumerate(self.blocks):
            if i == self.prior_at:
                f, heatmaps = self._prior(f)
            f = block(f, emb)
        if self.prior_at == len(self.blocks):
            f, heatmaps = self._prior(f)
        f = self.trunk_tail(f) + f0
        residual = self.tail(self.upsample(f))
        return UpsamplerOutput(image=clamp01(bicubic(x, self.scale) + residual), heatmaps=heatmaps)


class Bicubic(Upsampler):
    """Bicubic interpolation (no weights): the no-training baseline."""

    def __init__(self, scale: int = 4):
        super().__init__()
        self.scale = _check_scale(scale)

    def forward(self, x: Tensor, identity: Optional[Tensor] = None) -> UpsamplerOutput:
        return UpsamplerOutput(image=bicubic(x, self.scale).clamp(0.0, 1.0))


def register(registry) -> None:
    registry.register("upsampler", "jdsr_sr", JDSRSR)
    registry.register("upsampler", "bicubic", Bicubic)
