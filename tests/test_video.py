"""Video restoration (facerestore/video.py, video_io.py, tracking.py, commands/video.py) on clips made here.

The clips: ``skimage.data.astronaut()``'s head wearing a light-blue mask over nose and mouth,
moving across a patterned background, 2 s at 15 fps, 256x192, with a 440 Hz AAC tone. Frame
``i`` carries its index as the grey level of a 16x16 block in the top-left corner, so a fake
detector can return the true landmarks of exactly that frame; one test runs the real MTCNN.
"""

from __future__ import annotations

import os
import pathlib
import re
from fractions import Fraction

import numpy as np
import pytest
import torch

av = pytest.importorskip("av")
skdata = pytest.importorskip("skimage.data")

from PIL import Image, ImageDraw  # noqa: E402

from facerestore.commands.video import is_video, restore_videos  # noqa: E402
from facerestore.errors import InputImageError  # noqa: E402
from facerestore.interfaces import Detection, FaceDetector  # noqa: E402
from facerestore.io import IMAGE_EXTENSIONS, iter_inputs  # noqa: E402
from facerestore.restore import Restorer  # noqa: E402
from facerestore.tracking import FaceTracker  # noqa: E402
from facerestore.video import VIDEO_SUFFIXES, restore_video  # noqa: E402
from facerestore.video_io import VideoError, probe_video  # noqa: E402

#: MTCNN landmarks and box of the (unmasked) astronaut, as in test_restore.py
ASTRO_LM = np.array([[205.01, 101.73], [246.76, 103.71], [224.67, 128.96], [201.72, 139.25], [245.27, 141.86]])
ASTRO_BOX = np.array([181.05, 62.16, 267.75, 172.05])
MASK = [(190, 118), (258, 118), (262, 150), (240, 172), (210, 172), (186, 150)]
HEAD = (150, 40, 300, 200)  # the crop of the astronaut that moves, scaled by 1/2
SIZE, FPS, SECONDS = (256, 192), 15, 2.0


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread: on a 2-core machine shared with other jobs, two OpenMP threads mostly
    wait for each other (MTCNN measured 20-40x slower); restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def masked_head() -> np.ndarray:
    im = Image.fromarray(skdata.astronaut())
    ImageDraw.Draw(im).polygon(MASK, fill=(150, 200, 235))
    head = im.crop(HEAD)
    return np.asarray(head.resize((head.width // 2, head.height // 2), Image.BICUBIC))


def background(w: int, h: int, blue: int = 70) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([60 + 40 * np.sin(xx / 23.0), 80 + 30 * np.cos(yy / 17.0), blue + 0 * xx], -1).astype(np.uint8)


def make_clip(path, *, size=SIZE, fps=FPS, seconds=SECONDS, audio=True, cut_at=None, rotate=False):
    """Write the clip; returns the true landmarks (N, 5, 2) and boxes (N, 4) per frame."""
    head, (w, h) = masked_head(), size
    n = int(round(fps * seconds))
    lms, boxes = [], []
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=fps)
        vs.width, vs.height = (h, w) if rotate else (w, h)
        vs.pix_fmt = "yuv420p"
        vs.codec_context.options = {"crf": "12"}
        if rotate:
            vs.set_display_rotation(90)  # stored turned clockwise; players turn it back
        tone = c.add_stream("aac", rate=44100, layout="mono") if audio else None
        for i in range(n):
            after = cut_at is not None and i >= cut_at
            x = int(round(20 + (w - head.shape[1] - 30) * i / (n - 1)))
            x = w - head.shape[1] - x + 10 if after else x
            y = int(round((h - head.shape[0]) / 2 + 8 * np.sin(i / 4)))
            frame = background(w, h, 170 if after else 70)  # a cut: other colours
            frame[y:y + head.shape[0], x:x + head.shape[1]] = head
            frame[:16, :16] = 8 * i  # the frame index for FrameDetector
            lms.append((ASTRO_LM - HEAD[:2]) / 2 + [x, y])
            boxes.append((ASTRO_BOX - np.tile(HEAD[:2], 2)) / 2 + np.tile([x, y], 2))
            stored = np.ascontiguousarray(np.rot90(frame, -1)) if rotate else frame
            c.mux(vs.encode(av.VideoFrame.from_ndarray(stored, format="rgb24")))
        c.mux(vs.encode(None))
        if tone is not None:
            write_tone(c, tone, seconds)
    return np.array(lms, dtype=np.float32), np.array(boxes, dtype=np.float32)


def write_tone(c, a, seconds: float, rate: int = 44100) -> None:
    """A 440 Hz tone into the mono AAC stream ``a`` (added before any packet was written)."""
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(rate * seconds)) / rate)).astype(np.float32)
    for k in range(0, len(tone), 1024):
        frame = av.AudioFrame.from_ndarray(tone[None, k:k + 1024], format="fltp", layout="mono")
        frame.sample_rate, frame.pts = rate, k
        c.mux(a.encode(frame))
    c.mux(a.encode(None))


