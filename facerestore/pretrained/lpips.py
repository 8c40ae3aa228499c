"""LPIPS (Zhang et al., CVPR 2018), VGG variant, v0.1 linear heads, in PyTorch.

Definition (as in the reference ``lpips`` package): inputs in [0, 1] are mapped to [-1, 1] and
through LPIPS' ScalingLayer (identical to ImageNet normalisation of the [0, 1] image, which the
shared :class:`~facerestore.pretrained.vgg.VGG16Features` does); at relu1_2, relu2_2, relu3_3,
relu4_3, relu5_3 features are unit-normalised over channels, their squared difference weighted
per channel by the linear head, averaged over space, and the five layers summed.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .vgg import LPIPS_LAYERS, lpips_heads, vgg16_features


def _unit(feat: Tensor, eps: float = 1e-10) -> Tensor:
    return feat / (feat.pow(2).sum(1, keepdim=True).sqrt() + eps)


class LPIPS(nn.Module):
    """Learned perceptual distance (LPIPS-VGG v0.1): ``(x, y)`` in [0, 1] -> ``(B,)``, lower = closer.

    Differentiable; holds only the linear heads (a frozen buffer), the VGG trunk is the shared
    one for the input's device.
    """

    def __init__(self) -> None:
        super().__init__()
        for i, w in enumerate(lpips_heads()):
            self.register_buffer(f"lin{i}", w.clone(), persistent=False)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        if x.shape != y.shape:
            raise ValueError(f"LPIPS needs images of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
        vgg = vgg16_features(x.device)
        fx = vgg(x, LPIPS_LAYERS)
        fy = vgg(y, LPIPS_LAYERS)
        total = x.new_zeros(x.shape[0])
        for i, name in enumerate(LPIPS_LAYERS):
            d = (_unit(fx[name]) - _unit(fy[name])).pow(2)
            w = getattr(self, f"lin{i}").to(d.dtype)
            total = total + (d * w).sum(1).mean((1, 2))
        return total


_METRIC: dict[str, LPIPS] = {}


@torch.no_grad()
def lpips_distance(x: Tensor, y: Tensor) -> Tensor:
    """LPIPS-VGG between batches ``x`` and ``y`` ((B, 3, H, W) in [0, 1]) -> ``(B,)`` (no grad)."""
    key = str(x.device)
    if key not in _METRIC:
        _METRIC[key] = LPIPS().to(x.device)
    return _METRIC[key](x.float(), y.float())
