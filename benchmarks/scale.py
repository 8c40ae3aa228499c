"""Restoring collections at scale: the Ray engine against the local one on this machine, the cost of
each stage per photo, per face and per video frame, and from those a plan for a 100-node cluster.

    python -m benchmarks.scale [--photos 500] [--size 256] [--model masked-any] [--workers 0 1]
                               [--rounds 2] [--video-seconds 4] [--nodes 100] [--node-cores 32] [--write]

1. Engines: ``--photos`` photos (the masked astronaut's head, each cropped, scaled and noised a
   little differently, ``--size`` px square, JPEG q90, one masked face each) restored by
   ``facerestore restore`` in a subprocess, in ``--rounds`` rounds of: the local engine, then
   ``--engine ray`` with each ``--workers`` count (the machine is shared: each Ray run is compared
   with the local run of its own round). Wall time includes start-up (the model load; for Ray also
   ``ray.init`` and the actors). For Ray runs the steady rate comes from the manifest (rows' finish
   times), the rest of the wall time is start-up. Each Ray output tree is compared with the local
   one byte for byte. Then the finished Ray run is run again (nothing to
   do: the target is Ray's start-up + 10 s; it does not start Ray at all). Last, 24 photos and one
   unreadable file through both engines: the one case where their groups differ (docs/scale.md).
2. Stages, in this process with 2 torch threads as the local engine: decode, detection (groups of
   8 photos, as the engine), the model (aligned faces at batch 16), alignment + paste-back, encode,
   for photos of ``--size`` px and of 1024 px (the per-megapixel rate); and a 1280x720 25 fps clip
   with one masked face moving: ``restore_video`` frames/s and CPU-s per frame, and decode + encode
   alone (a detector that finds nothing).
3. The plan: 10 million photos of ``--plan-mp`` megapixels with one face each, and 10,000 hours of
   720p 25 fps video, on ``--nodes`` nodes of ``--node-cores`` cores (CPU only), or with one GPU
   each doing detection and the model (then the CPU stages bound the rate; the GPU rate needed is
   given, not measured here: this machine has none). CPU-seconds, not wall seconds, are the unit
   that scales: a 32-core node is taken to do 16x what these 2 cores do.

Prints Markdown tables; ``--write`` puts them into ``docs/scale.md`` between markers.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "scale.md"


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return re.search(r"Model name:\s*(.+)", out).group(1).strip()
    except Exception:  # noqa: BLE001 - informative only
        return platform.processor() or "unknown CPU"


def head_photo(size: int, seed: int) -> np.ndarray:
    """The masked astronaut's head (from benchmarks/video.py), cropped around the face with a
    random offset and scale, ``size`` px square, light noise: (size, size, 3) uint8."""
    from PIL import Image

    from benchmarks.video import masked_photo

    rng = np.random.default_rng(seed)
    photo = (masked_photo().permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    side = int(rng.uniform(230, 300))
    cx, cy = 225 + rng.uniform(-15, 15), 125 + rng.uniform(-15, 15)
    x0, y0 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
    crop = Image.fromarray(photo[y0:y0 + side, x0:x0 + side]).resize((size, size), Image.BICUBIC)
    noisy = np.asarray(crop).astype(np.int16) + rng.integers(-2, 3, (size, size, 3))
    return np.clip(noisy, 0, 255).astype(np.uint8)


def write_collection(folder: pathlib.Path, n: int, size: int) -> None:
    from PIL import Image

    for i in range(n):
        sub = folder / f"d{i // 100:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(head_photo(size, i)).save(sub / f"p{i:04d}.jpg", quality=90)


def cli(*args: str) -> tuple[float, str, int]:
    """``facerestore restore ARGS`` in a subprocess: (wall seconds, output, exit code)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "facerestore.cli", "restore", *args], capture_output=True, text=True,
                       env=env)
    return time.perf_counter() - t, r.stdout + r.stderr, r.returncode


def tree(folder: pathlib.Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and ".facerestore" not in p.parts}


def steady_rate(out: pathlib.Path) -> tuple[float, int]:
    """Photos/s once the first unit is done (the photos finished after it over the time from it to
    the last), from the run's manifest; and the row count."""
    from facerestore.run_manifest import MANIFEST, STATE_DIR, iter_rows

    t = sorted(r["finished"] for r in iter_rows(out / STATE_DIR / MANIFEST) if r["worker"] != "driver")
    later = sum(x > t[0] + 0.05 for x in t)
    return (later / (t[-1] - t[0]) if later and t[-1] > t[0] else 0.0), len(t)


