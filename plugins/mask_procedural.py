"""Procedural face masks (``procedural_mask``): surgical (pleats, nose wire, ear loops), cloth
(seam, patterns), KN95 (folded, pointed) and N95 (cup) outlines as inequalities in mask
coordinates, with random colours, patterns (stripes, checks, dots, printed blobs) and shading,
rasterised batched on the batch's device. Placement: :mod:`.mask_placement`.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from facerestore.errors import RecipeError
from facerestore.interfaces import Degradation, DegradationBatch

from .degradation_random import Range, bernoulli, check_prob
from .mask_placement import Placement, composite, map_grid


#: Mask coordinates (u, v) of the six anchors a, b, c, d, e, f: u = -1..1 across the face, v = 0 at
#: the nose bridge, 1 at the chin.
CANONICAL = torch.tensor([[-1.0, 0.10], [0.0, 0.0], [1.0, 0.10], [-0.88, 0.72], [0.0, 1.0], [0.88, 0.72]])

PROCEDURAL_TYPES = ("surgical", "cloth", "kn95", "n95")
# Outline per type: top(u) = T0 + T1|u| + T2 u^2 + T3 (1 - sqrt(1-u^2)); bottom(u) likewise with
# minus signs; sides |u| <= S0 - S1 v.
_OUTLINE = torch.tensor([
    # T0     T1    T2    T3     B0     B1    B2    B3     S0    S1
    [0.00, 0.00, 0.10, 0.00, 1.00, 0.00, 0.30, 0.00, 1.00, 0.10],  # surgical
    [0.00, 0.05, 0.10, 0.00, 1.03, 0.00, 0.15, 0.15, 1.00, 0.08],  # cloth
    [0.00, 0.14, 0.00, 0.00, 1.05, 0.40, 0.00, 0.00, 1.00, 0.05],  # kn95
    [0.00, 0.10, 0.00, 0.40, 1.04, 0.00, 0.00, 0.50, 0.97, 0.00],  # n95
])
# Palettes (RGB) per type; cloth also draws free HSV colours.
_PALETTES = {
    "surgical": [(0.60, 0.78, 0.92), (0.48, 0.70, 0.90), (0.94, 0.95, 0.96), (0.62, 0.85, 0.78),
                 (0.96, 0.74, 0.80), (0.13, 0.13, 0.15), (0.62, 0.64, 0.67), (0.40, 0.62, 0.85)],
    "cloth": [(0.10, 0.10, 0.12), (0.20, 0.25, 0.45), (0.55, 0.10, 0.15), (0.85, 0.85, 0.82)],
    "kn95": [(0.95, 0.95, 0.95), (0.12, 0.12, 0.13), (0.80, 0.82, 0.86), (0.86, 0.80, 0.72),
             (0.95, 0.75, 0.80), (0.55, 0.70, 0.88)],
    "n95": [(0.93, 0.93, 0.90), (0.88, 0.86, 0.80), (0.60, 0.66, 0.74), (0.22, 0.22, 0.24),
            (0.96, 0.96, 0.97)],
}


# --------------------------------------------------------------------------------------------
# One mask type at a time: outline, ear loops, shading, pattern (all parameters drawn up front)
# --------------------------------------------------------------------------------------------
SURGICAL, CLOTH, KN95, N95 = range(4)
#: pleated band of a surgical mask, as fractions of the mask height below its top edge
PLEAT_BAND = (0.18, 0.80)
#: darkening of a pleat (ramp over the fold, extra at its crease) and of the nose-wire strip
PLEAT_SHADE, PLEAT_CREASE, NOSE_WIRE_SHADE = 0.16, 0.22, 0.10
#: darkening of a hemmed border and of a centre seam/fold (cloth, KN95); KN95's shaded half
HEM_SHADE, SEAM_SHADE, KN95_FOLD_SHADE, KN95_HALF_SHADE = 0.12, 0.28, 0.20, 0.10
#: ear loops beside the mask: vertical centre and half height (N95 straps are narrower)
LOOP_V, LOOP_RY, STRAP_RY = 0.42, 0.33, 0.25
#: N95 exhalation valve: centre (u, v), radius, colour
VALVE_UV, VALVE_R, VALVE_RGB = (0.42, 0.6), 0.16, (0.55, 0.57, 0.6)


@dataclasses.dataclass
class _Draws:
    """Per-sample random parameters of a batch of procedural masks, indexable by sample."""

    coef: Tensor
    base: Tensor
    second: Tensor
    pattern: Tensor
    p_angle: Tensor
    p_freq: Tensor
    p_duty: Tensor
    blobs: Tensor
    curv: Tensor
    light: Tensor
    light_dir: Tensor
    pleats: Tensor
    loop_kind: Tensor
    valve: Tensor
    kn_side: Tensor
    px_u: Tensor
    px_v: Tensor

    def select(self, idx: Tensor) -> "_Draws":
        return _Draws(**{f.name: getattr(self, f.name)[idx] for f in dataclasses.fields(self)})

    def per(self, name: str) -> Tensor:
        """A per-sample value, broadcastable against (m, 1, H, W) maps."""
        x = getattr(self, name)
        return x.view(x.shape[0], 1, 1, 1)


def _outline(t: int, u: Tensor, v: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """Top and bottom edges (mask units) of type ``t`` at ``u``: ``c`` (m, 10, 1, 1) outline coefficients."""
    au, u2 = u.abs(), u * u
    circ = 1 - torch.sqrt((1 - u2).clamp_min(0))
    if t == SURGICAL:  # straight pleated rectangle, slightly curved
        return c[:, 0:1] + c[:, 2:3] * u2, c[:, 4:5] - c[:, 6:7] * u2
    if t == CLOTH:  # rounded under the chin
        return c[:, 0:1] + c[:, 1:2] * au + c[:, 2:3] * u2, c[:, 4:5] - c[:, 6:7] * u2 - c[:, 7:8] * circ
    if t == KN95:  # pointed top and bottom
        return c[:, 0:1] + c[:, 1:2] * au, c[:, 4:5] - c[:, 5:6] * au
    return c[:, 0:1] + c[:, 1:2] * au + c[:, 3:4] * circ, c[:, 4:5] - c[:, 7:8] * circ  # N95 cup


def _loops(t: int, u: Tensor, v: Tensor, side: Tensor, c: Tensor, d: _Draws) -> Tensor:
    """Ear loops (head straps for N95): elliptic rings beside the mask, about a pixel wide."""
    au = u.abs()
    edge = c[:, 8:9] - c[:, 9:10] * 0.45
    rx = 0.16 + 0.1 * d.per("loop_kind")
    ry = STRAP_RY if t == N95 else LOOP_RY
    q = torch.sqrt(((au - edge) / rx) ** 2 + ((v - LOOP_V) / ry) ** 2)
    return ((q - 1).abs() * rx < 1.3 * d.per("px_u")) & (au > side) & (au - edge < rx * 1.05)


def _shading(t: int, u: Tensor, v: Tensor, top: Tensor, bot: Tensor, side: Tensor, d: _Draws) -> Tensor:
    """Brightness factor: cheeks turning away, directional light, then the type's folds and seams."""
    au, u2 = u.abs(), u * u
    dv = v - top
    ld = d.per("light_dir")
    shade = (1 - d.per("curv") * au * u2) * (1 + d.per("light") * (u * torch.cos(ld) + (v - 0.5) * torch.sin(ld)))
    if t != CLOTH:  # hemmed / heat-sealed border
        pv, pu = 1.6 * d.per("px_v"), 1.6 * d.per("px_u")
        shade = shade * (1 - HEM_SHADE * ((dv < pv) | (bot - v < pv) | (side - au < pu)).float())
    if t == SURGICAL:  # sawtooth pleats in the middle band, nose wire at the top
        lo, hi = PLEAT_BAND
        vn = dv / (bot - top).clamp_min(1e-3)
        f = torch.frac((vn - lo) * d.per("pleats") / (hi - lo) + 1.0)
        band = (vn > lo) & (vn < hi)
        shade = shade * (1 - band.float() * (PLEAT_SHADE * f + PLEAT_CREASE * (f > 0.9).float()))
        return shade * (1 - NOSE_WIRE_SHADE * ((dv < 0.06) & (au < 0.3)).float())
    if t == CLOTH:  # centre seam
        return shade * (1 - SEAM_SHADE * (au < 0.8 * d.per("px_u")).float())
    if t == KN95:  # folded in the middle, one half turned from the light
        shade = shade * (1 - KN95_FOLD_SHADE * (au < 0.8 * d.per("px_u")).float())
        return shade * (1 - KN95_HALF_SHADE * (u * d.per("kn_side") > 0).float())
    r2 = u2 + ((v - 0.5) / 0.55) ** 2  # N95 cup
    return shade * (0.72 + 0.28 * torch.sqrt((1 - r2).clamp_min(0)))


