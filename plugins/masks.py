"""Synthetic face masks placed from facial landmarks, rendered batched on the batch's device.

Placement (shared by every mask family): the five landmarks of each face (eyes, nose tip, mouth
corners; or :func:`facerestore.landmarks.template_landmarks` plus random jitter for aligned data)
give six anchor points in the MaskTheFace convention: ``a``/``c`` the cheek outline at nose level,
``b`` the nose bridge, ``d``/``f`` the jaw below the lips, ``e`` the chin. Per-sample random ranges
move the bridge between the eyes and the nose tip, the chin, the width, a small extra roll and a
perspective jitter. Each family maps its own mask coordinates onto these six points with a
least-squares homography (``kornia.geometry.homography.find_homography_dlt``) and samples the whole
batch on one coordinate grid: no per-image drawing.

* ``procedural_mask``: surgical (pleats, nose wire, ear loops), cloth (seam, patterns), KN95 (folded,
  pointed) and N95 (cup) outlines as inequalities in mask coordinates, with random colours,
  patterns (stripes, checks, dots, printed blobs) and shading.
* ``template_mask``: RGBA cut-outs in MaskTheFace format (``masks.cfg`` + PNGs), warped onto the
  anchors, optionally recoloured or textured; head-turned variants (``_left``/``_right``) are picked
  from the landmarks.
* ``random_mask``: one or the other per sample.

The occlusion map is binary at HQ size and is exactly the set of pixels the mask replaced.
"""

from __future__ import annotations

import configparser
import dataclasses
import math
import pathlib
import threading
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from facerestore.errors import FaceRestoreError, RecipeError
from facerestore.interfaces import Degradation, DegradationBatch
from facerestore.landmarks import template_landmarks

from .degradations import Range, bernoulli, check_prob, check_range, uniform


#: Mask coordinates (u, v) of the six anchors a, b, c, d, e, f: u = -1..1 across the face, v = 0 at
#: the nose bridge, 1 at the chin.
CANONICAL = torch.tensor([[-1.0, 0.10], [0.0, 0.0], [1.0, 0.10], [-0.88, 0.72], [0.0, 1.0], [0.88, 0.72]])


