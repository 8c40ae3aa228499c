"""`facerestore restore`: photos in, photos with restored faces out.

Exit codes: 0 every input was processed (photos without faces count: they are copied with a
warning); 1 at least one input failed (reported, the others still written); 2 a user error that
stops everything (bad option, model not found).
"""

from __future__ import annotations

import pathlib
import shutil
import time
from typing import List, Optional

import typer

from . import user_errors

#: photos decoded and held before their faces go through the model together
PHOTO_GROUP = 8


def register(app: typer.Typer) -> None:
    @app.command("restore")
    @user_errors
    def restore(
        inputs: List[str] = typer.Argument(..., metavar="INPUT...", help="Image files, folders (recursive) or globs."),
        out_dir: pathlib.Path = typer.Option(pathlib.Path("restored"), "-o", "--out", help="Output folder."),
        model: str = typer.Option("jdsr-x4", "--model", "-m", help="Model name (jdsr-x4, bicubic) or .safetensors path."),
        device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
        batch_size: int = typer.Option(16, "--batch-size", "-b", min=1, help="Faces per forward pass."),
        aligned: bool = typer.Option(False, "--aligned", help="Inputs are aligned face crops: no detection."),
        save_faces: bool = typer.Option(False, "--save-faces", help="Also write aligned inputs and restored crops to OUT/faces."),
        compare: bool = typer.Option(False, "--compare", help="Also write input | output side by side to OUT/compare."),
        min_face: float = typer.Option(0.0, "--min-face", min=0, help="Skip faces whose eye distance is below PX pixels."),
        max_face: float = typer.Option(0.0, "--max-face", min=0, help="Skip faces whose eye distance is above PX "
                                       "pixels (0: no limit); large sharp faces lose detail at the model's input size."),
        min_score: float = typer.Option(0.9, "--min-score", min=0, max=1, help="Ignore detections less confident than this."),
        upscale: float = typer.Option(1.0, "--upscale", min=1, help="Enlarge whole photos by S (bicubic background)."),
        color_match: bool = typer.Option(True, "--color-match/--no-color-match", help="Match restored faces' colour to the photo."),
        max_pixels: Optional[int] = typer.Option(None, "--max-pixels", min=1, help="Refuse larger images (default ~89.5 MP)."),
    ) -> None:
        """Restore the faces in photos (detect, align, restore, paste back) or in aligned crops."""
        from ..io import iter_inputs
        from ..restore import Restorer

        t0 = time.perf_counter()
        restorer = Restorer.from_pretrained(model, device=device, batch_size=batch_size, min_face=min_face,
                                            max_face=max_face, min_score=min_score,
                                            upscale=upscale, color_match=color_match)
        if not aligned:
            _ = restorer.detector  # fail early (exit 2) if the detector cannot be built
        stats = Stats()
        items = list(iter_inputs(inputs))
        run = _Run(restorer, out_dir, stats, save_faces=save_faces, compare=compare, max_pixels=max_pixels)
        if aligned:
            run.aligned(items)
        else:
            run.photos(items)
        stats.seconds = time.perf_counter() - t0
        typer.echo(stats.summary(aligned))
        if stats.failed:
            raise typer.Exit(1)


class Stats:
    def __init__(self) -> None:
        self.photos = self.faces = self.restored = self.skipped = self.failed = self.copied = 0
        self.seconds = 0.0

    def summary(self, aligned: bool) -> str:
        if aligned:
            return (f"summary: {self.photos} aligned faces restored, {self.failed} failed, "
                    f"{self.seconds:.1f}s")
        return (f"summary: {self.photos} photos, {self.faces} faces found, {self.restored} restored, "
                f"{self.skipped} skipped, {self.copied} without faces, {self.failed} failed, {self.seconds:.1f}s")


class _Run:
    def __init__(self, restorer, out_dir: pathlib.Path, stats: Stats, *, save_faces: bool, compare: bool,
                 max_pixels: Optional[int]):
        self.r, self.out, self.stats = restorer, out_dir, stats
        self.save_faces, self.compare, self.max_pixels = save_faces, compare, max_pixels

    def fail(self, msg: str) -> None:
        self.stats.failed += 1
        typer.echo(f"error: {msg}", err=True)

    def warn(self, msg: str) -> None:
        typer.echo(f"warning: {msg}", err=True)

    def target(self, item) -> pathlib.Path:
        from ..io import output_extension

        rel = item.relative
        return self.out / rel.with_suffix(output_extension(rel))

    def _read(self, item):
        from ..errors import InputImageError
        from ..io import read_image

        if item.error:
            self.fail(item.error)
            return None
        target = self.target(item)
        try:
            if target.exists() and target.resolve() == item.path.resolve():
                self.fail(f"{item.path}: the output would overwrite the input; choose another -o folder")
                return None
        except OSError:
            pass
        try:
            img, info = read_image(item.path, self.max_pixels)
        except InputImageError as exc:
            self.fail(str(exc))
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
            self.stats.photos += 1
            self.stats.faces += res.n_found
            self.stats.restored += res.n_restored
            self.stats.skipped += res.n_skipped
            if res.n_restored == 0:
                self.stats.copied += res.n_found == 0
                why = "no face found" if res.n_found == 0 else f"{res.n_found} face(s), none restored ({res.faces[0].reason})"
                if self.r.upscale == 1 and target.suffix.lower() == item.path.suffix.lower():
                    self.warn(f"{item.path}: {why}; copied unchanged")
                    try:
                        target.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(item.path, target)
                    except OSError as exc:
                        self.fail(f"{target}: cannot write ({exc.strerror or exc})")
                    continue
                self.warn(f"{item.path}: {why}; written without changes to faces")
            if not self._write(target, res.image, info):
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

    # -- aligned crops ----------------------------------------------------------------------------
    def aligned(self, items) -> None:
        import torch
        import torch.nn.functional as F

        from ..io import write_image

        size = self.r.lq_size
        pending: list = []

        def flush() -> None:
            if not pending:
                return
            batch = torch.stack([p[1] for p in pending])
            out = self.r.restore_faces(batch)
            for (item, _lq, info, target, img), face in zip(pending, out):
                if self._write(target, face, info):
                    self.stats.photos += 1
                    self._extras_aligned(target, _lq, face, img)
            pending.clear()

        for item in items:
            got = self._read(item)
            if got is None:
                continue
            img, info, target = got
            h, w = img.shape[-2:]
            if h != w:
                self.warn(f"{item.path}: {w}x{h} is not square; resized to {size}x{size} anyway")
            lq = F.interpolate(img[None], size=(size, size), mode="bicubic", align_corners=False,
                               antialias=max(h, w) > size)[0].clamp(0, 1)
            pending.append((item, lq, info, target, img))
            if len(pending) >= self.r.batch_size:
                flush()
        flush()

    def _extras_aligned(self, target: pathlib.Path, lq, face, img) -> None:
        import torch
        import torch.nn.functional as F

        from ..io import write_image

        stem = target.relative_to(self.out).with_suffix("")
        if self.save_faces:
            write_image(self.out / "faces" / f"{stem}_input.png", lq)
            write_image(self.out / "faces" / f"{stem}_restored.png", face)
        if self.compare:
            left = F.interpolate(lq[None], size=face.shape[-2:], mode="nearest")[0]
            write_image(self.out / "compare" / f"{stem}.jpg", torch.cat([left, face], dim=2))