def _pattern(u: Tensor, v: Tensor, d: _Draws) -> Tensor:
    """Where the second colour shows (m, 1, H, W) in {0, 1}: 1 stripes, 2 checks, 3 dots, 4 print."""
    pid = d.pattern
    m = pid.shape[0]
    if not bool((pid > 0).any()):
        return torch.zeros_like(u)
    ca, sa = torch.cos(d.per("p_angle")), torch.sin(d.per("p_angle"))
    q1 = torch.frac((u * ca + v * 2 * sa) * d.per("p_freq") + 100)
    q2 = torch.frac((-u * sa + v * 2 * ca) * d.per("p_freq") + 100)
    pk = pid.view(m, 1, 1, 1)
    pat = torch.where(pk == 1, q1 < d.per("p_duty"), (q1 < 0.5) ^ (q2 < 0.5))
    dots = ((q1 - 0.5) ** 2 + (q2 - 0.5) ** 2) < (d.per("p_duty") * 0.6) ** 2
    pat = torch.where(pk == 3, dots, pat)
    if bool((pid == 4).any()):
        g = torch.stack([u.squeeze(1), v.squeeze(1) * 2 - 1], -1)
        printed = F.grid_sample(d.blobs, g, mode="bilinear", padding_mode="reflection", align_corners=False) > 0.3
        pat = torch.where(pk == 4, printed, pat)
    return (pat & (pk > 0)).float()


