"""Generator size and CPU throughput per recipe: parameters, GFLOPs per face, faces/s.

    .venv/bin/python -m benchmarks.model_speed recipes/jdsr_gan.toml recipes/jdsr_gan_small.toml

Forward pass only (inference_mode, eval mode, channels_last, float32), random weights (speed does
not depend on them), batch 16 of random LQ faces, ``--threads`` torch threads (default 2). Reports
the median of ``--repeats`` timed batches after ``--warmup`` untimed batches (default 3).

Two throughputs: wall-clock faces/s (what a user sees; low when other processes share the
cores) and faces per CPU-second (``time.process_time``, all threads of this process): the
throughput one fully available core gives, which is robust to other load; with ``--threads 1``
it is what an idle single core delivers, a conservative figure for two cores. FLOPs from
torch.utils.flop_counter (multiply-add = 2), as in ``facerestore recipe show``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recipes", nargs="+")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=3, help="untimed batches first (allocator, kernel selection)")
    ap.add_argument("--no-channels-last", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from facerestore.modelstats import count_parameters, flops_per_face
    from facerestore.recipe import load_recipe
    from facerestore.components import default_registry

    print(f"# {platform.machine()} CPU, {args.threads} threads, torch {torch.__version__}, batch {args.batch}, "
          f"{'contiguous' if args.no_channels_last else 'channels_last'}, median of {args.repeats}, "
          f"load average before: {os.getloadavg()[0]:.1f} (other processes share the cores)")
    print("| recipe | params (M) | GFLOPs/face | faces/s (wall) | faces per CPU-second |")
    print("|---|---|---|---|---|")
    for path in args.recipes:
        r = load_recipe(path)
        torch.manual_seed(0)
        g = default_registry().build("generator", r.generator, "generator").eval()
        flops = flops_per_face(g, r.lq_size)
        x = torch.rand(args.batch, 3, r.lq_size, r.lq_size)
        if not args.no_channels_last:
            g = g.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        times, cpu = [], []
        with torch.inference_mode():
            for _ in range(args.warmup):
                g(x)
            for _ in range(args.repeats):
                t, c = time.perf_counter(), time.process_time()
                g(x)
                times.append(time.perf_counter() - t)
                cpu.append(time.process_time() - c)
        fps = args.batch / statistics.median(times)
        fpc = args.batch / statistics.median(cpu)
        print(f"| {r.name} | {count_parameters(g) / 1e6:.2f} | {flops / 1e9:.2f} | {fps:.1f} | {fpc:.1f} |")


if __name__ == "__main__":
    main()
