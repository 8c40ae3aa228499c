"""The README's main job: put a synthetic mask on a real face, shrink it, restore it.

``python -m facerestore.demo [PHOTO] [--out out/demo.png] [--model NAME|PATH] [--seed N]``

Without PHOTO it uses ``skimage.data.astronaut()`` (a real face that an installed package ships).
The face is found with MTCNN, aligned to the model's face template, degraded with the project's own
on-device pipeline (procedural mask, blur, downscale, noise, JPEG: the one the model was trained
with), restored, and written as a side-by-side PNG: masked low-resolution input | restored |
original. For photos of people who really wear masks, use ``facerestore restore`` instead.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import torch

from . import align
from .defaults import DEFAULT_MODEL
from .errors import FaceRestoreError, MissingWeightsError
from .interfaces import DegradationBatch
from .landmarks import TEMPLATE_5

#: the degradation used when the model carries no recipe (bicubic): the small recipe's, procedural only
FALLBACK_DEGRADATION = [
    {"type": "random_mask", "template_prob": 0.0},
    {"type": "gaussian_blur", "sigma": [0.2, 1.5]},
    {"type": "downscale", "scale": 4, "mode": "bicubic"},
    {"type": "gaussian_noise", "sigma": [0.0, 0.03]},
]


def load_photo(path: str | None) -> tuple[torch.Tensor, str]:
    if path is None:
        try:
            from skimage import data
        except ImportError:
            raise FaceRestoreError("no PHOTO given and scikit-image is not installed for the bundled "
                                   "astronaut face: pip install scikit-image, or pass a photo") from None
        return torch.from_numpy(data.astronaut().copy()).permute(2, 0, 1).float() / 255.0, "skimage.data.astronaut()"
    from .io import read_image

    img, _ = read_image(path)
    return img, path


def degradation_for(recipe) -> list[dict]:
    """The model's own degradation (a mask always; any-scale models at x4), minus template masks
    when their folder is not on this machine and minus lighting changes (the demo shows the face
    as it was read beside the restored one)."""
    if recipe is None:
        return FALLBACK_DEGRADATION
    specs = []
    for spec in recipe.degradation:
        spec = dict(spec)
        if spec.get("type") in ("template_mask", "photometric"):
            continue
        if spec.get("type") == "random_downscale":  # an any-scale model: show it a 32 px face (x4)
            spec = {"type": "downscale", "scale": 4, "mode": "bicubic"}
        if spec.get("type") in ("random_mask", "procedural_mask"):
            spec["p"] = 1.0  # the demo is about removing a mask: always draw one
        if spec.get("type") == "random_mask" and spec.get("template_prob", 0) > 0:
            folder = pathlib.Path(spec.get("folder", ""))
            if not (folder / "masks.cfg").is_file():
                spec["template_prob"] = 0.0
        specs.append(spec)
    return specs


def aligned_face(img: torch.Tensor, hq_size: int, name: str = "image") -> tuple[torch.Tensor, float]:
    """The most confident face of ``img`` (MTCNN), aligned to the 5-point template: ``(1, 3, S, S)``."""
    from .restore import default_detector

    dets = default_detector("cpu").detect([img])
    if dets[0].landmarks.shape[0] == 0:
        raise FaceRestoreError(f"no face found in {name}")
    best = int(dets[0].scores.argmax())
    mats = align.alignment_matrices(dets[0].landmarks[best:best + 1, :5].float(), hq_size)
    return align.warp_crops(img[None], mats, hq_size).clamp(0, 1), float(dets[0].scores[best])


def mask_and_shrink(hq: torch.Tensor, specs: list[dict], seed: int) -> DegradationBatch:
    """Degrade aligned faces ``(B, 3, S, S)`` with ``specs`` (landmarks: the aligned template)."""
    from .degrade import build_pipeline, degrade_batch, make_generator

    landmarks = (TEMPLATE_5 * hq.shape[-1])[None].repeat(hq.shape[0], 1, 1)
    return degrade_batch(hq, build_pipeline(specs), make_generator(seed, "cpu"), landmarks=landmarks)


def side_by_side(lq: torch.Tensor, restored: torch.Tensor, hq: torch.Tensor) -> torch.Tensor:
    """``(B, 3, S, 3S)``: input (nearest-upscaled, so its pixels stay visible) | restored | original."""
    lq_big = torch.nn.functional.interpolate(lq, size=hq.shape[-2:], mode="nearest")
    return torch.cat([lq_big, restored.cpu(), hq], dim=-1)


def run(photo: str | None, out: pathlib.Path, model: str, seed: int, device: str) -> pathlib.Path:
    from .io import write_image
    from .restore import Restorer

    t0 = time.perf_counter()
    try:
        restorer = Restorer.from_pretrained(model, device=device)
    except MissingWeightsError as exc:
        if model != DEFAULT_MODEL:
            raise
        print(f"warning: {exc}\nwarning: falling back to the weight-free bicubic baseline.", file=sys.stderr)
        restorer = Restorer.from_pretrained("bicubic", device=device)
        model = "bicubic"
    img, name = load_photo(photo)
    hq_size = restorer.hq_size
    hq, score = aligned_face(img, hq_size, name)
    batch = mask_and_shrink(hq, degradation_for(restorer.recipe), seed)
    restored = restorer.restore_faces(batch.lq)
    panel = side_by_side(batch.lq, restored, hq)[0]
    out.parent.mkdir(parents=True, exist_ok=True)
    write_image(out, panel)
    print(f"{name}: face found (score {score:.3f}), masked and shrunk to "
          f"{batch.lq.shape[-1]}px, restored to {restored.shape[-1]}px with model {model!r} "
          f"in {time.perf_counter() - t0:.1f} s")
    print(f"wrote {out}  (masked input | restored | original)")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m facerestore.demo", description=__doc__.splitlines()[0])
    p.add_argument("photo", nargs="?", help="a photo with a face (default: skimage's astronaut)")
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/demo.png"))
    p.add_argument("--model", default=DEFAULT_MODEL, help="bundled model name, checkpoint path or 'bicubic'")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic mask and degradation")
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    try:
        run(args.photo, args.out, args.model, args.seed, args.device)
    except FaceRestoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
