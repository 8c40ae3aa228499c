"""Pictures for docs/model-card.md: the shipped model on the astronaut face under several conditions.

    .venv/bin/python tools/model_card_figures.py [--model jdsr-x4] [--out docs/img/model_card_cases.png]

Rows (each: masked 32 px input, nearest-upscaled | restored | original 128 px face):
the training degradation with four seeds (mask variety), no mask at all, a heavier blur and noise
than in training, and MaskTheFace template masks (never seen in training; only when
``../shared/data/masks/masktheface`` is present). Only the astronaut (skimage, public domain) is
drawn, so the figure can be committed.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
TEMPLATES = ROOT.parent / "shared" / "data" / "masks" / "masktheface"


def conditions(train_specs: list[dict]) -> list[tuple[str, list[dict], int]]:
    """(label, degradation list, seed) per row."""
    def without(kind: str) -> list[dict]:
        return [s for s in train_specs if s["type"] != kind]

    def replace(kind: str, **params) -> list[dict]:
        return [{**s, **params} if s["type"] == kind else s for s in train_specs]

    rows = [(f"training degradation, seed {s}", train_specs, s) for s in range(4)]
    rows.append(("no mask", without("random_mask"), 0))
    heavy = replace("gaussian_blur", sigma=[2.5, 2.5])
    heavy = [{**s, "sigma": [0.06, 0.06]} if s["type"] == "gaussian_noise" else s for s in heavy]
    rows.append(("blur sigma 2.5 + noise 0.06 (beyond training)", heavy, 0))
    if (TEMPLATES / "masks.cfg").is_file():
        for s in range(2):
            rows.append((f"MaskTheFace template mask, seed {s} (unseen)",
                         replace("random_mask", template_prob=1.0, folder=str(TEMPLATES)), s))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="jdsr-x4")
    p.add_argument("--out", type=pathlib.Path, default=ROOT / "docs" / "img" / "model_card_cases.png")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    from facerestore.demo import aligned_face, degradation_for, load_photo, mask_and_shrink, side_by_side
    from facerestore.io import write_image
    from facerestore.restore import Restorer

    restorer = Restorer.from_pretrained(args.model, device="cpu")
    size = restorer.hq_size
    img, name = load_photo(None)  # the astronaut
    hq, _ = aligned_face(img, size, name)
    panels = []
    for label, specs, seed in conditions(degradation_for(restorer.recipe)):
        batch = mask_and_shrink(hq, specs, seed)
        panels.append(side_by_side(batch.lq, restorer.restore_faces(batch.lq), hq))
        print(f"row {len(panels)}: {label}")
    grid = torch.cat(panels, dim=-2)[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_image(args.out, grid)
    print(f"wrote {args.out} ({len(panels)} rows: input | restored | original)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
