"""Video inputs of ``facerestore restore``: which inputs are videos, and restoring them one by
one with a progress bar (frames/s, ETA) and a summary line each.

The ``restore`` command splits its inputs with :func:`is_video` and hands the videos to
:func:`restore_videos`; the work itself is :func:`facerestore.video.restore_video`.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable, Iterable
from typing import Any, Optional

from ..options import RestoreOptions
from ..progress import ItemProgress
from ..video import VIDEO_SUFFIXES


def is_video(path: str | os.PathLike[str]) -> bool:
    """True for the video suffixes (``.mp4 .mov .mkv .avi .webm .m4v .mpg .mpeg .ts``, any case)."""
    return pathlib.Path(path).suffix.lower() in VIDEO_SUFFIXES


def restore_videos(restorer, items: Iterable[Any], out_dir: str | os.PathLike[str], *, detect_every: int = 5,
                   crf: int = 18, start: Optional[float] = None, end: Optional[float] = None, quiet: bool = False,
                   echo: Callable[[str], None] = print, fail: Optional[Callable[[str], None]] = None,
                   warn: Optional[Callable[[str], None]] = None, max_pixels: Optional[int] = None,
                   options: Optional[RestoreOptions] = None) -> tuple[int, int, int]:
    """Restore each video item (from :func:`facerestore.io.iter_inputs`) into ``out_dir`` through
    :meth:`facerestore.files.FileRestorer.videos`.

    Per video: a progress bar on a terminal (not when ``quiet``), then one summary line through
    ``echo`` (also not when ``quiet``). A video that cannot be read or written is reported
    through ``fail(message)`` (default: ``error: ...`` on stderr) and the next one is processed;
    a video in which no face was restored gets a ``warning: ...`` through ``warn``. Ctrl-C stops
    at once, leaving no partial output. Returns ``(n_done, n_failed, faces)``, ``faces`` the faces
    restored, summed over the frames of every video.
    """
    from ..files import FileRestorer

    opts = (restorer.options if options is None else options)
    if max_pixels is not None:
        opts = opts.replace(max_pixels=max_pixels)
    run = FileRestorer(restorer, out_dir, opts, fail=fail, warn=warn)
    run.videos(items, dict(detect_every=detect_every, crf=crf, start=start, end=end),
               progress=lambda it: ItemProgress(None, it.path.name, unit="frames", quiet=quiet),
               done=None if quiet else lambda it, target, s: echo(summary_line(it.path, target, s)))
    return run.stats.videos, run.stats.failed, run.stats.faces


def summary_line(src: Any, dst: Any, s: Any) -> str:
    """One line about a restored video (``s`` a :class:`~facerestore.video.VideoSummary`)."""
    return (f"{src} -> {dst}: {s.frames} frames ({s.fps:g} fps), {s.faces} faces restored in {s.tracks} "
            f"track(s) on {s.restored_frames} frames, audio {s.audio}, {s.seconds:.1f}s "
            f"({s.speed:.1f} frames/s)")
