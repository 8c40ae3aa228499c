"""`facerestore restore`: photos in, photos with restored faces out.

Exit codes: 0 every input was processed (photos without faces count: they are copied with a
warning); 1 at least one input failed (reported, the others still written); 2 a user error that
stops everything (bad option, model not found).
"""

from __future__ import annotations

import pathlib
import time
from typing import List, Optional

import typer

from ..progress import ItemProgress
from ..defaults import DEFAULT_DETECTOR, DEFAULT_MODEL
from . import user_errors


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
        engine: str = typer.Option("local", "--engine", help="local (this process), or ray: an actor pool on Ray "
                                   "Data, resumable from a manifest in OUT/.facerestore (needs facerestore[ray])."),
        address: Optional[str] = typer.Option(None, "--address", help="--engine ray: join this cluster (auto, "
                                              "HOST:PORT or ray://HOST:PORT) instead of starting a local Ray."),
        workers: Optional[int] = typer.Option(None, "--workers", min=1, help="--engine ray: actors (each loads "
                                              "the model once; default: one per 2 CPUs, or one per GPU)."),
        max_failures: Optional[int] = typer.Option(None, "--max-failures", min=0, help="--engine ray: stop once "
                                                   "more inputs than this have failed (default: never stop)."),
    ) -> None:
        """Restore the faces in photos and videos (detect, align, restore, paste back) or in aligned crops."""
        from ..errors import FaceRestoreError
        from ..files import FileRestorer, check_output_sizes, name_outputs
        from ..io import IMAGE_EXTENSIONS, iter_inputs
        from ..options import RestoreOptions
        from ..restore import Restorer
        from ..video import VIDEO_SUFFIXES
        from .video import is_video, summary_line

        check_options(precision, start, end)
        check_engine(engine, address, workers, max_failures)
        options = RestoreOptions(fidelity=fidelity, upscale=1.0 if aligned else upscale, detector=detector,
                                 min_face=min_face, max_face=max_face, min_score=min_score,
                                 only_center_face=only_center_face, draw_box=draw_box, color_match=color_match,
                                 tta=tta, ext=ext, suffix=suffix, max_pixels=max_pixels)
        t0 = time.perf_counter()
        found = name_outputs(list(iter_inputs(inputs, IMAGE_EXTENSIONS + VIDEO_SUFFIXES)))
        if not found:  # folders with nothing to restore: an error, as `degrade` says of them
            raise FaceRestoreError(f"no images or videos in {', '.join(map(str, inputs))} "
                                   f"(looked for {', '.join(IMAGE_EXTENSIONS + VIDEO_SUFFIXES)})")
        videos = [it for it in found if not it.error and is_video(it.path)]
        if videos and aligned:
            raise FaceRestoreError(f"--aligned is for face crops, not videos ({videos[0].path})")
        items = [it for it in found if it.error or not is_video(it.path)]
        check_output_sizes(items, options)
        if engine == "ray":
            return restore_on_ray(found, options, out_dir, model=model, device=device, batch_size=batch_size,
                                  precision=precision, aligned=aligned, save_faces=save_faces, compare=compare,
                                  video=dict(detect_every=detect_every, crf=crf, start=start, end=end),
                                  address=address, workers=workers, max_failures=max_failures, quiet=quiet)
        restorer = Restorer.from_pretrained(model, device=device, batch_size=batch_size, precision=precision,
                                            options=options)
        if not aligned:
            _ = restorer.detector  # fail early (exit 2) if the detector cannot be built
        err = lambda prefix: (lambda msg: typer.echo(f"{prefix}: {msg}", err=True))  # noqa: E731
        with ItemProgress(len(items), "restore", unit="faces" if aligned else "photos", quiet=quiet) as progress:
            run = FileRestorer(restorer, out_dir, options, save_faces=save_faces, compare=compare,
                               advance=progress.advance, fail=err("error"), warn=err("warning"), note=err("note"))
            if aligned:
                run.aligned(items)
            else:
                run.photos(items)
        if videos:
            run.videos(videos, dict(detect_every=detect_every, crf=crf, start=start, end=end),
                       progress=lambda it: ItemProgress(None, it.path.name, unit="frames", quiet=quiet),
                       done=None if quiet else lambda it, target, s: typer.echo(summary_line(it.path, target, s)))
        run.stats.seconds = time.perf_counter() - t0
        typer.echo(run.stats.summary(aligned))
        if run.stats.failed:
            raise typer.Exit(1)


