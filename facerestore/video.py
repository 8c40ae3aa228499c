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
Ctrl-C never leaves a partial file under the final name. Details and figures: docs/video.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import pathlib
import tempfile
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor

from .checkpoint import current_umask
from .errors import InputImageError
from .align import upscale_image
from .interfaces import Detection
from .pixels import to_hwc_uint8

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts")
#: largest frame accepted by default (4096 x 2304, covers UHD and DCI 4K): a batch of 8 such
#: frames as float tensors is already ~0.9 GB
DEFAULT_MAX_VIDEO_PIXELS = 4096 * 2304
#: One-Euro settings: cutoff (Hz) for a still face, and how fast the cutoff rises with speed
#: (Hz per eye distance per second); see :class:`OneEuroFilter`
MIN_CUTOFF, BETA = 0.5, 1.5
#: a frame interval further than this fraction from the median makes a clip variable-rate
VFR_TOLERANCE = 0.1
#: colour-histogram distance (L1 of 64-bin histograms, 0..2) above which frames are a scene cut
CUT_THRESHOLD = 0.7
#: audio codecs copied into MP4 as they are (others are re-encoded to AAC)
_MP4_AUDIO = {"aac", "mp3", "mp2", "alac", "flac", "opus", "ac3", "eac3"}


class VideoError(InputImageError):
    """A video cannot be read (corrupt, no video stream, no frames, variable frame rate, too many
    pixels) or its output cannot be written; the one-line message names the file. An
    ``InputImageError``, so ``restore`` reports it like a bad photo and goes on."""


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


@dataclasses.dataclass
class VideoProbe:
    """A clip's video stream, checked: display ``width``/``height`` (after ``rotation``, degrees
    counter-clockwise), constant ``fps``, ``frames`` counted from the packets, ``duration`` s."""

    width: int
    height: int
    fps: Fraction
    frames: int
    duration: float
    rotation: int = 0
    audio: tuple[str, ...] = ()


def _fail(path: Any, why: str) -> VideoError:
    return VideoError(f"{path}: {' '.join(str(why).split())}")


def _av_message(exc: BaseException) -> str:
    msg = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return " ".join(str(msg).split())


def _av_errors() -> tuple[type[BaseException], ...]:
    import av

    return (av.error.FFmpegError, OSError, ValueError, EOFError)


# ------------------------------------------------------------------------------------------------
# temporal smoothing and tracking
# ------------------------------------------------------------------------------------------------
class OneEuroFilter:
    """One-Euro filter (Casiez et al., CHI 2012) for one face's landmarks ``(5, 2)``.

    A low-pass whose cutoff rises with speed: a still face keeps ``min_cutoff`` (Hz), which
    removes the detector's frame-to-frame jitter; a moving face gets ``min_cutoff + beta * speed``
    so it does not lag. Speed is in eye distances per second, so one setting suits any face size.
    """

    def __init__(self, rate: float, min_cutoff: float = MIN_CUTOFF, beta: float = BETA, d_cutoff: float = 1.0):
        self.rate, self.min_cutoff, self.beta, self.d_cutoff = float(rate), min_cutoff, beta, d_cutoff
        self.x: Optional[Tensor] = None
        self.dx: Optional[Tensor] = None
        self.samples = 0

    def _alpha(self, cutoff: float) -> float:
        return 1.0 / (1.0 + self.rate / (2 * math.pi * cutoff))

    def seed(self, velocity: Tensor) -> None:
        """Start the speed estimate at a known velocity ``(5, 2)`` in pixels per frame (a new
        track's first motion), instead of at rest, so a face that enters moving does not lag."""
        self.dx = velocity.float() * self.rate

    def __call__(self, x: Tensor) -> Tensor:
        x = x.float()
        self.samples += 1
        if self.x is None:
            self.x = x.clone()
            self.dx = torch.zeros_like(x) if self.dx is None else self.dx
            return x.clone()
        dx = (x - self.x) * self.rate
        self.dx = self.dx + self._alpha(self.d_cutoff) * (dx - self.dx)
        eye = float((x[1] - x[0]).norm()) or 1.0
        speed = float(self.dx.norm(dim=-1).mean()) / eye
        self.x = self.x + self._alpha(self.min_cutoff + self.beta * speed) * (x - self.x)
        return self.x.clone()