def tree_diff(a: pathlib.Path, b: pathlib.Path) -> str:
    """``yes`` when both trees hold the same bytes, else how many files and 8-bit values differ."""
    from PIL import Image

    ta, tb = tree(a), tree(b)
    if ta == tb:
        return "yes"
    if sorted(ta) != sorted(tb):
        return "**other files**"
    files, values, most = 0, 0, 0
    for k in ta:
        if ta[k] != tb[k]:
            files += 1
            x, y = np.asarray(Image.open(a / k)).astype(int), np.asarray(Image.open(b / k)).astype(int)
            values, most = values + int((x != y).sum()), max(most, int(np.abs(x - y).max()))
    return f"no: {files} files, {values} values by at most {most}"


def bench_engines(args, work: pathlib.Path) -> tuple[list[list[str]], dict]:
    """``--rounds`` rounds of: the local engine, then the Ray engine with each ``--workers``; each
    Ray run's speed is a ratio to the local run of its own round (the machine is shared: runs close
    in time see the same load)."""
    src = work / "photos"
    write_collection(src, args.photos, args.size)
    common = ["-q", "-m", args.model]
    runs, facts, ratios, load = [], {}, {w: [] for w in args.workers}, []
    for k in range(args.rounds):
        out_local = work / f"local_{k}"
        wall_local, text, rc = cli(str(src), "-o", str(out_local), *common)
        assert rc == 0, (rc, text)
        facts.setdefault("summary", re.search(r"summary: .*", text).group(0))
        load.append(os.getloadavg()[0])
        runs.append([f"round {k + 1}: local engine", f"{wall_local:.1f}", f"{args.photos / wall_local:.2f}", "1.00",
                     "", "", "", f"{load[-1]:.1f}"])
        for w in args.workers:
            out = work / f"ray_{w}_{k}"
            flag = ["--workers", str(w)] if w else []  # 0: the default pool
            wall, text, rc = cli(str(src), "-o", str(out), *common, "--engine", "ray", *flag)
            assert rc == 0, (rc, text)
            rate, _ = steady_rate(out)
            pool = re.search(r"\d+ actor\(s\) of [\d.]+ CPU", text)
            load.append(os.getloadavg()[0])
            ratios[w].append(wall_local / wall)
            start = wall - args.photos / rate if rate else float("nan")
            label = f"--workers {w}" if w else "default pool"
            runs.append([f"round {k + 1}: ray, {label} ({pool.group(0) if pool else '?'})", f"{wall:.1f}",
                         f"{args.photos / wall:.2f}", f"**{wall_local / wall:.2f}**", f"{rate:.2f}", f"{start:.1f}",
                         tree_diff(out, out_local), f"{load[-1]:.1f}"])
            facts.setdefault("first_ray", out)
    first = ["--workers", str(args.workers[0])] if args.workers[0] else []
    again, text, rc = cli(str(src), "-o", str(facts["first_ray"]), *common, "--engine", "ray", *first)
    redo = re.search(r"resume: [^(]*", text)
    runs.append(["ray, rerun of a finished run", f"{again:.1f}", "", "", "", "",
                 (redo.group(0).strip() if redo else text.strip().splitlines()[-1])[:60], f"{os.getloadavg()[0]:.1f}"])
    from facerestore.run_manifest import MANIFEST, STATE_DIR

    mf = facts["first_ray"] / STATE_DIR / MANIFEST
    facts.update(ratios=ratios, load=load, again=again, manifest_bytes=mf.stat().st_size / args.photos)
    return runs, facts


def bench_group_shift(args, work: pathlib.Path) -> str:
    """24 photos and one file that is not an image, sorted fourth: both engines. The local engine
    fills the first group with the ninth photo, the Ray unit stays one short; how many outputs
    differ, and by how much."""
    from PIL import Image

    src = work / "shift"
    write_collection(src, 24, args.size)
    (src / "d00" / "p0002b.jpg").write_text("not an image")
    cli(str(src), "-o", str(work / "shift_local"), "-q", "-m", args.model)
    cli(str(src), "-o", str(work / "shift_ray"), "-q", "-m", args.model, "--engine", "ray")
    ours, theirs = tree(work / "shift_ray"), tree(work / "shift_local")
    files, values, most = 0, 0, 0
    for k in theirs:
        if ours.get(k) != theirs[k]:
            files += 1
            a = np.asarray(Image.open(work / "shift_local" / k)).astype(int)
            b = np.asarray(Image.open(work / "shift_ray" / k)).astype(int)
            values, most = values + int((a != b).sum()), max(most, int(np.abs(a - b).max()))
    return (f"One unreadable file among 24 photos (fourth in its folder): {files} of {len(theirs)} outputs differ "
            f"between the engines, {values} 8-bit values in all, by at most {most}.\n\n")


