"""`facerestore restore --engine ray` (facerestore.cluster) on a local Ray cluster bound to 127.0.0.1
with 2 logical CPUs: the same output tree as the local engine, a failing input and a killed worker,
an interrupted driver rerun, bad files recorded; and the parts that need no Ray (pool sizing,
manifest, temporaries, the missing-extra message).

The workers' face detector is ``test_restore.FakeDetector`` and their faults are injected by
``tests/ray_fakes.py``, which Ray runs in each worker process (``worker_process_setup_hook``).
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # a local cluster on 127.0.0.1 only

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

import facerestore.restore as restore_mod  # noqa: E402
from facerestore import cluster, run_manifest  # noqa: E402
from facerestore.cli import app  # noqa: E402
from facerestore.io import IMAGE_EXTENSIONS, iter_inputs  # noqa: E402
from facerestore.video import VIDEO_SUFFIXES  # noqa: E402

from test_restore import FakeDetector, skdata  # noqa: E402

TESTS = pathlib.Path(__file__).resolve().parent
needs_ray = pytest.mark.skipif(
    any(__import__("importlib").util.find_spec(m) is None for m in ("ray", "pyarrow")),
    reason="needs the 'ray' extra (pip install 'facerestore[ray]'; `make setup` installs it)")


# ------------------------------------------------------------------------------------------------
# no Ray needed
# ------------------------------------------------------------------------------------------------
def test_pool_leaves_cpu_for_ray_datas_own_tasks():
    """2 actors of 1 CPU each on 2 CPUs deadlocked (the read tasks got none): every pool leaves
    RESERVE_CPU of each node free, and each actor fits on one node."""
    for cpus, default in ((1, 1), (2, 2), (4, 4), (32, 32)):  # one actor per CPU
        for workers in (None, 1, 2, 3, 8):
            pool = cluster.plan_pool([{"CPU": float(cpus)}], workers)
            assert pool.workers == (workers or default)
            assert pool.workers * pool.num_cpus <= cpus - min(cluster.RESERVE_CPU, cpus / 2)
            assert pool.threads >= 1
    two = cluster.plan_pool([{"CPU": 2.0}])
    assert (two.workers, two.num_cpus, two.threads) == (2, 0.75, 1)
    one = cluster.plan_pool([{"CPU": 2.0}], 1)
    assert (one.workers, one.num_cpus, one.threads) == (1, 1.5, 2)
    nodes = cluster.plan_pool([{"CPU": 8.0}, {"CPU": 4.0}])  # 12 actors, 6 per node fit on the 4-CPU node
    assert nodes.workers == 12 and nodes.num_cpus * 6 <= 4 - cluster.RESERVE_CPU and nodes.threads == 1
    gpu = cluster.plan_pool([{"CPU": 8.0, "GPU": 1.0}, {"CPU": 8.0, "GPU": 1.0}], gpu=True)
    assert (gpu.workers, gpu.num_gpus) == (2, 1.0)
    with pytest.raises(cluster.EngineError, match="no GPU"):
        cluster.plan_pool([{"CPU": 8.0}], gpu=True)


def test_remove_temporaries_only_removes_atomic_write_leftovers(tmp_path):
    keep = ["a.png", ".hidden", "x.tmp", ".a.png.tmp", ".b.png.short.tmp", "c.part.mp4"]
    gone = [".a.png.abc_1234.tmp", ".clip.k2j4h5g6.part.mp4"]
    (tmp_path / "sub").mkdir()
    for name in keep + gone:
        (tmp_path / "sub" / name).write_bytes(b"x")
    (tmp_path / run_manifest.STATE_DIR).mkdir()
    (tmp_path / run_manifest.STATE_DIR / ".m.parquet.abcdefgh.tmp").write_bytes(b"x")  # the run's own: left
    assert run_manifest.remove_temporaries(tmp_path) == 2
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == sorted(keep)
    assert (tmp_path / run_manifest.STATE_DIR / ".m.parquet.abcdefgh.tmp").exists()


def test_engine_ray_without_the_extra_names_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    res = CliRunner().invoke(app, ["restore", str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), "--engine", "ray"])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "pip install 'facerestore[ray]'" in lines[0], res.output
    assert not (tmp_path / "o").exists()


@needs_ray
def test_unreachable_address_is_one_line_at_once(tmp_path):
    """Ray retries a dead address for minutes; the engine says so at once (exit 2)."""
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    t = time.perf_counter()
    res = on_ray(tmp_path / "a.png", "-o", tmp_path / "o", "-m", "bicubic", "--address", f"127.0.0.1:{port}")
    assert res.exit_code == 2 and f"no Ray cluster answers at 127.0.0.1:{port}" in res.output, res.output
    assert time.perf_counter() - t < 30
    res = on_ray(tmp_path / "a.png", "-o", tmp_path / "o", "-m", "bicubic", "--address", "nowhere")
    assert res.exit_code == 2 and "--address must be auto, HOST:PORT or ray://HOST:PORT" in res.output


def test_help_does_not_import_ray():
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom facerestore.cli import app\n"
            "assert CliRunner().invoke(app, ['restore', '--help']).exit_code == 0\n"
            "print([m for m in ('ray', 'pyarrow', 'facerestore.cluster') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


def test_engine_options_need_engine_ray(tmp_path):
    res = CliRunner().invoke(app, ["restore", str(tmp_path), "--workers", "2", "--max-failures", "1"])
    assert res.exit_code == 2 and "--workers, --max-failures: only with --engine ray" in res.output, res.output


@needs_ray
def test_manifest_resumes_from_parts_and_checks_content(tmp_path):
    """Rows flushed as parts (a crashed driver never compacts) are read back; an input is done only
    with the same config, the same content (a touched but equal file is still done, a changed one
    is not) and its outputs present."""
    src, out = tmp_path / "a.png", tmp_path / "out"
    src.write_bytes(b"pixels")
    (out / "o").mkdir(parents=True)
    (out / "o" / "a.png").write_bytes(b"restored")
    size, mtime, sha = run_manifest.file_facts(src)
    m = run_manifest.Manifest(out)
    m.add(dict(relative="a.png", path=str(src), kind="photo", size=size, mtime_ns=mtime, sha256=sha, status="ok",
               outputs=["o/a.png"], faces=1, restored=1, skipped=0, seconds=0.1, error="", config="c1",
               run="r", worker="w", finished=0.0))
    m.flush()
    assert not m.path.exists() and len(list(m.parts.glob("*.parquet"))) == 1
    back = run_manifest.Manifest(out).load()
    assert back.is_done("a.png", src, "c1")
    assert not back.is_done("a.png", src, "c2")          # other options
    os.utime(src, ns=(mtime + 10**9, mtime + 10**9))
    assert back.is_done("a.png", src, "c1")              # touched, same bytes (sha256 checked)
    src.write_bytes(b"pixelz")
    assert not back.is_done("a.png", src, "c1")          # same size, other bytes
    src.write_bytes(b"pixels")
    os.utime(src, ns=(mtime, mtime))
    (out / "o" / "a.png").unlink()
    assert not back.is_done("a.png", src, "c1")          # output gone
    back.compact()
    assert back.path.exists() and not list(back.parts.glob("*.parquet"))
    assert run_manifest.summary_counts(back.path) == {"ok": 1}


def test_resumed_units_keep_a_clean_runs_groups(tmp_path):
    """After an interruption the units are the clean run's groups of 8, sent whole (a model's output
    moves with its batch): 10 of 20 done -> the first group skipped, the second sent with its 2
    done photos, the third as it was."""
    from facerestore.cluster_worker import RunConfig
    from facerestore.options import RestoreOptions

    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    for i in range(20):
        (src / f"p{i:02d}.png").write_bytes(b"x" * (i + 1))
    found = list(iter_inputs([src]))
    config = RunConfig(out=str(out), model="bicubic", options=RestoreOptions())
    m = run_manifest.Manifest(out)
    for it in found[:10]:
        rel = it.relative.as_posix()
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(b"restored")
        size, mtime, sha = run_manifest.file_facts(it.path)
        m.add(dict(relative=rel, path=str(it.path), size=size, mtime_ns=mtime, sha256=sha, status="ok",
                   outputs=[rel], config=config.fingerprint()))
    plan = cluster.plan_units(found, config, m, is_video=lambda p: False)
    names = [[pathlib.Path(p).name for p, _ in items] for _, items in plan.units]
    assert names == [[f"p{i:02d}.png" for i in range(8, 16)], [f"p{i:02d}.png" for i in range(16, 20)]]
    assert plan.done == 8 and plan.todo == 12


# ------------------------------------------------------------------------------------------------
# on a local Ray cluster
# ------------------------------------------------------------------------------------------------
def _job_env(**env: str) -> dict:
    # the workers import ray_fakes from tests/ and facerestore from this checkout
    return {"worker_process_setup_hook": "ray_fakes.setup",
            "env_vars": {"PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent)]), **env}}


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A local cluster of 2 logical CPUs on 127.0.0.1; its workers get ``ray_fakes.setup``, with a
    failing input ``boom.png`` and a worker that dies writing ``kill.png`` (only test (b) has them)."""
    if any(__import__("importlib").util.find_spec(m) is None for m in ("ray", "pyarrow")):
        pytest.skip("needs the 'ray' extra (pip install 'facerestore[ray]'; `make setup` installs it)")
    import logging

    import ray

    marker = tmp_path_factory.mktemp("faults") / "killed"
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False,
             runtime_env=_job_env(FR_TEST_RAISE="boom.png", FR_TEST_KILL="kill.png", FR_TEST_MARKER=str(marker)))
    try:
        assert [n["NodeManagerAddress"] for n in ray.nodes()] == ["127.0.0.1"]
        yield {"address": ray.get_runtime_context().gcs_address, "marker": marker}
    finally:
        ray.shutdown()