# --------------------------------------------------------------------------------------------
# Placement
# --------------------------------------------------------------------------------------------
class Placement:
    """Per-sample anchor points of a mask on each face (see the module docstring)."""

    def __init__(self, top: Range, chin: Range, width: Range, rotation: Range, perspective: float,
                 jitter: float):
        self.top = check_range("top", top, -0.5, 1.5)
        self.chin = check_range("chin", chin, 0.2, 2.0)
        self.width = check_range("width", width, 0.5, 2.0)
        self.rotation = check_range("rotation", rotation, -45.0, 45.0)
        if not 0 <= perspective <= 0.5:
            raise RecipeError("perspective", f"must be in [0, 0.5], got {perspective}")
        if not 0 <= jitter <= 0.2:
            raise RecipeError("jitter", f"must be in [0, 0.2], got {jitter}")
        self.perspective, self.jitter = float(perspective), float(jitter)

    def landmarks(self, batch: DegradationBatch, generator: torch.Generator) -> Tensor:
        """The batch's landmarks, or the aligned template with per-sample jitter (always drawn)."""
        b, _, h, w = batch.hq.shape
        dev = batch.hq.device
        shift = torch.randn(b, 1, 2, generator=generator, device=dev) * self.jitter
        scale = 1 + torch.randn(b, 1, 1, generator=generator, device=dev) * self.jitter
        local = torch.randn(b, 5, 2, generator=generator, device=dev) * (self.jitter * 0.4)
        if batch.landmarks is not None:
            return batch.landmarks.to(dev, torch.float32)[:, :5]
        size = float(min(h, w))
        lm = template_landmarks(int(size), b, dev)
        centre = lm.mean(1, keepdim=True)
        return centre + (lm - centre) * scale + (shift + local) * size

    def anchors(self, lm: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``(B, 5, 2)`` landmarks -> ``(B, 6, 2)`` anchor pixels a..f and the yaw proxy ``(B,)``."""
        b, dev = lm.shape[0], lm.device
        le, re, nose, lml, lmr = lm.unbind(1)
        eyes, mouth = (le + re) / 2, (lml + lmr) / 2
        ex = re - le
        de = ex.norm(dim=-1).clamp_min(1.0)
        xa = ex / de.unsqueeze(-1)
        ya = torch.stack([-xa[:, 1], xa[:, 0]], -1)
        em = ((mouth - eyes) * ya).sum(-1).clamp_min(1.0)
        yaw = (((nose - eyes) * xa).sum(-1) / de).clamp(-0.6, 0.6)
        top = uniform(generator, b, self.top, dev)
        chin = uniform(generator, b, self.chin, dev)
        wid = uniform(generator, b, self.width, dev)
        rot = torch.deg2rad(uniform(generator, b, self.rotation, dev))
        persp = torch.randn(b, 6, 2, generator=generator, device=dev) * self.perspective

        nose_t = ((nose - eyes) * ya).sum(-1)
        tb = top * nose_t
        sb = top * ((nose - eyes) * xa).sum(-1)
        te = em * (1 + chin)
        se = ((mouth - eyes) * xa).sum(-1)
        hw = wid * de
        c0 = 0.5 * yaw * de
        left = c0 - hw * (1 + 0.5 * yaw)
        right = c0 + hw * (1 - 0.5 * yaw)
        ta = tb + 0.10 * (te - tb)
        td = tb + 0.72 * (te - tb)
        s = torch.stack([left, sb, right, c0 + 0.88 * (left - c0), se, c0 + 0.88 * (right - c0)], 1)
        t = torch.stack([ta, tb, ta, td, te, td], 1)
        s = s + persp[..., 0] * de.unsqueeze(1)
        t = t + persp[..., 1] * de.unsqueeze(1)
        pts = eyes.unsqueeze(1) + s.unsqueeze(-1) * xa.unsqueeze(1) + t.unsqueeze(-1) * ya.unsqueeze(1)
        # slight extra roll about the nose tip
        cos, sin = torch.cos(rot).view(b, 1), torch.sin(rot).view(b, 1)
        d = pts - nose.unsqueeze(1)
        pts = nose.unsqueeze(1) + torch.stack([cos * d[..., 0] - sin * d[..., 1], sin * d[..., 0] + cos * d[..., 1]], -1)
        return pts, yaw


def _pixel_grid(h: int, w: int, device: torch.device) -> Tensor:
    """(H*W, 3) homogeneous pixel centres, normalised to [-1, 1] (grid_sample convention)."""
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h * 2 - 1
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w * 2 - 1
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1), torch.ones_like(xx).reshape(-1)], -1)


def _to_norm(pts: Tensor, h: int, w: int) -> Tensor:
    return torch.stack([pts[..., 0] / w * 2 - 1, pts[..., 1] / h * 2 - 1], -1)


def fit_homography(src: Tensor, dst: Tensor) -> Tensor:
    """Least-squares homographies ``(B, 3, 3)`` taking ``src`` (B, N, 2) to ``dst`` (B, N, 2), N >= 4.

    Normal equations of the 8-parameter DLT (h33 = 1), solved batched: points are normalised to
    about [-1, 1] by the callers, so this is well conditioned and much cheaper than an SVD."""
    x, y = src[..., 0], src[..., 1]
    u, v = dst[..., 0], dst[..., 1]
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    ru = torch.stack([x, y, one, zero, zero, zero, -u * x, -u * y], -1)
    rv = torch.stack([zero, zero, zero, x, y, one, -v * x, -v * y], -1)
    a = torch.cat([ru, rv], 1)  # (B, 2N, 8)
    rhs = torch.cat([u, v], 1).unsqueeze(-1)
    ata = a.transpose(1, 2) @ a + 1e-8 * torch.eye(8, device=src.device, dtype=src.dtype)
    sol = torch.linalg.solve(ata, a.transpose(1, 2) @ rhs).squeeze(-1)
    return torch.cat([sol, torch.ones_like(sol[:, :1])], 1).view(-1, 3, 3)


def _map_grid(anchors: Tensor, target: Tensor, h: int, w: int,
              window: tuple[int, int, int, int] | None = None) -> Tensor:
    """Coordinates in the mask's own frame of every pixel: ``(B, H, W, 2)`` (or of the pixels
    of ``window`` = (y0, y1, x0, x1)).

    The homography maps the face anchors (pixels) onto ``target`` (B, 6, 2) by least squares."""
    hmat = fit_homography(_to_norm(anchors, h, w), target.to(anchors))
    y0, y1, x0, x1 = window or (0, h, 0, w)
    grid = _pixel_grid(h, w, anchors.device).view(h, w, 3)[y0:y1, x0:x1].reshape(-1, 3)
    out = torch.einsum("pk,bjk->bpj", grid, hmat)
    z = out[..., 2:]
    z = torch.where(z.abs() < 1e-6, torch.full_like(z, 1e-6), z)
    return (out[..., :2] / z).view(-1, y1 - y0, x1 - x0, 2)


def composite(batch: DegradationBatch, colour: Tensor, alpha: Tensor, kind: Tensor, name: str) -> DegradationBatch:
    """Put a rendered mask (``colour`` (B,3,H,W), binary ``alpha`` (B,1,H,W) at HQ size) onto ``lq``.

    At HQ size the covered pixels take the mask colour exactly; if ``lq`` is already smaller, the
    mask is area-downscaled and blended by its coverage."""
    alpha = alpha.to(batch.lq.dtype)
    occ_hq = torch.maximum(batch.occlusion_hq, alpha)
    lq_h, lq_w = batch.lq.shape[-2:]
    if (lq_h, lq_w) == tuple(alpha.shape[-2:]):
        lq = torch.where(alpha > 0.5, colour, batch.lq)
        occ = torch.maximum(batch.occlusion, alpha)
    else:
        both = F.interpolate(torch.cat([colour * alpha, alpha], 1), size=(lq_h, lq_w), mode="area")
        lq = batch.lq * (1 - both[:, 3:]) + both[:, :3]
        occ = F.interpolate(occ_hq, size=(lq_h, lq_w), mode="area")
    extras = dict(batch.extras)
    extras[f"{name}.kind"] = kind
    extras["masked"] = lq  # the masked face before any corruption (read by ``keep_sharp``)
    return batch.replace(lq=lq, occlusion=occ, occlusion_hq=occ_hq, extras=extras)


# --------------------------------------------------------------------------------------------
# Procedural masks
# --------------------------------------------------------------------------------------------
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
        uv = _map_grid(anchors, CANONICAL.to(dev).expand(n, -1, -1), h, w, (y0, y1, x0, x1))
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


# --------------------------------------------------------------------------------------------
# Template masks (MaskTheFace format)
# --------------------------------------------------------------------------------------------
_TEMPLATE_CACHE: dict[tuple, "_TemplateSet"] = {}
_CACHE_LOCK = threading.Lock()


class _TemplateSet:
    """Templates of one folder at one working size, premultiplied RGBA tensors on the CPU."""

    def __init__(self, names: list[str], images: list[Tensor], anchors: list[Tensor],
                 shade_ref: list[float], textures: Optional[Tensor]):
        self.names, self.images, self.anchors, self.shade_ref, self.textures = names, images, anchors, shade_ref, textures
        self._device: dict[str, tuple[list[Tensor], Optional[Tensor]]] = {}

    def on(self, device: torch.device) -> tuple[list[Tensor], Optional[Tensor]]:
        key = str(device)
        if key not in self._device:
            self._device[key] = ([im.to(device) for im in self.images],
                                 None if self.textures is None else self.textures.to(device))
        return self._device[key]


def read_masks_cfg(folder: pathlib.Path) -> dict[str, tuple[pathlib.Path, list[tuple[float, float]]]]:
    """``masks.cfg`` -> name: (PNG path, six anchors a..f). Sections without a template file or
    without all six anchors (MaskTheFace's ``empty``/``inpaint`` placeholders) are skipped."""
    cfg_path = folder / "masks.cfg"
    parser = configparser.ConfigParser(comment_prefixes=("#", ";"), inline_comment_prefixes=None)
    try:
        parser.read_string(cfg_path.read_text(encoding="utf-8"))
    except (OSError, configparser.Error) as exc:
        raise FaceRestoreError(f"cannot read mask templates config {cfg_path}: {exc}") from None
    out = {}
    for name in parser.sections():
        sec = parser[name]
        if "template" not in sec or not all(f"mask_{k}" in sec for k in "abcdef"):
            continue
        rel = pathlib.Path(sec["template"].strip())
        candidates = [folder / rel, folder / "templates" / rel.name, folder / rel.name]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            continue
        pts = []
        for k in "abcdef":
            x, y = (float(s) for s in sec[f"mask_{k}"].split(","))
            pts.append((x, y))
        out[name] = (path, pts)
    return out


def texture_square(im: Any, size: int = 96) -> Any:
    """A cloth texture as the renderer uses it: RGB, centre square, ``size`` px (PIL in, PIL out)."""
    from PIL import Image

    im = im.convert("RGB")
    s = min(im.size)
    im = im.crop(((im.width - s) // 2, (im.height - s) // 2, (im.width + s) // 2, (im.height + s) // 2))
    return im.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=None)


def _load_textures(folder: pathlib.Path, size: int = 96) -> Optional[Tensor]:
    from PIL import Image

    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"))
    tex = []
    for f in files:
        try:
            with Image.open(f) as im:
                im = texture_square(im, size)
                tex.append(torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8).view(size, size, 3))
        except OSError:
            continue
    if not tex:
        return None
    return torch.stack(tex).permute(0, 3, 1, 2).float() / 255


def load_templates(folder: str | pathlib.Path, names: list[str], max_size: int = 256,
                   textures: str = "textures") -> _TemplateSet:
    """Read (once per process, cached) the RGBA templates of ``folder`` named ``names`` or, if
    ``names`` is empty, all of them."""
    from PIL import Image

    root = pathlib.Path(folder).expanduser().resolve()
    key = (str(root), tuple(names), max_size, textures)
    with _CACHE_LOCK:
        if key in _TEMPLATE_CACHE:
            return _TEMPLATE_CACHE[key]
        entries = read_masks_cfg(root)
        if names:
            missing = [n for n in names if n not in entries]
            if missing:
                raise FaceRestoreError(f"mask templates {missing} not found in {root / 'masks.cfg'} "
                                       f"(available: {', '.join(sorted(entries))})")
            entries = {n: entries[n] for n in names}
        if not entries:
            raise FaceRestoreError(f"no usable mask templates in {root} (masks.cfg + RGBA PNGs)")
        imgs, anchors, refs, used = [], [], [], []
        for name, (path, pts) in sorted(entries.items()):
            with Image.open(path) as im:
                im = im.convert("RGBA")
                scale = min(1.0, max_size / max(im.size))
                size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
                full = (im.width, im.height)
                if scale < 1:
                    im = im.resize(size, Image.Resampling.LANCZOS)
                t = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8).view(size[1], size[0], 4)
            t = t.permute(2, 0, 1).float() / 255
            a = t[3:]
            rgb = t[:3] * a
            imgs.append(torch.cat([rgb, a], 0))
            # anchors in grid_sample coordinates [-1, 1] of the template
            anchors.append(torch.tensor([[x / full[0] * 2 - 1, y / full[1] * 2 - 1] for x, y in pts]))
            lum = t[:3].mean(0)[a[0] > 0.5]
            refs.append(float(lum.quantile(0.7)) if lum.numel() else 1.0)
            used.append(name)
        tex_dir = root / textures if textures else None
        tex = _load_textures(tex_dir) if tex_dir is not None and tex_dir.is_dir() else None
        ts = _TemplateSet(used, imgs, anchors, refs, tex)
        _TEMPLATE_CACHE[key] = ts
        return ts