@dataclasses.dataclass
class Track:
    """One face followed over time: ``landmarks`` (5, 2) and ``box`` (4,) where it was last seen
    (or extrapolated to), ``velocity`` (5, 2) in pixels per frame, ``missed`` detections in a row."""

    id: int
    landmarks: Tensor
    box: Tensor
    score: float
    velocity: Tensor
    filter: OneEuroFilter
    missed: int = 0


#: what a tracker says about one frame: (track, landmarks (5, 2), box (4,)) per face present
FramePlan = list[tuple[Track, Tensor, Tensor]]


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Intersection over union of boxes ``(T, 4)`` and ``(D, 4)`` (x1, y1, x2, y2) -> ``(T, D)``."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp_min(0).prod(-1)
    area = lambda x: (x[:, 2:] - x[:, :2]).clamp_min(0).prod(-1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter).clamp_min(1e-6)


def match_boxes(predicted: Tensor, detected: Tensor, min_iou: float = 0.2) -> list[tuple[int, int]]:
    """Greedy one-to-one matching of predicted track boxes ``(T, 4)`` to detections ``(D, 4)``.

    A pair qualifies by IoU >= ``min_iou`` or, for a small fast face whose boxes no longer overlap
    much, by a centre distance under one box size; best IoU (then nearest) first."""
    if predicted.shape[0] == 0 or detected.shape[0] == 0:
        return []
    predicted, detected = predicted.float(), detected.float()
    iou = box_iou(predicted, detected)  # (T, D)
    centre = lambda b: (b[:, :2] + b[:, 2:]) / 2  # noqa: E731
    size = (predicted[:, 2:] - predicted[:, :2]).clamp_min(1).mean(1, keepdim=True)  # (T, 1)
    dist = torch.cdist(centre(predicted), centre(detected)) / size
    ok = (iou >= min_iou) | (dist < 1.0)
    rank = iou - 0.01 * dist
    pairs = sorted(((float(rank[t, d]), t, d) for t, d in ok.nonzero().tolist()), reverse=True)
    used_t, used_d, out = set(), set(), []
    for _, t, d in pairs:
        if t not in used_t and d not in used_d:
            used_t.add(t)
            used_d.add(d)
            out.append((t, d))
    return out


