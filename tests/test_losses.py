"""Loss plugins: zero (or minimal) for identical inputs, growing with the difference; GAN signs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from facerestore.interfaces import AdversarialLoss, Discriminator, IdentityEncoder
from facerestore.registry import Registry
from facerestore.components import create
from facerestore_plugins import losses


def _noisy(x, amp, seed=0):
    g = torch.Generator().manual_seed(seed)
    return x + amp * torch.randn(x.shape, generator=g)


@pytest.fixture
def img():
    return torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("mode", ["l1", "l2", "charbonnier"])
def test_pixel_zero_for_identical_and_monotonic(img, mode):
    loss = create("loss", "pixel", mode=mode)
    assert loss(img, img.clone()).item() == 0.0
    values = [loss(_noisy(img, a), img).item() for a in (0.01, 0.05, 0.2)]
    assert 0 < values[0] < values[1] < values[2]


def test_pixel_occluded_weight_emphasises_the_mask(img):
    occ = torch.zeros(2, 1, 16, 16)
    occ[..., 8:, :] = 1
    err_in = img.clone()
    err_in[..., 8:, :] += 0.1  # error inside the mask
    err_out = img.clone()
    err_out[..., :8, :] += 0.1  # the same error outside
    plain = create("loss", "pixel")
    weighted = create("loss", "pixel", occluded_weight=3.0)
    assert plain(err_in, img, occlusion=occ).item() == pytest.approx(plain(err_out, img, occlusion=occ).item())
    assert weighted(err_in, img, occlusion=occ) > 2 * weighted(err_out, img, occlusion=occ)
    # an HQ-size prediction uses the map resized to its own size: an error of 0.1 inside the mask
    # (lower half) weighs 1 + 3 = 4 there, the visible half 1: 0.1 * 4 * half / (2.5 * all)
    big = torch.rand(2, 3, 32, 32)
    err = big.clone()
    err[..., 16:, :] += 0.1
    assert weighted(err, big, occlusion=occ).item() == pytest.approx(0.1 * 4 * 0.5 / 2.5, rel=1e-4)
    assert weighted(err, big, occlusion_hq=F.interpolate(occ, size=(32, 32))).item() == pytest.approx(0.08, rel=1e-4)


def test_tv_zero_for_flat_and_grows_with_noise():
    flat = torch.full((1, 3, 16, 16), 0.4)
    for mode in ("l1", "l2"):
        tv = create("loss", "tv", mode=mode)
        assert tv(flat, flat).item() == 0.0
        values = [tv(_noisy(flat, a), flat).item() for a in (0.01, 0.1)]
        assert 0 < values[0] < values[1]


def test_asymmetric_loss_penalises_under_estimation_more():
    target = torch.full((1, 1, 8, 8), 0.5)
    loss = create("loss", "asymmetric", alpha=0.3)
    assert loss(target, target.clone()).item() == 0.0
    under = loss(target - 0.2, target).item()
    over = loss(target + 0.2, target).item()
    assert under == pytest.approx(0.7 * 0.04, rel=1e-5)
    assert over == pytest.approx(0.3 * 0.04, rel=1e-5)
    assert loss(target - 0.4, target).item() > under
    # the true occlusion map may come at HQ size: it is area-resized to the estimate (a 32 px map
    # whose every 4x4 cell averages to 0.25 gives 0.25 everywhere: an under-estimate of 0.25 by 0.5 -> over)
    hq_map = torch.zeros(1, 1, 32, 32)
    hq_map[..., ::2, ::2] = 1.0
    assert loss(target, hq_map).item() == pytest.approx(0.3 * 0.25 ** 2, rel=1e-5)


def test_occluded_mean_counts_only_the_occluded_pixels():
    loss = create("loss", "occluded_mean")
    occ = torch.zeros(2, 1, 8, 8)
    occ[:, :, 4:] = 1.0  # lower half masked
    keep = torch.zeros(2, 1, 8, 8)
    keep[:, :, :4] = 1.0  # keeping every visible pixel costs nothing
    assert loss(keep, occ).item() == 0.0
    keep[:, :, 4:6] = 0.5  # half of the masked rows kept at 0.5 -> mean 0.25 over the mask
    assert loss(keep, occ).item() == pytest.approx(0.25)
    # an occlusion map at another size is area-resized to the prediction; no mask, no loss
    assert loss(keep, F.interpolate(occ, size=(32, 32), mode="nearest")).item() == pytest.approx(0.25)
    assert loss(torch.ones(2, 1, 8, 8), torch.zeros(2, 1, 8, 8)).item() == 0.0


def test_lattice_loss_sees_a_pixel_shuffle_grid_under_the_mask_only():
    g = torch.Generator().manual_seed(0)
    target = torch.rand(8, 3, 64, 64, generator=g)
    occ = torch.zeros(8, 1, 64, 64)
    occ[..., 32:, :] = 1.0
    grid = torch.zeros(1, 3, 4, 4)
    grid[..., 0, 1] = 0.05
    tiled = grid.repeat(1, 1, 16, 16)
    for mode in ("l1", "l2"):
        loss = create("loss", "lattice", mode=mode)
        assert loss(target, target.clone(), occlusion=occ).item() == 0.0
        with_grid = loss(target + tiled * occ, target, occlusion=occ).item()
        # noise of the same amplitude, its phase random from pixel to pixel, costs far less
        assert with_grid > 3 * loss(_noisy(target, 0.05) * occ + target * (1 - occ), target, occlusion=occ).item()
        # a grid outside the occlusion is not this term's business; region "all" sees it
        assert loss(target + tiled * (1 - occ), target, occlusion=occ).item() == pytest.approx(0.0, abs=1e-9)
        assert create("loss", "lattice", mode=mode, region="all")(target + tiled * (1 - occ), target).item() > 0
    # no occlusion map in the batch: nothing to weigh, no loss
    assert create("loss", "lattice")(target + tiled, target).item() == 0.0
    with pytest.raises(ValueError):
        create("loss", "lattice", period=1)


def test_face_prior_mse():
    from facerestore.landmarks import render_heatmaps, template_landmarks

    hm = render_heatmaps(template_landmarks(64), 64)
    for fw in (0.0, 10.0):
        loss = create("loss", "face_prior", foreground_weight=fw)
        assert loss(hm, hm.clone()).item() == 0.0
        shifted = render_heatmaps(template_landmarks(64) + 2, 64)
        far = render_heatmaps(template_landmarks(64) + 6, 64)
        assert 0 < loss(shifted, hm).item() < loss(far, hm).item()
    with pytest.raises(ValueError, match="landmarks"):
        create("loss", "face_prior")(hm[:, :3], hm)


class TinyEncoder(IdentityEncoder):
    """A stand-in for dlib_resnet (whose weights may not be installed)."""

    dim = 8
    input_size = 16

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, faces):
        faces = F.interpolate(faces, size=(16, 16), mode="bilinear", align_corners=False)
        return F.normalize(self.conv(faces).flatten(2).mean(2), dim=1)


def test_identity_loss_with_a_registered_encoder(img):
    reg = Registry()
    losses.register(reg)
    reg.register("identity", "tiny", TinyEncoder)
    loss = reg.create("loss", "identity", encoder={"type": "tiny"})
    assert not any(p.requires_grad for p in loss.encoder.parameters())
    assert loss(img, img.clone()).item() == pytest.approx(0.0, abs=1e-6)
    values = [loss(_noisy(img, a).clamp(0, 1), img).item() for a in (0.05, 0.5)]
    assert 0 < values[0] < values[1]
    pred = img.clone().requires_grad_(True)
    loss(pred * 0.5, img).backward()
    assert pred.grad.abs().sum() > 0 and all(p.grad is None for p in loss.encoder.parameters())
    loss.train()
    assert not loss.encoder.training


class BrightnessCritic(Discriminator):
    """A toy critic that believes brighter images are real: logit = 10 * (mean - 0.5)."""

    def forward(self, x):
        return 10 * (x.mean((1, 2, 3)).view(-1, 1) - 0.5)


@pytest.mark.parametrize("mode", ["vanilla", "lsgan", "hinge", "relativistic"])
def test_adversarial_modes_are_finite_and_have_the_right_signs(mode):
    adv = create("loss", "adversarial", mode=mode)
    assert isinstance(adv, AdversarialLoss)
    D = BrightnessCritic()
    real = torch.full((4, 3, 8, 8), 0.7)
    dark, bright = torch.full_like(real, 0.3), torch.full_like(real, 0.6)
    # generator: fakes the critic finds more real cost less
    g_dark, g_bright = adv(dark, real, discriminator=D), adv(bright, real, discriminator=D)
    assert torch.isfinite(g_dark) and torch.isfinite(g_bright)
    assert g_bright < g_dark
    # critic: telling real (bright) from fake (dark) is cheaper than the reverse
    d_good = adv.discriminator_loss(D, real, dark)
    d_bad = adv.discriminator_loss(D, dark, real)
    assert torch.isfinite(d_good) and d_good < d_bad
    # the generator term is differentiable w.r.t. the fake images
    fake = dark.clone().requires_grad_(True)
    adv(fake, real, discriminator=D).backward()
    assert fake.grad.abs().sum() > 0
    # the critic term never sends gradients to the generator's output
    fake2 = dark.clone().requires_grad_(True)
    assert not adv.discriminator_loss(D, real, fake2).requires_grad  # the toy critic has no weights


def test_adversarial_needs_a_discriminator(img):
    with pytest.raises(ValueError, match="discriminator"):
        create("loss", "adversarial")(img, img)


def test_adversarial_trains_a_patch_critic_on_a_real_batch():
    """A few critic steps on real-vs-blurred patches lower the critic loss for every mode."""
    for mode in ("vanilla", "lsgan", "hinge", "relativistic"):
        torch.manual_seed(0)
        D = create("discriminator", "patch", channels=8, layers=2, spectral_norm=False)
        adv = create("loss", "adversarial", mode=mode)
        real = torch.rand(2, 3, 16, 16)
        fake = F.avg_pool2d(real, 3, 1, 1)
        opt = torch.optim.Adam(D.parameters(), lr=1e-3)
        first = adv.discriminator_loss(D, real, fake).item()
        for _ in range(8):
            opt.zero_grad()
            adv.discriminator_loss(D, real, fake).backward()
            opt.step()
        assert adv.discriminator_loss(D, real, fake).item() < first, mode


def test_distill_pulls_towards_the_teachers_mirrored_ensemble(tmp_path):
    from facerestore.restore import Restorer
    from test_restore import tiny_checkpoint

    path = tiny_checkpoint(tmp_path / "teacher.safetensors")
    lq = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    ensemble = Restorer.from_pretrained(path, device="cpu", channels_last=False, tta=True).run_model(lq)[0]
    single = Restorer.from_pretrained(path, device="cpu", channels_last=False).run_model(lq)[0]
    assert not torch.allclose(ensemble, single, atol=1e-3)  # the mirrored pass matters
    loss = create("loss", "distill", teacher=path)
    assert loss(ensemble.clone(), None, lq=lq).item() == pytest.approx(0.0, abs=1e-10)
    assert loss(single, None, lq=lq).item() == pytest.approx(F.mse_loss(single, ensemble).item(), rel=1e-4)
    assert create("loss", "distill", teacher=path, mirror=False)(single, None, lq=lq).item() < 1e-10
    pred = single.clone().requires_grad_(True)
    loss(pred, None, lq=lq).backward()
    assert pred.grad.abs().sum() > 0
    assert loss.state_dict() == {}  # the teacher is not part of the loss's (or a checkpoint's) state
    # the teacher runs in float32 inside a trainer's bf16 autocast too (as `restore` runs it)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert loss(ensemble.clone(), None, lq=lq).item() == pytest.approx(0.0, abs=1e-10)
    with pytest.raises(ValueError, match="lq"):
        loss(single, single)
    with pytest.raises(ValueError, match="RGB"):
        loss(single[:, :1], None, lq=lq)


def test_distill_teacher_path_is_relative_to_the_recipe(tmp_path, repo):
    import os

    from facerestore.recipe import load_recipe

    (tmp_path / "sub").mkdir()
    text = (repo / "recipes/masked_any.toml").read_text().replace('teacher = "masked-any"',
                                                                   'teacher = "../teacher.safetensors"')
    (tmp_path / "sub/r.toml").write_text(text)
    spec = [s for s in load_recipe(tmp_path / "sub/r.toml", validate=False).losses if s.type == "distill"][0]
    assert os.path.samefile(os.path.dirname(os.path.abspath(spec.params["teacher"])), tmp_path)
    named = [s for s in load_recipe(repo / "recipes/masked_any.toml").losses if s.type == "distill"][0]
    assert named.params["teacher"] == "masked-any" and named.weight == 0
