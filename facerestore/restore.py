"""The restoration pipeline and its Python API.

    from facerestore.restore import Restorer
    r = Restorer.from_pretrained("masked-any", device="auto")   # the model and its detectors, once
    photo = r.restore(photo)                 # PIL / numpy / tensor in, the same kind out
    big = r.restore(photo, RestoreOptions(upscale=2, fidelity=0.5))   # options per call
    faces_hq = r.restore_faces(faces_lq)     # (B, 3, h, w) aligned crops -> (B, 3, H, W)

Whole photos: detect faces and 5 landmarks (registry detector ``masked``, docs/detection.md), align each face onto
the training template at the model's input size, restore every face of a group of photos in one
forward pass (``batch_size`` faces at most), paste them back with a feathered mask.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import align
from .interfaces import Detection, FaceDetector
from .device import resolve_device
from .defaults import DEFAULT_DETECTOR, DEFAULT_MODEL
from .models import fit_input, geometry, load, run_faces, takes_fidelity
from .options import RestoreOptions


@dataclasses.dataclass
class FaceRecord:
    """One detected face: ``box`` (4,), ``landmarks`` (5, 2) in photo pixels, ``eye_distance``
    in pixels; ``restored`` False when it was skipped (``reason``)."""

    box: Tensor
    landmarks: Tensor
    score: float
    eye_distance: float
    restored: bool = True
    reason: str = ""


@dataclasses.dataclass
class RestoreResult:
    """A restored photo ``image`` (3, H*upscale, W*upscale), its faces, and for the restored ones
    the aligned model inputs ``aligned`` (N, 3, h, h) and outputs ``restored`` (N, 3, H, H)."""

    image: Tensor
    faces: list[FaceRecord]
    aligned: Tensor
    restored: Tensor

    @property
    def n_found(self) -> int:
        return len(self.faces)

    @property
    def n_restored(self) -> int:
        return sum(f.restored for f in self.faces)

    @property
    def n_skipped(self) -> int:
        return self.n_found - self.n_restored


class Restorer:
    """The restore service: a model and its face detectors, built once, and per-call
    :class:`~facerestore.options.RestoreOptions` (see :meth:`from_pretrained`). Photos, videos, the
    web app, the HTTP API and a cluster runner are thin adapters over it; one restorer serves any
    mix of options, from any number of threads.

    Options (per call, or the defaults given here as ``options`` or keyword arguments):
    ``min_face``/``max_face``: faces whose eye distance (pixels between the two eye landmarks in
    the input photo) is below/above this are left untouched (0 = no limit).
    ``fidelity`` w in [0, 1] (CodeFormer's convention): outside the occlusion the model estimates
    (the mask), the restored face is blended in with weight ``1 - w``; 1 keeps every visible pixel
    of the photo. Faces larger in the photo than the model's output keep their own visible pixels
    whatever ``w`` (see :func:`facerestore.align.composite_weights`). A generative model
    (``jdsr_inpaint``) also receives ``w``: 0 fills the mask with its realistic synthesis, 1 with
    its faithful (``masked-any``) estimate, in between a blend of the two.
    ``upscale``: the photo is enlarged bicubically by this factor and faces are pasted at that
    resolution. ``detector``: a registry name (default ``masked``), built on first use; or pass
    any :class:`FaceDetector` object as ``detector=`` here (it then serves that name).
    ``min_score``: detections less confident than this are ignored (None: the detector's own
    ``min_score_hint``, 0.9 for one without: MTCNN scores hands and cups 0.85-0.9; the ``masked``
    detector filters its own output and hints 0). ``only_center_face``: restore only the face
    nearest the photo's centre. ``tta``: also restore the mirrored face and average the two,
    occlusion maps included (self-ensemble, as BasicSR's ``--tta``): twice the model time.

    Model settings: ``precision`` ``fp32``, or ``bf16`` (autocast on a CPU with native bf16, or
    CUDA; falls back to fp32 elsewhere); ``batch_size`` faces per forward pass.
    """

    def __init__(self, generator: nn.Module, recipe: Any = None, *, device: str | torch.device = "cpu",
                 detector: FaceDetector | str | None = None, batch_size: int = 16, channels_last: bool = True,
                 name: str = "", precision: str = "fp32", options: Optional[RestoreOptions] = None,
                 **option_values: Any):
        self.device = resolve_device(device)
        self.generator = generator.to(self.device).eval()
        self.recipe = recipe
        self.name = name
        self.scale, self.lq_size = geometry(generator, recipe)
        self.hq_size = self.lq_size * self.scale
        self.batch_size = max(1, int(batch_size))
        if isinstance(detector, str):
            option_values["detector"] = detector
        #: the defaults of every call that passes no options
        self.options = (options or RestoreOptions()).replace(**option_values)
        self.model_has_fidelity = takes_fidelity(self.generator)
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be fp32 or bf16, got {precision!r}")
        self.precision = precision
        self.channels_last = channels_last
        self._detectors: dict[str, FaceDetector] = {}
        if detector is not None and not isinstance(detector, str):
            self._detectors[self.options.detector] = detector
        self._lock = threading.Lock()
        if channels_last and self.device.type != "mps":
            self.generator = self.generator.to(memory_format=torch.channels_last)

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike[str] = DEFAULT_MODEL, device: str | torch.device = "auto",
                        **kwargs: Any) -> "Restorer":
        """A restorer for a model name (``masked-any``, ``bicubic``), a safetensors checkpoint or a
        recipe (:func:`facerestore.models.load`)."""
        dev = resolve_device(device)
        m = load(name_or_path, dev)
        return cls(m.generator, m.recipe, device=dev, name=m.name, **kwargs)

    def _opts(self, options: Optional[RestoreOptions]) -> RestoreOptions:
        return self.options if options is None else options

    def min_score(self, options: Optional[RestoreOptions] = None) -> float:
        """The detection score below which faces are ignored: the option, else the detector's hint."""
        opts = self._opts(options)
        if opts.min_score is not None:
            return opts.min_score
        det = self._detectors.get(opts.detector)
        if det is None:
            from .components import default_registry

            reg = default_registry()
            det = reg.get("detector", opts.detector).obj if ("detector", opts.detector) in reg else None
        return float(getattr(det, "min_score_hint", 0.9))

    # -- detector ------------------------------------------------------------------------------
    def detector_for(self, name: str) -> FaceDetector:
        """A face detector by registry name, built on first use and kept."""
        with self._lock:
            if name not in self._detectors:
                self._detectors[name] = default_detector(self.device, name)
            return self._detectors[name]

    @property
    def detector(self) -> FaceDetector:
        """The default options' detector."""
        return self.detector_for(self.options.detector)

    # -- aligned faces -------------------------------------------------------------------------
    def restore_faces(self, batch: Tensor, options: Optional[RestoreOptions] = None) -> Tensor:
        """Aligned crops ``(B, 3, h, w)`` in [0, 1] (resized to the model input when ``h, w``
        differ) -> restored faces ``(B, 3, H, H)`` in [0, 1], on the input's device."""
        if batch.dim() == 3:
            return self.restore_faces(batch[None], options)[0]
        return self.run_model(batch, options)[0]

    def run_model(self, batch: Tensor, options: Optional[RestoreOptions] = None) -> tuple[Tensor, Tensor]:
        """Aligned crops ``(B, 3, h, w)`` -> ``(restored (B, 3, H, H), occlusion (B, 1, H, H))``,
        ``H`` the model's output size; the occlusion estimate is zero for models without one."""
        if batch.dim() != 4 or batch.shape[1] != 3:
            raise ValueError(f"expected (B, 3, h, w) faces, got {tuple(batch.shape)}")
        opts = self._opts(options)
        x = fit_input(batch.float(), self.lq_size)
        faces, occs = [], []
        with torch.inference_mode():
            for chunk in x.split(self.batch_size):
                chunk = chunk.to(self.device)
                if self.channels_last:
                    chunk = chunk.contiguous(memory_format=torch.channels_last)
                sr, occ = run_faces(self.generator, chunk, opts.fidelity, opts.tta, amp=self._autocast)
                faces.append(sr)
                occs.append(occ)
        if not faces:
            return x.new_zeros(0, 3, self.hq_size, self.hq_size), x.new_zeros(0, 1, self.hq_size, self.hq_size)
        return torch.cat(faces).to(batch.device), torch.cat(occs).to(batch.device)

    def _autocast(self):
        import contextlib

        if self.precision != "bf16":
            return contextlib.nullcontext()
        if self.device.type == "cpu":
            from .device import cpu_has_bf16

            if not cpu_has_bf16():
                return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def restore_aligned(self, batch: Tensor, options: Optional[RestoreOptions] = None) -> Tensor:
        """Square aligned faces ``(B, 3, s, s)`` of any size ``s`` -> ``(B, 3, S, S)`` with
        ``S = max(s, H)``: the restored face composited over the input at that size with the same
        rule as whole photos (the mask is replaced; visible parts follow ``fidelity`` and keep
        their own pixels when the input is larger than the model output)."""
        opts = self._opts(options)
        s = batch.shape[-1]
        restored, occ = self.run_model(batch, opts)
        size = max(s, self.hq_size)
        up = lambda t: t if t.shape[-1] == size else F.interpolate(t, size=(size, size), mode="bicubic",
                                                                   align_corners=False).clamp(0, 1)
        base = up(batch.float())
        scale = torch.full((batch.shape[0],), self.hq_size / s)
        w = align.composite_weights(occ, scale, opts.fidelity, self.hq_size)
        w = F.interpolate(w, size=(size, size), mode="bilinear", align_corners=False) if size != self.hq_size else w
        return base + w.to(base) * (up(restored) - base)

    # -- whole photos --------------------------------------------------------------------------
    def select(self, det: Detection, image_size: tuple[int, int] | None = None,
               options: Optional[RestoreOptions] = None) -> list[FaceRecord]:
        """The detected faces as records: skipped ones (score, landmarks, size, centre) say why."""
        opts = self._opts(options)
        min_score, faces = self.min_score(opts), []
        for i in range(det.boxes.shape[0]):
            if float(det.scores[i]) < min_score:
                continue
            lm = det.landmarks[i].float().cpu()
            eye = float(align.face_size(lm[None])[0]) if torch.isfinite(lm).all() else float("nan")
            rec = FaceRecord(box=det.boxes[i].float().cpu(), landmarks=lm, score=float(det.scores[i]),
                             eye_distance=eye)
            if not torch.isfinite(lm).all():
                rec.restored, rec.reason = False, "no landmarks"
            elif eye < opts.min_face:
                rec.restored, rec.reason = False, f"eye distance {eye:.1f}px < --min-face {opts.min_face:g}"
            elif opts.max_face > 0 and eye > opts.max_face:
                rec.restored, rec.reason = False, f"eye distance {eye:.1f}px > --max-face {opts.max_face:g}"
            faces.append(rec)
        if opts.only_center_face and image_size is not None:
            faces = _center_face(faces, image_size)
        return faces

    def detect(self, images: list[Tensor], options: Optional[RestoreOptions] = None) -> list[Detection]:
        """Faces of each photo with the options' detector, all photos in one call."""
        return self.detector_for(self._opts(options).detector).detect(images) if images else []

    def restore_many(self, images: list[Tensor], detections: Optional[list[Detection]] = None,
                     options: Optional[RestoreOptions] = None) -> list[RestoreResult]:
        """Restore a group of photos ``(3, H, W)`` in [0, 1]; all their faces go through the model
        together (``batch_size`` at a time). ``detections`` skips the detector."""
        opts = self._opts(options)
        images = [img.float() for img in images]
        if detections is None:
            detections = self.detect(images, opts)
        records = [self.select(d, tuple(img.shape[-2:]), opts) for d, img in zip(detections, images)]
        crops = []
        for img, faces in zip(images, records):
            lms = [f.landmarks for f in faces if f.restored]
            if lms:
                m = align.alignment_matrices(torch.stack(lms), self.lq_size)
                crops.append(align.warp_crops(img, m.to(img.device), self.lq_size))
            else:
                crops.append(img.new_zeros(0, 3, self.lq_size, self.lq_size))
        restored_all, occ_all = self.run_model(torch.cat(crops), opts) if sum(len(c) for c in crops) else (None, None)
        results, start = [], 0
        for img, faces, lq in zip(images, records, crops):
            n = lq.shape[0]
            if restored_all is None:
                hq, occ = img.new_zeros(0, 3, self.hq_size, self.hq_size), img.new_zeros(0, 1, self.hq_size, self.hq_size)
            else:
                hq, occ = restored_all[start:start + n], occ_all[start:start + n]
            start += n
            results.append(RestoreResult(self._paste(img, faces, hq, occ, opts), faces, lq.cpu(), hq.cpu()))
        return results

    def _paste(self, img: Tensor, faces: list[FaceRecord], hq: Tensor, occ: Tensor, opts: RestoreOptions) -> Tensor:
        base = align.upscale_image(img, opts.upscale)
        if hq.shape[0] == 0:
            return base
        lms = torch.stack([f.landmarks for f in faces if f.restored])
        if opts.upscale != 1:
            lms = (lms + 0.5) * opts.upscale - 0.5
        m = align.alignment_matrices(lms, self.hq_size)
        weights = align.composite_weights(occ.to(base), align.crop_scale(m), opts.fidelity, self.hq_size)
        if opts.mask_shape != "face":  # an explicit shape replaces the face oval, occlusion still wins
            shape = align.blend_mask(self.hq_size, opts.mask_shape).to(base)
            weights = torch.maximum(align.feather_occlusion(occ.to(base)), shape) * shape
        return align.paste_faces(base, hq.to(base), m.to(base), weights, color_match=opts.color_match)

    def restore_video(self, src: str | os.PathLike[str], dst: str | os.PathLike[str],
                      options: Optional[RestoreOptions] = None, **video: Any):
        """A video file in, the same clip with restored faces out (H.264, audio copied); ``video``
        settings and result as :func:`facerestore.video.restore_video` (``detect_every``, ``crf``,
        ``start``, ``end``, ``progress``...)."""
        from .video import restore_video

        return restore_video(self, src, dst, options=options, **video)

    def restore(self, image: Any, options: Optional[RestoreOptions] = None) -> Any:
        """One photo, as a tensor (3, H, W) float, a PIL image or a numpy (H, W[, C]) array; the
        result has the same kind (and dtype), enlarged by ``upscale``."""
        from .image_types import to_tensor

        tensor, back = to_tensor(image)
        out = self.restore_many([tensor], options=options)[0].image
        return back(out)


def _center_face(faces: list[FaceRecord], image_size: tuple[int, int]) -> list[FaceRecord]:
    """Keep the restorable face whose box centre is nearest the photo's centre (GFPGAN's
    ``--only_center_face``); the others are reported as skipped."""
    h, w = image_size
    cands = [f for f in faces if f.restored]
    if len(cands) < 2:
        return faces
    dist = lambda f: float(((f.box[:2] + f.box[2:]) / 2 - torch.tensor([w / 2, h / 2])).norm())
    keep = min(cands, key=dist)
    for f in cands:
        if f is not keep:
            f.restored, f.reason = False, "not the centre face (--only-center-face)"
    return faces


def draw_boxes(image: Tensor, faces: list[FaceRecord], scale: float = 1.0) -> Tensor:
    """Outline each face's detection box (green: restored, red: skipped) on ``image`` (3, H, W),
    boxes in photo pixels times ``scale``; 2 px lines (3 px on photos over 1000 px)."""
    out = image.clone()
    h, w = out.shape[-2:]
    t = 3 if max(h, w) > 1000 else 2
    for f in faces:
        color = torch.tensor([0.1, 0.9, 0.2] if f.restored else [0.95, 0.15, 0.1], dtype=out.dtype).view(3, 1, 1)
        x0, y0, x1, y1 = [int(round(float(v) * scale)) for v in f.box]
        x0, x1 = max(0, min(x0, w - 1)), max(0, min(x1, w - 1))
        y0, y1 = max(0, min(y0, h - 1)), max(0, min(y1, h - 1))
        out[:, y0:min(y0 + t, h), x0:x1 + 1] = color
        out[:, max(y1 - t + 1, 0):y1 + 1, x0:x1 + 1] = color
        out[:, y0:y1 + 1, x0:min(x0 + t, w)] = color
        out[:, y0:y1 + 1, max(x1 - t + 1, 0):x1 + 1] = color
    return out


def default_detector(device: torch.device | str = "cpu", name: str = DEFAULT_DETECTOR) -> FaceDetector:
    """A registry detector by name (default ``masked``, MTCNN's networks: facenet-pytorch's weights ship inside that
    package), given the device when it takes one and asked for 5 landmarks when it offers more
    (the alignment template has 5 points)."""
    from .errors import FaceRestoreError, MissingWeightsError
    from .components import default_registry

    reg = default_registry()
    if ("detector", name) not in reg:
        if name in ("mtcnn", "masked"):
            raise MissingWeightsError(f"no face detector {name!r} is registered (it needs facenet-pytorch: "
                                      "pip install facenet-pytorch); use --aligned for pre-cropped faces")
        raise FaceRestoreError(f"unknown detector {name!r}; known detectors: {', '.join(reg.names('detector'))}")
    entry = reg.get("detector", name)
    params = {p.name for p in entry.params}
    kwargs: dict[str, Any] = {}
    if "device" in params:
        kwargs["device"] = str(device)
    if "points" in params:
        kwargs["points"] = 5
    return reg.create("detector", name, **kwargs)