def _render_type(t: int, u: Tensor, v: Tensor, d: _Draws) -> tuple[Tensor, Tensor]:
    """Colour (m, 3, H, W) and coverage (m, 1, H, W) of ``m`` masks of type ``t`` on the mask
    coordinates ``u`` (across, -1..1) and ``v`` (nose bridge 0 .. chin 1)."""
    m = u.shape[0]
    c = d.coef.view(m, 10, 1, 1)
    top, bot = _outline(t, u, v, c)
    side = c[:, 8:9] - c[:, 9:10] * v
    inside = (v >= top) & (v <= bot) & (u.abs() <= side)
    loop = _loops(t, u, v, side, c, d)
    base = d.base.view(m, 3, 1, 1)
    col = base.expand(m, 3, *u.shape[-2:])
    col = col + (d.second.view(m, 3, 1, 1) - base) * _pattern(u, v, d)
    if t == N95:
        cx, cy = VALVE_UV
        vd = (((u - cx) ** 2 + ((v - cy) * 1.1) ** 2) < VALVE_R ** 2) & d.per("valve")
        col = torch.where(vd, torch.tensor(VALVE_RGB, device=u.device).view(1, 3, 1, 1), col)
    col = (col * _shading(t, u, v, top, bot, side, d)).clamp(0, 1)
    loop_col = (0.5 * d.base + 0.5).view(m, 3, 1, 1) * (0.85 + 0.15 * d.per("loop_kind"))
    return torch.where(inside, col, loop_col), (inside | loop).float()