class FaceTracker:
    """Links the detections of detection frames into tracks and fills in the frames between.

    ``advance(det, n)`` is called with the detections of a frame and the number ``n`` of frames
    since the previous detection frame (this one included); it returns, for each of those ``n``
    frames, the faces present: matched tracks interpolated linearly between the two detections,
    tracks the detector missed extrapolated at their velocity (``max_missed`` times, then
    dropped), new tracks only on the detection frame itself. Detections under ``min_score`` are
    ignored (the restorer would ignore them too)."""

    def __init__(self, rate: float, min_score: float = 0.0, max_missed: int = 1, smoothing: bool = True):
        self.rate, self.min_score, self.max_missed, self.smoothing = rate, min_score, max_missed, smoothing
        self.tracks: list[Track] = []
        self.next_id = 0

    def reset(self) -> None:
        """Forget all tracks (a scene cut, or the end of the restored range): ids keep counting."""
        self.tracks = []

    def advance(self, det: Detection, n: int) -> list[FramePlan]:
        keep = det.scores.float() >= self.min_score
        boxes, lms, scores = det.boxes[keep].float(), det.landmarks[keep].float(), det.scores[keep].float()
        pred = torch.stack([t.box + _box_shift(t.velocity) * n for t in self.tracks]) if self.tracks else boxes[:0]
        pairs = dict(match_boxes(pred, boxes))
        plans: list[FramePlan] = [[] for _ in range(n)]
        survivors = []
        steps = torch.arange(1, n + 1, dtype=torch.float32)[:, None, None] / n  # (n, 1, 1)
        for ti, track in enumerate(self.tracks):
            if ti in pairs:
                d = pairs[ti]
                path = track.landmarks + (lms[d] - track.landmarks) * steps  # (n, 5, 2)
                bpath = track.box + (boxes[d] - track.box) * steps[:, :, 0]  # (n, 4)
                track.velocity, track.score, track.missed = (lms[d] - track.landmarks) / n, float(scores[d]), 0
                if track.filter.samples == 1:
                    track.filter.seed(track.velocity)
            else:
                track.missed += 1
                if track.missed > self.max_missed:
                    continue
                path = track.landmarks + track.velocity * steps * n
                bpath = track.box + _box_shift(track.velocity) * steps[:, :, 0] * n
            track.landmarks, track.box = path[-1].clone(), bpath[-1].clone()
            survivors.append(track)
            for i in range(n):
                plans[i].append((track, path[i], bpath[i]))
        for d in sorted(set(range(boxes.shape[0])) - set(pairs.values())):
            track = Track(self.next_id, lms[d].clone(), boxes[d].clone(), float(scores[d]), torch.zeros(5, 2),
                          OneEuroFilter(self.rate))
            self.next_id += 1
            survivors.append(track)
            plans[-1].append((track, lms[d], boxes[d]))
        self.tracks = survivors
        return plans

    def detections(self, plan: FramePlan) -> tuple[Detection, list[int]]:
        """One frame's faces as a :class:`Detection` (landmarks smoothed in time, each track's
        detection score) and the track ids, in the same order. Call once per frame, in order."""
        if not plan:
            return Detection(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, 5, 2)), []
        lms, boxes = [], []
        for track, lm, box in plan:
            smooth = track.filter(lm) if self.smoothing else lm
            shift = (smooth - lm).mean(0)
            lms.append(smooth)
            boxes.append(box + torch.cat([shift, shift]))
        scores = torch.tensor([t.score for t, _, _ in plan])
        return Detection(torch.stack(boxes), scores, torch.stack(lms)), [t.id for t, _, _ in plan]


def _box_shift(velocity: Tensor) -> Tensor:
    """A box's motion (4,) from its landmarks' mean motion (velocity (5, 2))."""
    v = velocity.mean(0)
    return torch.cat([v, v])


# ------------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------------
def _check_source(src: pathlib.Path) -> None:
    try:
        st = src.stat()
    except FileNotFoundError:
        raise _fail(src, "no such file") from None
    except OSError as exc:
        raise _fail(src, f"cannot access ({exc.strerror or exc})") from None
    if src.is_dir():
        raise _fail(src, "is a directory, not a video")
    if st.st_size == 0:
        raise _fail(src, "empty file (0 bytes)")
    if not os.access(src, os.R_OK):
        raise _fail(src, "permission denied")


def _open_input(src: pathlib.Path):
    import av

    try:
        return av.open(str(src), metadata_errors="ignore")
    except _av_errors() as exc:
        raise _fail(src, f"not a video, or corrupt ({_av_message(exc)})") from None


def probe_video(src: str | os.PathLike[str], max_pixels: Optional[int] = None) -> VideoProbe:
    """Check a clip before any work: readable, a video stream, frames, constant frame rate, at
    most ``max_pixels`` per frame (default :data:`DEFAULT_MAX_VIDEO_PIXELS`). Reads the packets
    (not the pictures) to count frames and measure their intervals. Raises :class:`VideoError`."""
    src = pathlib.Path(src)
    _check_source(src)
    with _open_input(src) as inp:
        if not inp.streams.video:
            raise _fail(src, "no video stream (audio only, or not a video)")
        vs = inp.streams.video[0]
        w, h = vs.codec_context.width, vs.codec_context.height
        limit = max_pixels or DEFAULT_MAX_VIDEO_PIXELS
        if w <= 0 or h <= 0:
            raise _fail(src, f"invalid frame size {w}x{h}")
        if w * h > limit:
            raise _fail(src, f"{w}x{h} frames ({w * h:,} pixels) exceed the limit of {limit:,} pixels "
                             "(--max-pixels)")
        stamps, count = _scan_packets(inp, vs, src)
        if count == 0:
            raise _fail(src, "no video frames")
        if vs.frames and count < vs.frames:  # the index (MP4, MOV) lists frames the file lacks
            raise _fail(src, f"truncated video ({count} of {vs.frames} frames present)")
        fps = _constant_rate(stamps, vs, src)
        audio = tuple(s.codec_context.name for s in inp.streams.audio)
    rotation = _stream_rotation(src)
    if rotation % 180:
        w, h = h, w
    return VideoProbe(w, h, fps, count, count / float(fps), rotation, audio)


