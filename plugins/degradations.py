"""Built-in degradations: lighting, blur, downscale, noise and JPEG, batched on the batch's device.

Every step draws its random parameters per sample from the ``torch.Generator`` it is given, from
``[low, high]`` ranges set in the recipe, and applies them to the whole batch at once (grouped
convolutions, per-sample kernels, per-sample JPEG quality): no Python loop over the images.
``p`` is the per-sample probability that a step is applied at all.

Geometry-changing steps (blur, downscale) transform ``lq`` and ``clean`` with the same per-sample
parameters, so the denoising target stays aligned with the input; corruptions (noise, JPEG) touch
``lq`` only. ``photometric`` and ``misalign`` (first in a chain) change the face itself: ``hq``,
``lq`` and ``clean`` alike. Each step records the parameters it drew in ``batch.extras`` (``"<name>.<param>"``,
NaN where the step was skipped) so tests and users can check them.
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from facerestore.errors import FaceRestoreError, RecipeError
from facerestore.interfaces import Degradation, DegradationBatch, LinearMap
from facerestore.io import LUMA, luma

Range = tuple[float, float]


# --------------------------------------------------------------------------------------------
# Random helpers shared with masks.py
# --------------------------------------------------------------------------------------------
def check_range(name: str, value: Range, lo: float = -math.inf, hi: float = math.inf) -> tuple[float, float]:
    """Validate a ``[low, high]`` recipe range (reported with the parameter's name)."""
    a, b = float(value[0]), float(value[1])
    if not a <= b:
        raise RecipeError(name, f"expected [low, high] with low <= high, got [{a}, {b}]")
    if a < lo or b > hi:
        raise RecipeError(name, f"values must lie in [{lo}, {hi}], got [{a}, {b}]")
    return a, b


def check_prob(name: str, p: float) -> float:
    if not 0.0 <= p <= 1.0:
        raise RecipeError(name, f"a probability must be in [0, 1], got {p}")
    return float(p)


def uniform(generator: torch.Generator, n: int, rng: Range, device: torch.device) -> Tensor:
    """``n`` samples of U(low, high) as float32 on ``device``, from ``generator``."""
    u = torch.rand(n, generator=generator, device=device)
    return rng[0] + (rng[1] - rng[0]) * u


def bernoulli(generator: torch.Generator, n: int, p: float, device: torch.device) -> Tensor:
    """``n`` booleans, each True with probability ``p`` (always draws, so the stream stays aligned)."""
    return torch.rand(n, generator=generator, device=device) < p


def _select(mask: Tensor, new: Tensor, old: Tensor) -> Tensor:
    """Per-sample choice between two batches: ``new`` where ``mask`` (B,) is True."""
    if bool(mask.all()):
        return new
    return torch.where(mask.view(-1, *([1] * (new.dim() - 1))), new, old)


def _record(batch: DegradationBatch, name: str, applied: Tensor, **values: Tensor) -> dict:
    extras = dict(batch.extras)
    for key, v in values.items():
        extras[f"{name}.{key}"] = torch.where(applied, v.float(), torch.full_like(v.float(), math.nan))
    return extras


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
# The face itself: lighting, colour, framing (hq, lq and clean alike; first in a chain)
# --------------------------------------------------------------------------------------------
def _require_first(batch: DegradationBatch, name: str) -> None:
    """Steps that change the face itself (lighting, framing) must see it as read: after a mask or
    a blur they would recolour or move the mask and miss ``keep_sharp``'s copy of the masked face."""
    if not (torch.equal(batch.lq, batch.hq) and torch.equal(batch.clean, batch.hq)):
        raise FaceRestoreError(f"the {name} degradation must come first in the chain (before masks, blur, "
                               "noise): it changes the face itself, which every later step must see")


#: RGB -> YIQ (luma first) and back, computed once in float64
_TO_YIQ = torch.tensor([list(LUMA), [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=torch.float64)
_FROM_YIQ = torch.linalg.inv(_TO_YIQ)


def _rotate_hue(x: Tensor, turns: Tensor) -> Tensor:
    """Rotate the chroma of (B, 3, H, W) RGB by ``turns`` (B,) of a full circle, luminance kept
    (a rotation in YIQ's I-Q plane: one 3x3 matrix per sample, no HSV round trip)."""
    a = turns.double().cpu() * 2 * math.pi
    c, s, one, zero = a.cos(), a.sin(), torch.ones_like(a), torch.zeros_like(a)
    rot = torch.stack([one, zero, zero, zero, c, -s, zero, s, c], 1).view(-1, 3, 3)
    m = (_FROM_YIQ @ rot @ _TO_YIQ).to(device=x.device, dtype=x.dtype)  # (B, 3, 3)
    return torch.einsum("bij,bjhw->bihw", m, x)


class Photometric(Degradation):
    """Exposure, gamma, contrast, saturation, hue and greyscale of the face itself: a dark, pale,
    tinted or black-and-white photo, with its ground truth alike (an augmentation: with
    ``misalign``, the steps that change ``hq``). Put it first, so that every later step sees the changed face; a mask
    drawn after it keeps its own colours.

    Real photos are darker, greyer and more tinted than CelebA's portraits, and a model that never
    saw a dark face takes a black mask on one for shadow (``rmfd_dev``). Per sample with
    probability ``p``: ``gain`` (multiplies), ``gamma`` (``x ** gamma``), ``contrast`` and
    ``saturation`` (about the luminance mean / the pixel's own luminance, 1 = unchanged), ``hue``
    (turns of the colour circle), then grey with probability ``gray_prob``."""

    def __init__(self, gain: Range = (0.5, 1.2), gamma: Range = (0.8, 1.4), contrast: Range = (0.7, 1.2),
                 saturation: Range = (0.4, 1.3), hue: Range = (-0.04, 0.04), gray_prob: float = 0.1,
                 p: float = 0.3):
        self.gain = check_range("gain", gain, 0.0, 4.0)
        self.gamma = check_range("gamma", gamma, 0.1, 10.0)
        self.contrast = check_range("contrast", contrast, 0.0, 4.0)
        self.saturation = check_range("saturation", saturation, 0.0, 4.0)
        self.hue = check_range("hue", hue, -0.5, 0.5)
        self.gray_prob = check_prob("gray_prob", gray_prob)
        self.p = check_prob("p", p)

    def __call__(self, batch: DegradationBatch, generator: torch.Generator) -> DegradationBatch:
        _require_first(batch, "photometric")
        b, dev = batch.hq.shape[0], batch.hq.device
        applied = bernoulli(generator, b, self.p, dev)
        draws = {k: uniform(generator, b, getattr(self, k), dev)
                 for k in ("gain", "gamma", "contrast", "saturation", "hue")}
        gray = bernoulli(generator, b, self.gray_prob, dev) & applied
        extras = _record(batch, "photometric", applied, **draws, gray=gray)
        if not bool(applied.any()):
            return batch.replace(extras=extras)
        v = {k: t.view(-1, 1, 1, 1) for k, t in draws.items()}

        x = batch.hq  # lq and clean are the same face (_require_first): changed once, copied
        y = (x.float().clamp(0, 1) * v["gain"]).clamp(0, 1) ** v["gamma"]
        mean = luma(y).mean((2, 3), keepdim=True)
        y = mean + v["contrast"] * (y - mean)
        y = _rotate_hue(luma(y) + v["saturation"] * (y - luma(y)), draws["hue"])
        y = torch.where(gray.view(-1, 1, 1, 1), luma(y).expand_as(y), y)
        face = _select(applied, y.clamp(0, 1).to(x.dtype), x)
        return batch.replace(hq=face, lq=face.clone(), clean=face.clone(), extras=extras)


class Misalign(Degradation):
    """The face framed a little off the template: per sample with probability ``p``, a rotation
    (degrees in ``angle``), a scale (log-uniform in ``scale``) and a shift (fractions of the size
    in ``shift``) about the crop's centre; ``hq``, ``lq``, ``clean`` and the landmarks alike
    (the template's when the batch has none), so a later mask still sits on the face. Put it first.

    Real crops are aligned from detected landmarks, which are off on turned, small and masked
    faces; a model that only saw CelebA's exact framing meets that on every such face."""

    def __init__(self, angle: Range = (-10.0, 10.0), scale: Range = (0.92, 1.08), shift: Range = (-0.04, 0.04),
                 p: float = 0.3):
        self.angle = check_range("angle", angle, -90.0, 90.0)
        self.scale = check_range("scale", scale, 0.5, 2.0)
        self.shift = check_range("shift", shift, -0.25, 0.25)
        self.p = check_prob("p", p)

    def __call__(self, batch: DegradationBatch, generator: torch.Generator) -> DegradationBatch:
        from facerestore.align import warp_affine
        from facerestore.landmarks import template_landmarks

        _require_first(batch, "misalign")
        b, _, h, w = batch.hq.shape
        dev = batch.hq.device
        applied = bernoulli(generator, b, self.p, dev)
        angle = uniform(generator, b, self.angle, dev)
        scale = uniform(generator, b, (math.log(self.scale[0]), math.log(self.scale[1])), dev).exp()
        dx, dy = (uniform(generator, b, self.shift, dev) * size for size in (w, h))
        extras = _record(batch, "misalign", applied, angle=angle, scale=scale, dx=dx, dy=dy)
        if not bool(applied.any()):
            return batch.replace(extras=extras)
        a = torch.where(applied, angle, 0.0) * math.pi / 180
        s = torch.where(applied, scale, 1.0)
        c, sn = s * a.cos(), s * a.sin()
        cx, cy = (w - 1) / 2, (h - 1) / 2
        tx = cx - c * cx + sn * cy + torch.where(applied, dx, 0.0)
        ty = cy - sn * cx - c * cy + torch.where(applied, dy, 0.0)
        m = torch.stack([torch.stack([c, -sn, tx], 1), torch.stack([sn, c, ty], 1)], 1)  # (B, 2, 3) src -> dst
        face = warp_affine(batch.hq, m, (h, w), padding_mode="reflection").clamp(0, 1)
        lm = batch.landmarks if batch.landmarks is not None else template_landmarks(min(h, w), b, dev)
        lm = lm.to(m) @ m[:, :, :2].transpose(1, 2) + m[:, :, 2].unsqueeze(1)
        return batch.replace(hq=face, lq=face.clone(), clean=face.clone(), landmarks=lm, extras=extras)


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
        extras = _record(batch, "gaussian_blur", applied, sigma_x=sx, sigma_y=sy)
        finish = lambda out: out.replace(extras=extras)  # noqa: E731
        if not bool(applied.any()) or self.sigma[1] <= 0:
            return LinearMap(_eye(b, h, dev), _eye(b, w, dev), False, finish)
        radius = max(1, min(math.ceil(3.0 * float(torch.maximum(sx, sy).max())), (min(h, w) - 1) // 2))
        t = torch.arange(-radius, radius + 1, device=dev, dtype=torch.float32)

        def kernel(s: Tensor) -> Tensor:
            k = torch.exp(-0.5 * (t / s.clamp_min(1e-3).unsqueeze(1)) ** 2)
            return k / k.sum(1, keepdim=True)

        my = _select(applied, _band_matrix(kernel(sy), h), _eye(b, h, dev))
        mx = _select(applied, _band_matrix(kernel(sx), w), _eye(b, w, dev))
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
        extras = _record(batch, "motion_blur", applied, length=length, angle=angle)
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
        return batch.replace(lq=_select(applied, lq, batch.lq), clean=_select(applied, clean, batch.clean),
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


# --------------------------------------------------------------------------------------------
# Noise and JPEG (lq only)
# --------------------------------------------------------------------------------------------
class GaussianNoise(Degradation):
    """Additive Gaussian noise on lq: per-sample sigma (0..1 intensity), colour or grey."""

    def __init__(self, sigma: Range = (0.0, 0.05), gray_prob: float = 0.4, p: float = 1.0):
        self.sigma = check_range("sigma", sigma, 0.0, 1.0)
        self.gray_prob = check_prob("gray_prob", gray_prob)
        self.p = check_prob("p", p)

    def __call__(self, batch: DegradationBatch, generator: torch.Generator) -> DegradationBatch:
        x = batch.lq
        b, dev = x.shape[0], x.device
        applied = bernoulli(generator, b, self.p, dev)
        sigma = uniform(generator, b, self.sigma, dev)
        gray = bernoulli(generator, b, self.gray_prob, dev)
        noise = torch.randn(x.shape, generator=generator, device=dev, dtype=x.dtype)
        noise = torch.where(gray.view(-1, 1, 1, 1), noise[:, :1].expand_as(noise), noise)
        scale = torch.where(applied, sigma, torch.zeros_like(sigma)).view(-1, 1, 1, 1)
        return batch.replace(lq=(x + noise * scale).clamp(0, 1),
                             extras=_record(batch, "gaussian_noise", applied, sigma=sigma, gray=gray))


class PoissonNoise(Degradation):
    """Shot noise on lq: Poisson photon counts with a per-sample peak (counts at white)."""

    def __init__(self, peak: Range = (20.0, 300.0), gray_prob: float = 0.4, p: float = 1.0):
        """Lower ``peak`` = noisier; the peak is drawn log-uniformly from the range."""
        self.peak = check_range("peak", peak, 1.0, 1e6)
        self.gray_prob = check_prob("gray_prob", gray_prob)
        self.p = check_prob("p", p)

    def __call__(self, batch: DegradationBatch, generator: torch.Generator) -> DegradationBatch:
        x = batch.lq
        b, dev = x.shape[0], x.device
        applied = bernoulli(generator, b, self.p, dev)
        logpeak = uniform(generator, b, (math.log(self.peak[0]), math.log(self.peak[1])), dev)
        peak = logpeak.exp()
        gray = bernoulli(generator, b, self.gray_prob, dev)
        pk = peak.view(-1, 1, 1, 1)
        noisy = torch.poisson(x.clamp(0, 1) * pk, generator=generator) / pk
        noise = noisy - x
        # grey shot noise: the luminance noise added to every channel
        lum = luma(noise)
        noise = torch.where(gray.view(-1, 1, 1, 1), lum.expand_as(noise), noise)
        out = (x + noise).clamp(0, 1)
        return batch.replace(lq=_select(applied, out, x),
                             extras=_record(batch, "poisson_noise", applied, peak=peak, gray=gray))


class Jpeg(Degradation):
    """JPEG compression of lq with a per-sample quality (kornia's differentiable codec)."""

    def __init__(self, quality: Range = (30.0, 95.0), p: float = 1.0):
        self.quality = check_range("quality", quality, 1.0, 100.0)
        self.p = check_prob("p", p)

    def __call__(self, batch: DegradationBatch, generator: torch.Generator) -> DegradationBatch:
        from kornia.enhance import jpeg_codec_differentiable

        x = batch.lq
        b, dev = x.shape[0], x.device
        applied = bernoulli(generator, b, self.p, dev)
        quality = uniform(generator, b, self.quality, dev).round()
        extras = _record(batch, "jpeg", applied, quality=quality)
        if not bool(applied.any()):
            return batch.replace(extras=extras)
        idx = applied.nonzero().squeeze(1)
        with torch.no_grad():
            coded = jpeg_codec_differentiable(x[idx].clamp(0, 1), quality[idx]).clamp(0, 1)
        out = x.clone() if idx.numel() < b else coded
        if idx.numel() < b:
            out[idx] = coded
        return batch.replace(lq=out, extras=extras)


class KeepSharp(Degradation):
    """With probability ``p`` per sample, undo every corruption after the mask: the input is the
    masked face (or the clean one when no mask was drawn) at the current size, ``clean`` the HQ face.

    Put it last. A chain of independent ``p``s rarely leaves a face untouched (0.5 % of samples in
    masked_any without it), yet a model for real photos must return a sharp, visible face as it came
    in; this makes that case a fixed share of training."""

    def __init__(self, p: float = 0.15):
        self.p = check_prob("p", p)

    def __call__(self, batch: DegradationBatch, generator: torch.Generator) -> DegradationBatch:
        b, dev = batch.lq.shape[0], batch.lq.device
        applied = bernoulli(generator, b, self.p, dev)
        size = tuple(batch.lq.shape[-2:])
        sharp = torch.cat([batch.extras.get("masked", batch.hq), batch.hq], 1)
        if tuple(sharp.shape[-2:]) != size:
            mode = "area" if sharp.shape[-1] > size[1] else "bicubic"
            sharp = F.interpolate(sharp, size=size, mode=mode).clamp(0, 1)
        extras = dict(batch.extras)
        extras["keep_sharp.applied"] = applied
        if "random_downscale.scale" in extras:
            extras["random_downscale.scale"] = torch.where(applied, 1.0, extras["random_downscale.scale"])
        return batch.replace(lq=_select(applied, sharp[:, :3], batch.lq),
                             clean=_select(applied, sharp[:, 3:], batch.clean), extras=extras)


def register(registry) -> None:
    registry.register("degradation", "photometric", Photometric)
    registry.register("degradation", "misalign", Misalign)
    registry.register("degradation", "gaussian_blur", GaussianBlur)
    registry.register("degradation", "motion_blur", MotionBlur)
    registry.register("degradation", "downscale", Downscale)
    registry.register("degradation", "random_downscale", RandomDownscale)
    registry.register("degradation", "resize", Resize)
    registry.register("degradation", "gaussian_noise", GaussianNoise)
    registry.register("degradation", "poisson_noise", PoissonNoise)
    registry.register("degradation", "jpeg", Jpeg)
    registry.register("degradation", "keep_sharp", KeepSharp)
