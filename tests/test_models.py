"""JDSR-GAN networks: shapes at every scale, gradients, maps/heatmaps, stages, discriminators."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from facerestore.interfaces import Discriminator, Generator, IdentityEncoder
from facerestore.registry import Registry
from facerestore.components import default_registry
from facerestore_plugins import attention, denoisers, discriminators, generators, upsamplers

TINY_DEN = {"type": "jdsr_denoiser", "channels": 8, "estimator_channels": 8, "estimator_layers": 3}


def tiny_sr(scale=4, **kw):
    return {"type": "jdsr_sr", "channels": 8, "blocks": 2, "scale": scale, "prior_channels": 8, **kw}


class TinyEncoder(IdentityEncoder):
    """A small stand-in IdentityEncoder (the real ones need installed weights)."""

    dim = 16
    input_size = 24

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, stride=2)

    def forward(self, faces):
        faces = F.interpolate(faces, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        return F.normalize(self.conv(faces).mean((2, 3)), dim=1)


@pytest.fixture(scope="module")
def reg() -> Registry:
    r = Registry()
    for mod in (attention, denoisers, upsamplers, generators, discriminators):
        mod.register(r)
    r.register("identity", "tiny", TinyEncoder)
    return r


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_jdsr_output_shapes_at_every_scale(reg, scale):
    torch.manual_seed(0)
    g = reg.build("generator", {"type": "jdsr", "denoiser": TINY_DEN, "upsampler": tiny_sr(scale, identity_dim=8),
                                "identity_channels": 4})
    assert isinstance(g, Generator) and g.scale == scale
    lq = 128 // scale
    out = g(torch.rand(2, 3, lq, lq))
    assert set(out) == {"sr", "denoised", "noise_map", "heatmaps"}
    assert out["sr"].shape == (2, 3, 128, 128)
    assert out["denoised"].shape == (2, 3, lq, lq)
    assert out["noise_map"].shape == (2, 1, lq, lq)
    assert out["heatmaps"].shape == (2, 5, 128, 128)
    for key in ("sr", "denoised", "noise_map"):
        assert 0 <= out[key].min() and out[key].max() <= 1, key


def test_landmark_count_and_no_prior_branch(reg):
    g = reg.build("generator", {"type": "jdsr", "denoiser": TINY_DEN, "upsampler": tiny_sr(landmarks=68)})
    assert g(torch.rand(1, 3, 32, 32))["heatmaps"].shape == (1, 68, 128, 128)
    g = reg.build("generator", {"type": "jdsr", "denoiser": TINY_DEN, "upsampler": tiny_sr(landmarks=0)})
    assert "heatmaps" not in g(torch.rand(1, 3, 32, 32))


def _all_outputs_loss(out):
    return sum(v.float().square().mean() for v in out.values())


def test_gradients_reach_every_trainable_parameter(reg):
    torch.manual_seed(0)
    g = reg.build("generator", {"type": "jdsr", "denoiser": TINY_DEN, "upsampler": tiny_sr(identity_dim=8, film_every=1),
                                "identity_channels": 4})
    _all_outputs_loss(g(torch.rand(2, 3, 32, 32))).backward()
    missing = [n for n, p in g.named_parameters() if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)]
    assert not missing
    assert any(n.startswith("identity_branch.") for n, _ in g.named_parameters())


def test_frozen_identity_encoder_option(reg):
    torch.manual_seed(0)
    g = reg.build("generator", {"type": "jdsr", "denoiser": TINY_DEN, "upsampler": tiny_sr(identity_dim=8),
                                "identity": {"type": "tiny"}})
    enc = g.identity_branch.encoder
    assert isinstance(enc, TinyEncoder) and not any(p.requires_grad for p in enc.parameters())
    g.train()
    assert not enc.training  # stays in eval mode
    _all_outputs_loss(g(torch.rand(2, 3, 32, 32))).backward()
    assert all(p.grad is None for p in enc.parameters())
    assert g.identity_branch.proj.weight.grad.abs().sum() > 0
    # the trainable projection trains with the upsampler; the frozen encoder is in no stage
    stage_params = {id(p) for m in g.stage_modules().values() for p in m.parameters()}
    assert not any(id(p) in stage_params for p in enc.parameters())
    assert id(g.identity_branch.proj.weight) in stage_params
    with pytest.raises(ValueError, match="identity_dim"):
        reg.build("generator", {"type": "jdsr", "denoiser": TINY_DEN, "upsampler": tiny_sr(), "identity": {"type": "tiny"}})


def test_identity_embedding_modulates_the_sr_features():
    torch.manual_seed(0)
    up = upsamplers.JDSRSR(channels=8, blocks=2, identity_dim=6, attention="identity", landmarks=0)
    x = torch.rand(1, 3, 16, 16)
    a = up(x, F.normalize(torch.randn(1, 6), dim=1)).image
    b = up(x, F.normalize(torch.randn(1, 6), dim=1)).image
    assert not torch.allclose(a, b)
    # without an embedding the FiLM layers are skipped: the output is neither a nor b
    none = up(x, None).image
    assert not torch.allclose(none, a) and not torch.allclose(none, b)


def test_stage_modules_partition_the_trainable_parameters(reg):
    g = reg.build("generator", {"type": "jdsr", "denoiser": TINY_DEN, "upsampler": tiny_sr(identity_dim=8)})
    stages = g.stage_modules()
    assert set(stages) == {"denoiser", "upsampler"}
    ids = [{id(p) for p in m.parameters()} for m in stages.values()]
    assert not ids[0] & ids[1]
    assert ids[0] | ids[1] == {id(p) for p in g.parameters() if p.requires_grad}
    # the stage grouping must not duplicate tensors in the checkpoint
    assert not any(k.startswith("_stages") for k in g.state_dict())


def test_detach_stops_sr_gradients_at_the_denoiser(reg):
    for detach, expect in ((True, False), (False, True)):
        g = reg.build("generator", {"type": "jdsr", "denoiser": TINY_DEN, "upsampler": tiny_sr(), "detach": detach})
        g(torch.rand(2, 3, 32, 32))["sr"].mean().backward()
        got = any(p.grad is not None and p.grad.abs().sum() > 0 for p in g.denoiser.parameters())
        assert got is expect


def test_untrained_sr_starts_near_bicubic():
    torch.manual_seed(0)
    up = upsamplers.JDSRSR(channels=16, blocks=4, scale=4)
    x = torch.rand(2, 3, 32, 32)
    bic = upsamplers.Bicubic(scale=4)(x).image
    assert (up(x).image - bic).abs().mean() < 0.05


def test_bicubic_has_no_weights_and_is_bicubic():
    up = default_registry().create("upsampler", "bicubic", scale=2)
    assert not list(up.parameters())
    x = torch.rand(1, 3, 10, 12)
    ref = F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False).clamp(0, 1)
    torch.testing.assert_close(up(x).image, ref)
    g = default_registry().build("generator", {"type": "sr_only", "upsampler": {"type": "bicubic", "scale": 4}})
    assert set(g(torch.rand(1, 3, 8, 8))) == {"sr"} and g.scale == 4


def test_sr_only_generator(reg):
    g = reg.build("generator", {"type": "sr_only", "upsampler": tiny_sr(8)})
    out = g(torch.rand(2, 3, 16, 16))
    assert set(out) == {"sr", "heatmaps"} and out["sr"].shape == (2, 3, 128, 128)
    assert set(g.stage_modules()) == {"upsampler"}


def test_denoiser_map_and_odd_sizes():
    torch.manual_seed(0)
    d = denoisers.JDSRDenoiser(channels=8, depth=2, estimator_channels=8)
    out = d(torch.rand(2, 3, 30, 27))  # not divisible by 2**depth: padded internally
    assert out.image.shape == (2, 3, 30, 27) and out.noise_map.shape == (2, 1, 30, 27)
    assert 0 <= out.noise_map.min() and out.noise_map.max() <= 1
    # a residual network: an untrained denoiser stays close to its input
    x = torch.rand(2, 3, 32, 32)
    assert (d(x).image - x).abs().mean() < 0.05
    with pytest.raises(ValueError):
        denoisers.JDSRDenoiser(estimator_layers=1)


def test_channels_last_gives_the_same_result(reg):
    torch.manual_seed(0)
    g = reg.build("generator", {"type": "jdsr", "denoiser": TINY_DEN, "upsampler": tiny_sr(identity_dim=8)}).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        ref = g(x)
        g = g.to(memory_format=torch.channels_last)
        got = g(x.contiguous(memory_format=torch.channels_last))
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], atol=1e-4, rtol=1e-4)


def test_patch_discriminator_with_spectral_norm(reg):
    d = reg.build("discriminator", {"type": "patch", "channels": 8, "layers": 3})
    assert isinstance(d, Discriminator)
    logits = d(torch.rand(2, 3, 128, 128))
    assert logits.shape == (2, 1, 14, 14)
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(hasattr(m, "parametrizations") for m in convs)
    plain = reg.build("discriminator", {"type": "patch", "channels": 8, "spectral_norm": False})
    assert not any(hasattr(m, "parametrizations") for m in plain.modules())


def test_timm_discriminator_is_random_init_and_global(reg):
    pytest.importorskip("timm")
    torch.manual_seed(0)
    d = reg.build("discriminator", {"type": "timm", "backbone": "resnet18"})
    x = torch.rand(2, 3, 64, 64, requires_grad=True)
    logits = d(x)
    assert logits.shape == (2, 1)
    logits.sum().backward()
    assert x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="no_such_net"):
        reg.build("discriminator", {"type": "timm", "backbone": "no_such_net"})


def test_any_scale_generator_keeps_size_and_starts_between_input_and_core():
    from facerestore.components import default_registry

    spec = {"type": "jdsr_any", "identity_channels": 4, "fusion_channels": 8, "fusion_blocks": 1,
            "denoiser": {"type": "jdsr_denoiser", "channels": 4, "depth": 1, "blocks": 1, "estimator_layers": 2,
                         "estimator_channels": 4},
            "upsampler": {"type": "jdsr_sr", "channels": 8, "blocks": 1, "scale": 4, "identity_dim": 4, "landmarks": 5,
                          "prior_channels": 4}}
    torch.manual_seed(0)
    g = default_registry().build("generator", spec, "generator").eval()
    assert g.scale == 1 and set(g.stage_modules()) == {"denoiser", "upsampler", "fusion"}
    x = torch.rand(2, 3, 64, 64)
    out = g(x)
    assert out["sr"].shape == x.shape and out["coarse"].shape == x.shape
    assert out["noise_map"].shape == (2, 1, 64, 64) and out["denoised"].shape == (2, 3, 16, 16)
    assert out["heatmaps"].shape == (2, 5, 64, 64)
    # untrained: about the mean of the input and the coarse face (alpha ~ 0.5, small residual)
    mid = 0.5 * (x + out["coarse"])
    assert (out["sr"] - mid).abs().mean() < (out["sr"] - x).abs().mean()
    # ``keep`` is the input's blend weight: with no residual and an alpha logit of b everywhere,
    # keep = sigmoid(b) and sr = keep * x + (1 - keep) * coarse exactly
    assert out["keep"].shape == (2, 1, 64, 64)
    last = g.fusion[-2]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
        last.bias[3 * 16:] = 1.5  # PixelShuffle(4): output channel 3 (alpha) reads channels 48-63
    out = g(x)
    keep = torch.sigmoid(torch.tensor(1.5))
    assert torch.allclose(out["keep"], keep.expand(2, 1, 64, 64))
    torch.testing.assert_close(out["sr"], (keep * x + (1 - keep) * out["coarse"]).clamp(0, 1))
    out = g(x)  # (these weights are copied into the refined network below)
    with pytest.raises(ValueError, match="divisible by 4"):
        g(torch.rand(1, 3, 30, 30))
    # the full-resolution refine head starts at zero: same weights, same output as without it
    refined = default_registry().build("generator", {**spec, "refine_channels": 4}, "generator").eval()
    refined.load_state_dict(g.state_dict(), strict=False)
    assert torch.equal(refined(x)["sr"], out["sr"]) and "refine" in dict(refined.named_children())


def test_half_resolution_stage_joins_a_trained_model_without_changing_its_output(reg):
    """``half_blocks``: the 64x64 stage of ``jdsr_any`` added to a trained model (warm start by
    ``load_matching``) leaves its output as it was; the stage is trained with the fusion and the
    gradient reaches its zero-initialised last conv, so it can learn."""
    from facerestore.checkpoint import load_matching

    spec = {"type": "jdsr_any", "identity_channels": 4, "fusion_channels": 8, "fusion_blocks": 1, "refine_channels": 4,
            "denoiser": {"type": "jdsr_denoiser", "channels": 4, "depth": 1, "blocks": 1, "estimator_layers": 2,
                         "estimator_channels": 4},
            "upsampler": {"type": "jdsr_sr", "channels": 8, "blocks": 1, "scale": 4, "identity_dim": 4, "landmarks": 5,
                          "prior_channels": 4}}
    torch.manual_seed(0)
    base = reg.build("generator", spec, "g").eval()
    with torch.no_grad():  # "trained": the zero-initialised refine head too
        for p in base.parameters():
            p.add_(0.05 * torch.randn_like(p))
    wider = reg.build("generator", {**spec, "half_blocks": 2, "half_channels": 6}, "g").eval()
    fresh = load_matching(wider, base.state_dict(), "test")
    assert fresh and all(n.startswith("half_res.") for n in fresh)
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(wider(x)["sr"], base(x)["sr"])
    assert "half_res" in dict(wider.stage_modules()["fusion"].named_children())
    wider(x)["sr"].square().mean().backward()
    last = wider.half_res[-2]
    assert last.weight.grad is not None and last.weight.grad.abs().sum() > 0
    with torch.no_grad():
        last.bias.fill_(0.1)
    assert not torch.allclose(wider(x)["sr"], base(x)["sr"])
    with pytest.raises(ValueError, match="half_blocks >= 0"):
        reg.build("generator", {**spec, "half_blocks": -1}, "g")


def test_zero_init_last_deepens_a_trained_trunk_without_changing_its_output(reg):
    """``zero_init_last``: blocks added to a trained SR trunk (warm start by ``load_matching``)
    start as the identity, so the deeper network gives the same face; gradients reach them."""
    from facerestore.checkpoint import load_matching, module_summary

    torch.manual_seed(0)
    emb = torch.randn(2, 4)
    spec = tiny_sr(identity_dim=4, prior_at=1)  # the prior stays after block 1 when deepened
    shallow = reg.build("upsampler", spec, "u").eval()
    with torch.no_grad():  # a "trained" trunk: no block is the identity
        for p in shallow.parameters():
            p.add_(0.05 * torch.randn_like(p))
    deep = reg.build("upsampler", {**spec, "blocks": 4, "zero_init_last": True}, "u").eval()
    fresh = load_matching(deep, shallow.state_dict(), "test")
    assert fresh and all(n.startswith(("blocks.2.", "blocks.3.")) for n in fresh)
    assert module_summary(fresh, list(deep.state_dict())) == f"blocks[2-3] ({len(fresh)} tensors)"
    x = torch.rand(2, 3, 8, 8)
    assert torch.equal(deep(x, emb).image, shallow(x, emb).image)
    # without it the added blocks change the output
    plain = reg.build("upsampler", {**spec, "blocks": 4}, "u").eval()
    load_matching(plain, shallow.state_dict(), "test")
    assert not torch.allclose(plain(x, emb).image, shallow(x, emb).image)
    deep.train()
    deep(x, emb).image.square().mean().backward()
    assert deep.blocks[3].body[-1].weight.grad.abs().sum() > 0


def test_module_summary_names_the_largest_wholly_new_modules():
    from facerestore.checkpoint import module_summary

    every = ["blocks.weight", "blocks.0.w", "blocks.1.w", "blocks.2.w", "enc.convs.2.w", "enc.convs.3.w",
             "0.weight", "1.weight", "head.w"]
    assert module_summary(["blocks.0.w", "blocks.2.w"], every) == "blocks[0,2] (2 tensors)"
    assert module_summary(["blocks.weight", "blocks.0.w", "blocks.1.w", "blocks.2.w"], every) == "blocks (4 tensors)"
    # a plain tensor beside numbered children; a new layer inside an old module; a top-level Sequential
    assert module_summary(["blocks.weight", "blocks.1.w"], every) == "blocks.weight, blocks[1] (2 tensors)"
    assert module_summary(["enc.convs.3.w"], every) == "enc.convs[3] (1 tensor)"
    assert module_summary(["0.weight", "1.weight", "head.w"], every) == "0-1, head (3 tensors)"


def test_bottleneck_blocks_deepen_a_trained_denoiser_without_changing_its_output(reg):
    """``bottleneck_blocks``: residual blocks at the U-Net's coarsest level start as the identity,
    so a trained denoiser warm-started with them restores the same face; gradients reach them."""
    from facerestore.checkpoint import load_matching

    torch.manual_seed(0)
    spec = {"type": "jdsr_denoiser", "channels": 4, "depth": 2, "blocks": 1, "estimator_layers": 2,
            "estimator_channels": 4}
    trained = reg.build("denoiser", spec, "d").eval()
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.05 * torch.randn_like(p))
    deep = reg.build("denoiser", {**spec, "bottleneck_blocks": 2}, "d").eval()
    fresh = load_matching(deep, trained.state_dict(), "test")
    assert fresh and all(n.startswith("bottleneck_res.") for n in fresh)
    x = torch.rand(2, 3, 12, 12)  # halved twice: 3x3 at the bottleneck
    assert torch.equal(deep(x).image, trained(x).image)
    deep.train()
    deep(x).image.square().mean().backward()
    assert deep.bottleneck_res[1].body[-1].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="bottleneck_blocks"):
        reg.build("denoiser", {**spec, "bottleneck_blocks": -1}, "d")
