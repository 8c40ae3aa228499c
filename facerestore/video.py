"""Restoring the faces in video clips (surveillance-style footage, masked faces).

    from facerestore.restore import Restorer
    from facerestore.video import restore_video
    summary = restore_video(Restorer.from_pretrained("jdsr-x4"), "clip.mp4", "out/clip.mp4")

Running the photo pipeline on every frame would be slow (detection is most of its time) and
would flicker: each frame's landmarks carry their own 1-2 px of detector noise, so each frame's
crop, and the face pasted back, would shift a little. Here instead:

* PyAV decodes the frames (rotation metadata applied, so faces are upright);
* faces are detected every ``detect_every`` frames; the frames in between are held back until
  the next detection, and each face's landmarks there are interpolated between the two
  detections that bracket them (IoU/centre matching links detections into tracks with ids; a face
  the detector misses once coasts at its last velocity, then its track ends);
* a One-Euro filter per track smooths the landmarks over time (strongly when the face is still,
  hardly when it moves), so the aligned crops do not jitter;
* the held-back frames go through :meth:`Restorer.restore_many` together (one batch of faces
  for several frames) with those landmarks as detections;
* frames are encoded as H.264 yuv420p (``crf``) at the input's constant frame rate, with the same
  frame count and timestamps; audio packets are copied unchanged (re-encoded to AAC only when the
  container cannot hold the codec, e.g. G.711 into MP4).

The output is written to a temporary file beside ``dst`` and renamed at the end, so an error or
Ctrl-C never leaves a partial file under the final name. Decoding and encoding live in
:mod:`facerestore.video_io`, tracking and smoothing in :mod:`facerestore.tracking`; this module is
the restore loop. Details and figures: docs/video.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import time
from collections.abc import Callable
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from .align import upscale_image
from .errors import InputImageError
from .interfaces import Detection
from .io import check_output_pixels
from .options import RestoreOptions
from .pixels import to_hwc_uint8
from .tracking import FaceTracker
from .video_io import (DEFAULT_MAX_VIDEO_PIXELS, VideoError, VideoProbe, _atomic_output, _av_errors, _av_message,
                       _colors, _decoded, _fail, _open_input,
                       _Writer, probe_video)

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts")
#: colour-histogram distance (L1 of 64-bin histograms, 0..2) above which frames are a scene cut
CUT_THRESHOLD = 0.7


@dataclasses.dataclass
class VideoSummary:
    """What :func:`restore_video` did: frames written, faces restored (summed over frames),
    face tracks that were restored at least once, wall-clock seconds."""

    frames: int
    faces: int
    tracks: int
    seconds: float
    restored_frames: int = 0
    fps: float = 0.0
    audio: str = "none"

    @property
    def speed(self) -> float:
        """Frames processed per second of wall-clock time."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def _to_tensor(rgb: np.ndarray) -> Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float in [0, 1]."""
    return torch.from_numpy(rgb).permute(2, 0, 1).float().div_(255.0)


def _histogram(rgb: np.ndarray) -> np.ndarray:
    """A 64-bin colour histogram of a thumbnail, for scene-cut detection (64,)."""
    thumb = rgb[::8, ::8] >> 6
    idx = (thumb[..., 0].astype(np.int32) << 4) | (thumb[..., 1].astype(np.int32) << 2) | thumb[..., 2]
    hist = np.bincount(idx.ravel(), minlength=64).astype(np.float64)
    return hist / max(1.0, hist.sum())


