"""The generative inpainting stage (``jdsr_inpaint``), the per-pixel U-Net critic and the
adversarial loss's occlusion weighting and R1 penalty (issue 35)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from facerestore.checkpoint import load_matching
from facerestore.components import default_registry
from facerestore_plugins.generators import JDSRAnyScale
from facerestore_plugins.inpaint import FFCResBlock, FourierUnit
from facerestore_plugins.losses import GANLoss

ANY = {"type": "jdsr_any", "identity_channels": 4, "fusion_channels": 8, "fusion_blocks": 1, "refine_channels": 4,
       "denoiser": {"type": "jdsr_denoiser", "channels": 4, "depth": 1, "blocks": 1, "estimator_layers": 2,
                    "estimator_channels": 4},
       "upsampler": {"type": "jdsr_sr", "channels": 8, "blocks": 1, "scale": 4, "identity_dim": 4, "landmarks": 5,
                     "prior_channels": 4}}
INPAINT = {**ANY, "type": "jdsr_inpaint", "inpaint_channels": 8, "inpaint_blocks": 1, "inpaint_refine": 4}


def _trained_base():
    """A ``jdsr_any`` whose weights are all off their initialisation (zero-initialised heads too)."""
    torch.manual_seed(0)
    base = default_registry().build("generator", ANY, "g").eval()
    with torch.no_grad():
        for p in base.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return base


def test_inpaint_generator_starts_as_the_model_it_extends():
    """``train.init = "masked-any"``: every base tensor loads by name, only ``inpaint.*`` is new,
    and at step 0 the output (face and occlusion map) is the base model's."""
    base = _trained_base()
    g = default_registry().build("generator", INPAINT, "g").eval()
    fresh = load_matching(g, base.state_dict(), "test")
    assert fresh and all(n.startswith("inpaint.") for n in fresh)
    x = torch.rand(2, 3, 32, 32)
    ref, out = base(x), g(x)
    assert torch.equal(out["sr"], ref["sr"]) and torch.equal(out["faithful"], ref["sr"])
    torch.testing.assert_close(out["noise_map"], ref["noise_map"], atol=1e-4, rtol=0)
    assert out["noise_map"].shape == (2, 1, 32, 32) and out["delta"].shape == (2, 3, 32, 32)
    assert set(g.stage_modules()) == {"denoiser", "upsampler", "fusion", "inpaint"}


def test_inpaint_branch_learns_and_fidelity_scales_it():
    g = default_registry().build("generator", INPAINT, "g").eval()
    x = torch.rand(2, 3, 32, 32)
    g(x)["sr"].square().mean().backward()
    last = g.inpaint.refine[-1]
    assert last.weight.grad is not None and last.weight.grad.abs().sum() > 0
    with torch.no_grad():
        last.bias.copy_(torch.tensor([0.2, -0.1, 0.05, 2.0]))
    out = g(x)
    torch.testing.assert_close(out["sr"], (out["faithful"] + out["delta"]).clamp(0, 1))
    assert out["delta"].abs().amax() > 0.04
    torch.testing.assert_close(g(x, fidelity=1.0)["sr"], out["faithful"])
    half = g(x, fidelity=0.5)
    torch.testing.assert_close(half["sr"], (out["faithful"] + 0.5 * out["delta"]).clamp(0, 1))
    # the occlusion correction (+2 logits) is the same at every fidelity and raises the map
    torch.testing.assert_close(half["noise_map"], out["noise_map"])
    assert (out["noise_map"] > JDSRAnyScale.forward(g, x)["noise_map"]).all()
    with pytest.raises(ValueError, match="fidelity"):
        g(x, fidelity=1.5)


