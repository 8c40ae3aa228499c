"""Recognising masked people before and after restoration (issue 35): rank-1 identification and
verification with dlib's face recogniser on held-out CelebA identities.

    .venv/bin/python -m benchmarks.recognition --model masked-any --model runs/x.safetensors

Data: the 600 faces of ``celeba/val`` (20 people, 30 photos each; identities disjoint from
training). Each face in turn is the probe, degraded by a protocol of ``benchmarks/by_scale.py`` (``benchmarks/protocols/``)
(seed 0: ``r1 masked`` = a mask at full size, ``r4`` = mask, blur, x4 down, noise, JPEG), then
restored; the gallery is the other 599 faces, unmasked and sharp. Rank-1: the nearest gallery
face (Euclidean distance of dlib's 128-D descriptors) is the probe's person. Verification: the
share of same-person probe-gallery pairs closer than dlib's 0.6 threshold (TAR), and of
different-person pairs (FAR). ``r1 clean`` (the probe unmasked) is the ceiling. Descriptors are
taken on dlib chips cut with the clean face's own landmarks, output and target alike, as
``facerestore eval`` does (docs/metrics.md).
"""

from __future__ import annotations

import argparse
import os
import pathlib

from benchmarks.common import ROOT, protocol  # the benchmarks share by_scale's protocols

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def scores(probe, gallery, same, self_pair):
    """(rank-1 %, TAR %, FAR %) for probe descriptors (N, D) against gallery (N, D); ``same``
    (N, N) bool: same person; ``self_pair`` (N, N) bool: a face against itself (left out)."""
    import torch

    d = torch.cdist(probe.double(), gallery.double())
    d = d.masked_fill(self_pair, float("inf"))
    rank1 = same.gather(1, d.argmin(1, keepdim=True)).float().mean()
    genuine, impostor = same & ~self_pair, ~same
    tar = (d[genuine] < 0.6).float().mean()
    far = (d[impostor] < 0.6).float().mean()
    return 100 * float(rank1), 100 * float(tar), 100 * float(far)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", default=[], help="model name or checkpoint (repeatable)")
    p.add_argument("--val", default=None, help="face folder (default: the protocols', ../shared/data/celeba/val)")
    p.add_argument("--protocols", default="r1 masked,r4")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    os.chdir(ROOT)
    import torch

    from facerestore.eval_models import adaptive_model
    from facerestore.pixels import quantize
    from facerestore.network_metrics import IdentityMetric

    torch.set_num_threads(min(2, torch.get_num_threads()))
    args.val = args.val or protocol("r1 clean").faces
    person = {f.stem: f.parent.name for f in pathlib.Path(args.val).rglob("*") if f.is_file()}
    metric = IdentityMetric("cpu")
    clean = protocol("r1 clean").degrade(args.val, seed=args.seed, limit=args.limit)
    ids = [person[s] for s in clean.stems]
    same = torch.tensor([[a == b for b in ids] for a in ids])
    self_pair = torch.eye(len(ids), dtype=torch.bool)
    details = [d for start in range(0, len(clean), 32) for d in metric.chip_details(clean.hq[start:start + 32])]

    def describe(faces):
        return torch.cat([metric.descriptors(metric.chips(faces[s:s + 32], details[s:s + 32]))
                          for s in range(0, len(faces), 32)])

    gallery = describe(clean.hq)
    print(f"{len(ids)} faces of {len(set(ids))} people ({args.val}), seed {args.seed}; gallery: the other faces, clean")
    print("| protocol | probe | rank-1 % | TAR % (d < 0.6) | FAR % |\n|---|---|---|---|---|")
    print("| r1 clean | the unmasked face | %.1f | %.1f | %.2f |" % scores(gallery, gallery, same, self_pair), flush=True)
    for name in [n.strip() for n in args.protocols.split(",") if n.strip()]:
        data = protocol(name).degrade(args.val, seed=args.seed, limit=args.limit)
        assert data.stems == clean.stems
        for spec in ["bicubic", *args.model]:
            model = adaptive_model(spec, data.hq_size)
            with torch.inference_mode():
                out = torch.cat([quantize(model.restore(data.lq[s:s + 16]).float())
                                 for s in range(0, len(data), 16)])
            label = "input (bicubic)" if spec == "bicubic" else model.name
            print(f"| {name} | {label} | %.1f | %.1f | %.2f |" % scores(describe(out), gallery, same, self_pair),
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