class ProceduralMask(Degradation):
    """Drawn face masks (surgical, cloth, KN95, N95) with random colours, patterns and shading."""

    def __init__(self, types: list[str] = list(PROCEDURAL_TYPES), weights: list[float] = [],
                 top: Range = (0.3, 0.6), chin: Range = (0.6, 0.9), width: Range = (1.02, 1.22),
                 rotation: Range = (-5.0, 5.0), perspective: float = 0.03, jitter: float = 0.02,
                 pattern_prob: float = 0.7, render_size: int = 64, p: float = 1.0):
        """``top``: the nose bridge between the eye line (0) and the nose tip (1); ``chin``: below
        the mouth in eye-to-mouth distances; ``width``: half the mask width in eye distances;
        ``rotation`` degrees of extra roll; ``perspective`` and ``jitter`` (template landmarks
        only) in fractions of the eye distance and face size; ``pattern_prob``: cloth masks with a
        pattern (other types get one 8x less often); ``render_size``: rasterise at most this many
        pixels across, then upscale (0 = at the image size); ``p``: faces that get a mask."""
        unknown = [t for t in types if t not in PROCEDURAL_TYPES]
        if unknown or not types:
            raise RecipeError("types", f"choose from {', '.join(PROCEDURAL_TYPES)}; got {types}")
        if weights and (len(weights) != len(types) or min(weights) < 0 or sum(weights) <= 0):
            raise RecipeError("weights", "one non-negative weight per type, not all zero")
        self.types = [PROCEDURAL_TYPES.index(t) for t in types]
        self.weights = list(weights) if weights else [1.0] * len(types)
        self.placement = Placement(top, chin, width, rotation, perspective, jitter)
        self.pattern_prob = check_prob("pattern_prob", pattern_prob)
        if render_size < 0:
            raise RecipeError("render_size", f"must be >= 0, got {render_size}")
        self.render_size = int(render_size)
        self.p = check_prob("p", p)
        pal, offsets, counts = [], [], []
        for t in PROCEDURAL_TYPES:
            offsets.append(len(pal))
            counts.append(len(_PALETTES[t]))
            pal.extend(_PALETTES[t])
        self._palette, self._offsets, self._counts = torch.tensor(pal), torch.tensor(offsets), torch.tensor(counts)

    def choose(self, generator: torch.Generator, n: int, device: torch.device) -> Tensor:
        w = torch.tensor(self.weights, device=device, dtype=torch.float32)
        pick = torch.multinomial(w.expand(max(n, 1), -1), 1, replacement=True, generator=generator)[:n, 0]
        return torch.tensor(self.types, device=device)[pick]

    def __call__(self, batch: DegradationBatch, generator: torch.Generator) -> DegradationBatch:
        b, dev = batch.hq.shape[0], batch.hq.device
        applied = bernoulli(generator, b, self.p, dev)
        lm = self.placement.landmarks(batch, generator)
        anchors, _ = self.placement.anchors(lm, generator)
        kind = self.choose(generator, b, dev)
        colour, alpha = self.render(anchors, kind, batch.hq.shape[-2:], generator)
        alpha = alpha * applied.view(-1, 1, 1, 1)
        return composite(batch, colour, alpha, torch.where(applied, kind, torch.full_like(kind, -1)),
                         "procedural_mask")

    def render(self, anchors: Tensor, kind: Tensor, size, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Colour (n, 3, H, W) and binary alpha (n, 1, H, W) of masks of ``kind`` on ``anchors``.

        Faces larger than ``render_size`` are rasterised at that size and upscaled (bilinear
        colour, bilinear coverage thresholded at 0.5, so outlines stay smooth and alpha binary).
        When the sizes differ by an integer factor only the window that holds the masks, with one
        zero pixel around it, is upscaled: the same numbers as upscaling the whole image (0
        outside the window) at a fraction of the cost. Both are views of one (n, 4, H, W) buffer."""
        h, w = int(size[0]), int(size[1])
        r = self.render_size
        sh, sw = (h, w) if r <= 0 or max(h, w) <= r else \
            (max(1, round(h * r / max(h, w))), max(1, round(w * r / max(h, w))))
        if (sh, sw) != (h, w):
            anchors = anchors * torch.tensor([sw / w, sh / h], device=anchors.device)
        rgba, (y0, y1, x0, x1) = self._render(anchors, kind, (sh, sw), generator)
        out = anchors.new_zeros(anchors.shape[0], 4, h, w)
        if rgba.numel() == 0:
            return out[:, :3], out[:, 3:]
        if (sh, sw) == (h, w):
            out[:, :, y0:y1, x0:x1] = rgba
            return out[:, :3], out[:, 3:]
        k = h // sh
        if (k * sh, k * sw) == (h, w):  # integer factor: the window and a zero border, k times larger
            py0, px0, py1, px1 = max(y0 - 1, 0), max(x0 - 1, 0), min(y1 + 1, sh), min(x1 + 1, sw)
            oy, ox, size = k * py0, k * px0, (k * (py1 - py0), k * (px1 - px0))
        else:  # no integer factor: the whole small image
            py0, px0, py1, px1, oy, ox, size = 0, 0, sh, sw, 0, 0, (h, w)
        up = F.interpolate(F.pad(rgba, (x0 - px0, px1 - x1, y0 - py0, py1 - y1)), size=size,
                           mode="bilinear", align_corners=False)
        out[:, :, oy:oy + size[0], ox:ox + size[1]] = up
        return out[:, :3], (out[:, 3:] > 0.5).to(out.dtype)

    def _render(self, anchors: Tensor, kind: Tensor, size,
                generator: torch.Generator) -> tuple[Tensor, tuple[int, int, int, int]]:
        """Rasterise at ``size``: colour and coverage (n, 4, y1 - y0, x1 - x0) of the window
        (y0, y1, x0, x1); everything outside it is 0 ((n, 4, 0, 0) and (0, 0, 0, 0) when no mask
        lies in the image).

        Only the window around the masks of the batch is rasterised, one mask type at a time
        (at most four groups), with every random parameter drawn up front for all samples."""
        h, w = int(size[0]), int(size[1])
        n, dev = anchors.shape[0], anchors.device
        empty = anchors.new_zeros(n, 4, 0, 0), (0, 0, 0, 0)
        if n == 0:
            return empty
        draws = self._draw(anchors, kind, generator)
        # the window that holds every mask and its loops
        span = (anchors[:, 2] - anchors[:, 0]).norm(dim=-1).max()
        lo = anchors.amin((0, 1)) - torch.stack([0.3 * span, 0.12 * span])
        hi = anchors.amax((0, 1)) + torch.stack([0.3 * span, 0.12 * span])
        x0, y0 = (int(v) for v in lo.floor().clamp_min(0).tolist())
        x1, y1 = int(min(w, math.ceil(float(hi[0])) + 1)), int(min(h, math.ceil(float(hi[1])) + 1))
        if x1 <= x0 or y1 <= y0:
            return empty
        uv = map_grid(anchors, CANONICAL.to(dev).expand(n, -1, -1), h, w, (y0, y1, x0, x1))
        rgba = anchors.new_empty(n, 4, y1 - y0, x1 - x0)
        for t in torch.unique(kind).tolist():  # at most four mask types
            idx = (kind == t).nonzero().squeeze(1)
            col, cover = _render_type(t, uv[idx, ..., 0].unsqueeze(1), uv[idx, ..., 1].unsqueeze(1), draws.select(idx))
            rgba[idx] = torch.cat([col, cover], 1)
        return rgba, (y0, y1, x0, x1)

    def _draw(self, anchors: Tensor, kind: Tensor, generator: torch.Generator) -> _Draws:
        """Every random parameter of ``n`` masks (outline, colours, pattern, shading, loops), drawn
        up front in one fixed order so that a seed gives the same masks whatever their types."""
        from kornia.color import hsv_to_rgb

        n, dev = anchors.shape[0], anchors.device

        def rnd(*shape: int) -> Tensor:
            return torch.rand(*shape, generator=generator, device=dev)

        coef = _OUTLINE.to(dev)[kind].clone()
        j = rnd(n, 3)
        coef[:, 0] += (j[:, 0] - 0.5) * 0.06
        coef[:, 4] += (j[:, 1] - 0.5) * 0.08
        coef[:, 8] *= 0.96 + 0.08 * j[:, 2]
        counts = self._counts.to(dev)[kind]
        pal_idx = self._offsets.to(dev)[kind] + (rnd(n) * counts).long().clamp_max(counts - 1)
        base = self._palette.to(dev)[pal_idx] + (rnd(n, 3) - 0.5) * 0.06
        hsv = torch.stack([rnd(n) * 2 * math.pi, 0.05 + 0.8 * rnd(n), 0.12 + 0.78 * rnd(n)], 1)
        free = hsv_to_rgb(hsv.view(n, 3, 1, 1)).view(n, 3)
        base = torch.where(((kind == 1) & (rnd(n) < 0.7)).unsqueeze(1), free, base).clamp(0, 1)
        hsv2 = torch.stack([rnd(n) * 2 * math.pi, 0.1 + 0.8 * rnd(n), rnd(n)], 1)
        second = hsv_to_rgb(hsv2.view(n, 3, 1, 1)).view(n, 3)
        lum = base.mean(1, keepdim=True)
        second = torch.where(((second.mean(1, keepdim=True) - lum).abs() < 0.25), 1 - second, second)
        pprob = torch.where(kind == 1, self.pattern_prob, self.pattern_prob / 8)
        pattern = torch.where(rnd(n) < pprob, 1 + (rnd(n) * 4).long().clamp_max(3), torch.zeros_like(kind))
        p_angle = (rnd(n) - 0.5) * math.pi
        p_freq = 3 + 6 * rnd(n)
        p_duty = 0.25 + 0.35 * rnd(n)
        blobs = torch.randn(n, 1, 6, 6, generator=generator, device=dev)
        curv = 0.08 + 0.2 * rnd(n)
        light = 0.15 * rnd(n)
        light_dir = rnd(n) * 2 * math.pi
        pleats = (3 + (rnd(n) * 2).long()).float()
        loop_kind = rnd(n)
        valve = rnd(n) < 0.35
        kn_side = torch.where(rnd(n) < 0.5, -1.0, 1.0)
        # pixel size in mask units, for lines a pixel or two wide
        px_u = 2.0 / (anchors[:, 2] - anchors[:, 0]).norm(dim=-1).clamp_min(1.0)
        px_v = 1.0 / (anchors[:, 4] - anchors[:, 1]).norm(dim=-1).clamp_min(1.0)
        return _Draws(coef, base, second, pattern, p_angle, p_freq, p_duty, blobs, curv, light, light_dir,
                      pleats, loop_kind, valve, kn_side, px_u, px_v)