def timed(fn, repeats: int = 1) -> tuple[float, float]:
    """(wall, CPU) seconds of ``fn`` per call, CPU summed over this process's threads."""
    fn()
    t, c = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t) / repeats, (time.process_time() - c) / repeats


def bench_stages(args, work: pathlib.Path) -> tuple[list[list[str]], dict]:
    """Per photo / per face stage costs at ``--size`` (16 photos) and 1024 px (8 photos)."""
    from PIL import Image

    from facerestore.io import read_image, write_image
    from facerestore.restore import Restorer

    r = Restorer.from_pretrained(args.model, device="cpu")
    rows, costs = [], {}
    for size in (args.size, 1024):
        folder = work / f"stage_{size}"
        folder.mkdir()
        paths, k = [], 16 if size <= 512 else 8
        for i in range(k):
            p = folder / f"p{i}.jpg"
            Image.fromarray(head_photo(size, 1000 + i)).save(p, quality=90)
            paths.append(p)
        mp = size * size / 1e6
        dec = timed(lambda: [read_image(p) for p in paths])
        imgs = [read_image(p)[0] for p in paths]
        det = timed(lambda: [r.detect(imgs[i:i + 8]) for i in range(0, k, 8)])
        dets = [d for i in range(0, k, 8) for d in r.detect(imgs[i:i + 8])]
        faces = sum(int(d.boxes.shape[0]) for d in dets)
        whole = timed(lambda: [r.restore_many(imgs[i:i + 8], dets[i:i + 8]) for i in range(0, k, 8)])
        outs = [res.image for i in range(0, k, 8) for res in r.restore_many(imgs[i:i + 8], dets[i:i + 8])]
        enc = timed(lambda: [write_image(folder / f"o{i}.jpg", o) for i, o in enumerate(outs)])
        in_bytes = sum(p.stat().st_size for p in paths) / k
        out_bytes = sum((folder / f"o{i}.jpg").stat().st_size for i in range(k)) / k
        crops = torch.rand(16, 3, r.lq_size, r.lq_size, generator=torch.Generator().manual_seed(0))
        model = timed(lambda: r.run_model(crops), 3)
        per_face = (model[0] / 16, model[1] / 16)
        if size == args.size:  # the same faces in another batch, or on another thread count
            full = r.run_model(crops)[0]
            batch = (full[3:10] - r.run_model(crops[3:10])[0]).abs().max().item()
            torch.set_num_threads(1)
            threads = (full - r.run_model(crops)[0]).abs().max().item()
            torch.set_num_threads(2)
            rows.append(["", f"model output, the same faces in a batch of 7 instead of 16: max change {batch:.1e}; "
                         f"on 1 thread instead of 2: {threads:.1e}", "", ""])
        paste = (max(0.0, whole[0] / k - per_face[0] * faces / k), max(0.0, whole[1] / k - per_face[1] * faces / k))
        c = dict(mp=mp, faces=faces / k, decode=dec[1] / k, detect=det[1] / k, model_face=per_face[1],
                 paste=paste[1], encode=enc[1] / k, in_bytes=in_bytes, out_bytes=out_bytes)
        costs[size] = c
        for name, wall, cpu in (("decode", dec[0] / k, c["decode"]), ("detection (groups of 8)", det[0] / k, c["detect"]),
                                ("model, per face (batch 16)", per_face[0], per_face[1]),
                                ("align + paste-back", paste[0], c["paste"]), ("encode (JPEG q95)", enc[0] / k, c["encode"])):
            rows.append([f"{size}x{size} ({mp:.2f} MP)", name, f"{wall * 1000:.1f}", f"{cpu * 1000:.1f}"])
        rows.append([f"{size}x{size}", f"faces found per photo: {faces / k:.2f}; file in / out",
                     f"{in_bytes / 1e3:.0f} kB", f"{out_bytes / 1e3:.0f} kB"])
    return rows, costs


