"""Blur, downscale, noise, JPEG and whole pipelines: ranges, determinism, batch sizes, paired sets."""

from __future__ import annotations

import json

import pytest
import torch

from facerestore.degrade import (build_pipeline, degrade_batch, load_paired_set, make_generator,
                                 write_paired_set)
from facerestore.errors import FaceRestoreError, RecipeError
from facerestore.components import create, default_registry

S = 64
JDSR = [
    {"type": "random_mask", "template_prob": 0.0},
    {"type": "gaussian_blur", "sigma": [0.2, 1.5]},
    {"type": "downscale", "scale": 4},
    {"type": "gaussian_noise", "sigma": [0.0, 0.05]},
    {"type": "jpeg", "quality": [30, 90]},
]


def faces(b: int, size: int = S, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # smooth random images (JPEG and blur behave as on photos, not on white noise)
    x = torch.rand(b, 3, size // 8, size // 8, generator=g)
    return torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def run(specs, hq, seed=0, landmarks=None):
    return degrade_batch(hq, build_pipeline(specs), make_generator(seed, "cpu"), landmarks)


def test_all_names_registered():
    names = set(default_registry().names("degradation"))
    assert {"procedural_mask", "template_mask", "random_mask", "gaussian_blur", "motion_blur", "downscale",
            "gaussian_noise", "poisson_noise", "jpeg", "photometric"} <= names


def test_deterministic_for_a_seed():
    hq = faces(6)
    a, b, c = run(JDSR, hq, 3), run(JDSR, hq, 3), run(JDSR, hq, 4)
    for k in ("lq", "clean", "occlusion", "occlusion_hq"):
        assert torch.equal(getattr(a, k), getattr(b, k)), k
    assert not torch.equal(a.lq, c.lq)


@pytest.mark.parametrize("b", [1, 2, 7, 128])
def test_batch_sizes(b):
    r = run(JDSR, faces(b, 128, seed=b))
    assert r.hq.shape == (b, 3, 128, 128)
    assert r.lq.shape == r.clean.shape == (b, 3, 32, 32)
    assert r.occlusion.shape == (b, 1, 32, 32) and r.occlusion_hq.shape == (b, 1, 128, 128)
    for t in (r.lq, r.clean, r.occlusion):
        assert t.min() >= 0 and t.max() <= 1 and torch.isfinite(t).all()


RANGES = [
    ("gaussian_blur", {"sigma": [0.5, 1.0]}, ["sigma_x", "sigma_y"], (0.5, 1.0)),
    ("motion_blur", {"length": [3.0, 5.0], "angle": [10.0, 20.0]}, ["length"], (3.0, 5.0)),
    ("motion_blur", {"length": [3.0, 5.0], "angle": [10.0, 20.0]}, ["angle"], (10.0, 20.0)),
    ("gaussian_noise", {"sigma": [0.01, 0.02]}, ["sigma"], (0.01, 0.02)),
    ("poisson_noise", {"peak": [50.0, 80.0]}, ["peak"], (50.0, 80.0)),
    ("jpeg", {"quality": [40.0, 60.0]}, ["quality"], (40.0, 60.0)),
    ("photometric", {"p": 1.0, "gain": [0.4, 0.6]}, ["gain"], (0.4, 0.6)),
    ("photometric", {"p": 1.0, "hue": [-0.1, 0.05]}, ["hue"], (-0.1, 0.05)),
]


@pytest.mark.parametrize("name,params,keys,rng", RANGES)
def test_per_sample_parameters_within_ranges(name, params, keys, rng):
    r = run([{"type": name, **params}], faces(64))
    for k in keys:
        v = r.extras[f"{name}.{k}"]
        assert v.shape == (64,)
        assert (v >= rng[0] - 1e-4).all() and (v <= rng[1] + 1e-4).all()
        assert v.std() > 0, "drawn per sample"


def test_gaussian_noise_level_matches_sigma():
    hq = torch.full((32, 3, 64, 64), 0.5)
    r = run([{"type": "gaussian_noise", "sigma": [0.0, 0.1], "gray_prob": 0.0}], hq)
    measured = (r.lq - hq).flatten(1).std(1)
    assert torch.allclose(measured, r.extras["gaussian_noise.sigma"], atol=0.005)
    assert torch.equal(r.clean, hq), "noise never touches the clean target"


def test_blur_strength_follows_sigma():
    hq = faces(16, seed=3) + 0.2 * torch.rand(16, 3, S, S)
    r = run([{"type": "gaussian_blur", "sigma": [0.3, 3.0]}], hq.clamp(0, 1))
    energy = (r.lq[..., 1:] - r.lq[..., :-1]).abs().flatten(1).mean(1)
    sigma = r.extras["gaussian_blur.sigma_x"]
    order = sigma.argsort()
    assert energy[order[0]] > energy[order[-1]]
    assert torch.equal(r.lq, r.clean), "geometry changes apply to lq and clean alike"


def test_probability_zero_is_identity():
    hq = faces(4)
    for name in ("gaussian_blur", "motion_blur", "gaussian_noise", "poisson_noise", "jpeg", "photometric", "misalign"):
        r = run([{"type": name, "p": 0.0}], hq)
        assert torch.equal(r.lq, hq) and torch.equal(r.clean, hq) and torch.equal(r.hq, hq), name
        recorded = [v for k, v in r.extras.items() if k.startswith(f"{name}.")]
        assert recorded and all(torch.isnan(v).all() for v in recorded), "skipped samples record NaN"


def test_photometric_changes_the_face_itself_target_included():
    """A lighting change is not a corruption to undo: hq, lq and clean all take it, per sample."""
    hq = faces(32, seed=2)
    r = run([{"type": "photometric", "p": 0.5}], hq)
    applied = ~torch.isnan(r.extras["photometric.gain"])
    assert 0 < int(applied.sum()) < 32
    assert torch.equal(r.hq, r.lq) and torch.equal(r.hq, r.clean)
    assert torch.equal(r.hq[~applied], hq[~applied]), "skipped samples are untouched"
    assert ((r.hq[applied] - hq[applied]).abs().flatten(1).amax(1) > 0.01).all()
    assert r.hq.min() >= 0 and r.hq.max() <= 1


def test_photometric_each_knob_does_what_it_says():
    hq = faces(8, seed=4) * 0.8 + 0.1

    def one(x=hq, **params):
        fixed = {"gain": [1.0, 1.0], "gamma": [1.0, 1.0], "contrast": [1.0, 1.0], "saturation": [1.0, 1.0],
                 "hue": [0.0, 0.0], "gray_prob": 0.0, "p": 1.0}
        return run([{"type": "photometric", **{**fixed, **params}}], x).hq

    assert torch.allclose(one(), hq, atol=1e-5), "all knobs at 1 (hue 0) leave the face as it is"
    assert torch.allclose(one(gain=[0.5, 0.5]), hq * 0.5, atol=1e-5)
    assert torch.allclose(one(gamma=[2.0, 2.0]), hq ** 2, atol=1e-5)
    grey = one(gray_prob=1.0)
    assert torch.allclose(grey[:, 0], grey[:, 1]) and torch.allclose(grey[:, 1], grey[:, 2])
    assert torch.allclose(one(saturation=[0.0, 0.0]), grey, atol=1e-5), "no saturation is the grey photo"
    from facerestore.io import luma

    flat = one(contrast=[0.0, 0.0])
    assert torch.allclose(flat, luma(hq).mean((2, 3), keepdim=True).expand_as(hq), atol=1e-5), \
        "no contrast: every pixel the face's mean luminance"

    skin = luma(hq) + 0.3 * (hq - luma(hq))  # colours of faces, well inside the gamut
    turned = one(skin, hue=[0.25, 0.25])
    assert torch.allclose(luma(turned), luma(skin), atol=1e-4), "a hue turn keeps the luminance"
    assert (turned - skin).abs().mean() > 0.01


def test_photometric_refuses_to_follow_another_step():
    """After a mask or a blur it would recolour the mask and miss ``keep_sharp``'s copy: first only."""
    with pytest.raises(FaceRestoreError, match="first"):
        run([{"type": "gaussian_blur"}, {"type": "photometric"}], faces(2))
    from facerestore.interfaces import DegradationBatch

    step = create("degradation", "photometric", p=1.0)
    half = step(DegradationBatch.from_hq(faces(2).half()), make_generator(0, "cpu"))
    assert half.hq.dtype == half.lq.dtype == torch.float16, "a half batch stays half"


def test_misalign_moves_face_and_landmarks_together():
    """A rotation/scale/shift of the face itself: target, input and landmarks alike, so that a
    mask drawn after it still sits on the (moved) face."""
    hq = faces(6, size=64, seed=7)
    r = run([{"type": "misalign", "p": 1.0, "angle": [20.0, 20.0], "scale": [1.0, 1.0], "shift": [0.0, 0.0]}], hq)
    assert torch.equal(r.hq, r.lq) and torch.equal(r.hq, r.clean) and not torch.allclose(r.hq, hq, atol=0.02)
    from facerestore.landmarks import template_landmarks

    before, after = template_landmarks(64, 6), r.landmarks
    c = torch.tensor([31.5, 31.5])
    turn = torch.atan2(*(after - c).flip(-1).unbind(-1)) - torch.atan2(*(before - c).flip(-1).unbind(-1))
    assert torch.allclose(torch.rad2deg(turn.remainder(2 * torch.pi)), torch.full_like(turn, 20.0), atol=1e-3)
    assert torch.allclose((after - c).norm(dim=-1), (before - c).norm(dim=-1), atol=1e-4), "scale 1 keeps distances"
    # the image follows: a dot at a landmark moves to the moved landmark
    dot = torch.zeros(1, 3, 64, 64)
    x, y = [int(v) for v in before[0, 2].round()]
    dot[..., y - 1:y + 2, x - 1:x + 2] = 1.0
    moved = run([{"type": "misalign", "p": 1.0, "angle": [20.0, 20.0], "scale": [1.0, 1.0], "shift": [0.0, 0.0]}],
                dot).hq[0, 0]
    peak = (moved == moved.max()).nonzero().float().mean(0).flip(0)
    expect = (torch.tensor([x, y], dtype=torch.float32) - c) @ torch.tensor(
        [[0.9397, 0.3420], [-0.3420, 0.9397]]) + c
    assert (peak - expect).norm() < 1.0
    with pytest.raises(FaceRestoreError, match="first"):
        run([{"type": "gaussian_blur"}, {"type": "misalign"}], hq)
    both = run([{"type": "photometric", "p": 1.0}, {"type": "misalign", "p": 1.0}], hq)
    assert torch.equal(both.hq, both.lq), "lighting and framing may both come first"


def test_jpeg_quality_orders_error():
    hq = faces(8, seed=5)
    lo = run([{"type": "jpeg", "quality": [10, 10]}], hq)
    hi = run([{"type": "jpeg", "quality": [95, 95]}], hq)
    assert (lo.lq - hq).abs().mean() > (hi.lq - hq).abs().mean() > 0


@pytest.mark.parametrize("mode", ["bicubic", "area", "bilinear", "random"])
def test_downscale_modes(mode):
    hq = faces(8)
    r = run([{"type": "procedural_mask"}, {"type": "downscale", "scale": 2, "mode": mode}], hq)
    assert r.lq.shape[-1] == S // 2
    assert torch.allclose(r.occlusion, torch.nn.functional.interpolate(r.occlusion_hq, size=(S // 2, S // 2), mode="area"))
    if mode == "area":
        assert torch.allclose(r.clean, torch.nn.functional.interpolate(hq, size=(S // 2, S // 2), mode="area"), atol=1e-6)


def test_bad_ranges_are_recipe_errors():
    with pytest.raises(RecipeError, match="sigma"):
        create("degradation", "gaussian_blur", sigma=[2.0, 1.0])
    with pytest.raises(RecipeError, match="quality"):
        create("degradation", "jpeg", quality=[0.0, 120.0])
    with pytest.raises(RecipeError, match="gamma"):
        create("degradation", "photometric", gamma=[0.0, 1.0])
    with pytest.raises(RecipeError, match="degradation\\[1\\]"):
        build_pipeline([{"type": "downscale"}, {"type": "no_such_step"}])


def test_paired_set_round_trip(tmp_path):
    hq = faces(5, 128)
    batch = run(JDSR, hq, 1)
    m = write_paired_set(tmp_path / "set", iter([(batch, [f"src{i}.png" for i in range(5)])]),
                         {"seed": 1, "degradation": JDSR})
    assert m["count"] == 5 and m["lq_size"] == 32 and m["hq_size"] == 128
    ps = load_paired_set(tmp_path / "set")
    assert len(ps) == 5 and ps.stems == ["00000", "00001", "00002", "00003", "00004"]
    for k, t in (("hq", ps.hq), ("lq", ps.lq), ("clean", ps.clean), ("occlusion", ps.occlusion),
                 ("occlusion_hq", ps.occlusion_hq)):
        assert torch.allclose(t, getattr(batch, k), atol=0.5 / 255 + 1e-6), k
    batches = list(ps.batches(2))
    assert [b.lq.shape[0] for b in batches] == [2, 2, 1]
    manifest = json.loads((tmp_path / "set" / "manifest.json").read_text())
    assert manifest["degradation"] == JDSR and manifest["files"][0]["source"] == "src0.png"
    (tmp_path / "set" / "lq" / "00003.png").unlink()
    with pytest.raises(FaceRestoreError, match="00003"):
        load_paired_set(tmp_path / "set")
    with pytest.raises(FaceRestoreError, match="not a paired set"):
        load_paired_set(tmp_path)
    # an unreadable file drops its pair, with a warning, not the set
    (tmp_path / "set" / "lq" / "00003.png").write_bytes(b"not a png")
    with pytest.warns(UserWarning, match="00003"):
        ps = load_paired_set(tmp_path / "set")
    assert ps.stems == ["00000", "00001", "00002", "00004"] and ps.manifest["skipped_unreadable"] == ["00003"]


# -- any-scale training (issue 14) ---------------------------------------------------------------
def test_random_downscale_draws_one_scale_per_batch_and_resize_restores_the_size():
    from facerestore.interfaces import DegradationBatch
    from facerestore.components import create

    hq = torch.rand(4, 3, 64, 64)
    occ = torch.zeros(4, 1, 64, 64)
    occ[:, :, 40:, 10:50] = 1
    down = create("degradation", "random_downscale", scale=[2.0, 8.0], identity_prob=0.0)
    back = create("degradation", "resize", size=64)
    sizes = set()
    for seed in range(6):
        b = DegradationBatch.from_hq(hq).replace(occlusion_hq=occ)
        b = down(b, torch.Generator().manual_seed(seed))
        side = b.lq.shape[-1]
        sizes.add(side)
        assert 8 <= side <= 32 and b.clean.shape == b.lq.shape and b.occlusion.shape[-1] == side
        r = b.extras["random_downscale.scale"]
        assert r.shape == (4,) and torch.allclose(r, torch.full((4,), 64 / side))
        b = back(b, torch.Generator())
        assert b.lq.shape == (4, 3, 64, 64) and torch.equal(b.occlusion, occ)
    assert len(sizes) > 1  # the factor changes from batch to batch
    again = down(DegradationBatch.from_hq(hq), torch.Generator().manual_seed(0))
    first = down(DegradationBatch.from_hq(hq), torch.Generator().manual_seed(0))
    assert torch.equal(again.lq, first.lq)  # seeded


def test_random_downscale_identity_keeps_the_input():
    from facerestore.interfaces import DegradationBatch
    from facerestore.components import create

    hq = torch.rand(2, 3, 32, 32)
    b = create("degradation", "random_downscale", identity_prob=1.0)(DegradationBatch.from_hq(hq), torch.Generator())
    assert torch.equal(b.lq, hq) and float(b.extras["random_downscale.scale"][0]) == 1.0


def test_keep_sharp_gives_back_the_masked_face_without_corruptions():
    chain = [{"type": "random_mask", "template_prob": 0.0, "p": 1.0},
             {"type": "random_downscale", "scale": [4.0, 4.0], "identity_prob": 0.0},
             {"type": "gaussian_noise", "sigma": [0.05, 0.05]}, {"type": "resize", "size": S}]
    hq = faces(4)
    corrupt = run(chain, hq, seed=1)
    sharp = run(chain + [{"type": "keep_sharp", "p": 1.0}], hq, seed=1)
    covered = sharp.occlusion_hq > 0.5
    assert torch.equal(sharp.clean, hq) and torch.equal(sharp.occlusion, corrupt.occlusion)
    assert torch.equal(sharp.lq.masked_select(~covered.expand_as(hq)), hq.masked_select(~covered.expand_as(hq)))
    assert covered.any() and not torch.equal(sharp.lq, hq)  # the mask stays
    assert (corrupt.lq - hq).abs().mean() > 0.01
    assert torch.equal(sharp.extras["random_downscale.scale"], torch.ones(4))
    # without a mask in the chain the input is the clean face; p = 0 changes nothing
    assert torch.equal(run([{"type": "gaussian_noise"}, {"type": "keep_sharp", "p": 1.0}], hq).lq, hq)
    none = run(chain + [{"type": "keep_sharp", "p": 0.0}], hq, seed=1)
    assert torch.equal(none.lq, corrupt.lq)


@pytest.mark.parametrize("chain", [
    JDSR,
    [{"type": "gaussian_blur", "anisotropic": 0.5, "p": 0.5}, {"type": "downscale", "scale": 3, "mode": "random"}],
    [{"type": "gaussian_blur"}, {"type": "random_downscale", "identity_prob": 0.5}, {"type": "resize", "size": S}],
    [{"type": "gaussian_blur", "p": 0.0}, {"type": "gaussian_blur"}, {"type": "downscale", "scale": 2}],
])
def test_fused_blur_and_downscale_equal_the_steps_one_by_one(chain):
    """degrade_batch multiplies consecutive linear steps' matrices; the result is the same as
    applying each step on its own (the issue's bound: 1e-4)."""
    from facerestore.interfaces import DegradationBatch

    hq = faces(6)
    for seed in range(3):
        fused = run(chain, hq, seed=seed)
        batch, g = DegradationBatch.from_hq(hq), make_generator(seed, "cpu")
        for step in build_pipeline(chain):
            batch = step(batch, g)
        for key in ("lq", "clean", "occlusion"):
            torch.testing.assert_close(getattr(fused, key), getattr(batch, key), rtol=0, atol=1e-5)
        assert fused.extras.keys() == batch.extras.keys()


@pytest.mark.parametrize("mode", ["bicubic", "bilinear", "area"])
def test_downscale_matrices_are_interpolate(mode):
    import torch.nn.functional as F

    hq = faces(3)
    out = run([{"type": "downscale", "scale": 3, "mode": mode}], hq)
    kw = {} if mode == "area" else {"align_corners": False, "antialias": True}
    ref = F.interpolate(hq, size=(S // 3, S // 3), mode=mode, **kw).clamp(0, 1)
    torch.testing.assert_close(out.lq, ref, rtol=0, atol=1e-5)


def test_blur_matrices_are_a_reflect_padded_gaussian_convolution():
    import math

    from facerestore_plugins.degradation_resample import _filter_per_sample

    hq = faces(3)
    out = run([{"type": "gaussian_blur", "sigma": [0.5, 2.0]}], hq, seed=4)
    sig = out.extras["gaussian_blur.sigma_x"]
    r = math.ceil(3 * float(sig.max()))
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k1 = torch.exp(-0.5 * (t / sig[:, None]) ** 2)
    k1 = k1 / k1.sum(1, keepdim=True)
    ref = _filter_per_sample(hq, k1[:, :, None] * k1[:, None, :])
    torch.testing.assert_close(out.lq, ref, rtol=0, atol=1e-5)


def test_linear_map_drops_subnormal_weights_and_keeps_the_result(monkeypatch):
    """Blur tails (~1e-22) multiplied by each other when blur and downscale are fused are
    subnormal (slow on x86): ``apply`` zeroes weights below 1e-12 and the result stays that of
    the exact float64 product."""
    import facerestore.interfaces as interfaces
    from facerestore.interfaces import DegradationBatch, _drop_tiny

    blur, down = build_pipeline([{"type": "gaussian_blur", "sigma": [0.2, 1.5]}, {"type": "downscale", "scale": 4}])
    hq = faces(8)  # one wide kernel sets the band for all: the narrow ones get long tails
    batch, g = DegradationBatch.from_hq(hq), make_generator(0, "cpu")
    op = blur.linear(batch, g).then(down.linear(batch, g))
    tiny = torch.finfo(torch.float32).tiny
    assert ((op.my.abs() < tiny) & (op.my != 0)).any()  # the case this is about
    dropped = _drop_tiny(op.my)
    assert not ((dropped.abs() < 1e-12) & (dropped != 0)).any()
    assert torch.equal(dropped[op.my.abs() >= 1e-12], op.my[op.my.abs() >= 1e-12])
    seen = []
    monkeypatch.setattr(interfaces, "_drop_tiny", lambda m: seen.append(m) or _drop_tiny(m))
    lq = op.apply(batch).lq
    assert len(seen) == 2 and torch.equal(seen[0], op.my)  # apply multiplies the dropped matrices
    exact = op.my.double().unsqueeze(1) @ hq.double() @ op.mx.double().transpose(1, 2).unsqueeze(1)
    torch.testing.assert_close(lq.double(), exact.clamp(0, 1), rtol=0, atol=1e-6)
