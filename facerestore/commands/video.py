"""Video inputs of ``facerestore restore``: which inputs are videos, and restoring them one by
one with a progress bar (frames/s, ETA) and a summary line each.

The ``restore`` command splits its inputs with :func:`is_video` and hands the videos to
:func:`restore_videos`; the work itself is :func:`facerestore.video.restore_video`.
"""

from __future__ import annotations

import os
import pathlib
import sys
from collections.abc import Callable, Iterable
from typing import Any, Optional

from ..progress import ItemProgress
from ..video import VIDEO_SUFFIXES


def is_video(path: str | os.PathLike[str]) -> bool:
    """True for the video suffixes (``.mp4 .mov .mkv .avi .webm .m4v .mpg .mpeg .ts``, any case)."""
    return pathlib.Path(path).suffix.lower() in VIDEO_SUFFIXES


def video_target(out_dir: str | os.PathLike[str], item: Any) -> pathlib.Path:
    """Where a video input is written: ``out_dir/<relative path>`` with the suffix ``.mp4``."""
    return pathlib.Path(out_dir) / pathlib.Path(item.relative).with_suffix(".mp4")


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


def restore_videos(restorer, items: Iterable[Any], out_dir: str | os.PathLike[str], *, detect_every: int = 5,
                   crf: int = 18, start: Optional[float] = None, end: Optional[float] = None, quiet: bool = False,
                   echo: Callable[[str], None] = print, fail: Optional[Callable[[str], None]] = None,
                   warn: Optional[Callable[[str], None]] = None,
                   max_pixels: Optional[int] = None) -> tuple[int, int, int]:
    """Restore each video item (from :func:`facerestore.io.iter_inputs`) into ``out_dir``.

    Per video: a progress bar on a terminal (not when ``quiet``), then one summary line through
    ``echo`` (also not when ``quiet``). A video that cannot be read or written is reported
    through ``fail(message)`` (default: ``error: ...`` on stderr) and the next one is processed;
    a video in which no face was restored gets a ``warning: ...`` through ``warn``. Ctrl-C stops
    at once, leaving no partial output. Returns ``(n_done, n_failed, faces)``, ``faces`` the faces
    restored, summed over the frames of every video.
    """
    from ..errors import InputImageError
    from ..video import restore_video

    fail = fail or (lambda msg: _stderr(f"error: {msg}"))
    warn = warn or (lambda msg: _stderr(f"warning: {msg}"))
    done = failed = faces = 0
    for item in items:
        if item.error:
            fail(item.error)
            failed += 1
            continue
        target = video_target(out_dir, item)
        try:
            with ItemProgress(None, item.path.name, unit="frames", quiet=quiet) as bar:
                summary = restore_video(restorer, item.path, target, detect_every=detect_every, crf=crf,
                                        start=start, end=end, progress=bar.update_to, max_pixels=max_pixels)
        except InputImageError as exc:
            fail(str(exc))
            failed += 1
            continue
        done += 1
        faces += summary.faces
        if summary.faces == 0:
            warn(f"{item.path}: no face found; written without changes to faces")
        if not quiet:
            echo(summary_line(item.path, target, summary))
    return done, failed, faces


def summary_line(src: Any, dst: Any, s: Any) -> str:
    """One line about a restored video (``s`` a :class:`~facerestore.video.VideoSummary`)."""
    return (f"{src} -> {dst}: {s.frames} frames ({s.fps:g} fps), {s.faces} faces restored in {s.tracks} "
            f"track(s) on {s.restored_frames} frames, audio {s.audio}, {s.seconds:.1f}s "
            f"({s.speed:.1f} frames/s)")