class _Segments:
    """Holds frames back until the next detection, tracks and smooths their faces, restores the
    faces of ``batch_frames`` frames in one :meth:`Restorer.restore_many` call, writes in order.

    Detection runs on the first frame of a run of restored frames, then every ``every`` frames,
    and on the last frame before a scene cut, the end of the restored range or the clip's end."""

    def __init__(self, restorer, options: RestoreOptions, tracker: FaceTracker, every: int, batch_frames: int,
                 write: Callable):
        self.r, self.opts, self.tracker, self.every, self.batch = restorer, options, tracker, every, batch_frames
        self.write = write
        self.held: list[np.ndarray] = []  # frames since the last detection, (H, W, 3) uint8
        self.ready: list[tuple[np.ndarray, Detection, list[int]]] = []  # tracked, to restore
        self.hist: Optional[np.ndarray] = None
        self.fresh = True
        self.faces = self.restored_frames = self.frames_written = 0
        self.track_ids: set[int] = set()
        self.audio_mode = "none"

    def push(self, rgb: np.ndarray, active: bool) -> None:
        if not active:
            self._break()
            self.drain()
            self.write(rgb, False)
            return
        hist = _histogram(rgb)
        if self.hist is not None and np.abs(hist - self.hist).sum() > CUT_THRESHOLD:
            self._break()
        self.hist = hist
        self.held.append(rgb)
        if self.fresh or len(self.held) >= self.every:
            self._detect()

    def _break(self) -> None:
        """A scene cut or the end of the restored range: close the held frames, forget tracks."""
        self._detect()
        self.tracker.reset()
        self.fresh, self.hist = True, None

    def _detect(self) -> None:
        if not self.held:
            return
        det = self.r.detect([_to_tensor(self.held[-1])], self.opts)[0]
        plans = self.tracker.advance(det, len(self.held))
        for rgb, plan in zip(self.held, plans):
            self.ready.append((rgb, *self.tracker.detections(plan)))
        self.held, self.fresh = [], False
        if len(self.ready) >= self.batch:
            self.drain()

    def finish(self) -> None:
        self._detect()
        self.drain()

    def drain(self) -> None:
        """Restore the faces of all tracked frames in one batch and write the frames in order."""
        todo = [i for i, (_, det, _) in enumerate(self.ready) if det.boxes.shape[0]]
        results = {}
        if todo:
            out = self.r.restore_many([_to_tensor(self.ready[i][0]) for i in todo], [self.ready[i][1] for i in todo],
                                      self.opts)
            results = dict(zip(todo, out))
        for i, (rgb, _, ids) in enumerate(self.ready):
            res = results.get(i)
            if res is None or res.n_restored == 0:
                self.write(rgb, False)
                continue
            self.faces += res.n_restored
            self.restored_frames += 1
            self.track_ids.update(tid for tid, face in zip(ids, res.faces) if face.restored)
            self.write(to_hwc_uint8(res.image))
        self.ready = []


def restore_video(restorer, src: str | os.PathLike[str], dst: str | os.PathLike[str],
                  options: Optional[RestoreOptions] = None, *, detect_every: int = 5,
                  crf: int = 18, start: Optional[float] = None, end: Optional[float] = None,
                  progress: Optional[Callable[[int, int], None]] = None, preset: str = "medium",
                  batch_frames: int = 8, max_pixels: Optional[int] = None, smoothing: bool = True) -> VideoSummary:
    """Restore the faces of a clip ``src`` into ``dst`` (H.264 yuv420p; MP4 for ``.mp4``).

    ``detect_every``: run the detector on one frame in this many (tracking fills the others).
    ``crf``/``preset``: x264 quality (0-51, lower is better; 18 is visually lossless) and speed.
    ``start``/``end``: seconds from the first frame; only frames in ``[start, end)`` are restored,
    the others are written unchanged (re-encoded), so the output keeps every frame and the audio.
    ``progress(frames_written, frames_total)`` is called as frames are written.
    ``batch_frames``: frames whose faces go through the model together. ``options``: the
    restorer's per-call options (its own defaults when None); ``max_pixels`` (default: the
    options', else :data:`~facerestore.video_io.DEFAULT_MAX_VIDEO_PIXELS`) bounds input and
    output frames by the rule photos follow (:func:`facerestore.io.check_output_pixels`). Raises
    :class:`VideoError` (one line, names the file) for bad input or an unwritable ``dst``; no
    file appears under ``dst`` unless the whole clip was written.
    """
    import av

    src, dst = pathlib.Path(src), pathlib.Path(dst)
    _check_options(detect_every, crf, start, end, batch_frames)
    t0 = time.perf_counter()
    opts = restorer.options if options is None else options
    limit = max_pixels or opts.max_pixels or DEFAULT_MAX_VIDEO_PIXELS
    probe = probe_video(src, limit)
    try:
        check_output_pixels(src, probe.width, probe.height, opts.upscale, limit)
    except InputImageError as exc:
        raise VideoError(str(exc)) from None
    if start and start >= probe.duration:
        raise _fail(src, f"start {start:g}s is at or past the end of the clip ({probe.duration:.2f}s)")
    with contextlib.suppress(OSError):
        if dst.exists() and dst.resolve() == src.resolve():
            raise _fail(src, "the output would overwrite the input; choose another destination")
    with _open_input(src) as inp, _atomic_output(dst) as tmp:
        try:  # MP4/MOV: index at the front, so players can start before the whole file arrives
            mp4 = dst.suffix.lower() in (".mp4", ".mov", ".m4v")
            out = av.open(str(tmp), "w", options={"movflags": "+faststart"} if mp4 else {})
        except _av_errors() as exc:
            raise _fail(dst, f"cannot write ({_av_message(exc)})") from None
        try:
            seg = _run(restorer, opts, inp, out, probe, src, dst, detect_every=detect_every, crf=crf, start=start,
                       end=end, progress=progress, preset=preset, batch_frames=batch_frames, smoothing=smoothing)
        except BaseException:
            with contextlib.suppress(Exception):
                out.close()
            raise
        try:
            out.close()
        except _av_errors() as exc:
            raise _fail(dst, f"cannot write ({_av_message(exc)})") from None
    return VideoSummary(frames=seg.frames_written, faces=seg.faces, tracks=len(seg.track_ids),
                        seconds=time.perf_counter() - t0, restored_frames=seg.restored_frames,
                        fps=float(probe.fps), audio=seg.audio_mode)


