"""Face detection on real masked-face photos, and false detections on group photos.

    python -m benchmarks.detection [--data ../shared/data] [--threads 1] [--only NAME ...] [--out FILE]

Per detector setting:

* **rmfd_dev**: photos of ``scenes/rmfd_dev`` (187 real web photos, each with at least one masked
  face, 150-256 px on the long side) in which at least one face is found, and the number of
  faces found there (no ground truth for the count: more is not necessarily better);
* **false detections**: detections beyond the number of real faces on photos whose faces were
  counted by hand (constants below): ``scenes/insightface/t1.jpg`` and the three whole photos of
  ``scenes/gfpgan/whole_imgs``; also the four 512 px aligned faces of ``scenes/gfpgan/cropped_faces``
  and the 112 px aligned face of ``scenes/insightface`` (one face each) and the four flat photos of
  surgical masks of ``scenes/insightface`` (no face). Missed faces there are reported too;
* **time**: wall-clock ms per rmfd_dev photo (median) and for t1.jpg (1280x886, 6 faces; median of
  3 runs), and the process CPU ms of both (all threads counted), the steadier figure on a shared
  machine (one thread by default: on a loaded 2-core machine two threads mostly wait on each other).

A setting with ``min_score`` keeps only detections scoring at least that, as the restorer does
(``Restorer(min_score=0.9)``). Prints a Markdown table; ``--out FILE`` writes it too.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import statistics
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"

#: Real faces per photo, counted by looking at the photos (faces of people, any size, turned or
#: not; no posters or reflections in these photos).
SCENE_FACES = {
    "insightface/t1.jpg": 6,            # six people around a table
    "gfpgan/whole_imgs/00.jpg": 2,      # two girls on a bench
    "gfpgan/whole_imgs/10045.png": 3,   # man, woman, girl in a hallway
    "gfpgan/whole_imgs/Blake_Lively.jpg": 2,  # side-by-side portraits (child, adult)
}
#: Extra checks: aligned single faces, and masks photographed alone (no face).
EXTRA_FACES = {
    "gfpgan/cropped_faces/Adele_crop.png": 1,
    "gfpgan/cropped_faces/Julia_Roberts_crop.png": 1,
    "gfpgan/cropped_faces/Justin_Timberlake_crop.png": 1,
    "gfpgan/cropped_faces/Paris_Hilton_crop.png": 1,
    "insightface/Tom_Hanks_54745.png": 1,
    "insightface/mask_black.jpg": 0,
    "insightface/mask_blue.jpg": 0,
    "insightface/mask_green.jpg": 0,
    "insightface/mask_white.jpg": 0,
}

#: (label, registry name, constructor parameters, min_score applied after detection)
SETTINGS = [
    ("mtcnn, restorer's min_score 0.9", "mtcnn", {}, 0.9),
    ("mtcnn, any score", "mtcnn", {}, 0.0),
    ("mtcnn min_face_size 8, thresholds 0.5/0.6/0.5, any score", "mtcnn",
     {"min_face_size": 8, "thresholds": (0.5, 0.6, 0.5)}, 0.0),
    ("dlib HOG, upsample 1", "dlib", {"points": 5, "upsample": 1}, 0.0),
    ("masked (defaults)", "masked", {}, 0.0),
    ("masked, second_look_min 0.7 (stricter)", "masked", {"second_look_min": 0.7}, 0.0),
    ("masked, no second look", "masked", {"second_look_min": 0.0}, 0.0),
    ("masked, one score 0.9 for all sizes", "masked", {"score_large": 0.9}, 0.0),
    ("masked, no border search (pad 0)", "masked", {"pad": 0.0}, 0.0),
    ("masked, no enlarging (upsample_to 0)", "masked", {"upsample_to": 0}, 0.0),
    ("masked, no landmark check", "masked", {"check_landmarks": False}, 0.0),
    ("masked, thresholds 0.6/0.7/0.7 (MTCNN's)", "masked", {"thresholds": (0.6, 0.7, 0.7)}, 0.0),
    ("masked, thresholds 0.5/0.2/0.3", "masked", {"thresholds": (0.5, 0.2, 0.3)}, 0.0),
]


def load(path: pathlib.Path):
    from facerestore.io import read_image

    return read_image(path)[0]


def run_setting(det, min_score: float, rmfd: list, scenes: dict, extra: dict, threads: int) -> dict:
    def count(img) -> int:
        (d,) = det.detect([img])
        return int((d.scores >= min_score).sum())

    det.detect([rmfd[0][1]])  # warm-up (lazy imports, first allocations)
    found, faces, wall, cpu = 0, 0, [], []
    for _, img in rmfd:
        t, c = time.perf_counter(), time.process_time()
        n = count(img)
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
        found += n > 0
        faces += n
    fp = missed = 0
    per_scene = {}
    for name, (img, true) in scenes.items():
        n = count(img)
        per_scene[name] = n
        fp += max(0, n - true)
        missed += max(0, true - n)
    xfp = xmissed = 0
    for name, (img, true) in extra.items():
        n = count(img)
        xfp += max(0, n - true)
        xmissed += max(0, true - n)
    t1 = scenes.get("insightface/t1.jpg", (None,))[0]
    t1_times, t1_cpu = [], []
    if t1 is not None:
        for _ in range(3):
            t, c = time.perf_counter(), time.process_time()
            det.detect([t1])
            t1_times.append(time.perf_counter() - t)
            t1_cpu.append(time.process_time() - c)
    return {"found": found, "n": len(rmfd), "faces": faces, "fp": fp, "missed": missed, "per_scene": per_scene,
            "xfp": xfp, "xmissed": xmissed, "ms": 1000 * statistics.median(wall), "cpu_ms": 1000 * statistics.median(cpu),
            "t1_ms": 1000 * statistics.median(t1_times) if t1_times else float("nan"),
            "t1_cpu_ms": 1000 * statistics.median(t1_cpu) if t1_cpu else float("nan")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", nargs="*", help="run only settings whose label starts with one of these")
    ap.add_argument("--out", help="also write the Markdown table to this file")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    from facerestore.components import default_registry

    data = pathlib.Path(args.data)
    rmfd_dir = data / "scenes" / "rmfd_dev"
    files = sorted(rmfd_dir.glob("*/*.jpg"))
    if not files:
        raise SystemExit(f"no photos under {rmfd_dir}")
    rmfd = [(f, load(f)) for f in files]
    scenes = {k: (load(data / "scenes" / k), v) for k, v in SCENE_FACES.items()}
    extra = {k: (load(data / "scenes" / k), v) for k, v in EXTRA_FACES.items() if (data / "scenes" / k).is_file()}
    reg = default_registry()
    rows = []
    for label, name, params, min_score in SETTINGS:
        if args.only and not any(label.startswith(o) for o in args.only):
            continue
        if ("detector", name) not in reg:
            print(f"skip {label}: detector {name!r} not registered")
            continue
        det = reg.create("detector", name, **params)
        r = run_setting(det, min_score, rmfd, scenes, extra, args.threads)
        rows.append((label, r))
        print(f"{label}: {r['found']}/{r['n']} photos, {r['faces']} faces, false {r['fp']} (missed {r['missed']}) "
              f"{r['per_scene']}, extra false {r['xfp']} missed {r['xmissed']}, {r['ms']:.0f} ms/photo "
              f"(CPU {r['cpu_ms']:.0f}), t1 {r['t1_ms']:.0f} ms (CPU {r['t1_cpu_ms']:.0f})", flush=True)
    head = ("| detector, setting | rmfd_dev photos with a face | faces found (rmfd_dev) | false detections "
            "(t1 + gfpgan whole) | missed faces (t1 + gfpgan whole) | aligned faces / mask photos: false, missed "
            "| ms/photo (median, wall) | CPU ms/photo (median) | t1.jpg ms (wall) | t1.jpg CPU ms |\n"
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
    lines = [f"| {label} | {r['found']}/{r['n']} ({100 * r['found'] / r['n']:.1f}%) | {r['faces']} | {r['fp']} | "
             f"{r['missed']} | {r['xfp']}, {r['xmissed']} | {r['ms']:.0f} | {r['cpu_ms']:.0f} | {r['t1_ms']:.0f} | "
             f"{r['t1_cpu_ms']:.0f} |"
             for label, r in rows]
    table = head + "\n".join(lines) + "\n"
    note = (f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
            f"{args.threads} threads; data: {data}\n")
    print()
    print(table + note)
    if args.out:
        pathlib.Path(args.out).write_text(table + note)


if __name__ == "__main__":
    main()
