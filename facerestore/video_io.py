"""Reading and writing video files with PyAV: checking a clip before any work
(:func:`probe_video`), decoding upright RGB frames with the audio packets interleaved, encoding
H.264 yuv420p with the audio copied (or re-encoded to AAC), writing atomically, and the one-line
:class:`VideoError`. PyAV is imported inside the functions that use it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import tempfile
from collections.abc import Iterator
from fractions import Fraction
from typing import Any, Optional

import numpy as np

from .checkpoint import current_umask
from .errors import InputImageError

#: largest frame accepted by default (4096 x 2304, covers UHD and DCI 4K): a batch of 8 such
#: frames as float tensors is already ~0.9 GB
DEFAULT_MAX_VIDEO_PIXELS = 4096 * 2304
#: a frame interval further than this fraction from the median makes a clip variable-rate
VFR_TOLERANCE = 0.1
#: audio codecs copied into MP4 as they are (others are re-encoded to AAC)
_MP4_AUDIO = {"aac", "mp3", "mp2", "alac", "flac", "opus", "ac3", "eac3"}


class VideoError(InputImageError):
    """A video cannot be read (corrupt, no video stream, no frames, variable frame rate, too many
    pixels) or its output cannot be written; the one-line message names the file. An
    ``InputImageError``, so ``restore`` reports it like a bad photo and goes on."""


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
