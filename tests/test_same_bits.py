"""facerestore.same_bits: float64 reductions equal the float32 layers they replace (to rounding),
keep the input's dtype and layout, and give the same bits on 1 and 2 threads."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from facerestore.same_bits import pointwise, spatial_mean


def on_threads(threads: int, fn):
    """``fn()`` without autograd on ``threads`` torch threads (the count restored after)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            return fn()
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("layer, shape", [(nn.Linear(576, 128), (40, 576)), (nn.Conv2d(32, 4, 1), (3, 32, 50, 60))])
def test_pointwise_is_the_layer_in_float64(layer, shape):
    torch.manual_seed(0)
    x = torch.randn(shape)
    if x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    y = on_threads(2, lambda: pointwise(layer, x))
    ref = layer.double()(x.double()).float()
    assert y.dtype == torch.float32 and y.shape == ref.shape and torch.equal(y, ref)
    assert torch.equal(on_threads(1, lambda: pointwise(layer, x)), y)
    assert pointwise(layer, x.bfloat16()).dtype == torch.bfloat16


def test_spatial_mean_is_the_mean_rounded_once():
    torch.manual_seed(0)
    x = torch.randn(8, 32, 33, 31).contiguous(memory_format=torch.channels_last)
    m = on_threads(2, lambda: spatial_mean(x))
    assert m.shape == (8, 32, 1, 1) and torch.equal(m, x.double().mean((2, 3), keepdim=True).float())
    assert torch.equal(on_threads(1, lambda: spatial_mean(x)), m)
