"""Derive where dlib's 5 face-chip landmarks sit in facerestore's aligned framing (TEMPLATE_5).

dlib's ``get_face_chip_details`` maps its 5-point shape-predictor landmarks (eye corners and the
base of the nose) onto a fixed mean face (``dlib/image_transforms/interpolation.h``, copied as
:data:`facerestore.pretrained.dlib_chip.DLIB_CHIP_5`). Our aligned faces all follow
:data:`facerestore.landmarks.TEMPLATE_5` (the 128 px centre crop of CelebA's aligned photos), so
the chip of an average aligned face is one fixed similarity transform of our framing. This
script measures the missing piece, the dlib landmarks of an average face in our framing:

* faces: ``celeba/train`` (identities disjoint from ``celeba/val``, where the framing is
  evaluated by ``benchmarks/identity_framing.py``), every ``--step``-th file of the sorted list;
* each 178x218 photo upscaled 2x (bicubic, so the integer landmarks dlib returns have half-pixel
  resolution), dlib's HOG detector (largest face) + ``shape_predictor_5_face_landmarks``;
* landmarks in the 178x178 centre crop (rows 20:198), continuous coordinates divided by 178;
* per coordinate the interquartile mean (robust to the odd bad fit).

It also checks the pixel convention the encoder relies on: dlib's ``extract_image_chip`` of a
linear ramp image returns, per chip pixel, exactly the source position the similarity transform
``DLIB_CHIP_5 (pixels of the 150 px chip) -> landmarks`` predicts.

    .venv/bin/python -m benchmarks.dlib_chip_framing            # prints the table to paste
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]


def iq_mean(x: np.ndarray, axis: int = 0) -> np.ndarray:
    lo, hi = np.percentile(x, [25, 75], axis=axis, keepdims=True)
    keep = (x >= lo) & (x <= hi)
    return (x * keep).sum(axis) / keep.sum(axis)


def measure(root: pathlib.Path, step: int) -> tuple[np.ndarray, int, int]:
    import dlib
    from PIL import Image

    from facerestore.pretrained.sources import dlib_model

    det = dlib.get_frontal_face_detector()
    sp = dlib.shape_predictor(str(dlib_model("shape_predictor_5_face_landmarks.dat")))
    files = sorted(root.glob("id*/*.jpg"))[::step]
    pts, missed = [], 0
    for f in files:
        img = Image.open(f).convert("RGB")
        w, h = img.size
        big = np.asarray(img.resize((2 * w, 2 * h), Image.BICUBIC))
        rects = det(big, 0)
        if not rects:
            missed += 1
            continue
        r = max(rects, key=lambda r: r.area())
        shape = sp(big, r)
        p = np.array([[shape.part(i).x, shape.part(i).y] for i in range(5)], dtype=np.float64)
        p = (p + 0.5) / 2.0  # pixel index of the 2x image -> continuous coordinates of the photo
        side = min(w, h)
        p -= [(w - side) / 2.0, (h - side) / 2.0]  # centre crop
        pts.append(p / side)
    return np.stack(pts), len(files), missed


def check_convention(points: np.ndarray, size: int = 128) -> float:
    """Largest distance (source pixels) between dlib's chip sampling positions (read off a ramp
    image) and the similarity transform the encoder uses."""
    import dlib
    import torch

    from facerestore.pretrained.dlib_chip import chip_positions, chip_to_template

    canvas, off = 3 * size, size  # the face in the middle third: the chip stays inside the image
    shape_pts = [dlib.point(int(round(x * size - 0.5 + off)), int(round(y * size - 0.5 + off))) for x, y in points]
    det = dlib.full_object_detection(dlib.rectangle(off, off, off + size, off + size), shape_pts)
    details = dlib.get_face_chip_details(det, 150, 0.25)
    xs, ys = np.meshgrid(np.arange(canvas, dtype=np.float32), np.arange(canvas, dtype=np.float32))
    cx = np.asarray(dlib.extract_image_chip(np.ascontiguousarray(xs), details))
    cy = np.asarray(dlib.extract_image_chip(np.ascontiguousarray(ys), details))
    # the same landmarks (as integers) through our transform, in canvas pixel indices
    used = (np.array([[p.x, p.y] for p in shape_pts], dtype=np.float64) + 0.5) / size
    pos = chip_positions(chip_to_template(torch.tensor(used, dtype=torch.float64)), size, size).numpy()
    u, v = pos[..., 0], pos[..., 1]
    return float(np.hypot(u * size - 0.5 - cx, v * size - 0.5 - cy)[2:-2, 2:-2].max())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "celeba" / "train"))
    ap.add_argument("--step", type=int, default=4, help="every N-th file of the sorted list")
    args = ap.parse_args()
    root = pathlib.Path(args.data)
    if not root.is_dir():
        print(f"needs {root} (the shared data folder)", file=sys.stderr)
        return 2
    pts, n, missed = measure(root, args.step)
    mean = iq_mean(pts)
    std = pts.std(0)
    print(f"{root}: {n} files (every {args.step}th), dlib found {len(pts)} faces ({missed} missed)")
    names = ["p0", "p1", "p2", "p3", "p4"]
    print("point  x (iq-mean)  y (iq-mean)   std x   std y")
    for i, name in enumerate(names):
        print(f"{name:5s}  {mean[i, 0]:.4f}       {mean[i, 1]:.4f}        {std[i, 0]:.4f}  {std[i, 1]:.4f}")
    print("DLIB5_IN_TEMPLATE = (" + ", ".join(f"({x:.4f}, {y:.4f})" for x, y in mean) + ")")
    import torch

    from facerestore.pretrained.dlib_chip import chip_to_template

    m = chip_to_template(torch.tensor(mean, dtype=torch.float64))
    corners = m @ torch.tensor([[0.0, 0, 1], [149, 0, 1], [0, 149, 1], [149, 149, 1]], dtype=torch.float64).T
    print(f"chip (150 px) -> template: scale {float(torch.linalg.det(m[:, :2]).sqrt()) * 128:.4f} "
          f"px of a 128 px face per chip px; chip corners in the template: {corners.T.numpy().round(3).tolist()}")
    for size in (64, 128, 256):  # (dlib low-passes chips sampled > 2x coarser: not a pure warp)
        err = check_convention(mean, size)
        print(f"pixel-convention check vs dlib.extract_image_chip, {size} px face: max error {err:.4f} px")
    return 0


if __name__ == "__main__":
    sys.exit(main())
