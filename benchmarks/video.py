"""Video restoration: flicker of the restored faces, and speed in frames/s.

    python -m benchmarks.video [--model jdsr-x4] [--threads 1] [--detect-every 5] [--seconds 3]

Flicker: a clip made from one still photo (``skimage.data.astronaut()`` with a light-blue mask
over nose and mouth) filmed by a moving camera (slow pan, zoom and roll plus a small 7 Hz shake),
320x240 at 25 fps, H.264 crf 18. The true landmarks of every frame are known from the camera
motion, so each frame's face is cut out with them (aligned 64 px crops) from the input and from
the outputs; flicker is the mean absolute difference between consecutive crops (0-255 scale).
Nothing in the scene moves except the camera, so the crops would be identical without
resampling and compression: the ratio output / input says how much flicker restoration adds.
Three outputs are measured: the video pipeline (detection every k frames, tracking, One-Euro
smoothing), the same without smoothing, and the photo pipeline on every frame (detection on
every frame, no tracking, no smoothing).

Speed: a 640x360 clip with two masked faces moving, 25 fps: whole ``restore_video`` (decode,
detection, tracking, restoration, paste-back, encode) in frames/s, and the parts.
"""

from __future__ import annotations

import argparse
import math
import os
import pathlib
import platform
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

#: MTCNN landmarks of the astronaut's face (as in tests/test_restore.py)
ASTRO_LM = torch.tensor([[205.01, 101.73], [246.76, 103.71], [224.67, 128.96], [201.72, 139.25], [245.27, 141.86]])
MASK = [(190, 118), (258, 118), (262, 150), (240, 172), (210, 172), (186, 150)]


def masked_photo() -> torch.Tensor:
    """The astronaut with a light-blue mask over nose and mouth, (3, 512, 512) in [0, 1]."""
    from PIL import Image, ImageDraw
    from skimage import data

    im = Image.fromarray(data.astronaut())
    ImageDraw.Draw(im).polygon(MASK, fill=(150, 200, 235))
    return torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).float() / 255


def camera(i: int, fps: float, view: tuple[int, int]) -> torch.Tensor:
    """Photo pixels -> view pixels at frame ``i`` (2, 3): pan, zoom, roll and a small shake."""
    t = i / fps
    w, h = view
    scale = 0.55 * (1 + 0.08 * math.sin(2 * math.pi * t / 4))
    angle = math.radians(2.0 * math.sin(2 * math.pi * t / 6))
    cx = 225 + 40 * math.sin(2 * math.pi * t / 5) + 0.6 * math.sin(2 * math.pi * 7 * t)
    cy = 130 + 20 * math.cos(2 * math.pi * t / 3) + 0.6 * math.cos(2 * math.pi * 7 * t + 1)
    c, s = scale * math.cos(angle), scale * math.sin(angle)
    rot = torch.tensor([[c, -s], [s, c]])
    shift = torch.tensor([w / 2, h / 2]) - rot @ torch.tensor([cx, cy])
    return torch.cat([rot, shift[:, None]], 1)


def render(photo: torch.Tensor, m: torch.Tensor, view: tuple[int, int]) -> np.ndarray:
    """The view (H, W, 3) uint8 of ``photo`` (3, H, W) through the photo->view transform ``m``."""
    w, h = view
    inv = torch.linalg.inv(torch.cat([m, torch.tensor([[0.0, 0, 1]])]))[:2]
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    pts = torch.stack([xs, ys, torch.ones_like(xs)], -1) @ inv.T  # (H, W, 2) photo pixels
    size = torch.tensor([photo.shape[2], photo.shape[1]], dtype=torch.float32)
    grid = (pts + 0.5) / size * 2 - 1
    out = F.grid_sample(photo[None], grid[None], mode="bicubic", padding_mode="reflection", align_corners=False)[0]
    return out.clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()


def head_and_background(view: tuple[int, int], scale: float) -> tuple[np.ndarray, np.ndarray]:
    """The masked astronaut's head at ``scale`` (H, W, 3) uint8 and a smooth synthetic background
    (view[1], view[0], 3) uint8: the pieces of the speed clips (here and benchmarks/scale.py)."""
    head = F.interpolate(masked_photo()[None, :, 40:200, 150:300], scale_factor=scale, mode="bicubic",
                         antialias=scale < 1)[0]
    head = head.clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
    yy, xx = np.mgrid[0:view[1], 0:view[0]]
    bg = np.stack([60 + 40 * np.sin(xx / 37.0), 80 + 30 * np.cos(yy / 23.0), 70 + 0 * xx], -1).astype(np.uint8)
    return head, bg


