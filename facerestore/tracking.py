"""Following faces through a clip: linking detections into tracks (IoU/centre matching),
interpolating and extrapolating landmarks between detection frames, and smoothing each track's
landmarks in time with a One-Euro filter.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

import torch
from torch import Tensor

from .interfaces import Detection

#: One-Euro settings: cutoff (Hz) for a still face, and how fast the cutoff rises with speed
#: (Hz per eye distance per second); see :class:`OneEuroFilter`
MIN_CUTOFF, BETA = 0.5, 1.5


class OneEuroFilter:
    """One-Euro filter (Casiez et al., CHI 2012) for one face's landmarks ``(5, 2)``.

    A low-pass whose cutoff rises with speed: a still face keeps ``min_cutoff`` (Hz), which
    removes the detector's frame-to-frame jitter; a moving face gets ``min_cutoff + beta * speed``
    so it does not lag. Speed is in eye distances per second, so one setting suits any face size.
    """

    def __init__(self, rate: float, min_cutoff: float = MIN_CUTOFF, beta: float = BETA, d_cutoff: float = 1.0):
        self.rate, self.min_cutoff, self.beta, self.d_cutoff = float(rate), min_cutoff, beta, d_cutoff
        self.x: Optional[Tensor] = None
        self.dx: Optional[Tensor] = None
        self.samples = 0

    def _alpha(self, cutoff: float) -> float:
        return 1.0 / (1.0 + self.rate / (2 * math.pi * cutoff))

    def seed(self, velocity: Tensor) -> None:
        """Start the speed estimate at a known velocity ``(5, 2)`` in pixels per frame (a new
        track's first motion), instead of at rest, so a face that enters moving does not lag."""
        self.dx = velocity.float() * self.rate

    def __call__(self, x: Tensor) -> Tensor:
        x = x.float()
        self.samples += 1
        if self.x is None:
            self.x = x.clone()
            self.dx = torch.zeros_like(x) if self.dx is None else self.dx
            return x.clone()
        dx = (x - self.x) * self.rate
        self.dx = self.dx + self._alpha(self.d_cutoff) * (dx - self.dx)
        eye = float((x[1] - x[0]).norm()) or 1.0
        speed = float(self.dx.norm(dim=-1).mean()) / eye
        self.x = self.x + self._alpha(self.min_cutoff + self.beta * speed) * (x - self.x)
        return self.x.clone()


@dataclasses.dataclass
class Track:
    """One face followed over time: ``landmarks`` (5, 2) and ``box`` (4,) where it was last seen
    (or extrapolated to), ``velocity`` (5, 2) in pixels per frame, ``missed`` detections in a row."""

    id: int
    landmarks: Tensor
    box: Tensor
    score: float
    velocity: Tensor
    filter: OneEuroFilter
    missed: int = 0


#: what a tracker says about one frame: (track, landmarks (5, 2), box (4,)) per face present
FramePlan = list[tuple[Track, Tensor, Tensor]]


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Intersection over union of boxes ``(T, 4)`` and ``(D, 4)`` (x1, y1, x2, y2) -> ``(T, D)``."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp_min(0).prod(-1)
    area = lambda x: (x[:, 2:] - x[:, :2]).clamp_min(0).prod(-1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter).clamp_min(1e-6)


def match_boxes(predicted: Tensor, detected: Tensor, min_iou: float = 0.2) -> list[tuple[int, int]]:
    """Greedy one-to-one matching of predicted track boxes ``(T, 4)`` to detections ``(D, 4)``.

    A pair qualifies by IoU >= ``min_iou`` or, for a small fast face whose boxes no longer overlap
    much, by a centre distance under one box size; best IoU (then nearest) first."""
    if predicted.shape[0] == 0 or detected.shape[0] == 0:
        return []
    predicted, detected = predicted.float(), detected.float()
    iou = box_iou(predicted, detected)  # (T, D)
    centre = lambda b: (b[:, :2] + b[:, 2:]) / 2  # noqa: E731
    size = (predicted[:, 2:] - predicted[:, :2]).clamp_min(1).mean(1, keepdim=True)  # (T, 1)
    dist = torch.cdist(centre(predicted), centre(detected)) / size
    ok = (iou >= min_iou) | (dist < 1.0)
    rank = iou - 0.01 * dist
    pairs = sorted(((float(rank[t, d]), t, d) for t, d in ok.nonzero().tolist()), reverse=True)
    used_t, used_d, out = set(), set(), []
    for _, t, d in pairs:
        if t not in used_t and d not in used_d:
            used_t.add(t)
            used_d.add(d)
            out.append((t, d))
    return out


class FaceTracker:
    """Links the detections of detection frames into tracks and fills in the frames between.

    ``advance(det, n)`` is called with the detections of a frame and the number ``n`` of frames
    since the previous detection frame (this one included); it returns, for each of those ``n``
    frames, the faces present: matched tracks interpolated linearly between the two detections,
    tracks the detector missed extrapolated at their velocity (``max_missed`` times, then
    dropped), new tracks only on the detection frame itself. Detections under ``min_score`` are
    ignored (the restorer would ignore them too)."""

    def __init__(self, rate: float, min_score: float = 0.0, max_missed: int = 1, smoothing: bool = True):
        self.rate, self.min_score, self.max_missed, self.smoothing = rate, min_score, max_missed, smoothing
        self.tracks: list[Track] = []
        self.next_id = 0

    def reset(self) -> None:
        """Forget all tracks (a scene cut, or the end of the restored range): ids keep counting."""
        self.tracks = []

    def advance(self, det: Detection, n: int) -> list[FramePlan]:
        keep = det.scores.float() >= self.min_score
        boxes, lms, scores = det.boxes[keep].float(), det.landmarks[keep].float(), det.scores[keep].float()
        pred = torch.stack([t.box + _box_shift(t.velocity) * n for t in self.tracks]) if self.tracks else boxes[:0]
        pairs = dict(match_boxes(pred, boxes))
        plans: list[FramePlan] = [[] for _ in range(n)]
        survivors = []
        steps = torch.arange(1, n + 1, dtype=torch.float32)[:, None, None] / n  # (n, 1, 1)
        for ti, track in enumerate(self.tracks):
            if ti in pairs:
                d = pairs[ti]
                path = track.landmarks + (lms[d] - track.landmarks) * steps  # (n, 5, 2)
                bpath = track.box + (boxes[d] - track.box) * steps[:, :, 0]  # (n, 4)
                track.velocity, track.score, track.missed = (lms[d] - track.landmarks) / n, float(scores[d]), 0
                if track.filter.samples == 1:
                    track.filter.seed(track.velocity)
            else:
                track.missed += 1
                if track.missed > self.max_missed:
                    continue
                path = track.landmarks + track.velocity * steps * n
                bpath = track.box + _box_shift(track.velocity) * steps[:, :, 0] * n
            track.landmarks, track.box = path[-1].clone(), bpath[-1].clone()
            survivors.append(track)
            for i in range(n):
                plans[i].append((track, path[i], bpath[i]))
        for d in sorted(set(range(boxes.shape[0])) - set(pairs.values())):
            track = Track(self.next_id, lms[d].clone(), boxes[d].clone(), float(scores[d]), torch.zeros(5, 2),
                          OneEuroFilter(self.rate))
            self.next_id += 1
            survivors.append(track)
            plans[-1].append((track, lms[d], boxes[d]))
        self.tracks = survivors
        return plans

    def detections(self, plan: FramePlan) -> tuple[Detection, list[int]]:
        """One frame's faces as a :class:`Detection` (landmarks smoothed in time, each track's
        detection score) and the track ids, in the same order. Call once per frame, in order."""
        if not plan:
            return Detection(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, 5, 2)), []
        lms, boxes = [], []
        for track, lm, box in plan:
            smooth = track.filter(lm) if self.smoothing else lm
            shift = (smooth - lm).mean(0)
            lms.append(smooth)
            boxes.append(box + torch.cat([shift, shift]))
        scores = torch.tensor([t.score for t, _, _ in plan])
        return Detection(torch.stack(boxes), scores, torch.stack(lms)), [t.id for t, _, _ in plan]


def _box_shift(velocity: Tensor) -> Tensor:
    """A box's motion (4,) from its landmarks' mean motion (velocity (5, 2))."""
    v = velocity.mean(0)
    return torch.cat([v, v])
