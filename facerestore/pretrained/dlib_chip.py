"""dlib's 150 px face-chip framing, reached from facerestore's aligned framing by a fixed warp.

dlib's face-recognition ResNet was trained on chips that ``get_face_chip_details(shape, 150,
0.25)`` cuts: a similarity transform that puts dlib's 5 landmarks (outer and inner eye corners,
nose base) on dlib's mean face :data:`DLIB_CHIP_5`. That chip is a tighter crop than our aligned
faces (framed by :data:`facerestore.landmarks.TEMPLATE_5`): about 61 % of their width, from the
brows to below the chin. Fed our faces merely resized, the network hardly separates people. Since every aligned face shares one framing, where dlib's
landmarks fall in it is (on average) fixed too: :data:`DLIB5_IN_TEMPLATE`, measured by
``benchmarks/dlib_chip_framing.py``. The chip of an aligned face is then one fixed similarity
transform of it (:func:`chip_to_template`), applied differentiably by :func:`warp_to_chip`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

#: dlib's mean face for 5-point shapes, in [0, 1] of an unpadded chip: ``get_face_chip_details``
#: in ``dlib/image_transforms/interpolation.h`` (dlib 19.x/20.x). Order as dlib's 5-point predictor:
#: outer and inner corner of the eye on the image's right, outer and inner corner of the other
#: eye, base of the nose.
DLIB_CHIP_5 = (
    (0.8595674595992, 0.2134981538014),
    (0.6460604764104, 0.2289674387677),
    (0.1205750620789, 0.2137274526848),
    (0.3340850613712, 0.2290642403242),
    (0.4901123135679, 0.6277975316475),
)

#: The same 5 dlib landmarks in facerestore's aligned framing (fractions of the face's width and
#: height, continuous coordinates): interquartile mean of dlib's 5-point shape predictor
#: (HOG detector, 2x-upscaled photo) on 1,109 ``celeba/train`` photos (every 4th file; dlib found
#: no face in 16 of 1,125), centre-cropped 178x178 like the training data; per-coordinate std
#: 0.7-1.2 % of the face size (nose base x: 2.6 %). Reproduce: ``benchmarks/dlib_chip_framing.py``.
DLIB5_IN_TEMPLATE = (
    (0.6517, 0.5227),
    (0.5647, 0.5283),
    (0.3483, 0.5225),
    (0.4353, 0.5284),
    (0.4982, 0.6928),
)

CHIP_SIZE = 150
CHIP_PADDING = 0.25


def chip_to_template(points: Tensor | None = None, size: int = CHIP_SIZE, padding: float = CHIP_PADDING) -> Tensor:
    """(2, 3) affine: chip pixel index ``(col, row, 1)`` -> position in the aligned face ([0, 1]).

    The similarity transform ``get_face_chip_details`` fits from its padded mean face (in chip
    pixels) to the landmarks; ``points`` (5, 2) are the landmarks in [0, 1] of the aligned face
    (default :data:`DLIB5_IN_TEMPLATE`). The continuous/pixel-index offset of the source cancels
    out: a similarity fit commutes with ``(x + 0.5) / S``.
    """
    from facerestore.align import umeyama

    src = (torch.tensor(DLIB_CHIP_5, dtype=torch.float64) + padding) / (2 * padding + 1) * size
    dst = torch.tensor(DLIB5_IN_TEMPLATE, dtype=torch.float64) if points is None else points.double()
    return umeyama(src.unsqueeze(0), dst)[0].double()


def chip_positions(matrix: Tensor, height: int, width: int) -> Tensor:
    """Where each chip pixel samples an aligned ``height x width`` face: ``(150, 150, 2)`` x, y in [0, 1].

    Reproduces ``dlib.extract_image_chip`` to < 0.01 source pixels (checked by
    ``benchmarks/dlib_chip_framing.py``): dlib stores the fitted transform as a rectangle of
    ``150 * s`` source pixels (``s`` source pixels per chip pixel) whose first and last pixel
    centres meet the chip's, so it samples at ``k (c - 74.5) + 75`` of the fitted transform,
    ``k = (150 s - 1) / (149 s)``, instead of at ``c``.
    """
    m = matrix.double().cpu()
    step = float(torch.linalg.det(m[:, :2]).abs().sqrt())  # face fraction per chip pixel
    idx = torch.arange(CHIP_SIZE, dtype=torch.float64) - (CHIP_SIZE - 1) / 2
    out = []
    for n in (width, height):
        s = step * n
        out.append(idx * (CHIP_SIZE * s - 1) / ((CHIP_SIZE - 1) * s) + CHIP_SIZE / 2)
    r, c = torch.meshgrid(out[1], out[0], indexing="ij")
    return torch.stack([c, r, torch.ones_like(c)], -1) @ m.T


def warp_to_chip(faces: Tensor, matrix: Tensor | None = None) -> Tensor:
    """Aligned faces ``(B, C, H, W)`` (any size) -> dlib chips ``(B, C, 150, 150)``, differentiably.

    Bilinear ``grid_sample`` with zeros outside the face (dlib pads chips with black too); a face
    sampled more coarsely than its resolution is first resized down with antialiasing.
    """
    m = (chip_to_template() if matrix is None else matrix).double().cpu()
    step = float(torch.linalg.det(m[:, :2]).abs().sqrt())
    h, w = faces.shape[-2:]
    th, tw = min(h, round(1.0 / step)), min(w, round(1.0 / step))
    if (th, tw) != (h, w):
        faces = F.interpolate(faces, size=(th, tw), mode="bilinear", align_corners=False, antialias=True)
    grid = (chip_positions(m, th, tw) * 2 - 1).to(device=faces.device, dtype=faces.dtype)
    grid = grid.unsqueeze(0).expand(faces.shape[0], -1, -1, -1)
    return F.grid_sample(faces, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
