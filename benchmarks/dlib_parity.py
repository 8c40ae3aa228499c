"""Parity of the PyTorch dlib face-recognition ResNet port with dlib itself on real CelebA faces.

For each image: dlib's HOG detector + 5-point shape predictor + get_face_chips (150 px, padding
0.25), then dlib's ``compute_face_descriptor`` and the port's raw descriptor of the same chip.
Prints the cosine similarity (min/mean), the largest absolute difference and whether dlib's
same-person decision (distance < 0.6) agrees on all pairs.

    .venv/bin/python -m benchmarks.dlib_parity --per-identity 2 --identities 20
    .venv/bin/python -m benchmarks.dlib_parity --astronaut   # the test's 21 astronaut chips, no shared data
"""

from __future__ import annotations

import argparse
import pathlib
import platform
import sys
import time

import numpy as np
import torch

REPO = pathlib.Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "celeba" / "val"))
    ap.add_argument("--identities", type=int, default=20)
    ap.add_argument("--per-identity", type=int, default=2)
    ap.add_argument("--astronaut", action="store_true", help="use the astronaut chip variants instead")
    args = ap.parse_args()
    torch.set_num_threads(2)
    root = pathlib.Path(args.data)
    if args.astronaut:
        from facerestore.pretrained.parity import astronaut_chips, cosine, dlib_descriptors, port_descriptors

        named = astronaut_chips()
        chips = [c for _, c in named]
        ref, ours = dlib_descriptors(chips), port_descriptors(chips)
        cos = cosine(ours, ref)
        print(f"astronaut variants: {len(chips)} dlib chips ({', '.join(n for n, _ in named)})")
        print(f"cosine(port, dlib): min {cos.min():.8f}  mean {cos.mean():.8f}  max |diff| {np.abs(ours - ref).max():.2e}")
        return 0 if cos.min() >= 0.999 else 1
    if not root.is_dir():
        print(f"needs {root} (the shared data folder)", file=sys.stderr)
        return 2
    from PIL import Image

    from facerestore.pretrained.dlib_resnet import load_dlib_resnet
    from facerestore.pretrained.parity import cosine, dlib_chips, dlib_descriptors, port_descriptors

    chips, labels, skipped = [], [], 0
    for ident in sorted(p for p in root.iterdir() if p.is_dir())[: args.identities]:
        for f in sorted(ident.glob("*.jpg"))[: args.per_identity]:
            found = dlib_chips(np.asarray(Image.open(f).convert("RGB")), upsample=1)
            if not found:
                skipped += 1
                continue
            chips.append(found[0])
            labels.append(ident.name)
    model = load_dlib_resnet()
    t = time.perf_counter()
    ref = dlib_descriptors(chips)
    t_dlib = time.perf_counter() - t
    t = time.perf_counter()
    ours = port_descriptors(chips, model)
    t_port = time.perf_counter() - t
    cos = cosine(ours, ref)
    d_ref = np.linalg.norm(ref[:, None] - ref[None], axis=-1)
    d_ours = np.linalg.norm(ours[:, None] - ours[None], axis=-1)
    agree = ((d_ref < 0.6) == (d_ours < 0.6)).mean()
    same = np.array(labels)[:, None] == np.array(labels)[None]
    off = ~np.eye(len(labels), dtype=bool)
    print(f"data: {root} ({len(set(labels))} identities, {len(chips)} faces, {skipped} without a dlib detection)")
    print(f"machine: {platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"cosine(port, dlib): min {cos.min():.7f}  mean {cos.mean():.7f}  max |diff| {np.abs(ours - ref).max():.2e}")
    print(f"dlib norm of descriptors: {np.linalg.norm(ref, axis=1).mean():.3f} (not unit length)")
    print(f"same-person decision (distance < 0.6) agreement on {off.sum()} ordered pairs: {agree:.4f}")
    print(f"dlib verification on these faces: same-id pairs < 0.6: {(d_ref[same & off] < 0.6).mean():.3f}, "
          f"different-id pairs >= 0.6: {(d_ref[~same] >= 0.6).mean():.3f}")
    print(f"time for {len(chips)} chips: dlib {t_dlib:.2f} s (one by one), port {t_port:.2f} s (one batch)")
    return 0 if cos.min() >= 0.999 else 1


if __name__ == "__main__":
    sys.exit(main())
