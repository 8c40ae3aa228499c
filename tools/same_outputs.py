"""Byte-identical outputs across a refactor: run the same restore commands (photos, upscale,
fidelity, aligned crops, a video, the server's engine) with the code in the current tree and with
the code of another commit, and compare the files' sha256.

    .venv/bin/python -m tools.same_outputs --before b7409d7 [--work /tmp/same_outputs]   # from the repository root

The other commit is checked out with ``git worktree`` and put first on ``PYTHONPATH`` (both the
``facerestore`` and ``facerestore_plugins`` packages), so the same virtual environment runs both.
Inputs: ``../shared/data`` photos when present (t1.jpg, two rmfd_dev photos), the astronaut, an
aligned crop of it and a 2 s masked clip made here. Exit 0 when every output matches.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "scenes"

#: (name, extra restore arguments, inputs) run by every code version
RUNS = [
    ("photos", [], ["photos"]),
    ("upscale2_fidelity05", ["-s", "2", "-w", "0.5"], ["photos"]),
    ("masked_gen", ["-m", "{before_weights}/masked-gen.safetensors", "--draw-box"], ["photos"]),
    ("aligned", ["--aligned", "--suffix", "_r", "--ext", "png"], ["aligned"]),
    ("video", ["--detect-every", "3"], ["clip.mp4"]),
]

ENGINE = """
import hashlib, json, pathlib, sys
from facerestore.serve.config import ServeConfig
from facerestore.serve.engine import Engine, Options
e = Engine(ServeConfig(model="masked-any", device="cpu"))
out = {}
for p in sorted(pathlib.Path(sys.argv[1]).glob("*")):
    for opts in (Options(), Options(upscale=2.0, fidelity=0.5)):
        r = e.process(p.read_bytes(), p.name, opts, "png")
        out[f"{p.name} upscale={opts.upscale} fidelity={opts.fidelity}"] = hashlib.sha256(r.data).hexdigest()
e.close()
print(json.dumps(out))
"""


def make_inputs(folder: pathlib.Path) -> None:
    """Photos, aligned crops and a clip, written once and given to every code version."""
    import numpy as np
    from PIL import Image
    from skimage import data

    photos, aligned = folder / "photos", folder / "aligned"
    photos.mkdir(parents=True)
    aligned.mkdir()
    astro = Image.fromarray(data.astronaut())
    astro.save(photos / "astronaut.png")
    astro.crop((150, 40, 300, 190)).resize((96, 96), Image.BICUBIC).save(aligned / "face96.png")
    astro.crop((150, 40, 300, 190)).resize((256, 256), Image.BICUBIC).save(aligned / "face256.png")
    for src in (SHARED / "insightface" / "t1.jpg", SHARED / "rmfd_dev" / "0009" / "0000.jpg",
                SHARED / "rmfd_dev" / "0003" / "0000.jpg"):
        if src.is_file():
            shutil.copy(src, photos / f"{src.parent.name}_{src.name}")
    from benchmarks.video import camera, masked_photo, render, write_clip

    photo = masked_photo()
    frames = [render(photo, camera(i, 25.0, (192, 192)), (192, 192)) for i in range(50)]
    write_clip(folder / "clip.mp4", [np.asarray(f) for f in frames], 25)


def run_version(code: pathlib.Path | None, inputs: pathlib.Path, out: pathlib.Path,
                before_weights: pathlib.Path) -> dict[str, str]:
    """Every run of :data:`RUNS` plus the engine, with ``code`` (None: the current tree) first on
    the path; returns relative output path -> sha256. A bundled model that changed between the two
    commits is given as the other commit's file (``before_weights``), so only the code differs."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="2")
    if code is not None:
        shim = out.parent / f"{out.name}_path"
        shim.mkdir(exist_ok=True)
        for name, target in (("facerestore", code / "facerestore"), ("facerestore_plugins", code / "plugins")):
            link = shim / name
            if not link.exists():
                link.symlink_to(target)
        env["PYTHONPATH"] = str(shim)
    hashes: dict[str, str] = {}
    for name, extra, sources in RUNS:
        cmd = [sys.executable, "-m", "facerestore.cli", "restore", *[str(inputs / s) for s in sources],
               "-o", str(out / name), "-q", *[e.format(before_weights=before_weights) for e in extra]]
        subprocess.run(cmd, check=True, env=env, cwd=out.parent, capture_output=True)
    for f in sorted(out.rglob("*")):
        if f.is_file():
            hashes[str(f.relative_to(out))] = hashlib.sha256(f.read_bytes()).hexdigest()
    res = subprocess.run([sys.executable, "-c", ENGINE, str(inputs / "photos")], check=True, env=env,
                         cwd=out.parent, capture_output=True, text=True)
    hashes.update({f"engine: {k}": v for k, v in json.loads(res.stdout.strip().splitlines()[-1]).items()})
    return hashes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", required=True, help="Commit to compare with (e.g. the last one before a refactor).")
    ap.add_argument("--work", type=pathlib.Path, default=pathlib.Path("/tmp/same_outputs"))
    args = ap.parse_args()
    if args.work.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(args.work / "code")],
                       capture_output=True)
        shutil.rmtree(args.work)
    args.work.mkdir(parents=True)
    make_inputs(args.work / "inputs")
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(args.work / "code"), args.before],
                   check=True, capture_output=True)
    try:
        weights = args.work / "code" / "facerestore" / "weights"
        before = run_version(args.work / "code", args.work / "inputs", args.work / "before", weights)
        after = run_version(None, args.work / "inputs", args.work / "after", weights)
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(args.work / "code")],
                       capture_output=True)
    differ = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    for k in sorted(before.keys() | after.keys()):
        print(f"{'same' if k not in differ else 'DIFF'}  {k}  {after.get(k, '-')[:16]}")
    print(f"{len(before)} outputs before, {len(after)} after, {len(differ)} differ (before = {args.before})")
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main())