def test_gate_confines_the_synthesis_to_the_occlusion():
    """``gate``: the residual is weighted by the refined occlusion map, so a visible pixel
    (map near 0) keeps the faithful face and a hidden one (map near 1) gets the whole residual."""
    torch.manual_seed(0)
    g = default_registry().build("generator", {**INPAINT, "gate": True}, "g").eval()
    with torch.no_grad():
        g.inpaint.refine[-1].bias.copy_(torch.tensor([0.2, -0.1, 0.05, 0.0]))
        x = torch.rand(2, 3, 32, 32)
        out = g(x)
    occ = out["noise_map"]
    torch.testing.assert_close(out["sr"], (out["faithful"] + occ * out["delta"]).clamp(0, 1))
    g.gate = False  # the same weights ungated: another face (the map is about 0.5 here, untrained)
    with torch.no_grad():
        assert (g(x)["sr"] - out["sr"]).abs().amax() > 0.01


def test_frozen_base_trains_only_the_branch_and_stays_in_eval_mode():
    g = default_registry().build("generator", {**INPAINT, "freeze_base": True}, "g")
    g.train()
    trainable = {n for n, p in g.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("inpaint.") for n in trainable)
    assert not g.core.training and not g.fusion.training and g.inpaint.training
    out = g(torch.rand(2, 3, 32, 32))
    assert not out["faithful"].requires_grad and out["sr"].requires_grad  # the base ran without autograd


def test_fourier_unit_sees_the_whole_face_in_one_layer():
    """A 3x3 conv reaches 1 px away; the FFC block's spectral path reaches every pixel: the output
    in one corner depends on the input in the opposite corner."""
    torch.manual_seed(0)
    block = FFCResBlock(8)
    x = torch.rand(1, 8, 16, 16, requires_grad=True)
    block(x)[0, :, 0, 0].sum().backward()
    assert x.grad[0, :, -1, -1].abs().sum() > 0
    fu = FourierUnit(4)
    with torch.no_grad():  # identity 1x1 in the Fourier domain: irfft2(rfft2(x)) == x for x >= 0 stays
        fu.conv.weight.copy_(torch.eye(8).view(8, 8, 1, 1))
        fu.conv.bias.zero_()
    y = torch.rand(2, 4, 12, 10)
    # ReLU on the spectrum keeps the DC term (a non-negative image's mean) exactly
    torch.testing.assert_close(fu(y).mean((2, 3)), y.mean((2, 3)), atol=1e-5, rtol=0)


def test_unet_critic_judges_every_pixel_with_context():
    torch.manual_seed(0)
    d = default_registry().build("discriminator", {"type": "unet", "channels": 4}, "d")
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    logits = d(x)
    assert logits.shape == (2, 1, 32, 32)
    logits[0, 0, 0, 0].backward()  # a top-left logit sees the bottom right through the encoder
    assert x.grad[0, :, 24:, 24:].abs().sum() > 0 and x.grad[1].abs().sum() == 0
    with pytest.raises(ValueError, match="divisible by 8"):
        d(torch.rand(1, 3, 30, 30))


class _PixelCritic(torch.nn.Module):
    """A per-pixel critic with a known gradient: logits = 3 * (mean over channels of x) - 1."""

    def forward(self, x):
        return 3 * x.mean(1, keepdim=True) - 1


def test_adversarial_term_weights_the_occluded_pixels():
    fake = torch.rand(2, 3, 8, 8)
    occ = torch.zeros(2, 1, 8, 8)
    occ[:, :, 4:] = 1
    logits = _PixelCritic()(fake)
    bce = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
    plain = GANLoss("vanilla")(fake, discriminator=_PixelCritic(), occlusion=occ)
    torch.testing.assert_close(plain, bce.mean())
    weighted = GANLoss("vanilla", occluded_weight=4.0)(fake, discriminator=_PixelCritic(), occlusion=occ)
    w = 1 + 4 * occ
    torch.testing.assert_close(weighted, (bce * w).sum() / w.sum())


