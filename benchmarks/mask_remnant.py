"""How much of a face mask is left after ``restore``: a flat light-blue mask from nose to chin
painted on held-out CelebA faces, whole photos through the whole pipeline (issue 35).

    .venv/bin/python -m benchmarks.mask_remnant --model masked-any --model runs/x.safetensors
    .venv/bin/python -m benchmarks.mask_remnant --model masked-any --faces 8 --sheet out/remnant.png

Each of ``--faces`` photos of ``celeba/val`` (every k-th file, sorted; identities disjoint from
training) is enlarged 2x (356x436 px, a face about 180 px wide) and a flat mask of colour
``MASK_RGB`` is painted over it, from the nose bridge to the chin and from cheek to cheek (a
polygon on the CelebA template, which every aligned CelebA photo follows). The photo goes through
``Restorer.restore`` (detection, alignment, the model, compositing). Remnant: the share of the
painted pixels whose colour in the result is still within ``--tol`` (Euclidean, RGB in [0, 1]) of
the mask's colour; skin and lips are 0.35-0.6 away from it. Reported per model: median, mean and
worst face, and how many faces were found.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = pathlib.Path(__file__).resolve().parents[1]

#: a surgical mask's light blue
MASK_RGB = (0.58, 0.76, 0.90)
#: nose bridge to chin, cheek to cheek, as fractions of the 128 px aligned face (TEMPLATE_5 framing)
POLYGON = [(0.24, 0.60), (0.76, 0.60), (0.81, 0.74), (0.70, 0.91), (0.50, 0.97), (0.30, 0.91), (0.19, 0.74)]


def masked_photo(path: pathlib.Path):
    """(photo with the mask painted (3, H, W), mask (H, W) bool), the CelebA photo enlarged 2x."""
    import numpy as np
    import torch
    from PIL import Image, ImageDraw

    img = Image.open(path).convert("RGB")
    w, h = img.size
    big = img.resize((2 * w, 2 * h), Image.BICUBIC)
    side, top = w, (h - w) / 2  # CelebA: the aligned face is the centred w x w square
    pts = [(2 * x * side, 2 * (top + y * side)) for x, y in POLYGON]
    mask_img = Image.new("L", big.size, 0)
    ImageDraw.Draw(mask_img).polygon(pts, fill=255)
    mask = torch.from_numpy(np.asarray(mask_img) > 127)
    photo = torch.from_numpy(np.array(big)).permute(2, 0, 1).float() / 255
    photo = torch.where(mask, torch.tensor(MASK_RGB).view(3, 1, 1), photo)
    return photo, mask


def remnant(out, mask, tol: float) -> float:
    import torch

    d = (out - torch.tensor(MASK_RGB).view(3, 1, 1)).norm(dim=0)
    return float((d[mask] < tol).float().mean())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", required=True, help="model name or checkpoint (repeatable)")
    p.add_argument("--val", default="../shared/data/celeba/val")
    p.add_argument("--faces", type=int, default=60)
    p.add_argument("--tol", type=float, default=0.15)
    p.add_argument("--fidelity", type=float, default=0.0)
    p.add_argument("--sheet", default="", help="write a PNG: masked photo | each model's result (first 6 faces)")
    args = p.parse_args(argv)
    os.chdir(ROOT)
    import torch
    from torchvision.utils import save_image

    from facerestore.restore import Restorer

    torch.set_num_threads(min(2, torch.get_num_threads()))
    files = sorted(pathlib.Path(args.val).rglob("*.jpg"))
    if not files:
        p.error(f"no photos in {args.val}")
    files = files[:: max(1, len(files) // args.faces)][: args.faces]
    photos = [masked_photo(f) for f in files]
    rows = [[ph for ph, _ in photos[:6]]]
    print(f"{len(photos)} photos of {args.val}, mask RGB {MASK_RGB}, tolerance {args.tol}")
    for spec in args.model:
        r = Restorer.from_pretrained(spec, device="cpu", fidelity=args.fidelity)
        shares, found = [], 0
        outs = []
        for photo, mask in photos:
            res = r.restore_many([photo])[0]
            found += res.n_restored
            shares.append(remnant(res.image, mask, args.tol))
            outs.append(res.image)
        rows.append(outs[:6])
        print(f"{spec}: remnant median {100 * statistics.median(shares):.1f} %, mean {100 * statistics.mean(shares):.1f} %, "
              f"worst {100 * max(shares):.1f} %; over a third left in {sum(x > 1 / 3 for x in shares)} photos; "
              f"faces restored {found}/{len(photos)}", flush=True)
    if args.sheet:
        pathlib.Path(args.sheet).parent.mkdir(parents=True, exist_ok=True)
        save_image(torch.stack([im for row in rows for im in row]), args.sheet, nrow=len(rows[0]), padding=2)
        print(f"wrote {args.sheet}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