def _pose_families(names: list[str]) -> dict[str, list[int]]:
    """family -> [frontal, left, right] template indices (-1 where a variant is missing)."""
    fam: dict[str, list[int]] = {}
    for i, n in enumerate(names):
        base, slot = n, 0
        for suffix, s in (("_left", 1), ("_right", 2)):
            if n.endswith(suffix):
                base, slot = n[: -len(suffix)], s
        fam.setdefault(base, [-1, -1, -1])[slot] = i
    for idx in fam.values():
        front = next(i for i in idx if i >= 0) if idx[0] < 0 else idx[0]
        for s in range(3):
            if idx[s] < 0:
                idx[s] = front
    return fam


class TemplateMask(Degradation):
    """MaskTheFace RGBA mask templates warped onto the face landmarks, optionally recoloured."""

    def __init__(self, folder: str = "",
                 families: list[str] = ["surgical", "surgical_blue", "surgical_green", "cloth", "KN95", "N95"],
                 recolor_prob: float = 0.3, texture_prob: float = 0.25, textures: str = "textures",
                 pose_aware: bool = True, yaw_threshold: float = 0.12, template_size: int = 256,
                 top: Range = (0.3, 0.6), chin: Range = (0.6, 0.9), width: Range = (1.02, 1.22),
                 rotation: Range = (-5.0, 5.0), perspective: float = 0.03, jitter: float = 0.02,
                 p: float = 1.0):
        """``folder``: a MaskTheFace-style folder (``masks.cfg``, PNGs, optional ``textures``
        sub-folder of images); ``families``: template names without the ``_left``/``_right``
        suffix (empty = all); ``pose_aware``: use the head-turned variant when the nose is more
        than ``yaw_threshold`` eye distances off the eye centre. Placement as ``procedural_mask``."""
        if not folder:
            raise FaceRestoreError("template masks need `folder`: a MaskTheFace-style folder (masks.cfg + PNGs); "
                                   "in a recipe, a path relative to the recipe file")
        path = pathlib.Path(folder).expanduser()
        if not (path / "masks.cfg").is_file():
            raise FaceRestoreError(f"mask template folder {str(folder)!r} not found or has no masks.cfg "
                                   f"(resolved: {path.resolve()}); give the MaskTheFace folder as `folder`")
        self.folder, self.families = str(folder), list(families)
        self.recolor_prob = check_prob("recolor_prob", recolor_prob)
        self.texture_prob = check_prob("texture_prob", texture_prob)
        self.textures, self.pose_aware, self.yaw_threshold = textures, pose_aware, float(yaw_threshold)
        self.template_size = int(template_size)
        self.placement = Placement(top, chin, width, rotation, perspective, jitter)
        self.p = check_prob("p", p)
        self._set: Optional[_TemplateSet] = None

    @property
    def templates(self) -> _TemplateSet:
        if self._set is None:
            root = pathlib.Path(self.folder).expanduser()
            all_names = list(read_masks_cfg(root.resolve()))
            names = [n for n in all_names if not self.families or n in self.families
                     or n.rsplit("_", 1)[0] in self.families and n.rsplit("_", 1)[1] in ("left", "right")]
            if self.families and not names:
                raise FaceRestoreError(f"none of the mask families {self.families} is in {root / 'masks.cfg'}")
            self._set = load_templates(root, names, self.template_size, self.textures)
        return self._set

    def __call__(self, batch: DegradationBatch, generator: torch.Generator) -> DegradationBatch:
        b, dev = batch.hq.shape[0], batch.hq.device
        applied = bernoulli(generator, b, self.p, dev)
        lm = self.placement.landmarks(batch, generator)
        anchors, yaw = self.placement.anchors(lm, generator)
        tid = self.choose(generator, yaw)
        colour, alpha = self.render(anchors, tid, batch.hq.shape[-2:], generator)
        alpha = alpha * applied.view(-1, 1, 1, 1)
        return composite(batch, colour, alpha, torch.where(applied, tid, torch.full_like(tid, -1)), "template_mask")

    def choose(self, generator: torch.Generator, yaw: Tensor) -> Tensor:
        """A template index per sample: a random family, then its pose variant."""
        ts = self.templates
        fam = _pose_families(ts.names)
        table = torch.tensor(list(fam.values()), device=yaw.device)  # (F, 3)
        n = yaw.shape[0]
        f = (torch.rand(n, generator=generator, device=yaw.device) * len(fam)).long().clamp_max(len(fam) - 1)
        slot = torch.zeros_like(f)
        if self.pose_aware:
            slot = torch.where(yaw < -self.yaw_threshold, 1, torch.where(yaw > self.yaw_threshold, 2, 0))
        return table[f, slot]

    def render(self, anchors: Tensor, tid: Tensor, size, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        h, w = int(size[0]), int(size[1])
        n, dev = anchors.shape[0], anchors.device
        ts = self.templates
        images, textures = ts.on(dev)
        # per-sample recolouring choices (drawn for every sample, used where chosen)
        u = torch.rand(n, 4, generator=generator, device=dev)
        hsv = torch.stack([u[:, 0] * 2 * math.pi, 0.1 + 0.8 * u[:, 1], 0.35 + 0.6 * u[:, 2]], 1)
        from kornia.color import hsv_to_rgb

        recolour = hsv_to_rgb(hsv.view(n, 3, 1, 1))
        mode = torch.rand(n, generator=generator, device=dev)
        use_tex = (mode < self.texture_prob) & (textures is not None)
        use_col = (~use_tex) & (mode < self.texture_prob + self.recolor_prob)
        n_tex = 1 if textures is None else textures.shape[0]
        tex_id = (torch.rand(n, generator=generator, device=dev) * n_tex).long().clamp_max(n_tex - 1)
        tex_rep = 1.5 + 2 * torch.rand(n, generator=generator, device=dev)

        colour = anchors.new_zeros(n, 3, h, w)
        alpha = anchors.new_zeros(n, 1, h, w)
        if n == 0:
            return colour, alpha
        grid = None
        anchor_t = torch.stack([ts.anchors[int(i)] for i in range(len(ts.names))]).to(dev)[tid]  # (n, 6, 2)
        grid = _map_grid(anchors, anchor_t, h, w)  # (n, H, W, 2) template coordinates
        for t in torch.unique(tid).tolist():  # one grid_sample per template used in the batch
            idx = (tid == t).nonzero().squeeze(1)
            img = images[t].unsqueeze(0).expand(idx.numel(), -1, -1, -1)
            out = F.grid_sample(img, grid[idx], mode="bilinear", padding_mode="zeros", align_corners=False)
            a = out[:, 3:]
            rgb = out[:, :3] / a.clamp_min(1e-3)
            colour[idx] = rgb.clamp(0, 1)
            alpha[idx] = (a > 0.5).float()
            # luminance relative to the template's bright fabric = shading to keep when recolouring
            shade = (rgb.mean(1, keepdim=True) / ts.shade_ref[t]).clamp(0, 1.3)
            if bool(use_col[idx].any()):
                sel = use_col[idx].view(-1, 1, 1, 1)
                colour[idx] = torch.where(sel, (recolour[idx] * shade).clamp(0, 1), colour[idx])
            if textures is not None and bool(use_tex[idx].any()):
                sel = use_tex[idx].view(-1, 1, 1, 1)
                tg = grid[idx] * tex_rep[idx].view(-1, 1, 1, 1)
                tex = F.grid_sample(textures[tex_id[idx]], tg, mode="bilinear", padding_mode="reflection",
                                    align_corners=False)
                colour[idx] = torch.where(sel, (tex * shade).clamp(0, 1), colour[idx])
        return colour, alpha


# --------------------------------------------------------------------------------------------
# Either
# --------------------------------------------------------------------------------------------
class RandomMask(Degradation):
    """A procedural or a template face mask per sample (``template_prob``), placed from landmarks."""

    def __init__(self, template_prob: float = 0.5, folder: str = "",
                 types: list[str] = list(PROCEDURAL_TYPES),
                 families: list[str] = ["surgical", "surgical_blue", "surgical_green", "cloth", "KN95", "N95"],
                 top: Range = (0.3, 0.6), chin: Range = (0.6, 0.9), width: Range = (1.02, 1.22),
                 rotation: Range = (-5.0, 5.0), perspective: float = 0.03, jitter: float = 0.02,
                 pattern_prob: float = 0.7, recolor_prob: float = 0.3, texture_prob: float = 0.25,
                 p: float = 1.0):
        """``template_prob`` > 0 needs ``folder`` (MaskTheFace format); 0 draws only procedural
        masks and never touches the folder."""
        self.template_prob = check_prob("template_prob", template_prob)
        self.p = check_prob("p", p)
        place = dict(top=top, chin=chin, width=width, rotation=rotation, perspective=perspective, jitter=jitter)
        self.placement = Placement(**place)
        self.procedural = ProceduralMask(types=types, pattern_prob=pattern_prob, **place)
        self.template: Optional[TemplateMask] = None
        if self.template_prob > 0:
            self.template = TemplateMask(folder=folder, families=families, recolor_prob=recolor_prob,
                                         texture_prob=texture_prob, **place)

    def __call__(self, batch: DegradationBatch, generator: torch.Generator) -> DegradationBatch:
        b, dev = batch.hq.shape[0], batch.hq.device
        h, w = batch.hq.shape[-2:]
        applied = bernoulli(generator, b, self.p, dev)
        lm = self.placement.landmarks(batch, generator)
        anchors, yaw = self.placement.anchors(lm, generator)
        use_t = bernoulli(generator, b, self.template_prob, dev)
        proc_kind = self.procedural.choose(generator, b, dev)
        colour = batch.hq.new_zeros(b, 3, h, w)
        alpha = batch.hq.new_zeros(b, 1, h, w)
        kind = proc_kind.clone()
        if self.template is not None and bool(use_t.any()):
            tid = self.template.choose(generator, yaw)
            idx = use_t.nonzero().squeeze(1)
            c, a = self.template.render(anchors[idx], tid[idx], (h, w), generator)
            colour[idx], alpha[idx] = c, a
            kind[idx] = len(PROCEDURAL_TYPES) + tid[idx]
        idx = (~use_t).nonzero().squeeze(1) if self.template is not None else torch.arange(b, device=dev)
        if idx.numel():
            c, a = self.procedural.render(anchors[idx], proc_kind[idx], (h, w), generator)
            if idx.numel() == b:
                colour, alpha = c, a
            else:
                colour[idx], alpha[idx] = c, a
        alpha = alpha * applied.view(-1, 1, 1, 1)
        return composite(batch, colour, alpha, torch.where(applied, kind, torch.full_like(kind, -1)), "random_mask")


def register(registry) -> None:
    registry.register("degradation", "procedural_mask", ProceduralMask)
    registry.register("degradation", "template_mask", TemplateMask)
    registry.register("degradation", "random_mask", RandomMask)