def test_r1_penalty_matches_its_formula_and_is_lazy():
    """For logits = 3 * mean_c(x) - 1 the face's mean logit is 3 / n * sum(x), n = C * H * W: its
    gradient is 3 / n everywhere and the R1 penalty gamma / 2 * 9 / n per face (a sum over the
    per-pixel logits would be n^2 times larger); with r1_every = 2 it is 2x as large every other step."""
    critic, real, fake = _PixelCritic(), torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    base = GANLoss("vanilla").discriminator_loss(critic, real, fake)
    gamma, n = 0.5, 3 * 8 * 8
    torch.testing.assert_close(GANLoss("vanilla", r1=gamma).discriminator_loss(critic, real, fake),
                               base + 0.5 * gamma * 9 / n)
    lazy = GANLoss("vanilla", r1=gamma, r1_every=2)
    values = [lazy.discriminator_loss(critic, real, fake) for _ in range(3)]
    torch.testing.assert_close(values[0], base + 0.5 * gamma * 2 * 9 / n)
    torch.testing.assert_close(values[1], base)
    torch.testing.assert_close(values[2], values[0])
    with pytest.raises(ValueError, match="r1_every"):
        GANLoss(r1_every=0)


def test_fourier_unit_matches_torch_fft_and_exports_to_onnx(tmp_path):
    """The DFT as matrix products equals torch.fft.rfft2 -> conv -> irfft2 (odd and even sizes),
    and a jdsr_inpaint generator exports to ONNX with the same output (no FFT operator there)."""
    torch.manual_seed(0)
    fu = FourierUnit(3)
    for h, w in ((8, 8), (7, 10), (12, 9)):
        x = torch.randn(2, 3, h, w)
        f = torch.fft.rfft2(x, norm="ortho")
        re, im = F.relu(fu.conv(torch.cat([f.real, f.imag], 1))).chunk(2, 1)
        ref = torch.fft.irfft2(torch.complex(re, im), s=(h, w), norm="ortho")
        torch.testing.assert_close(fu(x), ref, atol=2e-5, rtol=1e-4)
    pytest.importorskip("onnxruntime")
    from facerestore.commands.export import export_onnx, onnx_max_error

    g = default_registry().build("generator", INPAINT, "g").eval()
    with torch.no_grad():
        g.inpaint.refine[-1].bias.fill_(0.1)
    export_onnx(g, 32, tmp_path / "g.onnx")
    assert onnx_max_error(g, 32, tmp_path / "g.onnx") < 1e-4


def test_resize_decoder_warm_starts_from_a_shuffle_decoder():
    """Versions 1-3 doubled by pixel shuffle; a ``decoder = "resize"`` release loads them whole:
    each conv that fed a shuffle becomes the mean of its four sub-pixel filters (shuffle channel
    ``4 c + k`` is sub-pixel ``k`` of output channel ``c``)."""
    torch.manual_seed(0)
    old = default_registry().build("generator", INPAINT, "g")
    with torch.no_grad():
        for p in old.inpaint.parameters():
            p.add_(0.05 * torch.randn_like(p))
    new = default_registry().build("generator", {**INPAINT, "decoder": "resize"}, "g")
    assert load_matching(new, old.state_dict(), "test") == []
    for name in ("up.0", "tail.0"):
        for kind in ("weight", "bias"):
            w = old.inpaint.get_parameter(f"{name}.{kind}")
            expect = torch.stack([w[k::4] for k in range(4)]).mean(0)
            assert torch.equal(new.inpaint.get_parameter(f"{name}.{kind}"), expect), name
    assert torch.equal(new.inpaint.mid.state_dict()["body.0.weight"], old.inpaint.mid.state_dict()["body.0.weight"])
    assert not any(isinstance(m, torch.nn.PixelShuffle) for m in new.inpaint.modules())
    out = new.eval()(torch.rand(2, 3, 32, 32))
    assert out["sr"].shape == (2, 3, 32, 32) and out["delta"].abs().sum() > 0
    with pytest.raises(ValueError, match="decoder must be one of"):
        default_registry().build("generator", {**INPAINT, "decoder": "nearest"}, "g")
