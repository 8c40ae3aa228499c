"""Degradations that change the face itself, first in a chain: ``photometric`` (lighting, colour)
and ``misalign`` (framing), applied to ``hq``, ``lq`` and ``clean`` alike.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from facerestore.errors import FaceRestoreError
from facerestore.interfaces import Degradation, DegradationBatch
from facerestore.io import LUMA, luma

from .degradation_random import Range, bernoulli, check_prob, check_range, record, select, uniform


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
        extras = record(batch, "photometric", applied, **draws, gray=gray)
        if not bool(applied.any()):
            return batch.replace(extras=extras)
        v = {k: t.view(-1, 1, 1, 1) for k, t in draws.items()}

        x = batch.hq  # lq and clean are the same face (_require_first): changed once, copied
        y = (x.float().clamp(0, 1) * v["gain"]).clamp(0, 1) ** v["gamma"]
        mean = luma(y).mean((2, 3), keepdim=True)
        y = mean + v["contrast"] * (y - mean)
        y = _rotate_hue(luma(y) + v["saturation"] * (y - luma(y)), draws["hue"])
        y = torch.where(gray.view(-1, 1, 1, 1), luma(y).expand_as(y), y)
        face = select(applied, y.clamp(0, 1).to(x.dtype), x)
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
        extras = record(batch, "misalign", applied, angle=angle, scale=scale, dx=dx, dy=dy)
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
