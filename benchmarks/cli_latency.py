"""Whole-process latency of `facerestore restore PHOTO -o OUT` (issue 13: <= 3 s on an idle
machine), median of ``--repeat`` runs, beside two references measured in the same run: a bare
``python -c "import torch"`` process and the in-process restore of the same photo once warm.

    .venv/bin/python -m benchmarks.cli_latency [--photo ../shared/data/scenes/insightface/t1.jpg] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]


def wall(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return time.perf_counter() - t0


def warm_seconds(photo: str, model: str, repeat: int) -> float:
    from facerestore.io import read_image
    from facerestore.restore import Restorer

    r = Restorer.from_pretrained(model, device="cpu")
    img, _ = read_image(photo)
    r.restore_many([img])
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        r.restore_many([img])
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--photo", default=str(ROOT.parent / "shared/data/scenes/insightface/t1.jpg"))
    p.add_argument("--model", default=None, help="default: the bundled default model")
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    exe = pathlib.Path(sys.executable).parent / "facerestore"
    with tempfile.TemporaryDirectory() as out:
        model = ["--model", args.model] if args.model else []
        cli = [wall([str(exe), "restore", args.photo, "-o", out, "-q", *model]) for _ in range(args.repeat)]
    torch_only = [wall([sys.executable, "-c", "import torch"]) for _ in range(args.repeat)]
    from facerestore.defaults import DEFAULT_MODEL

    warm = warm_seconds(args.photo, args.model or DEFAULT_MODEL, args.repeat)
    med, ref = statistics.median(cli), statistics.median(torch_only)
    print(f"photo {args.photo}, model {args.model or DEFAULT_MODEL}, {os.cpu_count()} cores, median of {args.repeat}")
    print(f"| measure | seconds |\n|---|---:|\n| `facerestore restore` whole process | {med:.2f} |\n"
          f"| `python -c 'import torch'` (reference) | {ref:.2f} |\n| restore_many, warm, in process | {warm:.2f} |")
    print(f"whole process = {med / ref:.1f}x a bare torch import; runs: {', '.join(f'{t:.2f}' for t in cli)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
