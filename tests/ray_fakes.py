"""Fakes for the Ray workers of ``tests/test_cluster.py``, installed by Ray itself: the test cluster
(and the drivers the tests start) name :func:`setup` as the job's ``worker_process_setup_hook``,
so it runs in every worker process before the first actor is built. The engine's code is not
changed for tests; the workers' copy of the restore service is patched, as ``monkeypatch`` patches
the test process's own copy for the local engine.

* the face detector is ``test_restore.FakeDetector`` (the astronaut's measured face; no MTCNN);
* ``FR_TEST_RAISE=NAME``: restoring a group that holds the input ``NAME`` raises ``RuntimeError``;
* ``FR_TEST_KILL=NAME`` and ``FR_TEST_MARKER=PATH``: the first worker to write the output ``NAME``
  writes part of it to its temporary file, then kills its own process with SIGKILL (once: the
  marker file says it happened);
* ``FR_TEST_SLOW=S``: each group of photos takes S seconds more (so a test can interrupt a run
  in its middle).
"""

from __future__ import annotations

import os
import pathlib
import signal
import time


def setup() -> None:
    import facerestore.checkpoint as checkpoint
    import facerestore.files as files
    import facerestore.restore as restore_mod
    from test_restore import FakeDetector

    restore_mod.default_detector = lambda device="cpu", name="masked": FakeDetector()
    raise_name = os.environ.get("FR_TEST_RAISE", "")
    kill_name, marker = os.environ.get("FR_TEST_KILL", ""), os.environ.get("FR_TEST_MARKER", "")
    slow = float(os.environ.get("FR_TEST_SLOW", "0") or 0)

    process = files.FileRestorer._process

    def faulty_process(self, group):
        if raise_name and any(g[0].path.name == raise_name for g in group):
            raise RuntimeError(f"injected fault on {raise_name}")
        if slow:
            time.sleep(slow)
        return process(self, group)

    files.FileRestorer._process = faulty_process
    write = checkpoint.atomic_write_bytes

    def dying_write(path, writer):
        if not (kill_name and marker and pathlib.Path(path).name == kill_name and not os.path.exists(marker)):
            return write(path, writer)
        pathlib.Path(marker).write_text(str(os.getpid()))

        def half_then_die(tmp):
            writer(tmp)
            with open(tmp, "r+b") as fh:  # a partial file, as a kill in the middle of a write leaves
                fh.truncate(max(1, os.path.getsize(tmp) // 2))
            os.kill(os.getpid(), signal.SIGKILL)

        return write(path, half_then_die)

    checkpoint.atomic_write_bytes = dying_write
