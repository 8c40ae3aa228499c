"""The figures in docs/degradation.md, made from skimage's astronaut (NASA, public domain) only.

``docs/img/degradation_masks.png``: 16 masks drawn on the same face (HQ | masked | occlusion map);
``docs/img/degradation_grid.png``: the same through the whole ``recipes/jdsr_gan.toml`` pipeline
(HQ | 32x32 LQ shown enlarged | LQ occlusion). Template masks use the MaskTheFace set (MIT) when
``../shared/data/masks/masktheface`` exists, else procedural masks only.

Usage: ``python tools/degradation_figure.py [--seed 0]``
"""

from __future__ import annotations

import argparse
import pathlib

import numpy as np
import torch

from facerestore.degrade import build_pipeline, degrade_batch, make_generator, read_degradation_recipe, save_grid

REPO = pathlib.Path(__file__).resolve().parents[1]
MASKS = REPO.parent / "shared" / "data" / "masks" / "masktheface"


def astronaut_faces(n: int, size: int = 128, seed: int = 0) -> torch.Tensor:
    """The astronaut aligned to the facerestore template (crop rows 1:195, cols 127:321), with
    small random shifts and zooms so placement varies as it does across a dataset."""
    from PIL import Image
    from skimage.data import astronaut

    img = Image.fromarray(astronaut())
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        s = 194 * rng.uniform(0.94, 1.06)
        cx, cy = 224 + rng.uniform(-5, 5), 98 + rng.uniform(-5, 5)
        box = tuple(int(round(v)) for v in (cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2))
        face = img.crop(box).resize((size, size), Image.Resampling.BICUBIC)
        out.append(torch.from_numpy(np.array(face)).permute(2, 0, 1).float() / 255)
    return torch.stack(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(REPO / "docs" / "img"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    template_prob = 0.5 if MASKS.is_dir() else 0.0
    hq = astronaut_faces(16, seed=args.seed)
    mask = [{"type": "random_mask", "template_prob": template_prob, "folder": str(MASKS)}]
    batch = degrade_batch(hq, build_pipeline(mask), make_generator(args.seed, "cpu"))
    save_grid(batch, pathlib.Path(args.out) / "degradation_masks.png")
    specs, _, _, _ = read_degradation_recipe(REPO / "recipes" / "jdsr_gan.toml")
    for s in specs:
        if s["type"] in ("random_mask", "template_mask"):
            s["folder"] = str(MASKS)
            if not MASKS.is_dir():
                s["template_prob"] = 0.0
    batch = degrade_batch(hq, build_pipeline(specs), make_generator(args.seed, "cpu"))
    save_grid(batch, pathlib.Path(args.out) / "degradation_grid.png")
    print(f"wrote degradation_masks.png and degradation_grid.png to {args.out} (template_prob {template_prob})")


if __name__ == "__main__":
    main()