class FrameDetector(FaceDetector):
    """Returns the true face of the frame whose index the corner block encodes (or nothing)."""

    def __init__(self, lms, boxes, noise: float = 0.0):
        self.lms, self.boxes, self.noise = torch.from_numpy(lms), torch.from_numpy(boxes), noise
        self.calls: list[int] = []
        self.gen = torch.Generator().manual_seed(0)

    def detect(self, images):
        out = []
        for img in images:
            i = int(round(float(img[:, 2:14, 2:14].mean()) * 255 / 8))
            self.calls.append(i)
            jitter = torch.randn(5, 2, generator=self.gen) * self.noise
            out.append(Detection(self.boxes[i][None].clone(), torch.ones(1), (self.lms[i] + jitter)[None]))
        return out


class Spy:
    """Wraps a restorer's ``restore_many`` to record the landmarks it was given, per call."""

    def __init__(self, restorer):
        self.seen: list[torch.Tensor] = []
        real = restorer.restore_many

        def spy(images, detections=None, options=None):
            self.seen.extend(d.landmarks for d in detections)
            return real(images, detections, options)

        restorer.restore_many = spy


def frames(path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def audio_packets(path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(audio=0) if p.size]


def blueness(video: np.ndarray, lms: np.ndarray) -> float:
    """Mean blue minus red of 5x5 pixels just below the nose, over the frames (the mask: ~85)."""
    vals = []
    for f, lm in zip(video, lms):
        x, y = np.round(lm[2] + [0, 2]).astype(int)
        patch = f[y - 2:y + 3, x - 2:x + 3].astype(int)
        vals.append((patch[..., 2] - patch[..., 0]).mean())
    return float(np.mean(vals))


def face_diff(a: np.ndarray, b: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Mean absolute difference inside each frame's true face box (N,)."""
    out = []
    for fa, fb, box in zip(a, b, boxes):
        x0, y0, x1, y1 = np.round(box).astype(int)
        out.append(np.abs(fa[y0:y1, x0:x1].astype(int) - fb[y0:y1, x0:x1]).mean())
    return np.array(out)


def leftovers(folder: pathlib.Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) if folder.exists() else []


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clips") / "masked.mp4"
    lms, boxes = make_clip(path)
    return path, lms, boxes


def gt_restorer(lms, boxes, model="bicubic", noise=0.0) -> Restorer:
    return Restorer.from_pretrained(model, device="cpu", detector=FrameDetector(lms, boxes, noise))


# ------------------------------------------------------------------------------------------------
# end to end
# ------------------------------------------------------------------------------------------------
def test_masked_clip_restored_with_mtcnn(clip, tmp_path):
    pytest.importorskip("facenet_pytorch")
    src, lms, _ = clip
    out = tmp_path / "out.mp4"
    summary = restore_video(Restorer.from_pretrained("jdsr-x4", device="cpu"), src, out, detect_every=5)
    n = int(FPS * SECONDS)
    assert (summary.frames, summary.faces, summary.tracks, summary.restored_frames) == (n, n, 1, n)
    info = probe_video(out)
    assert (info.frames, info.fps, info.width, info.height) == (n, Fraction(FPS), *SIZE)
    with av.open(str(out)) as c:
        assert abs(float(c.duration) / 1e6 - SECONDS) < 0.1
        assert [s.codec_context.name for s in c.streams] == ["h264", "aac"]
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p"
    assert audio_packets(out) == audio_packets(src)  # remuxed, not re-encoded
    before, after = frames(src).astype(int), frames(out).astype(int)
    mask_in, mask_out = blueness(before, lms), blueness(after, lms)
    assert mask_in > 60 and mask_out < 25, (mask_in, mask_out)  # the light-blue mask became skin
    far = np.s_[:, 150:, :]  # bottom rows: the head never gets there
    assert np.abs(after[far] - before[far]).mean() < 1.5


def test_tracking_follows_detections_and_cut(tmp_path):
    src = tmp_path / "cut.mp4"
    lms, boxes = make_clip(src, audio=False, cut_at=17)
    r = gt_restorer(lms, boxes, noise=1.0)
    spy = Spy(r)
    summary = restore_video(r, src, tmp_path / "out.mp4", detect_every=5)
    calls = r.detector.calls
    assert calls == [0, 5, 10, 15, 16, 17, 22, 27, 29], calls  # first frame, every 5th, before/after the cut, last
    assert summary.tracks == 2 and summary.faces == 30
    used = torch.stack([lm[0] for lm in spy.seen])
    err = (used - torch.from_numpy(lms)).norm(dim=-1).mean(-1)
    assert float(err.max()) < 4.0 and float(err.mean()) < 2.5, err  # the landmarks stay on the face


def test_start_end_restore_only_the_range(clip, tmp_path):
    src, lms, boxes = clip
    out = tmp_path / "part.mp4"
    summary = restore_video(gt_restorer(lms, boxes), src, out, start=0.5, end=1.0)
    inside = [i for i in range(30) if 0.5 <= i / FPS < 1.0]
    assert summary.frames == 30 and summary.restored_frames == len(inside) == 7
    diff = face_diff(frames(out), frames(src), boxes)
    assert diff[inside].min() > 2 * diff[[i for i in range(30) if i not in inside]].max(), diff
    assert audio_packets(out) == audio_packets(src)


def test_rotated_clip_written_upright(tmp_path):
    src = tmp_path / "rot.mp4"
    lms, boxes = make_clip(src, audio=False, seconds=0.4, rotate=True)
    r = gt_restorer(lms, boxes)
    restore_video(r, src, tmp_path / "out.mp4")
    assert r.detector.calls[0] == 0  # the marker was read upright
    out = frames(tmp_path / "out.mp4")
    assert out.shape[1:3] == (SIZE[1], SIZE[0])
    assert np.abs(out[0, 150:].astype(int) - background(*SIZE)[150:]).mean() < 3


# ------------------------------------------------------------------------------------------------
# tracker
# ------------------------------------------------------------------------------------------------
def moving_face(i: int, x0: float = 50.0, speed: float = 2.0) -> torch.Tensor:
    base = torch.tensor(ASTRO_LM - ASTRO_LM.mean(0), dtype=torch.float32) / 2
    return base + torch.tensor([x0 + speed * i, 80.0])


def det_of(lms: list[torch.Tensor]) -> Detection:
    if not lms:
        return Detection(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, 5, 2))
    lm = torch.stack(lms)
    boxes = torch.cat([lm.amin(1) - 10, lm.amax(1) + 10], 1)
    return Detection(boxes, torch.ones(len(lms)), lm)


def track_noisy_face(speed: float, k: int = 5, n: int = 61, noise: float = 1.5):
    """Detections every ``k`` frames of a face moving ``speed`` px/frame, with ``noise`` px of
    detector jitter -> track ids seen, and the errors (N, 5) of the interpolated and of the
    smoothed landmarks against the truth."""
    g = torch.Generator().manual_seed(0)
    tracker, ids, raw, smooth = FaceTracker(25.0), set(), [], []
    for d in range(0, n, k):
        noisy = moving_face(d, speed=speed) + torch.randn(5, 2, generator=g) * noise
        for plan in tracker.advance(det_of([noisy]), 1 if d == 0 else k):
            det, track_ids = tracker.detections(plan)
            ids.update(track_ids)
            raw.append(plan[0][1])
            smooth.append(det.landmarks[0])
    truth = torch.stack([moving_face(i, speed=speed) for i in range(n)])
    return ids, torch.stack(raw) - truth, torch.stack(smooth) - truth


def test_tracker_one_id_interpolates_and_smooths():
    err = lambda e: float(e.norm(dim=-1).mean())  # noqa: E731  mean landmark error, px
    shake = lambda e: float((e[1:] - e[:-1]).norm(dim=-1).mean())  # noqa: E731  its change per frame
    ids, raw, smooth = track_noisy_face(speed=0.0)
    assert ids == {0} and raw.shape[0] == 61
    assert shake(smooth) < 0.7 * shake(raw) and err(smooth) < err(raw)  # a still face: steadier
    ids, raw, smooth = track_noisy_face(speed=3.0)
    assert ids == {0} and err(smooth) < err(raw) + 1.0  # a moving face: little lag


def test_tracker_misses_new_faces_and_ends():
    tracker = FaceTracker(25.0, max_missed=1)
    a, b = lambda i: moving_face(i, 40.0), lambda i: moving_face(i, 200.0, -1.0)

    def step(faces, n=5):
        return [[t.id for t, _, _ in plan] for plan in tracker.advance(det_of(faces), n)]

    assert step([a(0)], 1) == [[0]]
    assert step([a(5), b(5)]) == [[0]] * 4 + [[0, 1]]  # b appears on its detection frame
    assert step([b(10)]) == [[0, 1]] * 5  # a missed once: coasts
    assert step([a(15), b(15)]) == [[0, 1]] * 5  # back: same id
    assert step([b(20)]) == [[0, 1]] * 5
    assert step([b(25)]) == [[1]] * 5  # a missed twice: ended
    tracker.reset()
    assert step([a(30)], 1) == [[2]]


def test_tracker_ignores_low_scores():
    tracker = FaceTracker(25.0, min_score=0.9)
    det = det_of([moving_face(0)])
    det.scores[:] = 0.5
    assert tracker.advance(det, 1) == [[]]


# ------------------------------------------------------------------------------------------------
# bad inputs, interruption, output
# ------------------------------------------------------------------------------------------------
def remux(src, dst, **options) -> None:
    with av.open(str(src)) as i, av.open(str(dst), "w", options=options) as o:
        streams = {s.index: o.add_stream_from_template(s) for s in i.streams}
        for p in i.demux():
            if p.dts is not None:
                p.stream = streams[p.stream.index]
                o.mux(p)


def bad_truncated(src, folder):
    data = src.read_bytes()
    (folder / "bad.mp4").write_bytes(data[: len(data) // 2])


def bad_truncated_faststart(src, folder):
    remux(src, folder / "full.mp4", movflags="faststart")
    data = (folder / "full.mp4").read_bytes()
    (folder / "bad.mp4").write_bytes(data[: int(len(data) * 0.6)])


def bad_text(src, folder):
    (folder / "bad.mp4").write_text("not a video\n")


def bad_empty(src, folder):
    (folder / "bad.mp4").write_bytes(b"")


def bad_audio_only(src, folder):
    with av.open(str(folder / "bad.mp4"), "w") as c:
        write_tone(c, c.add_stream("aac", rate=44100, layout="mono"), 0.5)


def bad_zero_frames(src, folder):
    with av.open(str(folder / "bad.mp4"), "w", format="avi") as c:  # MP4/MKV would drop the stream
        vs = c.add_stream("mjpeg", rate=25)
        vs.width, vs.height, vs.pix_fmt = 64, 64, "yuvj420p"
        c.start_encoding()


def bad_variable_rate(src, folder):
    with av.open(str(folder / "bad.mp4"), "w") as c:
        vs = c.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = 64, 64, "yuv420p"
        vs.codec_context.time_base = Fraction(1, 1000)
        t = 0
        for i in range(12):
            f = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 20 * i, np.uint8), format="rgb24")
            f.pts, f.time_base = t, Fraction(1, 1000)
            t += 40 if i % 3 else 100
            c.mux(vs.encode(f))
        c.mux(vs.encode(None))


def bad_too_big(src, folder):
    remux(src, folder / "bad.mp4")


BAD = {"truncated": (bad_truncated, "corrupt"), "truncated_faststart": (bad_truncated_faststart, "truncated"),
       "text": (bad_text, "not a video"), "empty": (bad_empty, "empty file"),
       "audio_only": (bad_audio_only, "no video stream"), "zero_frames": (bad_zero_frames, "no video frames"),
       "variable_rate": (bad_variable_rate, "variable frame rate"), "too_big": (bad_too_big, "exceed the limit")}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_one_line_error_no_output(case, clip, tmp_path):
    src, lms, boxes = clip
    build, words = BAD[case]
    build(src, tmp_path)
    out_dir = tmp_path / "out"
    with pytest.raises(VideoError) as err:
        restore_video(gt_restorer(lms, boxes), tmp_path / "bad.mp4", out_dir / "bad.mp4",
                      max_pixels=10_000 if case == "too_big" else None)
    msg = str(err.value)
    assert isinstance(err.value, InputImageError)
    assert "\n" not in msg and msg.startswith(str(tmp_path / "bad.mp4")) and words in msg, msg
    assert not (out_dir / "bad.mp4").exists() and leftovers(out_dir) == []


def test_unwritable_output_and_same_file(clip, tmp_path):
    src, lms, boxes = clip
    (tmp_path / "file").write_text("a file, not a folder")
    with pytest.raises(VideoError, match="cannot write"):
        restore_video(gt_restorer(lms, boxes), src, tmp_path / "file" / "out.mp4")
    with pytest.raises(VideoError, match="overwrite the input"):
        restore_video(gt_restorer(lms, boxes), src, src)


def test_interrupt_leaves_previous_output(clip, tmp_path):
    src, lms, boxes = clip
    out = tmp_path / "out.mp4"
    out.write_bytes(b"previous result")

    def progress(done, total):
        assert total == 30
        if done == 12:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        restore_video(gt_restorer(lms, boxes), src, out, progress=progress)
    assert out.read_bytes() == b"previous result" and leftovers(tmp_path) == []


# ------------------------------------------------------------------------------------------------
# the command helper
# ------------------------------------------------------------------------------------------------
def test_restore_videos_helper(clip, tmp_path):
    src, lms, boxes = clip
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    os.link(src, folder / "sub" / "good.MOV")
    (folder / "broken.mp4").write_text("nope")
    assert all(is_video(f"x{s}") for s in VIDEO_SUFFIXES) and is_video("a.MKV") and not is_video("a.png")
    items = list(iter_inputs([folder], IMAGE_EXTENSIONS + VIDEO_SUFFIXES))
    lines, errors = [], []
    done, failed, faces = restore_videos(gt_restorer(lms, boxes), items, tmp_path / "out", echo=lines.append,
                                         fail=errors.append)
    assert (done, failed) == (1, 1) and faces == 30
    assert (tmp_path / "out" / "in" / "sub" / "good.mp4").exists()
    assert len(errors) == 1 and "broken.mp4" in errors[0]
    assert len(lines) == 1 and "30 frames" in lines[0] and "1 track" in lines[0], lines


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_restored_video_follows_the_umask(clip, tmp_path, umask):
    """A restored video is written 0644 under the usual umask, like photos (it was 0600)."""
    src, lms, boxes = clip
    old = os.umask(umask)
    try:
        restore_video(gt_restorer(lms, boxes), src, tmp_path / "o.mp4")
    finally:
        os.umask(old)
    assert (tmp_path / "o.mp4").stat().st_mode & 0o777 == 0o666 & ~umask


def test_restore_command_takes_a_folder_of_photos_and_videos(clip, tmp_path, monkeypatch):
    """`facerestore restore FOLDER` restores the clip in it (it used to be skipped without a word)."""
    import shutil

    from PIL import Image
    from typer.testing import CliRunner

    import facerestore.restore as restore_mod
    from facerestore.cli import app

    path, lms, boxes = clip
    src = tmp_path / "mixed"
    src.mkdir()
    shutil.copy(path, src / "clip.mp4")
    Image.fromarray(masked_head()).save(src / "photo.png")
    monkeypatch.setattr(restore_mod, "default_detector", lambda device="cpu", name="mtcnn": FrameDetector(lms, boxes))
    res = CliRunner().invoke(app, ["restore", str(src), "-o", str(tmp_path / "out"), "--model", "bicubic",
                                   "--detect-every", "3"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "out" / "mixed" / "clip.mp4").is_file() and (tmp_path / "out" / "mixed" / "photo.png").is_file()
    assert "1 photos, 1 videos" in res.output
    # the closing summary counts the clip's faces (summed over frames) with the photo's
    video_faces = int(re.search(r"(\d+) faces restored in", res.output).group(1))
    assert video_faces > 0 and f"{video_faces + 1} faces found, {video_faces + 1} restored" in res.output, res.output
    assert len(frames(tmp_path / "out" / "mixed" / "clip.mp4")) == len(frames(path))
    bad = CliRunner().invoke(app, ["restore", str(src), "-o", str(tmp_path / "o2"), "--start", "2", "--end", "1"])
    assert bad.exit_code == 2 and "--end" in bad.output
