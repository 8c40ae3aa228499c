"""Small reductions computed so that their float32 result does not depend on the thread count.

A float32 sum split over threads adds in an order that follows the thread count, and oneDNN picks
its 1x1-convolution and small-matmul kernels by it, so the last bit of a pooled mean or of a
pointwise layer could differ between 1 and 2 torch threads; after a network and a paste-back that
was enough to change a few 8-bit values, and a Ray worker on 1 thread wrote other bytes than the
local engine on 2 (issue 37). Summed in float64, the orders differ by ~1e-16, far below float32's
step, so the rounded results are the same. Used where the cost is small: pooled descriptors,
attention MLPs, detector heads.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def spatial_mean(x: Tensor) -> Tensor:
    """``x.mean((2, 3), keepdim=True)`` summed in float64: (B, C, H, W) -> (B, C, 1, 1), ``x``'s dtype."""
    return x.double().mean((2, 3), keepdim=True).to(x.dtype)


def pointwise(layer: nn.Linear | nn.Conv2d, x: Tensor) -> Tensor:
    """``layer(x)`` in float64 for an ``nn.Linear`` on (N, C) or a 1x1 ``nn.Conv2d`` on
    (N, C, H, W); the result in ``x``'s dtype (outside autocast's reach: it leaves float64 alone).
    Exports to ONNX (Gemm/MatMul in double)."""
    w = layer.weight.flatten(1).double()
    b = layer.bias.double() if layer.bias is not None else None
    if x.dim() == 2:
        return F.linear(x.double(), w, b).to(x.dtype)
    # explicit permutations: the ONNX exporter writes movedim(-1, 1) as an invalid Transpose
    return F.linear(x.permute(0, 2, 3, 1).double(), w, b).permute(0, 3, 1, 2).to(x.dtype)
