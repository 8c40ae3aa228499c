"""Contact sheet of restored faces on real masked photos (``../shared/data/scenes/rmfd_dev``):
each detected face cropped from the input and from the output, side by side, to judge by eye
whether masks are gone without ghosting. The photos may not be redistributed, so the sheet is
written under ``runs/`` (git-ignored), never into docs/.

    .venv/bin/python tools/rmfd_sheet.py [--model NAME ...] [--occlusion] [--count 40] [--out runs/rmfd_sheet.png]

``--model`` repeated puts each model's output beside the input (faces found once, by the first
model's detector, so the columns are the same faces); ``--occlusion`` adds each model's occlusion
estimate of the aligned face (white = taken for a mask), where a mask left on a face shows why.
"""

from __future__ import annotations

import argparse
import os
import pathlib

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = pathlib.Path(__file__).resolve().parents[1]


def crop(img, box, size: int = 112):
    import torch.nn.functional as F

    x0, y0, x1, y1 = [float(v) for v in box]
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, 0.65 * max(x1 - x0, y1 - y0)
    h, w = img.shape[-2:]
    a, b = int(max(0, cy - half)), int(min(h, cy + half))
    c, d = int(max(0, cx - half)), int(min(w, cx + half))
    return F.interpolate(img[None, :, a:b, c:d], size=(size, size), mode="bicubic", align_corners=False,
                         antialias=True)[0].clamp(0, 1)


def main() -> int:
    import torch
    import torch.nn.functional as F

    from facerestore.defaults import DEFAULT_MODEL
    from facerestore.io import iter_inputs, read_image, write_image
    from facerestore.restore import Restorer

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared/data/scenes/rmfd_dev"))
    p.add_argument("--model", action="append", help=f"repeatable (default: {DEFAULT_MODEL})")
    p.add_argument("--occlusion", action="store_true", help="add each model's occlusion estimate")
    p.add_argument("--detector", default=None)
    p.add_argument("--count", type=int, default=40, help="photos, evenly spaced in sorted order")
    p.add_argument("--columns", type=int, default=6, help="faces per row")
    p.add_argument("--out", default="runs/rmfd_sheet.png")
    args = p.parse_args()
    files = [it.path for it in iter_inputs([args.data]) if not it.error]
    step = max(1, len(files) // args.count)
    extra = {"detector": args.detector} if args.detector else {}
    restorers = [Restorer.from_pretrained(m, device="cpu", **extra) for m in args.model or [DEFAULT_MODEL]]
    tiles = []
    for path in files[::step][: args.count]:
        img, _ = read_image(path)
        det = restorers[0].detector.detect([img])
        results = [r.restore_many([img], det)[0] for r in restorers]
        faces = [i for i, f in enumerate(results[0].faces) if f.restored]
        if any([i for i, f in enumerate(res.faces) if f.restored] != faces for res in results[1:]):
            raise SystemExit(f"{path}: the models restore different faces (--min-score?); compare them one by one")
        for k, i in enumerate(faces):
            box = results[0].faces[i].box
            row = [crop(img, box)]
            for r, res in zip(restorers, results):
                row.append(crop(res.image, box))
                if args.occlusion:
                    occ = r.run_model(res.aligned[k:k + 1])[1][0]
                    row.append(F.interpolate(occ[None], size=row[0].shape[-2:], mode="area")[0].expand(3, -1, -1))
            tiles.append(torch.cat(row, -1))
    if not tiles:
        print("no face restored")
        return 1
    cols = args.columns
    rows = [torch.cat(tiles[i:i + cols] + [torch.ones_like(tiles[0])] * (cols - len(tiles[i:i + cols])), -1)
            for i in range(0, len(tiles), cols)]
    sheet = torch.cat(rows, -2)
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_image(args.out, sheet)
    print(f"{len(tiles)} faces from {min(args.count, len(files[::step]))} photos -> {args.out} (not for the repository)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
