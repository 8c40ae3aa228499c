"""Does the dlib_resnet identity encoder tell people apart on facerestore-aligned faces?

Faces: ``celeba/val`` (identities disjoint from ``celeba/train``, where the template->chip
transform was measured), the first ``--per-identity`` files (sorted) of the first
``--identities`` identities (sorted), centre-cropped 178x178 and resized to ``--size`` px
(antialiased), the training framing. dlib's raw descriptors of every face under four framings:

* ``plain``: the aligned crop resized to 150x150 (``dlib_resnet`` with ``framing="chip"``);
* ``template``: the fixed template->chip warp (``dlib_resnet``, default ``framing="template"``);
* ``dlib chip``: dlib's own chip of the same crop (HOG detector, 5-point predictor,
  ``get_face_chip_details(150, 0.25)``), exactly as ``facerestore.network_metrics.IdentityMetric`` cuts it;
* ``dlib chip, photo``: dlib's chip of the original 178x218 photo (upsample 1), as a reference.

Per framing: mean (std) Euclidean distance of same-person and different-person pairs, dlib's
decision at 0.6 (false accepts = different-person pairs closer than 0.6; false rejects =
same-person pairs at 0.6 or more), ROC AUC of the distance, and the cosine between each face's
descriptor and its ``dlib chip`` descriptor.

    .venv/bin/python -m benchmarks.identity_framing                      # 20 identities x 4
    .venv/bin/python -m benchmarks.identity_framing --identities 8       # 8 x 4
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


def load(root: pathlib.Path, identities: int, per: int, size: int):
    from PIL import Image

    photos, crops, labels = [], [], []
    for ident in sorted(p for p in root.iterdir() if p.is_dir())[:identities]:
        for f in sorted(ident.glob("*.jpg"))[:per]:
            img = Image.open(f).convert("RGB")
            photos.append(np.asarray(img))
            w, h = img.size
            side = min(w, h)
            box = ((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)
            crops.append(np.asarray(img.crop(box).resize((size, size), Image.LANCZOS)))
            labels.append(ident.name)
    x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255.0
    return photos, x, np.array(labels)


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(distance of a same-person pair < distance of a different-person pair)."""
    return float((pos[:, None] < neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())


def stats(desc: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    d = np.linalg.norm(desc[:, None] - desc[None], axis=-1)
    iu = np.triu_indices(len(desc), 1)
    same = (labels[:, None] == labels[None])[iu]
    pos, neg = d[iu][same], d[iu][~same]
    return {"same": pos.mean(), "same_sd": pos.std(), "diff": neg.mean(), "diff_sd": neg.std(),
            "far": (neg < 0.6).mean(), "frr": (pos >= 0.6).mean(), "auc": auc(pos, neg),
            "n_same": len(pos), "n_diff": len(neg)}


def cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "celeba" / "val"))
    ap.add_argument("--identities", type=int, default=20)
    ap.add_argument("--per-identity", type=int, default=4)
    ap.add_argument("--size", type=int, default=128)
    args = ap.parse_args()
    torch.set_num_threads(2)
    root = pathlib.Path(args.data)
    if not root.is_dir():
        print(f"needs {root} (the shared data folder)", file=sys.stderr)
        return 2
    from facerestore.network_metrics import IdentityMetric
    from facerestore.pretrained.parity import dlib_chips
    from facerestore.components import create

    t0 = time.time()
    photos, x, labels = load(root, args.identities, args.per_identity, args.size)
    template = create("identity", "dlib_resnet")
    plain = create("identity", "dlib_resnet", framing="chip")
    metric = IdentityMetric()
    desc: dict[str, np.ndarray] = {}
    with torch.no_grad():
        desc["plain resize"] = plain.descriptor(x).numpy()
        desc["template warp (ours)"] = template.descriptor(x).numpy()
        desc["dlib chip of the crop"] = metric.descriptors(metric.chips(x, metric.chip_details(x))).numpy()
        photo_chips, keep = [], []
        for i, p in enumerate(photos):
            found = dlib_chips(p, upsample=1)
            if found:
                photo_chips.append(found[0])
                keep.append(i)
        pc = torch.from_numpy(np.stack(photo_chips)).permute(0, 3, 1, 2).float() / 255.0
        photo_desc = plain.descriptor(pc).numpy()
    ref = desc["dlib chip of the crop"]
    print(f"{root}: {args.identities} identities x {args.per_identity} faces, centre crop -> {args.size} px; "
          f"{platform.machine()} CPU, torch {torch.__version__}, {time.time() - t0:.0f} s")
    print()
    print("| framing | same person: mean (sd) | different: mean (sd) | false accepts < 0.6 | false rejects | ROC AUC | cosine to dlib chip |")
    print("|---|---|---|---|---|---|---|")
    rows = [(k, v, labels) for k, v in desc.items()]
    rows.append((f"dlib chip of the 178x218 photo ({len(keep)} faces)", photo_desc, labels[keep]))
    for name, d, lab in rows:
        s = stats(d, lab)
        c = cos(d, ref).mean() if len(d) == len(ref) else float("nan")
        cs = "-" if name.startswith("dlib chip") else f"{c:.3f}"
        print(f"| {name} | {s['same']:.3f} ({s['same_sd']:.3f}) | {s['diff']:.3f} ({s['diff_sd']:.3f}) | "
              f"{100 * s['far']:.1f} % | {100 * s['frr']:.1f} % | {s['auc']:.3f} | {cs} |")
    s = stats(desc["plain resize"], labels)
    print(f"\n{s['n_same']} same-person pairs, {s['n_diff']} different-person pairs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
