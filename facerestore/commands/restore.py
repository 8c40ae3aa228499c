"""`facerestore restore`: photos in, photos with restored faces out.

Exit codes: 0 every input was processed (photos without faces count: they are copied with a
warning); 1 at least one input failed (reported, the others still written); 2 a user error that
stops everything (bad option, model not found).
"""

from __future__ import annotations

import os
import pathlib
import shutil
import time
from typing import List, Optional

import typer

from ..progress import ItemProgress
from ..defaults import DEFAULT_DETECTOR, DEFAULT_MODEL
from . import user_errors

#: photos decoded and held before their faces go through the model together
PHOTO_GROUP = 8


DETECTOR_HELP = "Face detector (a registered 'detector' component; see `facerestore plugins`)."


def register(app: typer.Typer) -> None:
    @app.command("restore")
    @user_errors
    def restore(
        inputs: List[str] = typer.Argument(..., metavar="INPUT...", help="Photos, videos (.mp4, .mov, ...), folders "
                                     "(recursive) or globs."),
        out_dir: pathlib.Path = typer.Option(pathlib.Path("restored"), "-o", "--out", help="Output folder; "
                                             "outputs keep the inputs' relative paths."),
        model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Model name (see `facerestore doctor`) or .safetensors path."),
        device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
        batch_size: int = typer.Option(16, "--batch-size", "-b", min=1, help="Faces per forward pass."),
        fidelity: float = typer.Option(0.0, "-w", "--fidelity", min=0, max=1, help="0 realistic .. 1 faithful: "
                                       "outside the mask, how much of the photo's own face to keep (0: the restored face, "
                                       "1: the photo); inside it, a generative model's synthesis (0) or faithful estimate (1)."),
        upscale: float = typer.Option(1.0, "-s", "--upscale", min=1, help="Enlarge whole photos by S (bicubic background)."),
        detector: str = typer.Option(DEFAULT_DETECTOR, "--detector", help=DETECTOR_HELP),
        aligned: bool = typer.Option(False, "--aligned", help="Inputs are aligned face crops: no detection."),
        only_center_face: bool = typer.Option(False, "--only-center-face", help="Restore only the face nearest the centre."),
        draw_box: bool = typer.Option(False, "--draw-box", help="Outline detected faces (green restored, red skipped)."),
        ext: str = typer.Option("auto", "--ext", help="Output format: auto (as the input), png or jpg."),
        suffix: str = typer.Option("", "--suffix", help="Add this to output file names (photo.jpg -> photo<SUFFIX>.jpg)."),
        save_faces: bool = typer.Option(False, "--save-faces", help="Also write aligned inputs and restored crops to OUT/faces."),
        compare: bool = typer.Option(False, "--compare", help="Also write input | output side by side to OUT/compare."),
        min_face: float = typer.Option(0.0, "--min-face", min=0, help="Skip faces whose eye distance is below PX pixels."),
        max_face: float = typer.Option(0.0, "--max-face", min=0, help="Skip faces whose eye distance is above PX pixels (0: no limit)."),
        min_score: Optional[float] = typer.Option(None, "--min-score", min=0, max=1, help="Ignore detections less "
                                                  "confident than this (default: the detector's own, 0.9 for mtcnn)."),
        color_match: bool = typer.Option(True, "--color-match/--no-color-match", help="Match restored faces' colour to the photo."),
        max_pixels: Optional[int] = typer.Option(None, "--max-pixels", min=1, help="Refuse larger inputs and outputs (default ~89.5 MP)."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
        precision: str = typer.Option("fp32", "--precision", help="fp32, or bf16 (autocast on CUDA and on CPUs with AVX512-BF16/AMX; fp32 on other CPUs)."),
        tta: bool = typer.Option(False, "--tta", help="Also restore each mirrored face and average the two "
                                 "(self-ensemble: 2x model time)."),
        detect_every: int = typer.Option(5, "--detect-every", min=1, help="Videos: detect faces every K frames, track in between."),
        crf: int = typer.Option(18, "--crf", min=0, max=51, help="Videos: H.264 quality (lower: better and larger)."),
        start: Optional[float] = typer.Option(None, "--start", min=0, help="Videos: restore from this second on."),
        end: Optional[float] = typer.Option(None, "--end", min=0, help="Videos: restore up to this second."),
    ) -> None:
        """Restore the faces in photos and videos (detect, align, restore, paste back) or in aligned crops."""
        from ..errors import FaceRestoreError
        from ..io import IMAGE_EXTENSIONS, iter_inputs
        from ..restore import Restorer
        from ..video import VIDEO_SUFFIXES
        from .video import is_video

        check_options(precision, ext, suffix, start, end)
        t0 = time.perf_counter()
        found = name_outputs(list(iter_inputs(inputs, IMAGE_EXTENSIONS + VIDEO_SUFFIXES)))
        if not found:  # folders with nothing to restore: an error, as `degrade` says of them
            raise FaceRestoreError(f"no images or videos in {', '.join(map(str, inputs))} "
                                   f"(looked for {', '.join(IMAGE_EXTENSIONS + VIDEO_SUFFIXES)})")
        videos = [it for it in found if not it.error and is_video(it.path)]
        if videos and aligned:
            raise FaceRestoreError(f"--aligned is for face crops, not videos ({videos[0].path})")
        items = [it for it in found if it.error or not is_video(it.path)]
        check_output_sizes(items, upscale if not aligned else 1.0, max_pixels)
        restorer = Restorer.from_pretrained(model, device=device, batch_size=batch_size, min_face=min_face,
                                            max_face=max_face, min_score=min_score, fidelity=fidelity,
                                            upscale=upscale, color_match=color_match, detector=detector,
                                            only_center_face=only_center_face, precision=precision, tta=tta)
        if not aligned:
            _ = restorer.detector  # fail early (exit 2) if the detector cannot be built
        stats = Stats()
        naming = Naming(out_dir, ext, suffix)
        run = _Run(restorer, naming, stats, save_faces=save_faces, compare=compare, max_pixels=max_pixels,
                   draw_box=draw_box)
        with ItemProgress(len(items), "restore", unit="faces" if aligned else "photos", quiet=quiet) as progress:
            run.progress = progress
            if aligned:
                run.aligned(items)
            else:
                run.photos(items)
        if videos:
            stats.videos = run.videos(videos, dict(detect_every=detect_every, crf=crf, start=start, end=end), quiet)
        stats.seconds = time.perf_counter() - t0
        typer.echo(stats.summary(aligned))
        if stats.failed:
            raise typer.Exit(1)


def check_options(precision: str, ext: str, suffix: str, start: Optional[float], end: Optional[float]) -> None:
    """Option values typer cannot check by type: one-line errors (exit 2) before any work."""
    from ..errors import FaceRestoreError

    if precision not in ("fp32", "bf16"):
        raise FaceRestoreError(f"--precision must be fp32 or bf16, got {precision!r}")
    if ext not in ("auto", "png", "jpg"):
        raise FaceRestoreError(f"--ext must be auto, png or jpg, got {ext!r}")
    if "/" in suffix or "\\" in suffix:
        raise FaceRestoreError("--suffix must not contain a path separator")
    if start is not None and end is not None and end <= start:
        raise FaceRestoreError(f"--end ({end:g}) must be after --start ({start:g})")


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


def check_output_sizes(items: list, upscale: float, max_pixels: Optional[int]) -> None:
    """Refuse, before any work, inputs whose output (input x ``upscale``) would pass the pixel
    limit: one line, exit 2 (a 13 TB allocation is not something to find out after 14 s)."""
    from PIL import Image

    from ..errors import FaceRestoreError
    from ..io import max_pixels_default, pixel_count

    if upscale == 1:
        return
    limit = max_pixels or max_pixels_default()
    for it in items:
        if it.error:
            continue
        try:
            with Image.open(it.path) as im:
                w, h = im.size
        except Exception:  # noqa: BLE001 - unreadable files are reported when they are read
            continue
        ow, oh = round(w * upscale), round(h * upscale)
        if ow * oh > limit:
            raise FaceRestoreError(f"{it.path}: the output would be {ow}x{oh} = {pixel_count(ow * oh)} "
                                   f"(--upscale {upscale:g}), over the limit of {pixel_count(limit)}; "
                                   "lower --upscale or raise --max-pixels")


class Naming:
    """Output paths: ``OUT/<relative path><suffix><ext>``, each claimed once per run, so a second
    input that maps to the same file is an error, never a silent overwrite."""

    def __init__(self, out: pathlib.Path, ext: str, suffix: str):
        self.out, self.ext, self.suffix = out, ext, suffix
        self.claimed: dict[pathlib.Path, pathlib.Path] = {}

    def target(self, item) -> pathlib.Path:
        from ..io import output_extension

        rel = item.relative
        ext = output_extension(rel) if self.ext == "auto" else f".{self.ext}"
        return self.out / rel.parent / f"{rel.stem}{self.suffix}{ext}"

    def claim(self, item, target: pathlib.Path) -> Optional[str]:
        """None when ``target`` is free, else why not."""
        key = pathlib.Path(os.path.abspath(target))
        other = self.claimed.get(key)
        if other is not None:
            return f"{item.path}: its output {target} is already the output of {other}; not overwritten"
        self.claimed[key] = item.path
        return None


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


class _Run:
    def __init__(self, restorer, naming: Naming, stats: Stats, *, save_faces: bool, compare: bool,
                 max_pixels: Optional[int], draw_box: bool = False):
        self.r, self.naming, self.out, self.stats = restorer, naming, naming.out, stats
        self.save_faces, self.compare, self.max_pixels, self.draw_box = save_faces, compare, max_pixels, draw_box
        self.progress: Optional[ItemProgress] = None
        self.noticed_crop = False

    def advance(self) -> None:
        if self.progress is not None:
            self.progress.advance()

    def fail(self, msg: str) -> None:
        self.stats.failed += 1
        typer.echo(f"error: {msg}", err=True)

    def warn(self, msg: str) -> None:
        typer.echo(f"warning: {msg}", err=True)

    def _read(self, item):
        from ..errors import InputImageError
        from ..io import read_image

        if item.error:
            self.fail(item.error)
            self.advance()
            return None
        target = self.naming.target(item)
        clash = self.naming.claim(item, target)
        if clash:
            self.fail(clash)
            self.advance()
            return None
        try:
            if target.exists() and target.resolve() == item.path.resolve():
                self.fail(f"{item.path}: the output would overwrite the input; choose another -o folder")
                self.advance()
                return None
        except OSError:
            pass
        try:
            img, info = read_image(item.path, self.max_pixels)
        except InputImageError as exc:
            self.fail(str(exc))
            self.advance()
            return None
        if info.frames > 1:
            self.warn(f"{item.path}: {info.frames} frames, only the first is restored")
        return img, info, target

    def _write(self, target: pathlib.Path, img, info) -> bool:
        import torch.nn.functional as F

        from ..io import write_image

        alpha = info.alpha
        if alpha is not None and tuple(alpha.shape[-2:]) != tuple(img.shape[-2:]):
            alpha = F.interpolate(alpha[None], size=img.shape[-2:], mode="bilinear", align_corners=False)[0]
        try:
            write_image(target, img, alpha=alpha, bits=info.bits, grayscale=info.grayscale,
                        icc_profile=info.icc_profile)
        except OSError as exc:
            self.fail(f"{target}: cannot write ({exc.strerror or exc})")
            return False
        return True

    # -- whole photos ---------------------------------------------------------------------------
    def photos(self, items) -> None:
        group: list = []
        for item in items:
            got = self._read(item)
            if got is None:
                continue
            group.append((item, *got))
            if len(group) >= PHOTO_GROUP:
                self._process(group)
                group = []
        if group:
            self._process(group)

    def _process(self, group) -> None:
        from ..errors import FaceRestoreError

        images = [g[1] for g in group]
        try:
            detections = self.r.detector.detect(images)
        except FaceRestoreError:
            raise
        except Exception:  # noqa: BLE001 - a detector failing on a group: retry one by one
            detections = []
            for (item, img, *_rest) in group:
                try:
                    detections.extend(self.r.detector.detect([img]))
                except Exception as exc:  # noqa: BLE001
                    self.warn(f"{item.path}: face detection failed ({exc}); copied unchanged")
                    from ..interfaces import Detection
                    import torch

                    detections.append(Detection(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, 5, 2)))
        results = self.r.restore_many(images, detections)
        for (item, img, info, target), res in zip(group, results):
            self.advance()
            self.stats.photos += 1
            self.stats.faces += res.n_found
            self.stats.restored += res.n_restored
            self.stats.skipped += res.n_skipped
            if res.n_restored == 0:
                self.stats.copied += res.n_found == 0
                why = "no face found" if res.n_found == 0 else f"{res.n_found} face(s), none restored ({res.faces[0].reason})"
                if self.r.upscale == 1 and target.suffix.lower() == item.path.suffix.lower() and not self.draw_box:
                    self.warn(f"{item.path}: {why}; copied unchanged")
                    try:
                        target.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(item.path, target)
                    except OSError as exc:
                        self.fail(f"{target}: cannot write ({exc.strerror or exc})")
                    continue
                self.warn(f"{item.path}: {why}; written without changes to faces")
            image = res.image
            if self.draw_box:
                from ..restore import draw_boxes

                image = draw_boxes(image, res.faces, self.r.upscale)
            if not self._write(target, image, info):
                continue
            self._extras(item, target, img, res)

    def _extras(self, item, target: pathlib.Path, img, res) -> None:
        import torch
        import torch.nn.functional as F

        from ..io import write_image

        stem = target.relative_to(self.out).with_suffix("")
        if self.save_faces and res.restored.shape[0]:
            for i, (lq, hq) in enumerate(zip(res.aligned, res.restored)):
                write_image(self.out / "faces" / f"{stem}_face{i}_input.png", lq)
                write_image(self.out / "faces" / f"{stem}_face{i}_restored.png", hq)
        if self.compare:
            left = img
            if tuple(left.shape[-2:]) != tuple(res.image.shape[-2:]):
                left = F.interpolate(left[None], size=res.image.shape[-2:], mode="nearest")[0]
            write_image(self.out / "compare" / f"{stem}.jpg", torch.cat([left, res.image], dim=2))

    # -- videos -----------------------------------------------------------------------------------
    def videos(self, items, options: dict, quiet: bool) -> int:
        """Each video through :func:`facerestore.commands.video.restore_videos` (its own progress
        bar and summary line); outputs claimed like photos', so none replaces another."""
        from .video import restore_videos, video_target

        todo = []
        for it in items:
            clash = self.naming.claim(it, video_target(self.out, it))
            if clash:
                self.fail(clash)
            else:
                todo.append(it)
        done, _, faces = restore_videos(self.r, todo, self.out, quiet=quiet, echo=typer.echo, fail=self.fail,
                                        warn=self.warn, max_pixels=self.max_pixels, **options)
        self.stats.faces += faces  # summed over frames, as each video's own line counts them
        self.stats.restored += faces
        return done

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
            out = self.r.restore_aligned(torch.stack([p[1] for p in group]))
            for (item, lq, info, target), face in zip(group, out):
                self.advance()
                if self._write(target, face, info):
                    self.stats.photos += 1
                    self._extras_aligned(target, lq, face)

        for item in items:
            got = self._read(item)
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
            typer.echo(f"note: non-square aligned crops (first: {item.path}, {w}x{h}) are centre-cropped to "
                       f"squares ({side}x{side} here), as in training", err=True)
        top, left = (h - side) // 2, (w - side) // 2
        return img[:, top:top + side, left:left + side]

    def _extras_aligned(self, target: pathlib.Path, lq, face) -> None:
        import torch
        import torch.nn.functional as F

        from ..io import write_image

        stem = target.relative_to(self.out).with_suffix("")
        if self.save_faces:  # the face as the model saw it
            size = self.r.lq_size
            model_in = F.interpolate(lq[None], size=(size, size), mode="bicubic", align_corners=False,
                                     antialias=lq.shape[-1] > size)[0].clamp(0, 1)
            write_image(self.out / "faces" / f"{stem}_input.png", model_in)
            write_image(self.out / "faces" / f"{stem}_restored.png", face)
        if self.compare:
            left = F.interpolate(lq[None], size=face.shape[-2:], mode="nearest")[0]
            write_image(self.out / "compare" / f"{stem}.jpg", torch.cat([left, face], dim=2))

