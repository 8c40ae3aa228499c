"""Degradations that move pixels, on ``lq`` and ``clean`` with the same per-sample parameters (so
the denoising target stays aligned with the input): Gaussian and motion blur, downscale (fixed or
random factor) and resize, the linear ones as per-sample matrices (:class:`LinearMap`).
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from facerestore.errors import RecipeError
from facerestore.interfaces import Degradation, DegradationBatch, LinearMap

from .degradation_random import Range, bernoulli, check_prob, check_range, record, select, uniform


def _filter_per_sample(x: Tensor, kernel: Tensor) -> Tensor:
    """Correlate each sample of ``x`` (B, C, H, W) with its own ``kernel`` (B, kh, kw), reflect padding."""
    b, c, h, w = x.shape
    kh, kw = kernel.shape[-2:]
    ph, pw = kh // 2, kw // 2
    mode = "reflect" if (h > ph and w > pw) else "replicate"
    xp = F.pad(x, (pw, pw, ph, ph), mode=mode)
    weight = kernel.to(x.dtype).repeat_interleave(c, 0).unsqueeze(1)  # (B*C, 1, kh, kw)
    out = F.conv2d(xp.reshape(1, b * c, h + 2 * ph, w + 2 * pw), weight, groups=b * c)
    return out.view(b, c, h, w)


def _band_matrix(kernel: Tensor, n: int) -> Tensor:
    """(B, k) centred 1-D kernels -> (B, n, n) matrices ``M`` with ``(M @ x)[i] = sum_t k[t] x[i+t-r]``,
    reflect padding folded into the matrix."""
    b, k = kernel.shape
    r = k // 2
    j = torch.arange(n, device=kernel.device).view(n, 1) + torch.arange(k, device=kernel.device).view(1, k) - r
    if n > 1:
        period = 2 * (n - 1)
        j = j.remainder(period)
        j = torch.where(j >= n, period - j, j)
    else:
        j = torch.zeros_like(j)
    m = kernel.new_zeros(b, n, n)
    return m.scatter_add_(2, j.unsqueeze(0).expand(b, -1, -1), kernel.unsqueeze(1).expand(-1, n, -1))


def _both(batch: DegradationBatch, fn) -> tuple[Tensor, Tensor]:
    """Apply the same per-sample operation to ``lq`` and ``clean`` in one call."""
    stacked = fn(torch.cat([batch.lq, batch.clean], 1))
    return stacked[:, :3], stacked[:, 3:]


# --------------------------------------------------------------------------------------------
# Blur
# --------------------------------------------------------------------------------------------
class GaussianBlur(Degradation):
    """Gaussian blur with a per-sample sigma (HQ pixels), optionally anisotropic, on lq and clean."""

    def __init__(self, sigma: Range = (0.2, 1.5), anisotropic: float = 0.0, p: float = 1.0):
        """``anisotropic``: probability that a sample gets independent sigmas along x and y."""
        self.sigma = check_range("sigma", sigma, 0.0, 20.0)
        self.anisotropic = check_prob("anisotropic", anisotropic)
        self.p = check_prob("p", p)

    def __call__(self, batch: DegradationBatch, generator: torch.Generator) -> DegradationBatch:
        return self.linear(batch, generator).apply(batch)

    def linear(self, batch: DegradationBatch, generator: torch.Generator) -> LinearMap:
        """Per-sample banded matrices (reflect padding folded in); identity where not applied."""
        b, dev = batch.lq.shape[0], batch.lq.device
        h, w = batch.lq.shape[-2:]
        applied = bernoulli(generator, b, self.p, dev)
        sx = uniform(generator, b, self.sigma, dev)
        sy_free = uniform(generator, b, self.sigma, dev)
        aniso = bernoulli(generator, b, self.anisotropic, dev)
        sy = torch.where(aniso, sy_free, sx)
        extras = record(batch, "gaussian_blur", applied, sigma_x=sx, sigma_y=sy)
        finish = lambda out: out.replace(extras=extras)  # noqa: E731
        if not bool(applied.any()) or self.sigma[1] <= 0:
            return LinearMap(_eye(b, h, dev), _eye(b, w, dev), False, finish)
        radius = max(1, min(math.ceil(3.0 * float(torch.maximum(sx, sy).max())), (min(h, w) - 1) // 2))
        t = torch.arange(-radius, radius + 1, device=dev, dtype=torch.float32)

        def kernel(s: Tensor) -> Tensor:
            k = torch.exp(-0.5 * (t / s.clamp_min(1e-3).unsqueeze(1)) ** 2)
            return k / k.sum(1, keepdim=True)

        my = select(applied, _band_matrix(kernel(sy), h), _eye(b, h, dev))
        mx = select(applied, _band_matrix(kernel(sx), w), _eye(b, w, dev))
        return LinearMap(my, mx, False, finish)


class MotionBlur(Degradation):
    """Linear motion blur: per-sample length (pixels) and angle (degrees), on lq and clean."""

    def __init__(self, length: Range = (3.0, 9.0), angle: Range = (0.0, 180.0), p: float = 1.0):
        self.length = check_range("length", length, 1.0, 64.0)
        self.angle = check_range("angle", angle, -360.0, 360.0)
        self.p = check_prob("p", p)

    def __call__(self, batch: DegradationBatch, generator: torch.Generator) -> DegradationBatch:
        b, dev = batch.lq.shape[0], batch.lq.device
        applied = bernoulli(generator, b, self.p, dev)
        length = uniform(generator, b, self.length, dev)
        angle = uniform(generator, b, self.angle, dev)
        extras = record(batch, "motion_blur", applied, length=length, angle=angle)
        if not bool(applied.any()):
            return batch.replace(extras=extras)
        h, w = batch.lq.shape[-2:]
        radius = max(1, min(math.ceil(float(length.max()) / 2), (min(h, w) - 1) // 2))
        t = torch.arange(-radius, radius + 1, device=dev, dtype=torch.float32)
        yy, xx = torch.meshgrid(t, t, indexing="ij")
        theta = torch.deg2rad(angle).view(b, 1, 1)
        dx, dy = torch.cos(theta), torch.sin(theta)
        along = xx * dx + yy * dy  # signed distance along the motion direction
        across = (-xx * dy + yy * dx).abs()
        half = (length / 2).view(b, 1, 1)
        # anti-aliased segment: 1 inside, linear fall-off over one pixel at the ends and sides
        k = (1 - across).clamp(0, 1) * (half + 0.5 - along.abs()).clamp(0, 1)
        k = k / k.sum((1, 2), keepdim=True).clamp_min(1e-6)
        lq, clean = _both(batch, lambda x: _filter_per_sample(x, k))
        return batch.replace(lq=select(applied, lq, batch.lq), clean=select(applied, clean, batch.clean),
                             extras=extras)


# --------------------------------------------------------------------------------------------
# Downscale
# --------------------------------------------------------------------------------------------
_MODES = ("bicubic", "area", "bilinear")


class Downscale(Degradation):
    """Resize lq and clean to 1/scale (bicubic/area/bilinear, or a random one per sample); the
    occlusion map becomes the area-averaged mask coverage at the new size."""

    def __init__(self, scale: int = 4, mode: Literal["bicubic", "area", "bilinear", "random"] = "bicubic",
                 antialias: bool = True):
        if scale < 1:
            raise RecipeError("scale", f"must be >= 1, got {scale}")
        self.scale, self.mode, self.antialias = scale, mode, antialias

    def __call__(self, batch: DegradationBatch, generator: torch.Generator) -> DegradationBatch:
        return self.linear(batch, generator).apply(batch)

    def linear(self, batch: DegradationBatch, generator: torch.Generator) -> LinearMap:
        h, w = batch.lq.shape[-2:]
        return self.resize_map(batch, (max(1, h // self.scale), max(1, w // self.scale)), generator)

    def resize_map(self, batch: DegradationBatch, size: tuple[int, int], generator: torch.Generator) -> LinearMap:
        """Resizing to ``size`` as per-sample matrices: ``F.interpolate``'s own weights (read off
        by resizing an identity), one of three modes per sample when ``mode = "random"``."""
        b, dev = batch.lq.shape[0], batch.lq.device
        (h, w), (oh, ow) = batch.lq.shape[-2:], size
        mode_id = torch.randint(0, len(_MODES), (b,), generator=generator, device=dev)
        if self.mode != "random":
            mode_id = torch.full_like(mode_id, _MODES.index(self.mode))
        my = torch.stack([_resample_matrix(h, oh, m, self.antialias, dev) for m in _MODES])[mode_id]
        mx = torch.stack([_resample_matrix(w, ow, m, self.antialias, dev) for m in _MODES])[mode_id]
        extras = dict(batch.extras)
        extras["downscale.mode"] = mode_id

        def finish(out: DegradationBatch) -> DegradationBatch:
            occ = F.interpolate(batch.occlusion_hq, size=size, mode="area")
            return out.replace(occlusion=occ, extras={**out.extras, "downscale.mode": mode_id})

        return LinearMap(my, mx, True, finish)


def _eye(b: int, n: int, device: torch.device) -> Tensor:
    return torch.eye(n, device=device).expand(b, n, n)


@functools.lru_cache(maxsize=64)
def _resample_matrix(n: int, m: int, mode: str, antialias: bool, device: torch.device) -> Tensor:
    """(m, n): resizing a length-``n`` signal to ``m`` samples the way ``F.interpolate`` does
    (bicubic/bilinear with ``align_corners=False``, area = adaptive average pooling)."""
    eye = torch.eye(n, device=device)[None, None]  # resize along the first axis only
    if mode == "area":
        out = F.interpolate(eye, size=(m, n), mode="area")
    else:
        out = F.interpolate(eye, size=(m, n), mode=mode, align_corners=False, antialias=antialias)
    return out[0, 0]


class RandomDownscale(Downscale):
    """Downscale lq and clean by a random factor r, one r per batch (so the batch stays one tensor
    and the later steps, noise and JPEG, act at the low resolution as they do in real photos).

    r is drawn log-uniformly from ``scale`` = [low, high]; with probability ``identity_prob`` it is
    exactly 1 (the face is left at full resolution: sharp input must stay sharp). The output side
    is ``round(H / r)``. Follow with ``resize`` to bring the batch back to the working size.
    """

    def __init__(self, scale: Range = (1.0, 8.0), identity_prob: float = 0.25,
                 mode: Literal["bicubic", "area", "bilinear", "random"] = "random", antialias: bool = True):
        super().__init__(1, mode, antialias)
        self.range = check_range("scale", scale, 1.0, 64.0)
        self.identity_prob = check_prob("identity_prob", identity_prob)

    def linear(self, batch: DegradationBatch, generator: torch.Generator) -> LinearMap:
        b, dev = batch.lq.shape[0], batch.lq.device
        keep = bool(bernoulli(generator, 1, self.identity_prob, dev)[0])
        log_r = uniform(generator, 1, (math.log(self.range[0]), math.log(self.range[1])), dev)
        r = 1.0 if keep else float(log_r.exp()[0])
        h, w = batch.lq.shape[-2:]
        size = (max(1, round(h / r)), max(1, round(w / r)))
        scale = torch.full((b,), h / size[0], device=dev)
        if size == (h, w):
            op = LinearMap(_eye(b, h, dev), _eye(b, w, dev), False, lambda out: out)
        else:
            op = self.resize_map(batch, size, generator)
        done = op.finish
        op.finish = lambda out: (o := done(out)).replace(extras={**o.extras, "random_downscale.scale": scale})
        return op


class Resize(Degradation):
    """Resize lq and clean to ``size`` x ``size`` (the model's working size), after a downscale:
    the input a restorer gets when it upsamples a small face before the network. The occlusion map
    is taken from the HQ mask at that size."""

    def __init__(self, size: int = 128, mode: Literal["bicubic", "bilinear"] = "bicubic"):
        if size < 8:
            raise RecipeError("size", f"must be >= 8, got {size}")
        self.size, self.mode = size, mode

    def __call__(self, batch: DegradationBatch, generator: torch.Generator) -> DegradationBatch:
        size = (self.size, self.size)
        both = torch.cat([batch.lq, batch.clean], 1)
        if both.shape[-2:] != size:
            both = F.interpolate(both, size=size, mode=self.mode, align_corners=False).clamp(0, 1)
        occ = batch.occlusion_hq
        if occ.shape[-2:] != size:
            occ = F.interpolate(occ, size=size, mode="area" if occ.shape[-1] > self.size else "bilinear")
        return batch.replace(lq=both[:, :3].contiguous(), clean=both[:, 3:].contiguous(), occlusion=occ)
