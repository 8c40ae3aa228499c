"""Face alignment for restoration: photo -> aligned model-input crops -> photo again.

A similarity transform (rotation, uniform scale, translation; Umeyama least squares) maps the 5
detected landmarks onto :data:`facerestore.landmarks.TEMPLATE_5` at the model's input size, so
faces reach the model framed exactly as in training. The crop is warped straight to the small
model input (e.g. 32 px) when the face is already that small (surveillance footage); a larger
face is warped at an integer multiple of the input size and box-filtered down, so it does not
alias. The restored HQ face goes back through the inverse transform, blended with a feathered
mask (eroded, blurred square or ellipse) so that no edge shows, after an optional low-frequency
colour match to the photo around the crop border.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from .landmarks import TEMPLATE_5

MaskShape = Literal["square", "ellipse", "face"]


def umeyama(src: Tensor, dst: Tensor) -> Tensor:
    """Least-squares similarity transform ``dst ~ s R src + t`` (no reflection), batched.

    ``src`` (B, K, 2), ``dst`` (B, K, 2) or (K, 2) -> (B, 2, 3) affine matrices.
    """
    src = src.double()
    dst = dst.double().to(src.device)
    if dst.dim() == 2:
        dst = dst.unsqueeze(0).expand_as(src)
    mu_s, mu_d = src.mean(1, keepdim=True), dst.mean(1, keepdim=True)
    s0, d0 = src - mu_s, dst - mu_d
    var_s = (s0 ** 2).sum((1, 2)) / src.shape[1]
    cov = d0.transpose(1, 2) @ s0 / src.shape[1]  # (B, 2, 2)
    u, sig, vh = torch.linalg.svd(cov)
    d = torch.ones(src.shape[0], 2, dtype=src.dtype, device=src.device)
    d[:, 1] = torch.sign(torch.linalg.det(u @ vh))
    d[d == 0] = 1
    rot = u @ torch.diag_embed(d) @ vh
    scale = (sig * d).sum(1) / var_s.clamp_min(1e-12)
    t = mu_d.squeeze(1) - scale[:, None] * (rot @ mu_s.transpose(1, 2)).squeeze(2)
    m = torch.cat([scale[:, None, None] * rot, t[:, :, None]], 2)
    return m.float()


def template(size: int, device: torch.device | str = "cpu") -> Tensor:
    return TEMPLATE_5.to(device) * size


def alignment_matrices(landmarks: Tensor, size: int) -> Tensor:
    """Photo pixels -> ``size``-pixel aligned crop: (N, 5, 2) landmarks -> (N, 2, 3)."""
    # kornia/OpenCV sample pixel centres at integer coordinates; landmarks are in the same
    # convention as the detector (MTCNN: pixel indices), the template is continuous in [0, size].
    return umeyama(landmarks.float(), template(size, landmarks.device) - 0.5)


def crop_scale(matrices: Tensor) -> Tensor:
    """Crop pixels per photo pixel of each transform (N,)."""
    return torch.sqrt(torch.abs(torch.linalg.det(matrices[:, :, :2].double()))).float()


def rescale_matrices(matrices: Tensor, factor: float) -> Tensor:
    """Transforms to a crop ``factor`` times larger (pixel-centre convention kept)."""
    m = matrices.clone()
    m[:, :, :2] *= factor
    m[:, :, 2] = (m[:, :, 2] + 0.5) * factor - 0.5
    return m


def warp_affine(src: Tensor, matrices: Tensor, size: tuple[int, int], mode: str = "bilinear",
                padding_mode: str = "zeros") -> Tensor:
    """``src`` (N, C, H, W) warped by ``matrices`` (N, 2, 3), which map source pixel coordinates
    (pixel centres at integers) to output pixels, into ``size`` = (h, w). The same convention as
    ``kornia.geometry.transform.warp_affine(..., align_corners=True)`` and OpenCV's warpAffine,
    with torch alone (importing kornia costs more than restoring a photo)."""
    n, _, hs, ws = src.shape
    h, w = size
    full = torch.cat([matrices.double(), matrices.new_tensor([[[0.0, 0.0, 1.0]]]).double().expand(n, 1, 3)], 1)
    inv = torch.linalg.inv(full)[:, :2].to(src.device)  # output pixel -> source pixel
    ys, xs = torch.meshgrid(torch.arange(h, device=src.device, dtype=torch.float64),
                            torch.arange(w, device=src.device, dtype=torch.float64), indexing="ij")
    pts = torch.stack([xs, ys, torch.ones_like(xs)], -1).view(1, h * w, 3)
    xy = pts @ inv.transpose(1, 2)  # (N, h*w, 2) in source pixels
    norm = torch.tensor([max(ws - 1, 1), max(hs - 1, 1)], dtype=torch.float64, device=src.device)
    grid = (2 * xy / norm - 1).view(n, h, w, 2).to(src.dtype)
    return F.grid_sample(src, grid, mode=mode, padding_mode=padding_mode, align_corners=True)


def warp_crops(image: Tensor, matrices: Tensor, size: int, *, antialias: bool = True, max_factor: int = 8) -> Tensor:
    """Aligned crops ``(N, 3, size, size)`` from one photo ``(3, H, W)`` (or ``(N, 3, H, W)``).

    A face bigger than ``size`` in the photo is warped at ``f * size`` (f a power of two up to
    ``max_factor``) and averaged down ``f x f``; smaller faces are warped directly.
    """
    n = matrices.shape[0]
    if n == 0:
        return image.new_zeros(0, image.shape[-3], size, size)
    src = image.unsqueeze(0) if image.dim() == 3 else image
    scales = crop_scale(matrices)
    factors = torch.ones(n, dtype=torch.long)
    if antialias:
        need = torch.ceil(torch.log2((1.0 / scales.clamp_min(1e-6)).clamp_min(1.0)) - 1e-4).clamp(0, math.log2(max_factor))
        factors = (2 ** need).long().cpu()
    out = image.new_empty(n, src.shape[1], size, size)
    for f in sorted(set(factors.tolist())):
        idx = (factors == f).nonzero().flatten()
        m = rescale_matrices(matrices[idx], f).to(src)
        imgs = src.expand(len(idx), -1, -1, -1) if src.shape[0] == 1 else src[idx.to(src.device)]
        crops = warp_affine(imgs, m, (size * f, size * f), mode="bilinear", padding_mode="border")
        if f > 1:
            crops = F.avg_pool2d(crops, f)
        out[idx.to(out.device)] = crops
    return out


def blend_mask(size: int, shape: MaskShape = "square", erode: float = 0.02, feather: float = 0.12,
               device: torch.device | str = "cpu") -> Tensor:
    """Feathered blend weight ``(1, 1, size, size)`` in [0, 1]: 1 in the middle, 0 at the border.

    ``erode`` (fraction of the half-size) keeps the crop's outermost pixels and the warp's padding
    out of the photo; over the next ``feather`` the weight falls smoothly (smoothstep, the same as
    a blurred edge without its cost) so no seam shows. The square keeps the whole aligned crop
    (masks reach the chin, near the crop's bottom); ``ellipse`` keeps only the face oval.
    """
    coords = (torch.arange(size, device=device, dtype=torch.float32) + 0.5) / size * 2 - 1  # (-1, 1)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")

    def ramp(dist: Tensor) -> Tensor:  # distance inside the border -> weight
        t = ((dist - erode) / max(feather, 1e-6)).clamp(0, 1)
        return t * t * (3 - 2 * t)

    if shape == "face":
        return face_mask(size, device=device) * blend_mask(size, "square", erode, feather, device)
    if shape == "ellipse":
        # the face oval of the template: centred a little below the middle, taller than wide
        rad = torch.sqrt((xx / 0.8) ** 2 + ((yy - 0.05) / 0.95) ** 2)
        mask = ramp((1 - rad) * 0.9)
    else:
        mask = ramp(1 - xx.abs()) * ramp(1 - yy.abs())
    return mask[None, None].clamp(0, 1)


def face_mask(size: int, feather: float = 0.3, device: torch.device | str = "cpu") -> Tensor:
    """Face-shaped blend weight ``(1, 1, size, size)``: an oval from the template's landmarks
    (eye line to 1.1 eye-mouth distances above it, mouth to 1.0 below it; 1.15 eye distances
    either side of the face centre), 1 inside and falling smoothly over the outer ``feather`` of
    its radius, so hair, ears and background keep the photo's own pixels."""
    t = TEMPLATE_5.to(device)
    eyes, mouth = t[:2].mean(0), t[3:].mean(0)
    d = float((mouth - eyes).norm())
    top, bottom = float(eyes[1]) - 1.1 * d, float(mouth[1]) + 1.0 * d
    cx, cy = float(t[:, 0].mean()), (top + bottom) / 2
    rx, ry = 1.15 * float((t[1] - t[0]).norm()), (bottom - top) / 2
    coords = (torch.arange(size, device=device, dtype=torch.float32) + 0.5) / size
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    rad = torch.sqrt(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2)
    u = ((1 - rad) / feather).clamp(0, 1)
    return (u * u * (3 - 2 * u))[None, None]


def feather_occlusion(occ: Tensor, threshold: float = 0.15, soft: float = 0.35, grow: float = 0.03,
                      blur: float = 0.04) -> Tensor:
    """A model's occlusion estimate ``(N, 1, S, S)`` in [0, 1] -> a blend weight that covers the
    mask with a margin: values above ``threshold`` ramp to 1 over ``soft``, the region grows by
    ``grow`` of the size (mask edges, shadows) and is softened over ``blur`` of the size."""
    s = occ.shape[-1]
    u = ((occ.float() - threshold) / soft).clamp(0, 1)
    k = 2 * max(1, round(grow * s)) + 1
    u = F.max_pool2d(u, k, stride=1, padding=k // 2)
    k = 2 * max(1, round(blur * s / 2)) + 1
    for _ in range(2):  # two box filters: close to a Gaussian, and cheap
        u = F.avg_pool2d(F.pad(u, (k // 2,) * 4, mode="replicate"), k, stride=1)
    return u.clamp(0, 1)


def detail_weight(scale: Tensor) -> Tensor:
    """How much a restored face may replace the visible photo pixels, from the crop's scale
    (crop pixels per photo pixel, (N,)): 1 when the face is at most the crop's size in the photo
    (the model output has at least its detail), falling to 0 at twice the crop size, where the
    photo's own pixels are sharper than anything the model returns."""
    return (2 * scale - 1).clamp(0, 1)


#: (erode, feather) of the occlusion's fade at the crop border, fractions of the half-size: 0.5 px
#: kept out (the warp's padding), then 2 px of fade at 128 px
OCCLUSION_EDGE = (0.008, 0.03)


def composite_weights(occlusion: Tensor, scale: Tensor, fidelity: float, size: int) -> Tensor:
    """Per-face blend weights ``(N, 1, S, S)``: inside the estimated occlusion the restored face
    always replaces the photo, up to :data:`OCCLUSION_EDGE` of the crop's border (a mask reaches
    the chin, at the crop's bottom: faded out with the face over the last 7 % of the crop, a strip
    of it stayed); elsewhere, within the face oval, by ``(1 - fidelity)`` times
    :func:`detail_weight`, faded out over the crop's last 7 %."""
    device = occlusion.device
    border = blend_mask(size, "square", device=device)
    edge = blend_mask(size, "square", erode=OCCLUSION_EDGE[0], feather=OCCLUSION_EDGE[1], device=device)
    outside = (1 - fidelity) * detail_weight(scale.to(device)).view(-1, 1, 1, 1)
    return torch.maximum(edge * feather_occlusion(occlusion), border * face_mask(size, device=device) * outside)


def match_colors(restored: Tensor, reference: Tensor, mask: Tensor, limit: float = 0.15) -> Tensor:
    """Shift each restored face's mean colour, measured where the mask fades (the ring that is
    blended with the photo), to the reference crop's; a large model colour cast would otherwise
    show as a halo. The shift is clamped to ``limit``."""
    ring = (mask * (1 - mask)).clamp_min(0)  # peaks where mask = 0.5
    w = ring / ring.sum((-2, -1), keepdim=True).clamp_min(1e-8)
    delta = ((reference - restored) * w).sum((-2, -1), keepdim=True).clamp(-limit, limit)
    return (restored + delta).clamp(0, 1)


def paste_faces(image: Tensor, faces: Tensor, matrices: Tensor, mask: Tensor, *, color_match: bool = True) -> Tensor:
    """Blend restored faces back into the photo.

    ``image`` (3, H, W); ``faces`` (N, 3, S, S); ``matrices`` (N, 2, 3) map photo pixels to
    ``S``-pixel crops; ``mask`` (1 or N, 1, S, S), e.g. from :func:`blend_mask` or
    :func:`composite_weights`. Each face is warped only into
    its bounding box, so memory does not grow with the photo; faces are blended in order, so
    overlapping faces stay consistent.
    """
    out = image.clone()
    n, _, s, _ = faces.shape
    if n == 0:
        return out
    h, w = image.shape[-2:]
    faces = faces.to(image)
    if color_match:
        reference = warp_crops(image, matrices, s)
        faces = match_colors(faces, reference, mask.to(image))
    inv = torch.linalg.inv(torch.cat([matrices.double(), torch.tensor([[[0, 0, 1]]], dtype=torch.float64)
                                      .expand(n, 1, 3)], 1))[:, :2]
    corners = torch.tensor([[-0.5, -0.5, 1], [s - 0.5, -0.5, 1], [-0.5, s - 0.5, 1], [s - 0.5, s - 0.5, 1]],
                           dtype=torch.float64)
    pts = corners @ inv.transpose(1, 2)  # (N, 4, 2) in the photo
    for i in range(n):
        x0 = int(max(0, math.floor(pts[i, :, 0].min().item()) - 1))
        y0 = int(max(0, math.floor(pts[i, :, 1].min().item()) - 1))
        x1 = int(min(w, math.ceil(pts[i, :, 0].max().item()) + 2))
        y1 = int(min(h, math.ceil(pts[i, :, 1].max().item()) + 2))
        if x1 <= x0 or y1 <= y0:
            continue
        m = inv[i].clone()
        m[:, 2] -= torch.tensor([x0, y0], dtype=torch.float64)  # crop -> box coordinates
        m = m.float().unsqueeze(0).to(image.device)
        src = torch.cat([faces[i:i + 1], mask[i:i + 1].to(image) if mask.shape[0] > 1 else mask.to(image)], 1)
        warped = warp_affine(src, m, (y1 - y0, x1 - x0), mode="bilinear", padding_mode="zeros")[0]
        face, alpha = warped[:3], warped[3:4].clamp(0, 1)
        region = out[:, y0:y1, x0:x1]
        out[:, y0:y1, x0:x1] = region + alpha * (face - region)
    return out


def face_size(landmarks: Tensor) -> Tensor:
    """Eye distance in pixels (N,): the size ``--min-face`` compares with."""
    return (landmarks[:, 1] - landmarks[:, 0]).norm(dim=-1)


def upscale_image(img: Tensor, factor: float) -> Tensor:
    """A whole photo ``(3, H, W)`` enlarged bicubically by ``factor`` (``restore -s``), clamped;
    a copy at factor 1."""
    if factor == 1:
        return img.clone()
    h, w = img.shape[-2:]
    size = (int(round(h * factor)), int(round(w * factor)))
    return F.interpolate(img[None], size=size, mode="bicubic", align_corners=False)[0].clamp(0, 1)