def check_engine(engine: str, address: Optional[str], workers: Optional[int], max_failures: Optional[int]) -> None:
    """``--engine`` and its options: one-line errors (exit 2); Ray missing names the extra."""
    from ..errors import FaceRestoreError

    if engine not in ("local", "ray"):
        raise FaceRestoreError(f"--engine must be local or ray, got {engine!r}")
    if engine == "local":
        given = [name for name, v in (("--address", address), ("--workers", workers),
                                      ("--max-failures", max_failures)) if v is not None]
        if given:
            raise FaceRestoreError(f"{', '.join(given)}: only with --engine ray")
        return
    from ..cluster import require_ray

    require_ray()


def restore_on_ray(found, options, out_dir: pathlib.Path, *, model: str, device: str, batch_size: int,
                   precision: str, aligned: bool, save_faces: bool, compare: bool, video: dict,
                   address: Optional[str], workers: Optional[int], max_failures: Optional[int],
                   quiet: bool) -> None:
    """``--engine ray``: :func:`facerestore.cluster.run`, then the local engine's summary line and a
    line about the manifest."""
    import os
    import types

    from ..cluster import run
    from ..cluster_worker import RunConfig
    from ..restore import Restorer
    from .video import is_video, summary_line

    for it in found:  # actors may run elsewhere, in another folder: absolute paths
        it.path = pathlib.Path(os.path.abspath(it.path))
    if os.path.exists(model):  # a checkpoint path, not a bundled name
        model = os.path.abspath(model)
    config = RunConfig(out=os.path.abspath(out_dir), model=model, options=options, device=device,
                       batch_size=batch_size, precision=precision, aligned=aligned, save_faces=save_faces,
                       compare=compare, video=video)

    def check() -> None:  # the model and detector build here, else one line and exit 2 before Ray starts
        r = Restorer.from_pretrained(model, device="cpu", options=options)
        if not aligned:
            _ = r.detector

    def video_done(src: str, dst: str, s: dict) -> None:
        if not quiet:
            speed = s["frames"] / s["seconds"] if s["seconds"] > 0 else 0.0
            typer.echo(summary_line(src, dst, types.SimpleNamespace(**s, speed=speed)))

    unit = "faces" if aligned else ("photos" if all(not is_video(it.path) for it in found) else "inputs")
    result = run(found, config, is_video=is_video, address=address, workers=workers, max_failures=max_failures,
                 check=check, echo=lambda msg: typer.echo(msg, err=True), video_done=video_done,
                 progress=lambda total: ItemProgress(total, "restore", unit=unit, quiet=quiet))
    typer.echo(result.stats.summary(aligned))
    pool = (f"; {result.pool.workers} actor(s) of {result.pool.num_cpus:g} CPU"
            + (f" and {result.pool.num_gpus:g} GPU" if result.pool.num_gpus else "")) if result.pool else ""
    counts = ", ".join(f"{n} {s}" for s, n in sorted(result.status.items()))
    typer.echo(f"manifest: {result.manifest}: {result.processed} inputs processed now, {result.done_before} "
               f"skipped (done before); all inputs: {counts}{pool}")
    if result.stopped:
        typer.echo(f"error: more than {max_failures} inputs failed (--max-failures {max_failures}): stopped; "
                   "run the same command again to go on", err=True)
    if result.stopped or any(s != "ok" and s != "copied" for s in result.status):
        raise typer.Exit(1)


def check_options(precision: str, start: Optional[float], end: Optional[float]) -> None:
    """Option values neither typer nor :class:`~facerestore.options.RestoreOptions` checks:
    one-line errors (exit 2) before any work."""
    from ..errors import FaceRestoreError

    if precision not in ("fp32", "bf16"):
        raise FaceRestoreError(f"--precision must be fp32 or bf16, got {precision!r}")
    if start is not None and end is not None and end <= start:
        raise FaceRestoreError(f"--end ({end:g}) must be after --start ({start:g})")