def _scan_packets(inp, vs, src: pathlib.Path) -> tuple[list[float], int]:
    """Timestamps (s) and count of the video packets, without decoding them."""
    stamps, count = [], 0
    try:
        for packet in inp.demux(vs):
            if packet.size == 0:
                continue
            count += 1
            ts = packet.pts if packet.pts is not None else packet.dts
            if ts is not None and packet.time_base is not None:
                stamps.append(float(ts * packet.time_base))
    except _av_errors() as exc:
        raise _fail(src, f"corrupt or truncated video ({_av_message(exc)})") from None
    return stamps, count


def _constant_rate(stamps: list[float], vs, src: pathlib.Path) -> Fraction:
    """The clip's frame rate; :class:`VideoError` when the frame intervals are not constant."""
    nominal = vs.average_rate or vs.guessed_rate or vs.base_rate
    gaps = np.diff(np.sort(np.asarray(stamps, dtype=np.float64)))
    if gaps.size == 0:
        return Fraction(nominal) if nominal else Fraction(25)
    median = float(np.median(gaps))
    tick = float(vs.time_base) if vs.time_base else 0.0
    tol = max(VFR_TOLERANCE * median, 1.5 * tick)
    if median <= 0 or np.abs(gaps - median).max() > tol:
        raise _fail(src, f"variable frame rate (frame intervals from {gaps.min() * 1000:.1f} to "
                         f"{gaps.max() * 1000:.1f} ms); convert it to a constant rate first, e.g. "
                         "ffmpeg -i IN -fps_mode cfr OUT.mp4")
    if nominal and abs(1 / float(nominal) - median) <= tol:
        return Fraction(nominal)
    return Fraction(1 / median).limit_denominator(1001)


def _stream_rotation(src: pathlib.Path) -> int:
    """Display rotation (degrees counter-clockwise, a multiple of 90) of the first frame."""
    with _open_input(src) as inp:
        try:
            for frame in inp.decode(video=0):
                return int(round(getattr(frame, "rotation", 0) / 90.0)) * 90 % 360
        except _av_errors():
            return 0  # the decode pass reports the damage with its frame number
    return 0


def _sws_threads(frame) -> int:
    """Colour-conversion threads: one below a megapixel (more only wait on a busy CPU), else auto."""
    return 1 if frame.width * frame.height < 1_000_000 else 0


def _colors(vs) -> tuple[Any, dict[str, int]]:
    """The YUV<->RGB matrix for decoding and encoding (the stream's tag; untagged: BT.709 for
    HD, BT.601 below 1280x720, as players assume) and the output's colour tags, so that pixels
    away from the faces come out as they went in."""
    from av.video.reformatter import Colorspace

    cc = vs.codec_context
    tag = int(cc.colorspace or 2)  # AVColorSpace: 1 BT.709, 2 unspecified, 5/6 BT.601, 9/10 BT.2020
    hd = cc.width >= 1280 or cc.height >= 720
    if tag in (9, 10):
        cs, out_tag = Colorspace.BT2020, 9
    elif tag == 1 or (tag == 2 and hd):
        cs, out_tag = Colorspace.ITU709, 1
    else:
        cs, out_tag = Colorspace.ITU601, 5 if tag == 5 else 6
    tags = {"colorspace": out_tag, "color_range": 1}
    for name in ("color_primaries", "color_trc"):
        value = int(getattr(cc, name, 2) or 2)
        if value != 2:
            tags[name] = value
    return cs, tags


