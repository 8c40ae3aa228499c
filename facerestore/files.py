"""Restoring files into a folder: photos (grouped, so several photos' faces share a forward
pass), aligned crops (batched by size) and videos, each output named by
:class:`~facerestore.options.OutputNaming` and checked by the one pixel-limit rule. The service
behind ``facerestore restore`` and any runner that restores folders (the CLI adds only its
options, progress bar and summary line).

Errors on one input are reported through ``fail`` and the others still go on; warnings through
``warn``. A runner that keeps a ledger (the Ray engine's manifest, :mod:`facerestore.cluster`) also
gets one :class:`ItemRecord` per input through ``record``: its status, outputs and faces.
"""

from __future__ import annotations

import dataclasses
import pathlib
import shutil
import sys
from collections.abc import Callable
from typing import Any, Optional

from .options import OutputNaming, RestoreOptions

#: photos decoded and held before their faces go through the model together
PHOTO_GROUP = 8


def _stderr(prefix: str) -> Callable[[str], None]:
    return lambda msg: print(f"{prefix}: {msg}", file=sys.stderr)


def name_outputs(items: list) -> list:
    """Give explicitly named files that share a name a relative path from their common folder
    (``a/x.png b/x.png`` -> ``a/x.png``, ``b/x.png``), so their outputs cannot replace each other;
    folder contents already keep their layout."""
    import os

    loose = [it for it in items if not it.error and len(it.relative.parts) == 1 and it.relative.name == it.path.name]
    names = [it.relative.name for it in loose]
    if len(set(names)) == len(names):
        return items
    parents = [os.path.dirname(os.path.abspath(it.path)) for it in loose]
    root = os.path.commonpath(parents)
    for it in loose:
        it.relative = pathlib.Path(os.path.relpath(os.path.abspath(it.path), root))
    return items


def check_output_sizes(items: list, options: RestoreOptions) -> None:
    """Refuse, before any work, photos whose output (input x ``upscale``) would pass the pixel
    limit (:func:`facerestore.io.check_output_pixels`): one line, exit 2 in the CLI."""
    from PIL import Image

    from .io import check_output_pixels

    if options.upscale == 1:
        return
    for it in items:
        if it.error:
            continue
        try:
            with Image.open(it.path) as im:
                w, h = im.size
        except Exception:  # noqa: BLE001 - unreadable files are reported when they are read
            continue
        check_output_pixels(it.path, w, h, options.upscale, options.max_pixels)


@dataclasses.dataclass
class ItemRecord:
    """What became of one input: ``status`` ``ok`` (restored and written), ``copied`` (no face
    restored: the input copied unchanged), ``rejected`` (the input itself cannot be used: unreadable,
    not an image, too large, its output taken; ``error`` says why) or ``failed`` (anything else:
    a write error, an exception); ``outputs`` every file
    written for it (extras included); ``faces`` found, ``restored``, ``skipped``; ``summary`` a
    video's :class:`~facerestore.video.VideoSummary`."""

    item: Any
    kind: str
    status: str
    outputs: list = dataclasses.field(default_factory=list)
    faces: int = 0
    restored: int = 0
    skipped: int = 0
    error: str = ""
    summary: Any = None


class Stats:
    def __init__(self) -> None:
        self.photos = self.faces = self.restored = self.skipped = self.failed = self.copied = self.videos = 0
        self.seconds = 0.0

    def summary(self, aligned: bool) -> str:
        if aligned:
            return (f"summary: {self.photos} aligned faces restored, {self.failed} failed, "
                    f"{self.seconds:.1f}s")
        videos = f"{self.videos} videos, " if self.videos else ""
        return (f"summary: {self.photos} photos, {videos}{self.faces} faces found, {self.restored} restored, "
                f"{self.skipped} skipped, {self.copied} without faces, {self.failed} failed, {self.seconds:.1f}s")


