"""Contact sheet of restored faces on real masked photos (``../shared/data/scenes/rmfd_dev``):
each detected face cropped from the input and from the output, side by side, to judge by eye
whether masks are gone without ghosting. The photos may not be redistributed, so the sheet is
written under ``runs/`` (git-ignored), never into docs/.

    .venv/bin/python benchmarks/rmfd_sheet.py [--model NAME] [--count 40] [--out runs/rmfd_sheet.png]
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

    from facerestore.defaults import DEFAULT_MODEL
    from facerestore.io import iter_inputs, read_image, write_image
    from facerestore.restore import Restorer

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared/data/scenes/rmfd_dev"))
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--detector", default=None)
    p.add_argument("--count", type=int, default=40, help="photos, evenly spaced in sorted order")
    p.add_argument("--columns", type=int, default=6, help="face pairs per row")
    p.add_argument("--out", default="runs/rmfd_sheet.png")
    args = p.parse_args()
    files = [it.path for it in iter_inputs([args.data]) if not it.error]
    step = max(1, len(files) // args.count)
    r = Restorer.from_pretrained(args.model, device="cpu", **({"detector": args.detector} if args.detector else {}))
    tiles = []
    for path in files[::step][: args.count]:
        img, _ = read_image(path)
        res = r.restore_many([img])[0]
        for f in res.faces:
            if f.restored:
                tiles.append(torch.cat([crop(img, f.box), crop(res.image, f.box)], -1))
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
