"""Attention plugins: shape/layout contract, gating behaviour, registry construction."""

from __future__ import annotations

import pytest
import torch

from facerestore.interfaces import Attention
from facerestore.components import create
from facerestore_plugins.attention import CBAM, NoAttention, SpatialAttention, SqueezeExcitation
from test_same_bits import on_threads

NAMES = ["se", "spatial", "cbam", "identity"]


@pytest.mark.parametrize("name", NAMES)
def test_shape_dtype_and_channels_last_are_kept(name):
    torch.manual_seed(0)
    att = create("attention", name, channels=24)
    assert isinstance(att, Attention) and att.channels == 24
    x = torch.randn(2, 24, 9, 7)
    y = att(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    att_cl = att.to(memory_format=torch.channels_last)
    y_cl = att_cl(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(y_cl, y, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["se", "spatial", "cbam"])
def test_gates_rescale_without_changing_sign_and_reach_parameters(name):
    torch.manual_seed(0)
    att = create("attention", name, channels=16)
    x = torch.randn(3, 16, 8, 8, requires_grad=True)
    y = att(x)
    # a sigmoid gate in (0, 1): |y| < |x| elementwise, same sign
    assert torch.all(y.abs() <= x.abs() + 1e-6)
    assert torch.all((y * x) >= 0)
    assert not torch.allclose(y, x)
    y.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for n, p in att.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, n


def test_identity_attention_is_a_no_op():
    x = torch.randn(2, 8, 5, 5)
    assert create("attention", "identity", channels=8)(x) is x
    assert not list(NoAttention(8).parameters())


def test_cbam_gates_both_channels_and_pixels():
    """CBAM's output differs from either gate alone: the channel gate varies over C and the
    spatial one over H, W (a CBAM reduced to one of them would pass neither check)."""
    torch.manual_seed(0)
    cbam = CBAM(16, reduction=4, kernel_size=3)
    x = torch.rand(2, 16, 6, 6) + 0.1
    ratio = cbam(x) / x
    assert not torch.allclose(ratio, ratio[..., :1, :1].expand_as(ratio), atol=1e-4)  # not per channel only
    assert not torch.allclose(ratio, ratio[:, :1].expand_as(ratio), atol=1e-4)  # not per pixel only


def test_se_gates_per_channel_and_spatial_gates_per_pixel():
    torch.manual_seed(0)
    x = torch.rand(1, 8, 6, 6) + 0.1
    se = SqueezeExcitation(8, reduction=2)
    ratio = se(x) / x  # one gate per channel: constant over H, W
    assert torch.allclose(ratio, ratio[..., :1, :1].expand_as(ratio), atol=1e-6)
    sp = SpatialAttention(8, kernel_size=3)
    ratio = sp(x) / x  # one gate per pixel: constant over C
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio), atol=1e-6)


def test_parameters_come_from_the_recipe_and_are_checked():
    se = create("attention", "se", channels=64, reduction=4)
    assert se.mlp[0].out_channels == 16
    assert create("attention", "se", channels=8, reduction=16).mlp[0].out_channels == 4  # floor of 4
    assert create("attention", "cbam", channels=32, kernel_size=3).spatial.conv.kernel_size == (3, 3)
    with pytest.raises(ValueError):
        SpatialAttention(8, kernel_size=4)


@pytest.mark.parametrize("name", ["se", "cbam"])
def test_channel_gates_give_the_same_bits_on_any_thread_count(name):
    """The pooled mean and the gate's MLP are summed in float64: in float32 on channels_last their
    last bit followed the thread count (oneDNN's 1x1 kernels), so a Ray worker on 1 thread wrote
    other bytes than the local engine on 2."""
    torch.manual_seed(0)
    att = create("attention", name, channels=32).to(memory_format=torch.channels_last)
    x = torch.randn(8, 32, 32, 32).contiguous(memory_format=torch.channels_last)
    one, two = on_threads(1, lambda: att(x)), on_threads(2, lambda: att(x))
    assert torch.equal(one, two), float((one - two).abs().max())
    torch.testing.assert_close(one, att.float()(x.contiguous()), atol=1e-6, rtol=1e-6)  # still the mean
