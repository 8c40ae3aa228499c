"""The run manifest of ``restore --engine ray`` (:mod:`facerestore.cluster`): the ledger that makes
a run resumable. ``OUT/.facerestore/manifest.parquet`` holds one row per input (its path, size,
mtime and sha256, status, outputs, faces, seconds, error, the config, run and worker); the driver
appends rows as results stream back, as small Parquet parts under ``OUT/.facerestore/parts/`` (one
every :data:`FLUSH_SECONDS` at most, and at the end or on Ctrl-C), folded into the manifest when the
run ends. A driver that crashes leaves its parts: the next run reads them.

Also here: :func:`remove_temporaries`, for the temporaries of atomic writes a killed worker left.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import re
import time
from collections.abc import Callable, Iterable

from .errors import FaceRestoreError

#: the run's own folder inside the output folder (not part of the output tree)
STATE_DIR = ".facerestore"
MANIFEST = "manifest.parquet"
#: the driver writes the rows it received at most this often (and at the end, and on Ctrl-C)
FLUSH_SECONDS = 2.0
#: statuses of a finished input; ``rejected`` inputs (unreadable, not images, too large) are not
#: read again while they are unchanged; ``failed`` ones (write errors, exceptions, dead workers)
#: are tried again by the next run
DONE = ("ok", "copied")
FAILED = ("failed", "rejected")


def file_facts(path: str | os.PathLike[str], content: bool = True) -> tuple[int, int, str]:
    """``(size, mtime_ns, sha256)`` of a file (sha256 empty when ``content`` is False)."""
    st = os.stat(path)
    if not content:
        return st.st_size, st.st_mtime_ns, ""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return st.st_size, st.st_mtime_ns, h.hexdigest()


# ------------------------------------------------------------------------------------------------
# the manifest
# ------------------------------------------------------------------------------------------------
def _schema():
    import pyarrow as pa

    return pa.schema([("relative", pa.string()), ("path", pa.string()), ("kind", pa.string()),
                      ("size", pa.int64()), ("mtime_ns", pa.int64()), ("sha256", pa.string()),
                      ("status", pa.string()), ("outputs", pa.list_(pa.string())), ("faces", pa.int64()),
                      ("restored", pa.int64()), ("skipped", pa.int64()), ("seconds", pa.float64()),
                      ("error", pa.string()), ("config", pa.string()), ("run", pa.string()),
                      ("worker", pa.string()), ("finished", pa.float64())])


COLUMNS = ("relative", "path", "kind", "size", "mtime_ns", "sha256", "status", "outputs", "faces", "restored",
           "skipped", "seconds", "error", "config", "run", "worker", "finished")


class Manifest:
    """``OUT/.facerestore/manifest.parquet`` plus the parts a running (or crashed) driver appended:
    the latest row per input (keyed by its path relative to the output folder, as outputs are)."""

    def __init__(self, out: str | os.PathLike[str]):
        self.out = pathlib.Path(out)
        self.dir = self.out / STATE_DIR
        self.path = self.dir / MANIFEST
        self.parts = self.dir / "parts"
        self.rows: dict[str, dict] = {}
        self.pending: list[dict] = []
        self._last_flush = time.monotonic()
        self._n = 0
        self._lock = None

    def lock(self) -> None:
        """One driver per output folder at a time (an advisory lock on ``OUT/.facerestore/lock``)."""
        import fcntl

        self.dir.mkdir(parents=True, exist_ok=True)
        fh = open(self.dir / "lock", "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            raise FaceRestoreError(f"another run is writing to {self.out} (lock {self.dir / 'lock'}); "
                              "wait for it or choose another -o folder") from None
        self._lock = fh

    def unlock(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def load(self, warn: Callable[[str], None] = print) -> "Manifest":
        import pyarrow.parquet as pq

        files = ([self.path] if self.path.is_file() else []) + sorted(self.parts.glob("*.parquet"))
        for f in files:
            try:
                rows = pq.read_table(f).to_pylist()
            except Exception as exc:  # noqa: BLE001 - a part cut short by a crash: its inputs are redone
                warn(f"warning: {f}: unreadable manifest part ({exc}); its inputs will be redone")
                continue
            for row in rows:
                self.rows[row["relative"]] = row
        return self

    def add(self, row: dict) -> None:
        self.rows[row["relative"]] = row
        self.pending.append(row)

    def maybe_flush(self) -> None:
        if time.monotonic() - self._last_flush >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Write the rows received since the last flush as one new part (atomically)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from .checkpoint import atomic_write_bytes

        self._last_flush = time.monotonic()
        if not self.pending:
            return
        table = pa.Table.from_pylist([{k: r.get(k) for k in COLUMNS} for r in self.pending], schema=_schema())
        self._n += 1
        name = f"{time.time_ns():020d}-{os.getpid()}-{self._n:06d}.parquet"
        atomic_write_bytes(self.parts / name, lambda tmp: pq.write_table(table, tmp))
        self.pending = []

    def compact(self) -> None:
        """Fold the parts into the manifest (latest row per input), then remove them."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from .checkpoint import atomic_write_bytes

        self.flush()
        parts = sorted(self.parts.glob("*.parquet"))
        rows = [{k: r.get(k) for k in COLUMNS} for _, r in sorted(self.rows.items())]
        table = pa.Table.from_pylist(rows, schema=_schema())
        atomic_write_bytes(self.path, lambda tmp: pq.write_table(table, tmp))
        for p in parts:
            p.unlink(missing_ok=True)

    def is_done(self, relative: str, path: pathlib.Path, config: str) -> bool:
        """True when this input is finished under this config: status ok/copied (or rejected), the
        same content (same size, and the same mtime or else the same sha256) and every output
        still there."""
        row = self.rows.get(relative)
        if row is None or row["status"] not in DONE + ("rejected",) or row["config"] != config:
            return False
        try:
            size, mtime, _ = file_facts(path, content=False)
        except OSError:
            return False
        if size != row["size"]:
            return False
        if (mtime != row["mtime_ns"] or str(path) != row["path"]) and file_facts(path)[2] != row["sha256"]:
            return False
        return all((self.out / o).is_file() for o in row["outputs"] or [])


_TEMPORARY = re.compile(r"^\..+\.[a-z0-9_]{8}\.(tmp|part\.\w+)$")


def remove_temporaries(out: str | os.PathLike[str]) -> int:
    """Remove the temporaries of atomic writes (``.NAME.XXXXXXXX.tmp``, a video's
    ``.STEM.XXXXXXXX.part.mp4``) that a killed worker left in ``out``; the number removed. Called by
    the driver when no worker of its run is writing."""
    n = 0
    for folder, dirs, files in os.walk(out):
        dirs[:] = [d for d in dirs if not (folder == os.fspath(out) and d == STATE_DIR)]
        for name in files:
            if _TEMPORARY.match(name):
                try:
                    os.unlink(os.path.join(folder, name))
                    n += 1
                except FileNotFoundError:
                    pass
    return n


def summary_counts(manifest_path: str | os.PathLike[str]) -> dict[str, int]:
    """Inputs per status in a manifest (``{"ok": 18, "copied": 1, "failed": 2}``)."""
    import pyarrow.parquet as pq

    counts: dict[str, int] = {}
    for s in pq.read_table(manifest_path, columns=["status"]).column("status").to_pylist():
        counts[s] = counts.get(s, 0) + 1
    return counts


def iter_rows(manifest_path: str | os.PathLike[str]) -> Iterable[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(manifest_path).to_pylist()
