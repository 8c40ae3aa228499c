"""The face template every aligned face in facerestore follows, and landmark heatmaps.

Training data (CelebA aligned, centre-cropped 178x178 and resized), mask placement, face-prior
heatmaps and the alignment in ``restore`` all use one framing, :data:`TEMPLATE_5`, so a model
trained on the data sees faces framed the same way at restore time.

:data:`TEMPLATE_5` is the per-point median of MTCNN (facenet-pytorch) 5-point landmarks on 200
``celeba/val`` faces (every third file, sorted), centre-cropped and resized to 128x128, divided by
128. Per-point standard deviations were 0.7-3.3 % of the face size (largest: nose x).
"""

from __future__ import annotations

import torch
from torch import Tensor

#: (5, 2) x, y in [0, 1] of an aligned face: left eye, right eye, nose tip, left and right mouth
#: corner (left/right as seen in the image).
TEMPLATE_5 = torch.tensor([
    [0.3940, 0.5194],
    [0.6153, 0.5200],
    [0.5043, 0.6628],
    [0.4042, 0.7499],
    [0.6029, 0.7501],
])
#: the same points' order in a mirrored image: the eyes and the mouth corners swap sides
MIRROR_5 = [1, 0, 2, 4, 3]


def mirror_landmarks(landmarks: Tensor, width: int) -> Tensor:
    """5-point landmarks ``(B, 5, 2)`` in pixels (pixel i's centre at i + 0.5) of a ``width``-wide
    image -> the same faces' landmarks after a horizontal flip (``x -> width - x``, sides swapped)."""
    mirrored = landmarks[:, MIRROR_5].clone()
    mirrored[..., 0] = width - mirrored[..., 0]
    return mirrored


def template_landmarks(size: int, batch: int = 1, device: torch.device | str = "cpu") -> Tensor:
    """The template in pixel units of a ``size x size`` face: ``(batch, 5, 2)``."""
    return (TEMPLATE_5.to(device) * size).unsqueeze(0).expand(batch, -1, -1).clone()


def render_heatmaps(landmarks: Tensor, size: int, sigma: float = 1.5, heatmap_size: int | None = None) -> Tensor:
    """Gaussian heatmaps, one channel per landmark: ``(B, K, 2)`` pixels of a ``size`` image ->
    ``(B, K, S, S)`` in [0, 1] (peak 1) with ``S = heatmap_size or size``; sigma in heatmap pixels."""
    s = heatmap_size or size
    pts = landmarks.float() * (s / size)
    coords = torch.arange(s, device=landmarks.device, dtype=torch.float32) + 0.5
    dx = coords.view(1, 1, 1, s) - pts[..., 0].unsqueeze(-1).unsqueeze(-1)
    dy = coords.view(1, 1, s, 1) - pts[..., 1].unsqueeze(-1).unsqueeze(-1)
    return torch.exp(-(dx * dx + dy * dy) / (2 * sigma * sigma))
