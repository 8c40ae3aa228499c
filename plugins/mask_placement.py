"""Where a synthetic face mask goes: anchor points from facial landmarks, the homography from a
mask's own coordinates onto them, and compositing the rendered mask into the batch.

The five landmarks of each face (eyes, nose tip, mouth corners; or
:func:`facerestore.landmarks.template_landmarks` plus random jitter for aligned data) give six
anchor points in the MaskTheFace convention: ``a``/``c`` the cheek outline at nose level, ``b``
the nose bridge, ``d``/``f`` the jaw below the lips, ``e`` the chin. Per-sample random ranges
move the bridge between the eyes and the nose tip, the chin, the width, a small extra roll and a
perspective jitter. Each mask family maps its own mask coordinates onto these six points with a
least-squares homography (:func:`fit_homography`) and samples the whole batch on one coordinate
grid (:func:`map_grid`): no per-image drawing. Used by :mod:`.mask_procedural` and
:mod:`.mask_templates`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from facerestore.errors import RecipeError
from facerestore.interfaces import DegradationBatch
from facerestore.landmarks import template_landmarks

from .degradation_random import Range, check_range, uniform


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


def map_grid(anchors: Tensor, target: Tensor, h: int, w: int,
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