def write_clip(path: pathlib.Path, frames: list[np.ndarray], fps: int) -> None:
    import av

    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=fps)
        vs.height, vs.width = frames[0].shape[:2]
        vs.pix_fmt = "yuv420p"
        vs.codec_context.options = {"crf": "18"}
        for f in frames:
            c.mux(vs.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(vs.encode(None))


def read_frames(path: pathlib.Path) -> torch.Tensor:
    import av

    with av.open(str(path)) as c:
        arr = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 255


def flicker(frames: torch.Tensor, lms: torch.Tensor, size: int = 64) -> float:
    """Mean |crop_t - crop_t-1| (0-255) of the aligned face crops cut with the true landmarks."""
    from facerestore import align

    m = align.alignment_matrices(lms, size)
    crops = torch.cat([align.warp_crops(f, m[i:i + 1], size) for i, f in enumerate(frames)])
    return float((crops[1:] - crops[:-1]).abs().mean()) * 255


def per_frame(restorer, src: pathlib.Path, dst: pathlib.Path) -> None:
    """The photo pipeline on every frame: detect, restore, paste; no tracking, no smoothing."""
    frames = read_frames(src)
    out = [restorer.restore_many([f])[0].image for f in frames]
    write_clip(dst, [(f.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy() for f in out], 25)


def bench_flicker(restorer, folder: pathlib.Path, args) -> list[tuple[str, str, str]]:
    from facerestore import video

    view, fps = (320, 240), 25
    n = int(args.seconds * fps)
    photo = masked_photo()
    mats = [camera(i, fps, view) for i in range(n)]
    lms = torch.stack([ASTRO_LM @ m[:, :2].T + m[:, 2] for m in mats])
    src = folder / "camera.mp4"
    write_clip(src, [render(photo, m, view) for m in mats], fps)
    base = flicker(read_frames(src), lms)
    rows = [("input clip", f"{base:.2f}", "1.00")]
    runs = [("video pipeline (k=%d, One-Euro)" % args.detect_every, dict(smoothing=True)),
            ("video pipeline (k=%d, no smoothing)" % args.detect_every, dict(smoothing=False))]
    for name, kw in runs:
        out = folder / f"out_{len(rows)}.mp4"
        video.restore_video(restorer, src, out, detect_every=args.detect_every, **kw)
        f = flicker(read_frames(out), lms)
        rows.append((name, f"{f:.2f}", f"{f / base:.2f}"))
    per_frame(restorer, src, folder / "per_frame.mp4")
    f = flicker(read_frames(folder / "per_frame.mp4"), lms)
    rows.append(("photo pipeline on every frame", f"{f:.2f}", f"{f / base:.2f}"))
    return rows


def bench_speed(restorer, folder: pathlib.Path, args) -> list[tuple[str, str, str]]:
    from facerestore import video

    view, fps = (640, 360), 25
    n = int(args.seconds * fps)
    head, bg = head_and_background(view, 0.5)
    hh, hw = head.shape[:2]
    frames = []
    for i in range(n):
        f = bg.copy()
        for k, (x0, y0, vx) in enumerate([(60, 80, 3.0), (460, 200, -2.0)][:args.faces]):
            x, y = int(x0 + vx * i), int(y0 + 10 * math.sin(i / 6 + k))
            f[y:y + hh, x:x + hw] = head
        frames.append(f)
    src = folder / "speed.mp4"
    write_clip(src, frames, fps)
    rows = []
    video.restore_video(restorer, src, folder / "warm.mp4", end=0.4)  # first-call costs
    t, cpu = time.perf_counter(), time.process_time()
    s = video.restore_video(restorer, src, folder / "speed_out.mp4", detect_every=args.detect_every)
    total, cpu = time.perf_counter() - t, time.process_time() - cpu
    rows.append((f"restore_video 640x360, {args.faces} faces, k={args.detect_every}", f"{n / total:.1f} frames/s",
                 f"{n} frames in {total:.1f} s wall; {s.faces} faces, {s.tracks} tracks"))
    rows.append(("  per CPU-second (all threads)", f"{n / cpu:.1f} frames/CPU-s",
                 f"{cpu:.1f} CPU-s: what an otherwise idle core would do"))
    img = read_frames(src)[0]
    restorer.detector.detect([img])
    t, cpu = time.perf_counter(), time.process_time()
    for _ in range(3):
        restorer.detector.detect([img])
    det, cpu = (time.perf_counter() - t) / 3, (time.process_time() - cpu) / 3
    rows.append(("  of which MTCNN detection", f"{det * 1000:.0f} ms/call",
                 f"{cpu * 1000:.0f} CPU-ms/call, {cpu * 1000 / args.detect_every:.0f} CPU-ms/frame at "
                 f"k={args.detect_every}"))

    class NoFaces:
        def detect(self, images):
            from facerestore.interfaces import Detection
            return [Detection(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, 5, 2)) for _ in images]

    name = restorer.options.detector
    saved, restorer._detectors[name] = restorer.detector_for(name), NoFaces()
    t, cpu = time.perf_counter(), time.process_time()
    video.restore_video(restorer, src, folder / "speed_plain.mp4", detect_every=args.detect_every)
    plain, cpu = time.perf_counter() - t, time.process_time() - cpu
    restorer._detectors[name] = saved
    rows.append(("  decode + encode only (no faces)", f"{n / plain:.1f} frames/s",
                 f"{n / cpu:.1f} frames/CPU-s; libx264 crf 18, preset medium"))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="jdsr-x4")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--detect-every", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--faces", type=int, default=2, choices=(1, 2))
    ap.add_argument("--only", choices=("flicker", "speed"), default=None)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)

    from facerestore.restore import Restorer

    restorer = Restorer.from_pretrained(args.model, device="cpu")
    _ = restorer.detector
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp)
        if args.only != "speed":
            print("| flicker clip 320x240, 25 fps, %.0f s | flicker | vs input |\n|---|---|---|" % args.seconds)
            for row in bench_flicker(restorer, folder, args):
                print("| " + " | ".join(row) + " |")
            print()
        if args.only != "flicker":
            print("| speed | | note |\n|---|---|---|")
            for row in bench_speed(restorer, folder, args):
                print("| " + " | ".join(row) + " |")
    print(f"\nmodel `{args.model}`, {args.threads} torch thread(s), {platform.machine()} CPU "
          f"({os.cpu_count()} cores), torch {torch.__version__.split('+')[0]}, load average "
          f"{os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