class FileRestorer:
    """Restores input items (from :func:`facerestore.io.iter_inputs`) into ``out`` with one
    :class:`~facerestore.restore.Restorer` and one :class:`RestoreOptions`; counts in ``stats``.

    ``save_faces``/``compare``: also write the aligned faces / input | output side by side.
    ``advance()`` is called once per photo or crop done; ``fail``/``warn``/``note`` receive one-line
    messages (default: stderr with ``error:``/``warning:``/``note:``); ``record`` receives one
    :class:`ItemRecord` per input, once it is done with."""

    def __init__(self, restorer, out: str | pathlib.Path, options: Optional[RestoreOptions] = None, *,
                 save_faces: bool = False, compare: bool = False, advance: Optional[Callable[[], None]] = None,
                 fail: Optional[Callable[[str], None]] = None, warn: Optional[Callable[[str], None]] = None,
                 note: Optional[Callable[[str], None]] = None,
                 record: Optional[Callable[[ItemRecord], None]] = None):
        self.r, self.opts = restorer, restorer.options if options is None else options
        self.naming = OutputNaming(out, self.opts)
        self.out, self.stats = self.naming.out, Stats()
        self.save_faces, self.compare = save_faces, compare
        self._advance, self._fail = advance, fail or _stderr("error")
        self.warn, self.note = warn or _stderr("warning"), note or _stderr("note")
        self.noticed_crop = False
        self._record = record

    def record(self, item, kind: str, status: str, outputs=(), **fields) -> None:
        if self._record is not None:
            self._record(ItemRecord(item, kind, status, list(outputs), **fields))

    def _reject(self, item, msg: str, kind: str = "photo") -> None:
        """An input refused before any work: reported, counted, recorded."""
        self.fail(msg)
        self.advance()
        self.record(item, kind, "rejected", error=msg)

    def advance(self) -> None:
        if self._advance is not None:
            self._advance()

    def fail(self, msg: str) -> None:
        self.stats.failed += 1
        self._fail(msg)

    def _read(self, item, kind: str = "photo"):
        from .errors import InputImageError
        from .io import read_image

        if item.error:
            self._reject(item, item.error, kind)
            return None
        target = self.naming.target(item)
        clash = self.naming.claim(item, target)
        if clash:
            self._reject(item, clash, kind)
            return None
        try:
            if target.exists() and target.resolve() == item.path.resolve():
                self._reject(item, f"{item.path}: the output would overwrite the input; choose another -o folder", kind)
                return None
        except OSError:
            pass
        try:
            img, info = read_image(item.path, self.opts.max_pixels)
        except InputImageError as exc:
            self._reject(item, str(exc), kind)
            return None
        if info.frames > 1:
            self.warn(f"{item.path}: {info.frames} frames, only the first is restored")
        return img, info, target

    def _write(self, target: pathlib.Path, img, info, item=None, kind: str = "photo") -> bool:
        import torch.nn.functional as F

        from .io import write_image

        alpha = info.alpha
        if alpha is not None and tuple(alpha.shape[-2:]) != tuple(img.shape[-2:]):
            alpha = F.interpolate(alpha[None], size=img.shape[-2:], mode="bilinear", align_corners=False)[0]
        try:
            write_image(target, img, alpha=alpha, bits=info.bits, grayscale=info.grayscale,
                        icc_profile=info.icc_profile)
        except OSError as exc:
            msg = f"{target}: cannot write ({exc.strerror or exc})"
            self.fail(msg)
            self.record(item, kind, "failed", error=msg)
            return False
        return True

    # -- whole photos ---------------------------------------------------------------------------
    def photos(self, items) -> None:
        """Photos in groups of :data:`PHOTO_GROUP` consecutive inputs, whose faces share a forward
        pass. A photo that cannot be read leaves its group one short (the next photo does not move
        up): a model's output moves by ~1e-6 with its batch, so the groups, and the bytes written,
        depend only on the listing, the same in any engine that cuts it alike (the Ray units)."""
        group: list = []
        for k, item in enumerate(items, 1):
            got = self._read(item)
            if got is not None:
                group.append((item, *got))
            if k % PHOTO_GROUP == 0 and group:
                self._process(group)
                group = []
        if group:
            self._process(group)

    def _process(self, group) -> None:
        from .errors import FaceRestoreError

        images = [g[1] for g in group]
        try:
            detections = self.r.detect(images, self.opts)
        except FaceRestoreError:
            raise
        except Exception:  # noqa: BLE001 - a detector failing on a group: retry one by one
            detections = []
            for (item, img, *_rest) in group:
                try:
                    detections.extend(self.r.detect([img], self.opts))
                except Exception as exc:  # noqa: BLE001
                    self.warn(f"{item.path}: face detection failed ({exc}); copied unchanged")
                    from .interfaces import Detection
                    import torch

                    detections.append(Detection(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, 5, 2)))
        results = self.r.restore_many(images, detections, self.opts)
        for (item, img, info, target), res in zip(group, results):
            counts = dict(faces=res.n_found, restored=res.n_restored, skipped=res.n_skipped)
            self.advance()
            self.stats.photos += 1
            self.stats.faces += res.n_found
            self.stats.restored += res.n_restored
            self.stats.skipped += res.n_skipped
            if res.n_restored == 0:
                self.stats.copied += res.n_found == 0
                why = "no face found" if res.n_found == 0 else f"{res.n_found} face(s), none restored ({res.faces[0].reason})"
                if self.opts.upscale == 1 and target.suffix.lower() == item.path.suffix.lower() and not self.opts.draw_box:
                    self.warn(f"{item.path}: {why}; copied unchanged")
                    try:
                        from .checkpoint import atomic_write_bytes

                        atomic_write_bytes(target, lambda tmp, src=item.path: shutil.copyfile(src, tmp))
                    except OSError as exc:
                        msg = f"{target}: cannot write ({exc.strerror or exc})"
                        self.fail(msg)
                        self.record(item, "photo", "failed", error=msg, **counts)
                        continue
                    self.record(item, "photo", "copied", [target], **counts)
                    continue
                self.warn(f"{item.path}: {why}; written without changes to faces")
            image = res.image
            if self.opts.draw_box:
                from .restore import draw_boxes

                image = draw_boxes(image, res.faces, self.opts.upscale)
            if not self._write(target, image, info, item):
                continue
            extras = self._extras(item, target, img, res)
            self.record(item, "photo", "ok", [target, *extras], **counts)

    def _extras(self, item, target: pathlib.Path, img, res) -> list[pathlib.Path]:
        import torch
        import torch.nn.functional as F

        from .io import write_image

        stem = target.relative_to(self.out).with_suffix("")
        written = []
        if self.save_faces and res.restored.shape[0]:
            for i, (lq, hq) in enumerate(zip(res.aligned, res.restored)):
                written.append(write_image(self.out / "faces" / f"{stem}_face{i}_input.png", lq))
                written.append(write_image(self.out / "faces" / f"{stem}_face{i}_restored.png", hq))
        if self.compare:
            left = img
            if tuple(left.shape[-2:]) != tuple(res.image.shape[-2:]):
                left = F.interpolate(left[None], size=res.image.shape[-2:], mode="nearest")[0]
            written.append(write_image(self.out / "compare" / f"{stem}.jpg", torch.cat([left, res.image], dim=2)))
        return written

    # -- videos -----------------------------------------------------------------------------------
    def videos(self, items, settings: dict, *, progress: Optional[Callable[[Any], Any]] = None,
               done: Optional[Callable[[Any, pathlib.Path, Any], None]] = None) -> None:
        """Each video through :meth:`Restorer.restore_video` (``settings``: ``detect_every``,
        ``crf``, ``start``, ``end``); outputs claimed like photos', so none replaces another.
        ``progress(item)`` may return a context manager with ``update_to(done, total)`` (a
        progress bar); ``done(item, target, summary)`` is called after each video."""
        import contextlib

        from .errors import InputImageError

        for it in items:
            target = self.naming.video_target(it)
            clash = it.error or self.naming.claim(it, target)
            if clash:
                self.fail(clash)
                self.record(it, "video", "rejected", error=clash)
                continue
            try:
                with (progress(it) if progress else contextlib.nullcontext()) as bar:
                    summary = self.r.restore_video(it.path, target, self.opts,
                                                   progress=getattr(bar, "update_to", None), **settings)
            except InputImageError as exc:
                self.fail(str(exc))
                self.record(it, "video", "failed" if "cannot write" in str(exc) else "rejected", error=str(exc))
                continue
            self.stats.videos += 1
            self.stats.faces += summary.faces  # summed over frames, as each video's own line counts them
            self.stats.restored += summary.faces
            if summary.faces == 0:
                self.warn(f"{it.path}: no face found; written without changes to faces")
            if done is not None:
                done(it, target, summary)
            self.record(it, "video", "ok", [target], faces=summary.faces, restored=summary.faces, summary=summary)

    # -- aligned crops ----------------------------------------------------------------------------
    def aligned(self, items) -> None:
        """Aligned crops, batched by size; a non-square crop is centre-cropped to a square (as
        training does with CelebA's 178x218), with one notice for the run."""
        import torch

        pending: dict[int, list] = {}

        def flush(size: int) -> None:
            group = pending.pop(size, [])
            if not group:
                return
            out = self.r.restore_aligned(torch.stack([p[1] for p in group]), self.opts)
            for (item, lq, info, target), face in zip(group, out):
                self.advance()
                if self._write(target, face, info, item, "aligned"):
                    self.stats.photos += 1
                    extras = self._extras_aligned(target, lq, face)
                    self.record(item, "aligned", "ok", [target, *extras], faces=1, restored=1)

        for item in items:
            got = self._read(item, "aligned")
            if got is None:
                continue
            img, info, target = got
            face = self._square(item, img)
            pending.setdefault(face.shape[-1], []).append((item, face, info, target))
            if len(pending[face.shape[-1]]) >= self.r.batch_size:
                flush(face.shape[-1])
        for size in list(pending):
            flush(size)

    def _square(self, item, img):
        h, w = img.shape[-2:]
        if h == w:
            return img
        side = min(h, w)
        if not self.noticed_crop:
            self.noticed_crop = True
            self.note(f"non-square aligned crops (first: {item.path}, {w}x{h}) are centre-cropped to "
                      f"squares ({side}x{side} here), as in training")
        top, left = (h - side) // 2, (w - side) // 2
        return img[:, top:top + side, left:left + side]

    def _extras_aligned(self, target: pathlib.Path, lq, face) -> list[pathlib.Path]:
        import torch
        import torch.nn.functional as F

        from .io import write_image

        stem = target.relative_to(self.out).with_suffix("")
        written = []
        if self.save_faces:  # the face as the model saw it
            size = self.r.lq_size
            model_in = F.interpolate(lq[None], size=(size, size), mode="bicubic", align_corners=False,
                                     antialias=lq.shape[-1] > size)[0].clamp(0, 1)
            written.append(write_image(self.out / "faces" / f"{stem}_input.png", model_in))
            written.append(write_image(self.out / "faces" / f"{stem}_restored.png", face))
        if self.compare:
            left = F.interpolate(lq[None], size=face.shape[-2:], mode="nearest")[0]
            written.append(write_image(self.out / "compare" / f"{stem}.jpg", torch.cat([left, face], dim=2)))
        return written