def _check_options(detect_every: int, crf: int, start: Optional[float], end: Optional[float],
                   batch_frames: int) -> None:
    if detect_every < 1:
        raise ValueError(f"detect_every must be >= 1, got {detect_every}")
    if not 0 <= crf <= 51:
        raise ValueError(f"crf must be within 0-51, got {crf}")
    if batch_frames < 1:
        raise ValueError(f"batch_frames must be >= 1, got {batch_frames}")
    if (start is not None and start < 0) or (end is not None and end <= (start or 0)):
        raise ValueError(f"need 0 <= start < end, got start={start}, end={end}")


def _run(restorer, opts: RestoreOptions, inp, out, probe: VideoProbe, src: pathlib.Path, dst: pathlib.Path, *, detect_every: int,
         crf: int, start, end, progress, preset: str, batch_frames: int, smoothing: bool) -> _Segments:
    """Decode, restore and encode every frame; returns the segmenter (its counts)."""
    vs = inp.streams.video[0]
    audio = list(inp.streams.audio)
    cs, tags = _colors(vs)
    first = float(vs.start_time * vs.time_base) if vs.start_time is not None and vs.time_base else 0.0
    upscaled = dataclasses.replace(probe, width=round(probe.width * opts.upscale),
                                   height=round(probe.height * opts.upscale))
    writer = _Writer(out, vs, audio, upscaled, crf=crf, preset=preset, cs=cs, tags=tags, dst=dst, first_time=first)

    def write(rgb: np.ndarray, restored: bool = True) -> None:
        if not restored and opts.upscale != 1:
            rgb = to_hwc_uint8(upscale_image(_to_tensor(rgb), opts.upscale))
        writer.frame(rgb)
        if progress is not None:
            progress(writer.frames, probe.frames)

    if progress is not None:
        progress(0, probe.frames)
    tracker = FaceTracker(float(probe.fps), restorer.min_score(opts), smoothing=smoothing)
    seg = _Segments(restorer, opts, tracker, detect_every, batch_frames, write)
    index = 0
    for kind, item in _decoded(inp, vs, audio, src, cs, probe.rotation):
        if kind == "audio":
            writer.audio(item)
            continue
        t = index / float(probe.fps)
        seg.push(item, (start is None or t >= start - 1e-6) and (end is None or t < end - 1e-6))
        index += 1
    if index < probe.frames:
        raise _fail(src, f"corrupt or truncated video (decoded {index} of {probe.frames} frames)")
    seg.finish()
    writer.finish()
    seg.frames_written, seg.audio_mode = writer.frames, writer.audio_mode
    return seg