def write_photos(folder: pathlib.Path, n: int, names: dict | None = None) -> list[pathlib.Path]:
    """``n`` astronauts with a little noise (each a different file, each with the face the fake
    detector knows) in two subfolders, in four formats."""
    a = skdata.astronaut().astype(np.int16)
    rng = np.random.default_rng(n)
    paths = []
    for i in range(n):
        name = (names or {}).get(i) or f"p{i:02d}{('.png', '.jpg', '.webp', '.tif')[i % 4]}"
        p = folder / ("a" if i % 3 else "b") / name
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(a + rng.integers(-3, 4, a.shape), 0, 255).astype(np.uint8)).save(p)
        paths.append(p)
    return paths


def tree(folder: pathlib.Path) -> dict[str, tuple[int, bytes]]:
    """Every file under ``folder`` but the run's own state: relative path -> (mode, bytes)."""
    return {p.relative_to(folder).as_posix(): (p.stat().st_mode, p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file() and run_manifest.STATE_DIR not in p.parts}


def local(*args):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(restore_mod, "default_detector", lambda device="cpu", name="masked": FakeDetector())
        return CliRunner().invoke(app, ["restore", *map(str, args)])


def on_ray(*args):
    with pytest.MonkeyPatch.context() as mp:  # the driver builds the model and detector once, to fail early
        mp.setattr(restore_mod, "default_detector", lambda device="cpu", name="masked": FakeDetector())
        return CliRunner().invoke(app, ["restore", *map(str, args), "--engine", "ray"])


def rows(out: pathlib.Path) -> dict[str, dict]:
    return {r["relative"]: r for r in run_manifest.iter_rows(out / run_manifest.STATE_DIR / run_manifest.MANIFEST)}


def summary(output: str) -> str:
    (line,) = [ln for ln in output.splitlines() if ln.startswith("summary:")]
    return line.rsplit(",", 1)[0]  # without the time


@pytest.fixture(scope="module")
def collection(tmp_path_factory, ray_cluster):
    """20 photos, two whose outputs clash (in different units), one short clip and the bad-input corpus
    (tests/badinputs.py), restored by both engines (the Ray one with 2 workers)."""
    pytest.importorskip("av")
    from badinputs import build_corpus
    from test_video import make_clip

    root = tmp_path_factory.mktemp("collection")
    src = root / "src"
    write_photos(src / "photos", 20)
    (src / "dups").mkdir()  # with --ext png both would be dups/dup_r.png: the second is refused, though
    for ext in (".jpg", ".png"):  # 8 photos (dup.k*.png, sorted between them) put it in another unit
        Image.fromarray(skdata.astronaut()).save(src / "dups" / f"dup{ext}")
    for i in range(8):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(
            src / "dups" / f"dup.k{i}.png")
    (src / "clips").mkdir()
    make_clip(src / "clips" / "masked.mp4", seconds=0.6)
    cases = build_corpus(src / "odd")
    opts = ["-m", "bicubic", "-q", "-w", "0.3", "--suffix", "_r", "--ext", "png"]
    res_local = local(src, "-o", root / "local", *opts)
    t = time.perf_counter()
    res_ray = on_ray(src, "-o", root / "ray", *opts, "--workers", "2")
    return dict(root=root, src=src, cases=cases, local=res_local, ray=res_ray, opts=opts,
                ray_seconds=time.perf_counter() - t)


def test_a_ray_tree_equals_local_tree(collection):
    """(a) names, modes and bytes of every output, photos and the clip, as the local engine's;
    the same closing summary; a manifest row per input."""
    c = collection
    assert c["local"].exit_code == 1 and c["ray"].exit_code == 1, c["ray"].output  # the corpus has bad files
    ours, theirs = tree(c["root"] / "ray"), tree(c["root"] / "local")
    assert len(theirs) > 30 and any(k.endswith("masked.mp4") for k in theirs)
    assert sorted(ours) == sorted(theirs)
    assert [k for k in theirs if ours[k] != theirs[k]] == []
    assert summary(c["ray"].output) == summary(c["local"].output)
    assert "21 restored" in summary(c["ray"].output) and "1 videos" in summary(c["ray"].output)
    manifest = rows(c["root"] / "ray")
    assert len(manifest) == len(list(iter_inputs([c["src"]], IMAGE_EXTENSIONS + VIDEO_SUFFIXES)))
    clip = manifest["src/clips/masked.mp4"]
    assert clip["status"] == "ok" and clip["outputs"] == ["src/clips/masked.mp4"] and clip["kind"] == "video"
    photo = manifest["src/photos/a/p01.jpg"]
    assert photo["outputs"] == ["src/photos/a/p01_r.png"]
    dup = manifest["src/dups/dup.png"]
    assert dup["status"] == "rejected" and "is already the output of" in dup["error"], dup
    assert photo["status"] == "ok" and photo["faces"] == 1 and photo["seconds"] > 0
    assert photo["sha256"] == run_manifest.file_facts(c["src"] / "photos" / "a" / "p01.jpg")[2]
    assert len({r["worker"] for r in manifest.values() if r["worker"] != "driver"}) == 2  # --workers 2


def test_d_bad_files_recorded_with_reasons(collection):
    """(d) every unreadable file of the corpus (corrupt, not an image, too many pixels, empty) is a
    ``rejected`` row whose reason is the local engine's message for it; readable odd files are done."""
    c = collection
    manifest = rows(c["root"] / "ray")
    said = {ln.split(": ", 2)[1]: ln.split(": ", 2)[2] for ln in c["local"].output.splitlines()
            if ln.startswith("error: ")}
    bad = [k for k in c["cases"] if not k.readable and k.needs is None and k.listed]
    assert {k.name for k in bad} >= {"zero_byte", "truncated_jpeg", "text_as_png", "bomb_header", "huge_12k"}
    for case in bad:
        row = manifest[f"src/odd/{case.path.relative_to(c['src'] / 'odd').as_posix()}"]
        assert row["status"] == "rejected" and row["outputs"] == [], row
        why = said[str(case.path)].replace(str(c["root"] / "local"), str(c["root"] / "ray"))  # a clash names OUT
        assert row["error"] == f"{case.path}: {why}", (row["error"], why)
    assert "exceeds the limit" in manifest["src/odd/huge_12k.png"]["error"]
    for case in c["cases"]:
        if case.readable and case.listed and case.needs is None:
            row = manifest[f"src/odd/{case.path.relative_to(c['src'] / 'odd').as_posix()}"]
            if case.name == "animated_webp":  # with --ext png its output is animated.gif's
                assert row["status"] == "rejected" and "is already the output of" in row["error"]
            else:
                assert row["status"] in run_manifest.DONE, row


def test_rerun_of_a_finished_run_does_no_work(collection):
    """Everything done (or rejected and unchanged): no restoration, Ray not even started (only the
    output clashes are checked again, by the driver); the tree is unchanged."""
    c = collection
    before = tree(c["root"] / "ray")
    t = time.perf_counter()
    res = on_ray(c["src"], "-o", c["root"] / "ray", *c["opts"], "--workers", "2")
    seconds = time.perf_counter() - t
    manifest = rows(c["root"] / "ray")
    n, clashes = len(manifest), sum("is already the output of" in r["error"] for r in manifest.values())
    assert clashes == 3  # dup.png, and in the corpus truncated.png and animated.webp (--ext png)
    assert f"resume: {n - clashes} of {n} inputs already done" in res.output, res.output
    assert "actor(s)" not in res.output  # no pool: Ray was not needed
    assert "summary: 0 photos, 0 faces found, 0 restored, 0 skipped, 0 without faces, 3 failed" in res.output
    assert res.exit_code == 1  # the collection still holds bad files
    assert tree(c["root"] / "ray") == before
    assert seconds < 10, seconds


def test_b_failing_input_and_killed_worker(tmp_path, ray_cluster):
    """(b) ``boom.png`` raises inside the service: recorded, the others go on; the worker writing
    ``kill.png`` dies (SIGKILL, half its temporary written): Ray restarts it and redoes its unit.
    Nothing lost, no partial or temporary file, every other output as the local engine's."""
    src = tmp_path / "src"
    paths = write_photos(src, 12, names={3: "boom.png", 7: "kill.png"})
    boom_key, kill_key = (f"src/{paths[i].relative_to(src).as_posix()}" for i in (3, 7))
    ref = local(src, "-o", tmp_path / "local", "-m", "bicubic", "-q")
    assert ref.exit_code == 0, ref.output
    res = on_ray(src, "-o", tmp_path / "ray", "-m", "bicubic", "-q", "--workers", "2")
    assert res.exit_code == 1, res.output
    assert ray_cluster["marker"].exists(), "no worker was killed"
    killed_pid = ray_cluster["marker"].read_text()
    manifest = rows(tmp_path / "ray")
    assert len(manifest) == 12
    boom = manifest[boom_key]
    assert boom["status"] == "failed" and "RuntimeError: injected fault on boom.png" in boom["error"]
    assert f"error: {boom['error']}" in res.output
    others = {k: r for k, r in manifest.items() if k != boom_key}
    assert {r["status"] for r in others.values()} == {"ok"}
    assert not manifest[kill_key]["worker"].endswith(f":{killed_pid}")  # redone by the new worker
    ours, theirs = tree(tmp_path / "ray"), tree(tmp_path / "local")
    assert sorted(ours) == sorted(k for k in theirs if k != boom_key)
    assert [k for k in ours if ours[k] != theirs[k]] == []
    assert "11 photos, 11 faces found, 11 restored, 0 skipped, 0 without faces, 1 failed" in res.output


def test_max_failures_stops_the_run(tmp_path, ray_cluster):
    """More than --max-failures failed inputs: the run stops there (a rerun would go on)."""
    src = tmp_path / "src"
    write_photos(src / "good", 2)
    (src / "bad").mkdir()
    for i in range(6):
        (src / "bad" / f"bad{i}.png").write_text("not an image")
    res = on_ray(src, "-o", tmp_path / "out", "-m", "bicubic", "-q", "--max-failures", "1")
    assert res.exit_code == 1 and "more than 1 inputs failed (--max-failures 1): stopped" in res.output, res.output
    manifest = rows(tmp_path / "out")
    assert sum(r["status"] == "rejected" for r in manifest.values()) == 2


def test_actor_that_cannot_start_is_one_line(tmp_path, ray_cluster):
    """A worker that cannot build its restorer (here: a model name only the driver skipped
    checking) ends the run with the cause from the worker's traceback, not a hang."""
    from facerestore.cluster_worker import RunConfig
    from facerestore.options import RestoreOptions

    write_photos(tmp_path / "src", 1)
    config = RunConfig(out=str(tmp_path / "out"), model="no-such-model", options=RestoreOptions())
    with pytest.raises(cluster.EngineError, match="the Ray job failed: .*unknown model 'no-such-model'"):
        cluster.run(list(iter_inputs([tmp_path / "src"])), config, is_video=lambda p: False)


def test_c_interrupted_driver_then_rerun(tmp_path, ray_cluster):
    """(c) a driver (its own process, joining the cluster with --address) is interrupted (SIGINT)
    once some units are recorded; the rerun processes only the inputs the manifest does not list as
    done, and the final tree equals a clean run's."""
    src = tmp_path / "src"
    n = 48  # 6 units: the interrupt lands while most are still to do
    write_photos(src, n)
    ref = local(src, "-o", tmp_path / "clean", "-m", "bicubic", "-q")
    assert ref.exit_code == 0
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(TESTS),
           "RAY_JOB_CONFIG_JSON_ENV_VAR": json.dumps({"runtime_env": _job_env(FR_TEST_SLOW="1.5")})}
    proc = subprocess.Popen([sys.executable, "-m", "facerestore.cli", "restore", str(src), "-o", str(out), "-m",
                             "bicubic", "-q", "--engine", "ray", "--address", ray_cluster["address"],
                             "--workers", "1"],  # one unit at a time: the interrupt lands mid-run
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            # a SIGINT the test process ignores (as Ray's workers may leave it) is
                            # inherited through exec, and Python then never raises KeyboardInterrupt
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    parts = out / run_manifest.STATE_DIR / "parts"
    deadline = time.monotonic() + 120
    while not (parts.is_dir() and any(parts.glob("*.parquet"))):
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "no unit recorded in 120 s"
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    text = proc.communicate(timeout=60)[0]
    assert proc.returncode == 130 and "interrupted" in text, text
    assert not (out / run_manifest.STATE_DIR / run_manifest.MANIFEST).exists()  # not compacted: the parts are the ledger
    first = run_manifest.Manifest(out).load().rows
    done_first = sum(r["status"] in run_manifest.DONE for r in first.values())
    assert 8 <= done_first < n, done_first
    whole = done_first // 8 * 8  # units go whole: a unit cut by the interrupt is redone whole
    res = on_ray(src, "-o", out, "-m", "bicubic", "-q")
    assert res.exit_code == 0, res.output
    assert f"resume: {whole} of {n} inputs already done" in res.output, res.output
    after = rows(out)
    runs = {r["run"] for r in first.values()}
    again = {k for k, r in after.items() if r["run"] not in runs}
    kept = {k for k, r in after.items() if r["run"] in runs}
    assert len(again) == n - whole and len(kept) == whole and kept <= set(first)
    assert f"summary: {n - whole} photos" in res.output
    assert tree(out) == tree(tmp_path / "clean")
