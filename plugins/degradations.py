"""Built-in degradations, batched on the batch's device: noise, JPEG and ``keep_sharp`` (here), and
the registration of every degradation step but the masks (:mod:`.masks`).

* ``photometric``, ``misalign`` (:mod:`.degradation_face`): lighting, colour and framing of the
  face itself, first in a chain;
* ``gaussian_blur``, ``motion_blur``, ``downscale``, ``random_downscale``, ``resize``
  (:mod:`.degradation_resample`): blur and resampling;
* ``gaussian_noise``, ``poisson_noise``, ``jpeg``, ``keep_sharp``: this module.

Every step draws its random parameters per sample from the ``torch.Generator`` it is given, from
``[low, high]`` ranges set in the recipe (:mod:`.degradation_random`), and applies them to the
whole batch at once (grouped convolutions, per-sample kernels, per-sample JPEG quality): no Python
loop over the images. ``p`` is the per-sample probability that a step is applied at all.

Geometry-changing steps (blur, downscale) transform ``lq`` and ``clean`` with the same per-sample
parameters, so the denoising target stays aligned with the input; corruptions (noise, JPEG) touch
``lq`` only. ``photometric`` and ``misalign`` (first in a chain) change the face itself: ``hq``,
``lq`` and ``clean`` alike. Each step records the parameters it drew in ``batch.extras`` (``"<name>.<param>"``,
NaN where the step was skipped) so tests and users can check them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from facerestore.interfaces import Degradation, DegradationBatch
from facerestore.io import luma

from .degradation_face import Misalign, Photometric
from .degradation_random import Range, bernoulli, check_prob, check_range, record, select, uniform
from .degradation_resample import Downscale, GaussianBlur, MotionBlur, RandomDownscale, Resize


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
                             extras=record(batch, "gaussian_noise", applied, sigma=sigma, gray=gray))


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
        return batch.replace(lq=select(applied, out, x),
                             extras=record(batch, "poisson_noise", applied, peak=peak, gray=gray))


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
        extras = record(batch, "jpeg", applied, quality=quality)
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
        return batch.replace(lq=select(applied, sharp[:, :3], batch.lq),
                             clean=select(applied, sharp[:, 3:], batch.clean), extras=extras)


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
