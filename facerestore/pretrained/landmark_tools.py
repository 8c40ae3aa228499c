"""Batched landmarks of *aligned* faces (training crops, restored outputs).

Used by the degradation landmark cache (mask placement), face-prior targets and the landmark
error metric (NME). An aligned face fills the image, so each image yields at most one face: the
largest detection. Images where nothing is found get NaN landmarks and ``found = False``; the
caller decides what to do (e.g. fall back to :func:`facerestore.landmarks.template_landmarks`).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

Method = Literal["mtcnn", "dlib68", "dlib5"]
#: Number of points each method returns.
POINTS = {"mtcnn": 5, "dlib68": 68, "dlib5": 5}

_DETECTORS: dict[tuple[str, str], object] = {}


def _detector(method: str, device: str):
    key = (method, device)
    if key not in _DETECTORS:
        from facerestore_plugins.detectors import DlibDetector, MTCNNDetector

        if method == "mtcnn":
            _DETECTORS[key] = MTCNNDetector(device=device, min_face_size=20)
        elif method in ("dlib68", "dlib5"):
            # upsample=1: aligned 128 px faces are ~80 px wide, inside dlib's HOG range after 2x
            _DETECTORS[key] = DlibDetector(points=68 if method == "dlib68" else 5, upsample=1)
        else:
            raise ValueError(f"unknown landmark method {method!r}; known: {', '.join(POINTS)}")
    return _DETECTORS[key]


def aligned_landmarks(faces: Tensor, method: Method = "mtcnn", batch_size: int = 64,
                      device: str | torch.device | None = None) -> tuple[Tensor, Tensor]:
    """Landmarks of aligned faces ``(B, 3, H, W)`` in [0, 1] -> ``((B, K, 2) pixels, (B,) found)``.

    ``mtcnn``: 5 points (left eye, right eye, nose, mouth left, mouth right), batched on
    ``device`` (default: the faces' device). ``dlib68``/``dlib5``: dlib HOG + 68-point predictor
    (non-commercial model), on the CPU, one image at a time. Per image the largest face is kept.
    """
    if faces.ndim != 4 or faces.shape[1] != 3:
        raise ValueError(f"expected (B, 3, H, W) faces, got {tuple(faces.shape)}")
    dev = str(torch.device(device) if device is not None else faces.device) if method == "mtcnn" else "cpu"
    det = _detector(method, dev)
    k = POINTS[method]
    out = torch.full((faces.shape[0], k, 2), float("nan"))
    found = torch.zeros(faces.shape[0], dtype=torch.bool)
    for start in range(0, faces.shape[0], batch_size):
        chunk = faces[start: start + batch_size]
        for i, d in enumerate(det.detect(list(chunk))):
            if d.boxes.shape[0] == 0:
                continue
            area = (d.boxes[:, 2] - d.boxes[:, 0]) * (d.boxes[:, 3] - d.boxes[:, 1])
            j = int(area.argmax())
            out[start + i] = d.landmarks[j]
            found[start + i] = True
    return out, found