def _decoded(inp, vs, audio: list, src: pathlib.Path, cs, rotation: int) -> Iterator[tuple[str, Any]]:
    """Demux the clip: ``("video", (H, W, 3) uint8 upright RGB)`` frames in order, interleaved
    with ``("audio", packet)`` packets; decoding errors become :class:`VideoError`."""
    vs.codec_context.thread_type = "AUTO"
    k = rotation // 90
    n = 0
    try:
        for packet in inp.demux(vs, *audio):
            if packet.stream.type == "audio":
                if packet.dts is not None:
                    yield "audio", packet
                continue
            for frame in packet.decode():
                rgb = frame.to_ndarray(format="rgb24", src_colorspace=cs, threads=_sws_threads(frame))
                n += 1
                yield "video", (np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb)
    except _av_errors() as exc:
        raise _fail(src, f"corrupt or truncated video at frame {n} ({_av_message(exc)})") from None


# ------------------------------------------------------------------------------------------------
# writing
# ------------------------------------------------------------------------------------------------
class _Writer:
    """The output file: H.264 yuv420p at ``crf``, the input's constant frame rate and first
    timestamp (so copied audio stays in sync), audio streams copied (or re-encoded to AAC)."""

    def __init__(self, out, vs, audio: list, probe: VideoProbe, *, crf: int, preset: str, cs,
                 tags: dict[str, int], dst: pathlib.Path, first_time: float):
        self.out, self.dst, self.cs = out, dst, cs
        self.width, self.height = probe.width + probe.width % 2, probe.height + probe.height % 2
        with self._writing():
            self.video = out.add_stream("libx264", rate=probe.fps)
            cc = self.video.codec_context
            cc.width, cc.height, cc.pix_fmt = self.width, self.height, "yuv420p"
            cc.options = {"crf": str(crf), "preset": preset}
            for name, value in tags.items():
                setattr(cc, name, value)
            if vs.sample_aspect_ratio and not probe.rotation:
                cc.sample_aspect_ratio = vs.sample_aspect_ratio
            self.audio_map, self.encoders, self.audio_mode = self._audio_streams(audio)
        self.time_base = 1 / Fraction(probe.fps)
        self.pts = int(round(first_time * probe.fps))
        self.frames = 0

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        try:
            yield
        except _av_errors() as exc:
            raise _fail(self.dst, f"cannot write ({_av_message(exc)})") from None

    def _audio_streams(self, audio: list) -> tuple[dict, dict, str]:
        copy_ok = _MP4_AUDIO if self.out.format.name.split(",")[0] in ("mov", "mp4", "ipod") else None
        mapping, encoders, modes = {}, {}, []
        for s in audio:
            name = s.codec_context.name
            if copy_ok is None or name in copy_ok:
                mapping[s.index] = self.out.add_stream_from_template(s)
                modes.append("copied")
            else:
                enc = self.out.add_stream("aac", rate=s.codec_context.sample_rate or 48000)
                mapping[s.index], encoders[s.index] = enc, enc
                modes.append(f"{name} re-encoded to aac")
        return mapping, encoders, ", ".join(modes) or "none"

    def frame(self, rgb: np.ndarray) -> None:
        """Encode one ``(H, W, 3)`` uint8 RGB frame (odd sizes padded by one edge pixel)."""
        from av import VideoFrame

        h, w = rgb.shape[:2]
        if (h, w) != (self.height, self.width):
            rgb = np.pad(rgb, ((0, self.height - h), (0, self.width - w), (0, 0)), mode="edge")
        frame = VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame = frame.reformat(format="yuv420p", dst_colorspace=self.cs, dst_color_range="MPEG",
                               threads=_sws_threads(frame))
        frame.pts, frame.time_base = self.pts + self.frames, self.time_base
        with self._writing():
            self.out.mux(self.video.encode(frame))
        self.frames += 1

    def audio(self, packet) -> None:
        """Copy (or re-encode) one audio packet."""
        with self._writing():
            target = self.audio_map[packet.stream.index]
            if packet.stream.index in self.encoders:
                for frame in packet.decode():
                    self.out.mux(target.encode(frame))
                return
            packet.stream = target
            self.out.mux(packet)

    def finish(self) -> None:
        """Flush the encoders (the container is closed by the caller)."""
        with self._writing():
            self.out.mux(self.video.encode(None))
            for enc in self.encoders.values():
                self.out.mux(enc.encode(None))


