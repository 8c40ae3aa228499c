"""Restoring large collections on a Ray cluster (``facerestore restore --engine ray``): resumable,
nothing lost, nothing done twice.

The driver (the process that runs the command) lists the inputs, claims their outputs (the same
:class:`~facerestore.options.OutputNaming` rules as the local engine), skips what a previous run
already did, and hands the rest to Ray Data as *units*: up to :data:`~facerestore.files.PHOTO_GROUP`
photos (their faces share a forward pass, as in the local engine), ``batch_size`` aligned crops,
or one video (tracking needs the whole clip). ``map_batches`` runs the units through a pool of
:class:`~facerestore.cluster_worker.RestoreActor` (a callable class: each actor builds one
:class:`~facerestore.restore.Restorer` and keeps it) that read, restore and write with the same
:class:`~facerestore.files.FileRestorer` as the local engine, so the output tree is the same, byte
for byte.

The run manifest (:mod:`facerestore.run_manifest`, ``OUT/.facerestore/manifest.parquet``: one row
per input) is the ledger: the driver appends rows as results stream back, so a run that crashes, is
killed or is interrupted resumes where it stopped; at most the units in flight are redone, and
outputs are written atomically (temporary file + rename), so redoing one never leaves a partial
file. Temporaries left by a killed worker are removed by the driver
(:func:`~facerestore.run_manifest.remove_temporaries`).

Ray itself is optional (``pip install 'facerestore[ray]'``); this module imports it only in the
functions that need it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import time
from collections.abc import Callable
from typing import Any, Optional

from .cluster_worker import RestoreActor, RunConfig
from .errors import FaceRestoreError
from .files import PHOTO_GROUP, Stats
from .options import OutputNaming
from .run_manifest import FAILED, Manifest, remove_temporaries

#: the extra that brings Ray Data (and pyarrow)
RAY_EXTRA = "ray"
#: CPU left free of actors for Ray Data's own tasks (reading the unit list, the driver's streaming):
#: with 2 CPUs, 2 actors of 1 CPU each starved the read tasks and the job hung (issue 37)
RESERVE_CPU = 0.5
#: times Ray retries a unit whose worker died (killed, out of memory); after that its inputs are
#: tried once more one by one, then recorded as failed
TASK_RETRIES = 2


class EngineError(FaceRestoreError):
    """The Ray engine cannot run (Ray missing, no cluster, output folder busy): one line, exit 2."""


def require_ray() -> None:
    """Ray Data and pyarrow importable, else an :class:`EngineError` naming the extra to install."""
    try:
        import pyarrow  # noqa: F401
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise EngineError(f"--engine ray needs Ray Data ({exc.name or exc} is not installed): "
                          f"pip install 'facerestore[{RAY_EXTRA}]'") from None


# ------------------------------------------------------------------------------------------------
# the actor pool
# ------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Pool:
    """``workers`` actors of ``num_cpus`` logical CPUs (and ``num_gpus``) each, running torch on
    ``threads`` threads."""

    workers: int
    num_cpus: float
    num_gpus: float
    threads: int


def plan_pool(nodes: list[dict], workers: Optional[int] = None, gpu: bool = False) -> Pool:
    """Size the actor pool from the alive nodes' resources (``[{"CPU": 2.0, "GPU": 0.0}, ...]``).

    CPU only: by default one actor per CPU of each node, on one torch thread each (on 2 cores two
    1-thread actors ran 0.93-0.98x the local engine, one 2-thread actor 0.51-0.61x: a 2-thread team
    stalls whenever Ray's own processes take a core; the outputs are the same bytes on any thread
    count, ``plugins/attention.py``); each actor holds a model (~0.4 GB). The actors share each
    node's CPUs less :data:`RESERVE_CPU`, so Ray Data's own tasks always get CPU (fractional
    ``num_cpus``; whole CPUs deadlocked on 2 cores). With ``gpu``: one actor per GPU, 1 GPU and one
    CPU each (a fraction on a small node). ``workers`` overrides the count (more actors than the
    default share the CPUs more thinly)."""
    cpus = [float(n.get("CPU", 0)) for n in nodes]
    if not cpus or max(cpus) <= 0:
        raise EngineError("the Ray cluster has no CPU")
    if gpu:
        gpus = sum(float(n.get("GPU", 0)) for n in nodes)
        if gpus <= 0:
            raise EngineError("--device cuda: the Ray cluster has no GPU")
        n = workers or int(gpus)
        per_actor = min(1.0, (min(cpus) - RESERVE_CPU) / math.ceil(n / len(nodes)))
        return Pool(n, round(max(per_actor, 0.1), 3), min(1.0, gpus / n), 1)
    usable = [max(c - RESERVE_CPU, c / 2) for c in cpus]
    n = workers or sum(max(1, int(c)) for c in cpus)
    # the actors are spread over the nodes: each must fit on the smallest node with its share
    per_node = math.ceil(n / len(nodes))
    per_actor = math.floor(min(usable) / per_node * 1000) / 1000
    return Pool(n, per_actor, 0.0, max(1, math.ceil(per_actor - 1e-6)))


# ------------------------------------------------------------------------------------------------
# the driver
# ------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Plan:
    """What a run will do: ``units`` to send, inputs already ``done`` (skipped), and inputs that
    fail before any work (listing errors, output clashes) as ready-made ``failed`` rows."""

    units: list[tuple[str, list]]
    done: int
    failed: list[dict]
    keys: list[str] = dataclasses.field(default_factory=list)

    @property
    def todo(self) -> int:
        return sum(len(items) for _, items in self.units)


def plan_units(found: list, config: RunConfig, manifest: Manifest, is_video: Callable[[Any], bool]) -> Plan:
    """Claim every output in input order (photos, then videos, as the local engine does), group the
    photos as the local engine does (:data:`~facerestore.files.PHOTO_GROUP` at a time, or
    ``batch_size`` aligned crops), and keep the units that hold an input the manifest does not have
    as done. A unit goes whole or not at all: its faces share a forward pass, and a model's output
    moves by about 1e-6 with the batch it is in, enough to change a few 8-bit pixel values; so a
    resumed run writes the bytes a clean run writes."""
    naming = OutputNaming(config.out, config.options)
    fp = config.fingerprint()
    photos, videos, failed, keys = [], [], [], []
    ordered = [it for it in found if it.error or not is_video(it.path)] + \
              [it for it in found if not it.error and is_video(it.path)]
    for it in ordered:
        video = not it.error and is_video(it.path)
        rel = pathlib.Path(it.relative).as_posix()
        keys.append(rel)
        error = it.error
        if not error:
            target = naming.video_target(it) if video else naming.target(it)
            error = naming.claim(it, target)
        if error:
            failed.append(dict(relative=rel, path=str(it.path), kind="video" if video else "photo", size=-1,
                               mtime_ns=-1, sha256="", status="rejected", outputs="[]", faces=0, restored=0,
                               skipped=0, seconds=0.0, error=error, config=fp, worker="driver",
                               finished=time.time(), video="", messages=json.dumps([f"error: {error}"]),
                               stats=json.dumps({**vars(Stats()), "failed": 1})))
            continue
        (videos if video else photos).append(([str(it.path), rel], manifest.is_done(rel, pathlib.Path(it.path), fp)))
    group = config.batch_size if config.aligned else PHOTO_GROUP
    kind = "aligned" if config.aligned else "photos"
    units = [(kind, photos[i:i + group]) for i in range(0, len(photos), group)]
    units += [("video", [v]) for v in videos]
    todo = [(k, [it for it, _ in unit]) for k, unit in units if not all(done for _, done in unit)]
    done = sum(len(unit) for _, unit in units) - sum(len(items) for _, items in todo)
    return Plan(todo, done, failed, keys)


@dataclasses.dataclass
class RunResult:
    """``stats`` of this run (the local engine's summary), inputs ``done_before`` (skipped),
    ``processed`` now, ``failed`` now; ``status``: the collection's inputs per manifest status
    after the run; ``stopped`` by ``--max-failures``."""

    stats: Stats
    done_before: int
    processed: int
    failed: int
    stopped: bool
    manifest: pathlib.Path
    status: dict
    pool: Optional[Pool] = None


def connect(address: Optional[str]) -> bool:
    """Join the cluster at ``address`` (``auto``, ``HOST:PORT``, ``ray://HOST:PORT``), or start an
    embedded local Ray bound to 127.0.0.1 (no dashboard); True when this call started Ray (and so
    must shut it down). An already initialised Ray (a test's local cluster) is used as it is."""
    import logging

    if address is None:
        # a local cluster on the loopback interface only (Ray binds its node address otherwise);
        # read when ray is first imported
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        # the embedded cluster is this process's own: Ray's note that it uses token auth is noise
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    check_reachable(address)
    import ray

    if ray.is_initialized():
        return False
    try:
        ray.init(address=address, include_dashboard=False if address is None else None,
                 logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise EngineError(f"cannot start or join {where}: {' '.join(str(exc).split())[:300]}") from None
    return True


def check_reachable(address: Optional[str], timeout: float = 5.0) -> None:
    """A ``HOST:PORT`` or ``ray://HOST:PORT`` address must accept a TCP connection within
    ``timeout`` seconds, else an :class:`EngineError` at once (Ray itself retries for minutes)."""
    import socket

    if not address or address == "auto":
        return
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        raise EngineError(f"--address must be auto, HOST:PORT or ray://HOST:PORT, got {address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise EngineError(f"no Ray cluster answers at {address} ({exc.strerror or exc})") from None


def alive_nodes() -> list[dict]:
    import ray

    return [n["Resources"] for n in ray.nodes() if n.get("Alive")]


def run(found: list, config: RunConfig, *, is_video: Callable[[Any], bool], address: Optional[str] = None,
        workers: Optional[int] = None, max_failures: Optional[int] = None,
        check: Optional[Callable[[], None]] = None, echo: Callable[[str], None] = print,
        progress: Optional[Callable[[int], Any]] = None,
        video_done: Optional[Callable[[str, str, dict], None]] = None,
        on_row: Optional[Callable[[dict], None]] = None) -> RunResult:
    """Restore ``found`` (from :func:`facerestore.io.iter_inputs`) on Ray as ``config`` says.

    ``check()`` is called once there is work to do, before Ray starts (the command builds the model
    there, so a bad model name is a one-line error, exit 2); ``echo`` gets the messages (``error:``,
    ``warning:``, ``note:``, the resume line); ``video_done(src, dst, summary)`` each video's
    :class:`~facerestore.video.VideoSummary` fields; ``progress(total)`` returns a context manager
    with ``advance()``; ``on_row(row)`` sees each result row.
    More than ``max_failures`` failed inputs stop the run (``stopped``); a rerun resumes it."""
    import contextlib

    require_ray()
    t0 = time.perf_counter()
    out = pathlib.Path(config.out)
    manifest = Manifest(out)
    manifest.lock()
    try:
        manifest.load(echo)
        plan = plan_units(found, config, manifest, is_video)
        stats, failed, processed, stopped = Stats(), 0, 0, False
        run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
        if plan.done:
            echo(f"resume: {plan.done} of {len(found)} inputs already done ({manifest.path}); "
                 f"{plan.todo + len(plan.failed)} to do")
        pool = None
        started = False
        noted = set()

        def take(row: dict) -> bool:
            nonlocal failed, processed
            row["run"] = run_id
            for msg in json.loads(row.get("messages") or "[]"):
                kind = msg.split(":", 1)[0]
                if kind == "note":
                    if kind in noted:
                        continue
                    noted.add(kind)
                echo(msg)
            if row.get("video") and video_done is not None:
                video_done(row["path"], str(out / json.loads(row["outputs"])[0]), json.loads(row["video"]))
            if row.get("stats"):
                for k, v in json.loads(row["stats"]).items():
                    setattr(stats, k, getattr(stats, k) + v)
            row["outputs"] = json.loads(row["outputs"]) if isinstance(row["outputs"], str) else row["outputs"]
            manifest.add(row)
            processed += 1
            failed += row["status"] in FAILED
            if on_row is not None:
                on_row(row)
            return max_failures is not None and failed > max_failures

        try:
            bar = progress(plan.todo + len(plan.failed)) if progress else contextlib.nullcontext()
            with bar:
                for row in plan.failed:
                    stopped = take(row) or stopped
                    getattr(bar, "advance", lambda: None)()
                if plan.units and not stopped:
                    if check is not None:
                        check()
                    started = connect(address)
                    pool = plan_pool(alive_nodes(), workers, gpu=_wants_gpu(config.device))
                    remove_temporaries(out)
                    try:
                        stopped = _execute(plan.units, config, pool, take, bar, manifest)
                    except ray_errors() as exc:
                        raise EngineError(f"the Ray job failed: {ray_cause(exc)}") from None
        finally:
            manifest.flush()
            if started:
                import ray

                ray.shutdown()
        remove_temporaries(out)
        manifest.compact()
        stats.seconds = time.perf_counter() - t0
        status: dict[str, int] = {}
        for key in plan.keys:
            st = manifest.rows[key]["status"] if key in manifest.rows else "not done"
            status[st] = status.get(st, 0) + 1
        return RunResult(stats, plan.done, processed, failed, stopped, manifest.path, status, pool)
    finally:
        manifest.unlock()


def ray_errors() -> tuple:
    """Ray's own failures (an actor that cannot start, a lost cluster)."""
    import ray.exceptions

    return (ray.exceptions.RayError,)


def ray_cause(exc: BaseException) -> str:
    """One line for a Ray failure: the error at the bottom of the remote traceback (an actor that
    could not build its restorer: ``FaceRestoreError: unknown model ...``), else the first line."""
    import re

    lines = [re.sub(r"\x1b\[[0-9;]*m", "", ln).strip() for ln in str(exc).splitlines()]
    causes = [ln for ln in lines if re.match(r"^[\w.]+(Error|Exception|Interrupt)\b.*?: ", ln)]
    return (causes[-1] if causes else next((ln for ln in lines if ln), type(exc).__name__))[:300]


def _wants_gpu(device: str) -> bool:
    import ray

    if device == "cpu":
        return False
    has = any(float(n.get("GPU", 0)) > 0 for n in alive_nodes()) if ray.is_initialized() else False
    return has or device.startswith("cuda")


def _execute(units: list, config: RunConfig, pool: Pool, take: Callable[[dict], bool], bar, manifest: Manifest) -> bool:
    """Run the units through the actor pool; inputs whose unit never came back (its worker died
    :data:`TASK_RETRIES` + 1 times) are sent once more one by one, then recorded as failed. True
    when ``take`` asked to stop (too many failures)."""
    import warnings

    import ray.data

    quiet_ray_data()
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.max_errored_blocks = -1  # a unit whose worker keeps dying is recorded, not fatal
    ctx.print_on_execution_start = False
    advance = getattr(bar, "advance", lambda: None)
    seen: set[str] = set()
    for attempt in range(2):
        ds = ray.data.from_items([{"kind": k, "items": json.dumps(items)} for k, items in units],
                                 override_num_blocks=max(1, len(units)))
        with warnings.catch_warnings():
            # Ray 2.60 deprecates passing actor options as keywords but has no named parameter
            # for this one yet: without it a unit whose worker keeps dying is retried forever
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
            ds = ds.map_batches(RestoreActor, batch_size=1, batch_format="numpy",
                                fn_constructor_kwargs={"config": config.to_json(), "threads": pool.threads},
                                compute=ray.data.ActorPoolStrategy(size=pool.workers), num_cpus=pool.num_cpus,
                                num_gpus=pool.num_gpus or None, max_task_retries=TASK_RETRIES)
        for table in ds.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=0):
            for row in table.to_pylist():
                seen.add(row["relative"])
                stop = take(row)
                advance()
                manifest.maybe_flush()
                if stop:
                    return True
        lost = [(k, [it]) for k, items in units for it in items if it[1] not in seen]
        if not lost:
            return False
        units = lost if attempt == 0 else []
    for k, items in lost:
        path, rel = items[0]
        msg = f"{path}: its worker process died {TASK_RETRIES + 1} times on it, then again alone (crash or out of memory)"
        row = dict(relative=rel, path=path, kind="video" if k == "video" else "photo", size=-1, mtime_ns=-1,
                   sha256="", status="failed", outputs="[]", faces=0, restored=0, skipped=0, seconds=0.0, error=msg,
                   config=config.fingerprint(), worker="", finished=time.time(), video="",
                   messages=json.dumps([f"error: {msg}"]), stats=json.dumps({**vars(Stats()), "failed": 1}))
        advance()
        if take(row):
            return True
    return False


def quiet_ray_data() -> None:
    """Ray Data's INFO lines and its note that its progress bars are off (ours is on) stay out of
    the command's output; its warnings and errors do not."""
    import logging

    class _Drop(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return "Progress bars disabled" not in record.getMessage()

    log = logging.getLogger("ray.data")
    log.setLevel(logging.WARNING)
    if not any(isinstance(f, _Drop) for f in log.filters):
        for h in log.handlers + logging.getLogger("ray").handlers:
            h.addFilter(_Drop())
        log.addFilter(_Drop())


