"""The pieces of MTCNN's cascade in plain torch, for the ``masked`` detector: square boxes, box
regression, crops from a 2x area pyramid (``roi_align``), and the two NMS rules.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def square(b: Tensor) -> Tensor:
    """Boxes (N, 4) -> squares of the longer side around the same centre (MTCNN's ``rerec``)."""
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    side = torch.maximum(w, h)
    x1, y1 = b[:, 0] + (w - side) / 2, b[:, 1] + (h - side) / 2
    return torch.stack([x1, y1, x1 + side, y1 + side], 1)


def regress(b: Tensor, reg: Tensor) -> Tensor:
    """Apply MTCNN's box regression ``reg`` (N, 4), in units of the (inclusive) box size."""
    w, h = b[:, 2] - b[:, 0] + 1, b[:, 3] - b[:, 1] + 1
    return b + reg * torch.stack([w, h, w, h], 1)


class Cropper:
    """Square crops for R-Net/O-Net: ``crops(boxes, size)`` -> (N, 3, size, size), normalised as
    the networks expect, zero outside the image (as the original MTCNN pads). Each box is cut
    with bilinear ``roi_align`` from the level of a 2x area pyramid of ``img`` (1, 3, H, W),
    0..255, where it is at most 2 x ``size`` px across, so 2x2 samples per output pixel cover it
    (anti-aliased, and cheap for large boxes)."""

    def __init__(self, img: Tensor):
        self.levels = [img]

    def level(self, k: int) -> Tensor:
        import torch.nn.functional as F

        while len(self.levels) <= k:
            self.levels.append(F.avg_pool2d(self.levels[-1], 2, ceil_mode=True))
        return self.levels[k]

    def __call__(self, boxes: Tensor, size: int) -> Tensor:
        out = boxes.new_zeros(len(boxes), 3, size, size)
        side = (boxes[:, 2:] - boxes[:, :2] + 1).amax(1).clamp(min=1)
        lvl = (side / (2 * size)).log2().ceil().clamp(min=0).long()
        for k in lvl.unique().tolist():
            idx = (lvl == k).nonzero()[:, 0]
            b = boxes[idx]
            out[idx] = roi_align(self.level(k), torch.cat([b[:, :2], b[:, 2:] + 1], 1) * 0.5 ** k, size)
        return ((out - 127.5) * 0.0078125).contiguous(memory_format=torch.channels_last)


def roi_align(img: Tensor, rois: Tensor, size: int) -> Tensor:
    """``torchvision.ops.roi_align(aligned=True, sampling_ratio=2)`` in plain torch (torchvision
    costs ~2 s of start-up): each of the ``size`` x ``size`` bins of a roi (N, 4: x1, y1, x2, y2 in
    pixel-edge units of ``img`` (1, C, H, W)) is the mean of 2x2 bilinear samples; a sample within
    one pixel outside the image takes the edge value, further out it is 0. Returns (N, C, size, size)."""
    import torch.nn.functional as F

    n, (h, w) = len(rois), img.shape[-2:]
    t = (torch.arange(2 * size, dtype=img.dtype, device=img.device) + 0.5) / (2 * size)
    x0, y0 = rois[:, 0:1] - 0.5, rois[:, 1:2] - 0.5
    xs = x0 + t * (rois[:, 2:3] - rois[:, 0:1])  # (N, 2S) sample positions, pixel-centre units
    ys = y0 + t * (rois[:, 3:4] - rois[:, 1:2])
    inside = (((ys >= -1) & (ys <= h))[:, :, None] & ((xs >= -1) & (xs <= w))[:, None, :]).to(img.dtype)
    gx = xs.clamp(0, w - 1) * (2 / max(w - 1, 1)) - 1
    gy = ys.clamp(0, h - 1) * (2 / max(h - 1, 1)) - 1
    grid = torch.stack([gx[:, None, :].expand(n, 2 * size, 2 * size), gy[:, :, None].expand(n, 2 * size, 2 * size)], -1)
    # one image, all rois stacked along the height: no per-roi copy of the photo
    x = F.grid_sample(img, grid.reshape(1, n * 2 * size, 2 * size, 2), mode="bilinear", align_corners=True)
    x = x.reshape(img.shape[1], n, 2 * size, 2 * size).transpose(0, 1) * inside[:, None]
    return F.avg_pool2d(x, 2)


def nms(boxes: Tensor, scores: Tensor, threshold: float) -> Tensor:
    """Greedy NMS on intersection over union (``torchvision.ops.nms``'s rule, areas without +1),
    in numpy: indices kept, best score first."""
    b, s = boxes.detach().cpu().double().numpy(), scores.detach().cpu().double().numpy()
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    order, keep = np.argsort(-s, kind="stable"), []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        iw = (np.minimum(b[i, 2], b[rest, 2]) - np.maximum(b[i, 0], b[rest, 0])).clip(min=0)
        ih = (np.minimum(b[i, 3], b[rest, 3]) - np.maximum(b[i, 1], b[rest, 1])).clip(min=0)
        inter = iw * ih
        order = rest[inter / np.maximum(area[i] + area[rest] - inter, 1e-12) <= threshold]
    return torch.as_tensor(np.array(keep, dtype=np.int64), device=boxes.device)


def nms_min(boxes: Tensor, scores: Tensor, overlap: float) -> Tensor:
    """Greedy NMS on intersection over the *smaller* box (MTCNN's last-stage "Min" NMS): also
    removes a box lying mostly inside a better one. Returns kept indices, best first."""
    order = torch.argsort(scores, descending=True)
    b = boxes[order]
    area = (b[:, 2] - b[:, 0] + 1).clamp(min=0) * (b[:, 3] - b[:, 1] + 1).clamp(min=0)
    alive = torch.ones(len(b), dtype=torch.bool)
    keep = []
    for i in range(len(b)):
        if not alive[i]:
            continue
        keep.append(i)
        iw = (torch.minimum(b[i, 2], b[:, 2]) - torch.maximum(b[i, 0], b[:, 0]) + 1).clamp(min=0)
        ih = (torch.minimum(b[i, 3], b[:, 3]) - torch.maximum(b[i, 1], b[:, 1]) + 1).clamp(min=0)
        alive &= iw * ih / torch.minimum(area[i], area).clamp(min=1e-6) <= overlap
    return order[torch.tensor(keep, dtype=torch.long)]
