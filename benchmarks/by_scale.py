"""Quality by scale: how each model does on faces degraded by r = 1, 2, 4, 8, with and without
masks, plus the paper-like x4 protocol (issue 14).

    .venv/bin/python -m benchmarks.by_scale --model runs/masked_any/ckpt_00012000.safetensors
    .venv/bin/python -m benchmarks.by_scale --model masked-any --limit 32 --out ''   # smoke run

Every protocol degrades all 600 faces of ``celeba/val`` (identities disjoint from training) once
with seed 0 (batches of 32 on the CPU), keeping the low-resolution input at 128 / r px. The
protocols are the files in ``benchmarks/protocols/`` (``r4 dark`` is ``r4_dark.toml``), read by
:mod:`facerestore.protocols` as ``facerestore eval --protocol FILE`` reads them:

* ``r1 clean``: nothing (a sharp face: a model must give it back unchanged);
* ``r1 masked``: the jdsr_gan recipe's mask only (MaskTheFace templates half the time);
* ``r2 / r4 / r8``: the jdsr_gan recipe's degradation (mask, blur 0.2-1.5, bicubic downscale by r,
  noise <= 0.03, JPEG 40-95 half the time); r4 is that recipe exactly;
* ``paper x4``: MaskTheFace templates only, bicubic x4 only, no blur/noise/JPEG;
* ``r4 dark`` / ``r4 grey``: r4 on an underexposed face (``photometric``: gain 0.3-0.5, gamma
  1-1.3, saturation 0.6-1) or a black-and-white one, ground truth alike: real photos are darker
  and greyer than CelebA's portraits;
* ``r4 misaligned``: r4 on a face framed off the template (``misalign``: rotation up to 15 degrees,
  scale 0.9-1.1, shift up to 5 %, ground truth alike), as detected landmarks frame turned faces.

Models see each input the way ``restore`` feeds them (``Restorer.run_model``: resized to the
model's own input size), outputs are scored at 128 px and rounded to 8 bits. ``input (bicubic)`` is
the degraded input itself, bicubic-resized to 128 px. Writes a section of docs/benchmarks.md
between ``<!-- by_scale:begin -->`` and ``<!-- by_scale:end -->``.

``--tta`` adds each model with the mirrored self-ensemble (``restore --tta``), ``--bf16`` with
bf16 autocast; ``--protocols "r4,paper x4"`` scores a subset (printed only, with ``--out ''``).

Scores are cached per (protocol, model file's sha256, precision, data, seed, limit) in ``--cache``
(``runs/by_scale_cache.json``): a rerun after training a new checkpoint scores only that one.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import pathlib
import shlex
import sys
import time

from benchmarks.common import ROOT, protocol, write

os.environ.setdefault("HF_HUB_OFFLINE", "1")
BEGIN, END = "<!-- by_scale:begin -->", "<!-- by_scale:end -->"
COLUMNS = ("psnr", "psnr_visible", "psnr_occluded", "ssim", "lpips", "fd_vgg16", "id_cosine", "id_verified")
#: the table's protocols, in its order (files in benchmarks/protocols/)
PROTOCOLS = ("r1 clean", "r1 masked", "r2", "r4", "r8", "paper x4", "r4 dark", "r4 grey", "r4 misaligned")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", required=True, help="model name or checkpoint (repeatable)")
    p.add_argument("--baseline", default="jdsr-x4", help="x4 model scored at r4 and paper x4 only ('' = none)")
    p.add_argument("--val", default=None, help="face folder (default: each protocol's, ../shared/data/celeba/val)")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip", default="landmarks,speed", help="metric groups not computed")
    p.add_argument("--bf16", action="store_true", help="also score each --model with bf16 autocast")
    p.add_argument("--tta", action="store_true", help="also score each --model with the mirrored self-ensemble")
    p.add_argument("--fidelity", type=float, action="append", default=[],
                   help="also score each generative --model at this fidelity (0 realistic .. 1 faithful; repeatable)")
    p.add_argument("--out", default="docs/benchmarks.md", help="Markdown file to update ('' = print only)")
    p.add_argument("--cache", default="runs/by_scale_cache.json", help="score cache ('' = none)")
    p.add_argument("--protocols", default="", help="comma-separated subset of the protocols ('' = all)")
    p.add_argument("--no-input", action="store_true", help="leave out the input (bicubic) rows (not cached yet)")
    args = p.parse_args(argv)
    os.chdir(ROOT)
    import torch

    from facerestore import evaluate as E
    from facerestore.eval_models import adaptive_model

    torch.set_num_threads(min(2, torch.get_num_threads()))
    skip = [s for s in args.skip.split(",") if s]
    cache = Cache(pathlib.Path(args.cache) if args.cache else None)
    rows, t0 = [], time.perf_counter()
    wanted = [w.strip() for w in args.protocols.split(",") if w.strip()]
    unknown = sorted(set(wanted) - set(PROTOCOLS))
    if unknown:
        p.error(f"--protocols: unknown {', '.join(unknown)}; known: {', '.join(PROTOCOLS)}")
    if wanted and args.out:
        p.error("--protocols scores a subset: it would replace the whole table in --out; add --out ''")
    vals = []
    for name in PROTOCOLS:
        if wanted and name not in wanted:
            continue
        proto = protocol(name)
        val = args.val or proto.faces
        vals += [val] if val not in vals else []
        data = proto.degrade(val, seed=args.seed, limit=args.limit)
        specs = [*([] if args.no_input else [("bicubic", "fp32")]), *((m, "fp32") for m in args.model)]
        if args.baseline and name in ("r4", "paper x4"):
            specs.insert(1, (args.baseline, "fp32"))
        if args.bf16:
            specs += [(m, "bf16") for m in args.model]
        if args.tta:
            specs += [(m, "fp32+tta") for m in args.model]
        specs += [(m, f"fp32+w{w:g}") for w in args.fidelity for m in args.model]
        keys = [cache.key(name, spec, prec, val, args) for spec, prec in specs]
        todo = [(spec, prec) for (spec, prec), k in zip(specs, keys) if k not in cache]
        if todo:
            models = [adaptive_model(spec, data.hq_size, precision=prec.split("+")[0], tta=prec.endswith("+tta"),
                                     fidelity=float(prec.split("+w")[1]) if "+w" in prec else 0.0)
                      for spec, prec in todo]
            report = E.evaluate(models, data, "cpu", batch_size=16, skip=skip, grid_faces=0)
            for (spec, prec), m in zip(todo, report.models):
                cache.put(cache.key(name, spec, prec, val, args), m.name, m.values)
        for k in keys:
            rows.append((name, *cache.get(k)))
        print(f"[{time.perf_counter() - t0:6.0f}s] {name}: " + "; ".join(
            f"{model} {values['psnr']:.2f} dB" for _, model, values in rows if _ == name), flush=True)
    table = render(rows, args, ", ".join(f"`{v}`" for v in vals), len(data), time.perf_counter() - t0)
    print(table)
    if args.out:
        write(pathlib.Path(args.out), table, BEGIN, END)
    return 0


class Cache:
    """Scores already computed, keyed by what determines them (the weights' bytes, not a name)."""

    def __init__(self, path: pathlib.Path | None):
        self.path = path
        self.data = json.loads(path.read_text()) if path and path.is_file() else {}

    @staticmethod
    def key(protocol: str, spec: str, precision: str, val: str, args) -> str:
        from facerestore.models import bundled

        path = bundled()[spec].path if spec in bundled() else pathlib.Path(spec)
        model = hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else spec
        return json.dumps([protocol, model, precision, os.path.abspath(val), args.seed, args.limit, args.skip])

    def __contains__(self, key: str) -> bool:
        return key in self.data

    def get(self, key: str) -> tuple[str, dict]:
        return tuple(self.data[key])

    def put(self, key: str, name: str, values: dict) -> None:
        self.data[key] = [name, {k: float(v) for k, v in values.items() if isinstance(v, (int, float))}]
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.data, indent=1))


def render(rows, args, faces: str, count: int, seconds: float) -> str:
    from facerestore.evaluate import METRICS, machine_description

    head = "| protocol | model | " + " | ".join(METRICS[c][0] for c in COLUMNS) + " |"
    lines = [
        "## Quality by scale (issue 14)", "",
        f"Command: `python -m benchmarks.by_scale {shlex.join(sys.argv[1:])}`; "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {machine_description('cpu')}, "
        f"{seconds / 60:.1f} min. Data: {count} faces of {faces}, degradation seed {args.seed}; "
        "protocols (benchmarks/protocols/) and model inputs as in the script's docstring. PSNR vis./occl.: outside/inside the "
        "synthetic mask (occl. over masked faces only; r1 clean has no mask).", "",
        head, "|" + "---|" * (len(COLUMNS) + 2)]
    for proto, model, v in rows:
        cells = [METRICS[c][3].format(v[c]) if c in v and v[c] == v[c] else "-" for c in COLUMNS]
        lines.append(f"| {proto} | {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