@contextlib.contextmanager
def _atomic_output(dst: pathlib.Path) -> Iterator[pathlib.Path]:
    """A temporary path beside ``dst`` (same suffix, so the container format is guessed from
    it), renamed onto ``dst`` when the block succeeds and removed on any error or Ctrl-C."""
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{dst.stem}.", suffix=f".part{dst.suffix}", dir=dst.parent)
        os.close(fd)
    except OSError as exc:
        raise _fail(dst, f"cannot write ({exc.strerror or exc})") from None
    tmp = pathlib.Path(name)
    try:
        yield tmp
        try:
            os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp made it 0600: videos follow the umask as photos do
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, dst)
        except OSError as exc:
            raise _fail(dst, f"cannot write ({exc.strerror or exc})") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


# ------------------------------------------------------------------------------------------------
# restoring
# ------------------------------------------------------------------------------------------------
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

    def __init__(self, restorer, tracker: FaceTracker, every: int, batch_frames: int, write: Callable):
        self.r, self.tracker, self.every, self.batch = restorer, tracker, every, batch_frames
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
        det = self.r.detector.detect([_to_tensor(self.held[-1])])[0]
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
            out = self.r.restore_many([_to_tensor(self.ready[i][0]) for i in todo], [self.ready[i][1] for i in todo])
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


def restore_video(restorer, src: str | os.PathLike[str], dst: str | os.PathLike[str], *, detect_every: int = 5,
                  crf: int = 18, start: Optional[float] = None, end: Optional[float] = None,
                  progress: Optional[Callable[[int, int], None]] = None, preset: str = "medium",
                  batch_frames: int = 8, max_pixels: Optional[int] = None, smoothing: bool = True) -> VideoSummary:
    """Restore the faces of a clip ``src`` into ``dst`` (H.264 yuv420p; MP4 for ``.mp4``).

    ``detect_every``: run the detector on one frame in this many (tracking fills the others).
    ``crf``/``preset``: x264 quality (0-51, lower is better; 18 is visually lossless) and speed.
    ``start``/``end``: seconds from the first frame; only frames in ``[start, end)`` are restored,
    the others are written unchanged (re-encoded), so the output keeps every frame and the audio.
    ``progress(frames_written, frames_total)`` is called as frames are written.
    ``batch_frames``: frames whose faces go through the model together. Raises
    :class:`VideoError` (one line, names the file) for bad input or an unwritable ``dst``; no
    file appears under ``dst`` unless the whole clip was written.
    """
    import av

    src, dst = pathlib.Path(src), pathlib.Path(dst)
    _check_options(detect_every, crf, start, end, batch_frames)
    t0 = time.perf_counter()
    probe = probe_video(src, max_pixels)
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
            seg = _run(restorer, inp, out, probe, src, dst, detect_every=detect_every, crf=crf, start=start,
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


def _run(restorer, inp, out, probe: VideoProbe, src: pathlib.Path, dst: pathlib.Path, *, detect_every: int,
         crf: int, start, end, progress, preset: str, batch_frames: int, smoothing: bool) -> _Segments:
    """Decode, restore and encode every frame; returns the segmenter (its counts)."""
    vs = inp.streams.video[0]
    audio = list(inp.streams.audio)
    cs, tags = _colors(vs)
    first = float(vs.start_time * vs.time_base) if vs.start_time is not None and vs.time_base else 0.0
    upscaled = dataclasses.replace(probe, width=round(probe.width * restorer.upscale),
                                   height=round(probe.height * restorer.upscale))
    writer = _Writer(out, vs, audio, upscaled, crf=crf, preset=preset, cs=cs, tags=tags, dst=dst, first_time=first)

    def write(rgb: np.ndarray, restored: bool = True) -> None:
        if not restored and restorer.upscale != 1:

            rgb = to_hwc_uint8(upscale_image(_to_tensor(rgb), restorer.upscale))
        writer.frame(rgb)
        if progress is not None:
            progress(writer.frames, probe.frames)

    if progress is not None:
        progress(0, probe.frames)
    tracker = FaceTracker(float(probe.fps), restorer.min_score, smoothing=smoothing)
    seg = _Segments(restorer, tracker, detect_every, batch_frames, write)
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
