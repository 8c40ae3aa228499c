"""The 4-px grid a model paints where it restores a mask: how strong, next to the ground truth's.

    .venv/bin/python -m benchmarks.lattice [--model masked-any --model runs/x.safetensors] [--limit 600]

For each protocol (by_scale's ``r1 masked``, ``r4``, ``paper x4``: celeba/val, degradation seed 0),
each model restores the faces as ``restore`` does (resized to its input, quantized to 8 bits) and
the part of its output locked to the ``--period`` lattice inside the true occlusion
(:func:`facerestore.metrics.lattice_pattern`, pooled over all faces) is reported as its RMS over
the lattice phases and channels, in grey levels (0-255). The ground truth's own figure is the floor
(its texture is not locked to the lattice, so only sampling noise is left); the occluded and
visible PSNR go with it, so that a model which loses its grid by blurring is seen to.
"""

from __future__ import annotations

import argparse
import os

from benchmarks.common import ROOT, protocol

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def grid_levels(x, occ, period: int) -> float:
    """RMS (grey levels) of ``x``'s lattice-locked part inside ``occ``."""
    from facerestore.metrics import lattice_pattern

    return lattice_pattern(x, period, occ).pow(2).mean().sqrt().item() * 255


def score(spec: str, data, period: int, batch: int = 16) -> dict[str, float]:
    import torch

    from facerestore.eval_models import adaptive_model
    from facerestore.pixels import quantize
    from facerestore.metrics import masked_psnr, nan_mean

    model = adaptive_model(spec, data.hq_size)
    with torch.no_grad():
        sr = torch.cat([quantize(model.restore(data.lq[i:i + batch])) for i in range(0, len(data), batch)])
    occ = data.occlusion_hq
    return {"grid": grid_levels(sr, occ, period),
            "occluded": nan_mean(masked_psnr(sr, data.hq, occ))[0],
            "visible": nan_mean(masked_psnr(sr, data.hq, 1 - occ))[0]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", help="restore's --model spec (repeat); default masked-any")
    p.add_argument("--protocols", default="r1 masked,r4,paper x4")
    p.add_argument("--limit", type=int, default=600)
    p.add_argument("--period", type=int, default=4)
    p.add_argument("--val", default=None, help="face folder (default: the protocol's, ../shared/data/celeba/val)")
    args = p.parse_args(argv)
    os.chdir(ROOT)
    import torch

    torch.set_num_threads(min(2, torch.get_num_threads()))
    print("| protocol | model | grid in the occlusion (grey levels RMS) | PSNR occluded | PSNR visible |\n"
          "|---|---|---|---|---|")
    for name in args.protocols.split(","):
        data = protocol(name).degrade(args.val, seed=0, limit=args.limit)
        print(f"| {name} | ground truth | {grid_levels(data.hq, data.occlusion_hq, args.period):.2f} | | |", flush=True)
        for spec in args.model or ["masked-any"]:
            s = score(spec, data, args.period)
            print(f"| {name} | {spec} | {s['grid']:.2f} | {s['occluded']:.2f} | {s['visible']:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
