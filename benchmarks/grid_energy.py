"""The 4-px grid a model paints under a mask, measured two ways.

    .venv/bin/python -m benchmarks.grid_energy --model masked-any --model masked-gen [--faces 16]

``pooled``: the `lattice` loss's measure (:func:`facerestore.metrics.lattice_pattern` of the error,
weighted by the true occlusion, pooled over every face and cell): it sees a grid painted with the
same sign everywhere. ``windowed``: the same pattern per face and per 16x16 window inside the mask,
its energy averaged: it also sees a grid whose sign follows the content (light dots on dark skin,
dark on light), which pooling cancels. Faces: every 25th of the first 400 `celeba/val` photos,
centre-cropped to 128 px, masked and shrunk as the demo does (seed 0).
"""

from __future__ import annotations

import argparse
import pathlib

import numpy as np
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]


def faces(folder: pathlib.Path, count: int) -> torch.Tensor:
    from PIL import Image

    out = []
    for p in sorted(folder.rglob("*.jpg"))[:400:25][:count]:
        im = Image.open(p).convert("RGB")
        w, h = im.size
        s = min(w, h)
        im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)).resize((128, 128), Image.BICUBIC)
        out.append(torch.from_numpy(np.array(im)).permute(2, 0, 1).float() / 255)
    return torch.stack(out)


def windowed(err: torch.Tensor, occ: torch.Tensor, period: int = 4, win: int = 16) -> float:
    """Mean lattice-pattern energy over (face, window) pairs whose window is mostly occluded."""
    from facerestore.metrics import lattice_pattern

    vals = []
    for i in range(0, err.shape[-2], win):
        for j in range(0, err.shape[-1], win):
            keep = occ[:, 0, i:i + win, j:j + win].mean((-2, -1)) > 0.5
            for k in torch.nonzero(keep).flatten():
                vals.append(lattice_pattern(err[k:k + 1, :, i:i + win, j:j + win], period).pow(2).mean())
    return torch.stack(vals).mean().item()


def main() -> None:
    from facerestore import models
    from facerestore.demo import degradation_for, mask_and_shrink
    from facerestore.metrics import lattice_pattern

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", required=True)
    ap.add_argument("--faces", type=int, default=16)
    ap.add_argument("--val", type=pathlib.Path, default=ROOT.parent / "shared/data/celeba/val")
    args = ap.parse_args()
    hq = faces(args.val, args.faces)
    loaded = [(name, models.load(name)) for name in args.model]
    batch = mask_and_shrink(hq, degradation_for(loaded[0][1].recipe), 0)
    print("| model | pooled (lattice loss) | windowed 16 px |\n|---|---|---|")
    with torch.no_grad():
        for name, m in loaded:
            err = m.generator(batch.lq)["sr"].float() - hq
            pooled = lattice_pattern(err, 4, batch.occlusion).pow(2).mean().item()
            print(f"| {name} | {pooled:.2e} | {windowed(err, batch.occlusion):.2e} |")


if __name__ == "__main__":
    main()