def bench_video(args, work: pathlib.Path) -> tuple[list[list[str]], dict]:
    """A 1280x720 25 fps clip, one masked face moving across: restore_video and decode+encode."""

    from benchmarks.video import head_and_background, write_clip
    from facerestore.interfaces import Detection
    from facerestore.restore import Restorer
    from facerestore.video import restore_video

    view, fps = (1280, 720), 25
    n = int(args.video_seconds * fps)
    head, bg = head_and_background(view, 1.0)
    hh, hw = head.shape[:2]
    frames = []
    for i in range(n):
        f = bg.copy()
        x, y = int(100 + 8 * i), int(250 + 20 * np.sin(i / 6))
        f[y:y + hh, x:x + hw] = head
        frames.append(f)
    src = work / "clip.mp4"
    write_clip(src, frames, fps)
    r = Restorer.from_pretrained(args.model, device="cpu")
    restore_video(r, src, work / "warm.mp4", end=0.4)
    t, c = time.perf_counter(), time.process_time()
    s = restore_video(r, src, work / "clip_out.mp4", detect_every=5)
    wall, cpu = time.perf_counter() - t, time.process_time() - c

    class NoFaces:
        min_score_hint = 0.0

        def detect(self, images):
            return [Detection(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, 5, 2)) for _ in images]

    plain_r = Restorer.from_pretrained(args.model, device="cpu", detector=NoFaces())
    t, c = time.perf_counter(), time.process_time()
    restore_video(plain_r, src, work / "clip_plain.mp4", detect_every=5)
    pwall, pcpu = time.perf_counter() - t, time.process_time() - c
    rows = [["restore_video, 1 face, detection every 5 frames", f"{n / wall:.1f}", f"{cpu / n * 1000:.1f}",
             f"{n} frames, {s.faces} faces restored"],
            ["decode + encode only (no face found)", f"{n / pwall:.1f}", f"{pcpu / n * 1000:.1f}", "libx264 crf 18"]]
    return rows, dict(frame=cpu / n, plain=pcpu / n)


def plan(args, costs: dict, video: dict, facts: dict) -> list[list[str]]:
    """CPU-seconds per item x counts / (nodes x cores): hours for the whole job."""
    small, big = costs[args.size], costs[1024]

    def per_mp(key: str) -> tuple[float, float]:  # linear in pixels: (fixed, per MP)
        slope = (big[key] - small[key]) / (big["mp"] - small["mp"])
        return small[key] - slope * small["mp"], slope

    def at(key: str, mp: float) -> float:
        a, b = per_mp(key)
        return max(a + b * mp, 0.0)

    mp = args.plan_mp
    photo_cpu = {k: at(k, mp) for k in ("decode", "detect", "paste", "encode")}
    photo_cpu["model"] = big["model_face"]  # one face per photo
    n_photos, hours_video = 10_000_000, 10_000
    frames = hours_video * 3600 * 25
    cores = args.nodes * args.node_cores
    photo_all = sum(photo_cpu.values())
    photo_gpu_cpu = photo_cpu["decode"] + photo_cpu["paste"] + photo_cpu["encode"]
    cpu_top = max(("decode", "paste", "encode"), key=photo_cpu.get)
    in_b = per_mp("in_bytes")[0] + per_mp("in_bytes")[1] * mp
    out_b = per_mp("out_bytes")[0] + per_mp("out_bytes")[1] * mp
    h = lambda cpu_s, n: cpu_s * n / cores / 3600  # noqa: E731
    ratio = max((min(r) for r in facts.get("ratios", {}).values() if r), default=float("nan"))
    share = lambda k: f"{photo_cpu[k] / photo_all * 100:.0f} %"  # noqa: E731
    rows = [
        ["10 M photos, CPU only", f"{photo_all * 1000:.0f} CPU-ms/photo",
         f"**{h(photo_all, n_photos):.1f} h**",
         f"decode {share('decode')}, detection {share('detect')}, model {share('model')}, paste {share('paste')}, "
         f"encode {share('encode')}: {NAMES[max(photo_cpu, key=photo_cpu.get)]} dominates"],
        ["10 M photos, + 1 GPU/node (detection, model)", f"{photo_gpu_cpu * 1000:.0f} CPU-ms/photo on CPU",
         f"**{h(photo_gpu_cpu, n_photos):.1f} h** (if the GPUs keep up)",
         f"each GPU must detect + restore {n_photos / (h(photo_gpu_cpu, n_photos) * 3600) / args.nodes:.0f} "
         f"photos/s; then the CPU stages bound it, {NAMES[cpu_top]} first"],
        ["10 M photos: storage", f"{in_b / 1e6:.2f} MB in, {out_b / 1e6:.2f} MB out per photo",
         f"{(in_b + out_b) * n_photos / 1e12:.1f} TB moved",
         f"{(in_b + out_b) * n_photos / (h(photo_gpu_cpu, n_photos) * 3600) / 1e9:.2f} GB/s in all at the GPU rate"],
        ["10,000 h video (720p, 25 fps), CPU only", f"{video['frame'] * 1000:.0f} CPU-ms/frame (1 face)",
         f"**{h(video['frame'], frames):.0f} h**", f"{frames / 1e6:.0f} M frames; decode + encode alone "
         f"{video['plain'] * 1000:.0f} CPU-ms/frame = {h(video['plain'], frames):.0f} h (a floor for any engine)"],
        ["10,000 h video, + 1 GPU/node", f"{video['plain'] * 1000:.0f} CPU-ms/frame on CPU",
         f"**{h(video['plain'], frames):.0f} h** (if the GPUs keep up)",
         "H.264 decode + encode on CPU is the bottleneck: NVDEC/NVENC would move it"],
        ["Ray overhead measured here", f"speed vs local {ratio:.2f} (the best pool, its worst round)", "",
         "divide the hours by it"],
        ["manifest", f"{facts.get('manifest_bytes', float('nan')):.0f} bytes/row (Parquet)",
         f"{facts.get('manifest_bytes', float('nan')) * n_photos / 1e9:.1f} GB for 10 M photos", ""],
    ]
    return rows


