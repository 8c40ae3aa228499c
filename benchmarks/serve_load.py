"""Load test of the HTTP API: N requests, C at a time; every request must be answered 200, or
refused at once with 429/503, and none may be lost (connection error) or hang (client timeout).

    python -m benchmarks.serve_load [--requests 200] [--concurrency 8] [--model jdsr-x4]
                                    [--workers 1] [--queue 16] [--url http://127.0.0.1:7860]

Without ``--url`` a server is started in this process on 127.0.0.1 (``--workers``/``--queue``
as ``facerestore serve``). The photo is the 128-px masked astronaut of the web app's examples
(one face). Prints counts by status, p50/p95/max latency of the answered requests, and
throughput (answered requests per second of wall time). Exit 1 if any request was lost or hung.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import io
import json
import statistics
import sys
import time


def one(client, url: str, photo: bytes) -> tuple[str, float]:
    """One request: (status or failure kind, seconds)."""
    import httpx

    t0 = time.perf_counter()
    try:
        r = client.post(url + "/api/restore", files={"image": ("astronaut.png", photo, "image/png")})
        return str(r.status_code), time.perf_counter() - t0
    except httpx.TimeoutException:
        return "hung", time.perf_counter() - t0
    except httpx.TransportError as exc:
        return f"lost ({type(exc).__name__})", time.perf_counter() - t0


def load(url: str, photo: bytes, requests: int, concurrency: int, timeout: float) -> dict:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with httpx.Client(timeout=timeout, limits=limits) as client:
        one(client, url, photo)  # warm-up: detector and model loaded, not counted
        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            results = list(pool.map(lambda _i: one(client, url, photo), range(requests)))
        wall = time.perf_counter() - t0
    counts = collections.Counter(code for code, _ in results)
    ok = sorted(s for code, s in results if code == "200")
    refused = sorted(s for code, s in results if code in ("429", "503"))
    pct = lambda xs, q: xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")  # noqa: E731
    return {"requests": requests, "concurrency": concurrency, "counts": dict(counts), "wall_s": round(wall, 2),
            "ok_p50_s": round(pct(ok, 0.5), 3), "ok_p95_s": round(pct(ok, 0.95), 3),
            "ok_max_s": round(max(ok, default=float("nan")), 3),
            "ok_mean_s": round(statistics.fmean(ok), 3) if ok else None,
            "refused_p95_s": round(pct(refused, 0.95), 3) if refused else None,
            "throughput_ok_per_s": round(len(ok) / wall, 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--url", default=None, help="A running server (else one is started here).")
    ap.add_argument("--model", default="jdsr-x4")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--queue", type=int, default=16)
    ap.add_argument("--timeout", type=float, default=120.0, help="Client timeout: a request past it is 'hung'.")
    args = ap.parse_args(argv)
    from PIL import Image

    from facerestore.serve import ServeConfig
    from facerestore.serve.background import serve_in_thread
    from facerestore.serve.ui import example_photo

    buf = io.BytesIO()
    Image.fromarray(example_photo(128)).save(buf, format="PNG")
    config = ServeConfig(model=args.model, device="cpu", workers=args.workers, queue=args.queue, ui=False,
                         timeout=args.timeout)
    with (contextlib.nullcontext((args.url, None)) if args.url else serve_in_thread(config)) as (url, _app):
        report = load(url, buf.getvalue(), args.requests, args.concurrency, args.timeout)
    report.update(model=args.model, workers=args.workers, queue=args.queue)
    print(json.dumps(report, indent=2))
    bad = {k: v for k, v in report["counts"].items() if k not in ("200", "429", "503")}
    if bad:
        print(f"error: requests lost, hung or failed: {bad}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
