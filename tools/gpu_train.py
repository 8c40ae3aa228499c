"""Train `recipes/masked_any.toml` longer on a lent GPU, inside one ~10-minute device call (issue 14).

Two steps, the first on this machine, the second on the GPU machine (which sees the repository
and the paths carried to it, not ``../shared``):

    .venv/bin/python tools/gpu_train.py shard                 # -> runs/gpu_shard.tar (<= 50 MB)
    python tools/gpu_train.py train --minutes 8               # on the GPU: -> runs/gpu/masked-any-gpu.safetensors

``shard`` packs what training reads into one tar: the celeba/train JPEGs as they are (no
re-encoding), the first 64 celeba/val faces for validation, and the MaskTheFace templates with their
anchors (textures downsized to the 96 px the mask renderer uses). ``train`` unpacks it, times
``--calibrate`` steps, sizes the run (steps x batch) to fill ``--minutes`` with a cosine schedule
that ends when the time does, trains from the bundled model (``train.init``), and exports the EMA
generator as float16. Give its output to ``by_scale.py --model`` to score it; the model card says
which hardware trained what.

Settings: batch 64 and lr 4e-4 (4x the CPU batch, sqrt-scaled lr), 12 data workers, bf16 autocast on
CUDA, the adversarial term off unless ``--adversarial`` (in a fine-tune from the bundled model a
fresh critic made the generator paint speckle into the mask region within 600 steps). A dry run on the CPU: ``train --device cpu --minutes 1 --calibrate 2 --batch 4``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tarfile
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
RECIPE = "recipes/masked_any.toml"
LIMIT_MB = 50


def make_shard(data: pathlib.Path, out: pathlib.Path, val_count: int = 64) -> None:
    """celeba/train + val_count val faces + mask templates -> one tar, refusing to pass LIMIT_MB."""
    import io

    from PIL import Image

    from facerestore_plugins.mask_templates import texture_square

    masks = data / "masks" / "masktheface"
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w") as tar:
        tar.add(data / "celeba" / "train", arcname="faces")
        val = sorted(p for p in (data / "celeba" / "val").rglob("*.jpg"))[:val_count]
        for p in val:
            tar.add(p, arcname=f"val/{p.parent.name}_{p.name}")
        for name in ("masks.cfg", "LICENSE.MaskTheFace.txt", "templates"):
            tar.add(masks / name, arcname=f"masks/{name}")
        for p in sorted(f for f in (masks / "textures").rglob("*") if f.is_file()):
            with Image.open(p) as im:  # lossless, already as the renderer crops and sizes it
                buf = io.BytesIO()
                texture_square(im).save(buf, "PNG")
            rel = p.relative_to(masks / "textures")
            info = tarfile.TarInfo(f"masks/textures/{rel}" + ("" if p.suffix == ".png" else ".png"))
            info.size = buf.tell()
            buf.seek(0)
            tar.addfile(info, buf)
    mb = out.stat().st_size / 1e6
    if mb > LIMIT_MB:
        out.unlink()
        raise SystemExit(f"shard would be {mb:.1f} MB > {LIMIT_MB} MB")
    print(f"wrote {out} ({mb:.1f} MB): {len(val)} val faces", file=sys.stderr)


def train_cmd(root: pathlib.Path, out: pathlib.Path, steps: int, args) -> list[str]:
    from facerestore.recipe import load_recipe

    recipe = load_recipe(ROOT / RECIPE)
    adv = recipe.loss_index("adversarial")
    mask = next(i for i, s in enumerate(recipe.degradation) if s["type"] == "random_mask")
    sets = {"data.train": json.dumps([str(root / "faces")]), "data.val": json.dumps(str(root / "val")),
            f"degradation.{mask}.folder": json.dumps(str(root / "masks")), "data.workers": str(args.workers),
            "train.batch_size": str(args.batch), "train.lr": str(args.lr), "train.steps": str(steps),
            "train.warmup_steps": str(min(200, steps // 10)), "train.init": json.dumps(args.init),
            f"loss.{adv}.weight": "0.01" if args.adversarial else "0.0", f"loss.{adv}.start": str(steps // 8),
            "train.d_warmup": str(steps // 16 if args.adversarial else 0), "train.val_every": str(max(1, steps // 4)),
            "train.ckpt_every": str(max(1, steps // 4)), "train.log_every": str(max(1, min(100, steps // 10)))}
    cmd = [sys.executable, "-m", "facerestore.cli", "train", RECIPE, "--out", str(out), "--device", args.device,
           "--no-progress", "--no-tensorboard"]
    for k, v in sets.items():
        cmd += ["--set", f"{k}={v}"]
    return cmd


def images_per_s(run: pathlib.Path) -> float:
    rows = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    ips = [r["images_per_s"] for r in rows if r.get("event") == "train" and "images_per_s" in r]
    if not ips:
        raise SystemExit(f"{run}: no training speed logged")
    return ips[-1]


def train(args) -> None:
    os.chdir(ROOT)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    work = pathlib.Path(tempfile.mkdtemp(prefix="gpu_train_"))
    with tarfile.open(args.shard) as tar:
        tar.extractall(work, filter="data")
    t0 = time.perf_counter()
    cal = pathlib.Path(args.out) / "calibrate"
    subprocess.run(train_cmd(work, cal, args.calibrate, args) + ["--set", f"train.log_every={args.calibrate}"],
                   check=True, env=env)
    ips = images_per_s(cal)
    left = args.minutes * 60 - (time.perf_counter() - t0) - 60  # start-up, validation, export
    steps = max(1, int(left * ips * 0.9 / args.batch))
    print(f"calibration: {ips:.0f} images/s -> {steps} steps x {args.batch} in {left / 60:.1f} min", flush=True)
    run = pathlib.Path(args.out) / "run"
    subprocess.run(train_cmd(work, run, steps, args), check=True, env=env)
    last = sorted(run.glob("ckpt_*.safetensors"))[-1]
    dst = pathlib.Path(args.out) / "masked-any-gpu.safetensors"
    subprocess.run([sys.executable, "-m", "facerestore.cli", "export", "-m", str(last), "--safetensors", str(dst),
                    "--half"], check=True, env=env)
    print(f"{dst}: {steps * args.batch} images in {(time.perf_counter() - t0) / 60:.1f} min on {args.device}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("shard", help="pack the training data (this machine)")
    s.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    s.add_argument("--out", default="runs/gpu_shard.tar")
    t = sub.add_parser("train", help="train on the GPU machine")
    t.add_argument("--shard", default="runs/gpu_shard.tar")
    t.add_argument("--out", default="runs/gpu")
    t.add_argument("--minutes", type=float, default=8.0, help="wall time for calibration + run + export")
    t.add_argument("--calibrate", type=int, default=60, help="steps timed before sizing the run")
    t.add_argument("--batch", type=int, default=64)
    t.add_argument("--lr", type=float, default=4e-4)
    t.add_argument("--workers", type=int, default=12)
    t.add_argument("--device", default="cuda")
    t.add_argument("--init", default="masked-any", help="bundled model or checkpoint to start from")
    t.add_argument("--adversarial", action="store_true",
                   help="switch the adversarial term on (weight 0.01 from steps//8, critic warmed up for steps//16 before)")
    args = p.parse_args(argv)
    if args.cmd == "shard":
        make_shard(pathlib.Path(args.data), ROOT / args.out)
    else:
        train(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