NAMES = {"decode": "decode", "detect": "detection", "model": "the model", "paste": "the paste-back",
         "encode": "encode"}


def table(header: list[str], rows: list[list[str]]) -> str:
    out = "| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n"
    return out + "".join("| " + " | ".join(r) + " |\n" for r in rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=500)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--model", default="masked-any")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1],
                    help="Ray pools to time, 0 = the default pool (one 1-thread actor per CPU)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--video-seconds", type=float, default=4.0)
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--node-cores", type=int, default=32)
    ap.add_argument("--plan-mp", type=float, default=2.0, help="photo size in the plan, megapixels")
    ap.add_argument("--skip-engines", action="store_true", help="stages and plan only")
    ap.add_argument("--write", action="store_true", help=f"write the tables into {DOC.relative_to(ROOT)}")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(2)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    work = pathlib.Path(tempfile.mkdtemp(prefix="scale-"))
    try:
        import ray

        rv = ray.__version__
    except ImportError:
        rv = "not installed"
    try:
        facts: dict = {"ratios": {}, "load": []}
        engines, shift = [], ""
        if not args.skip_engines:
            engines, facts = bench_engines(args, work)
            shift = bench_group_shift(args, work)
        stages, costs = bench_stages(args, work)
        vrows, video = bench_video(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    head = (f"`python -m benchmarks.scale {' '.join(sys.argv[1:])}` on {when}: {cpu_name()}, {os.cpu_count()} "
            f"logical CPUs, torch {torch.__version__}, ray {rv}, model `{args.model}`; \"load\" is the 1-minute load "
            f"average after each run (2.0 = both cores busy; above that, other jobs shared them).\n\n")
    parts = [head]
    if engines:
        parts.append(f"{args.photos} photos {args.size}x{args.size}, one masked face each; {facts.get('summary', '')} "
                     f"(local, round 1). Speed vs local: the local run of the same round over the Ray run's wall "
                     f"time, start-up included.\n\n")
        parts.append(table(["run", "wall s", "photos/s (wall)", "speed vs local", "photos/s (steady)",
                            "start-up s", "same bytes as local", "load"], engines) + "\n" + shift)
    parts.append(table(["photos", "stage", "wall ms", "CPU ms (all threads)"], stages) + "\n")
    parts.append(table(["video 1280x720, 25 fps", "frames/s (wall)", "CPU-ms/frame", ""], vrows) + "\n")
    parts.append(f"Plan: {args.nodes} nodes x {args.node_cores} cores, photos of {args.plan_mp:g} MP with one "
                 "face (stage costs linear in pixels between the two sizes measured), video as measured "
                 "(720p, one face in every frame: the upper bound). Hours = CPU-seconds x count / "
                 f"({args.nodes} x {args.node_cores} cores) / 3600, at full CPU use.\n\n")
    parts.append(table(["job", "cost per item", "time", "bottleneck"], plan(args, costs, video, facts)))
    text = "".join(parts)
    print(text)
    if args.write:
        from benchmarks.common import write

        write(DOC, text, "<!-- benchmarks.scale:begin -->", "<!-- benchmarks.scale:end -->")


if __name__ == "__main__":
    main()
