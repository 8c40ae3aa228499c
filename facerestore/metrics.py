"""Pixel and structural metrics for restored faces (batched torch, any device), and speed.

Every function takes ``(B, 3, H, W)`` float tensors in ``[0, 1]`` (RGB) and returns one value per
image, ``(B,)``; :mod:`facerestore.evaluate` averages them over a set. The exact definitions are
in the docstrings and in ``docs/metrics.md``; the pixel metrics are checked against
``skimage.metrics`` in ``tests/test_metrics.py``. Metrics that need a pretrained network (LPIPS,
FD-VGG16, identity, landmarks) are in :mod:`facerestore.network_metrics`.
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
    "rgb_to_y",
    "mse",
    "psnr",
    "psnr_y",
    "masked_psnr",
    "ssim",
    "ssim_y",
    "gaussian_window",
    "faces_per_second",
]


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
    check_pair(pred, target)
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
    check_pair(pred, target)
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


def check_pair(pred: Tensor, target: Tensor) -> None:
    if pred.shape != target.shape or pred.dim() != 4:
        raise ValueError(f"expected two (B, C, H, W) tensors of one shape, got {tuple(pred.shape)} "
                         f"and {tuple(target.shape)}")


def _check_rgb(x: Tensor) -> None:
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"expected (B, 3, H, W) RGB, got {tuple(x.shape)}")


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
