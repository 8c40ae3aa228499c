"""Where training reports go: JSONL (always), TensorBoard (when installed), a rich progress bar,
and the running loss means a log line reports."""

from __future__ import annotations

import json
import math
import pathlib
import time
from typing import Any


class RunLogger:
    """``log.jsonl`` in the run folder plus TensorBoard event files under ``tb/`` when the
    ``tensorboard`` package is importable. Only rank 0 creates one."""

    def __init__(self, run_dir: pathlib.Path, tensorboard: bool = True):
        self.path = run_dir / "log.jsonl"
        self._fh = open(self.path, "a", encoding="utf-8")
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except Exception:  # noqa: BLE001 - tensorboard not installed or broken: JSONL only
                self.tb = None
            else:
                self.tb = SummaryWriter(str(run_dir / "tb"))

    def write(self, record: dict[str, Any]) -> None:
        record = {"time": round(time.time(), 3), **record}
        self._fh.write(json.dumps(record, default=_jsonable) + "\n")
        self._fh.flush()
        if self.tb is not None:
            step = int(record.get("step", 0))
            for key, value in _scalars(record):
                self.tb.add_scalar(key, value, step)

    def close(self) -> None:
        self._fh.close()
        if self.tb is not None:
            self.tb.flush()
            self.tb.close()


def _scalars(record: dict[str, Any], prefix: str = ""):
    for k, v in record.items():
        if k in ("time", "step", "event"):
            continue
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            yield from _scalars(v, f"{name}/")
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            tag = f"{record.get('event', 'train')}/{name}" if not prefix else name
            yield tag, float(v)


def _jsonable(v: Any) -> Any:
    return float(v) if hasattr(v, "__float__") else str(v)


class Progress:
    """rich progress bar: step/total, loss summary, images/s, ETA. A no-op when disabled."""

    def __init__(self, total: int, start: int, enabled: bool):
        self.enabled = enabled
        if not enabled:
            return
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        self._p = RichProgress(
            TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), transient=False)
        self._p.start()
        self._task = self._p.add_task("train", total=total, completed=start, info="")

    def update(self, step: int, info: str | None = None) -> None:
        if self.enabled:
            if info is None:
                self._p.update(self._task, completed=step)
            else:
                self._p.update(self._task, completed=step, info=info)

    def print(self, message: str) -> None:
        if self.enabled:
            self._p.console.print(message)
        else:
            print(message, flush=True)

    def close(self) -> None:
        if self.enabled:
            self._p.stop()


class LossMeter:
    """Running sums of the logged losses and images since the last log line. Each loss is
    averaged over the steps that computed it (an ``every = k`` term, the critic), not over all."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.images = 0
        self.t0 = time.perf_counter()

    def add(self, logs: dict[str, float], images: int) -> None:
        for k, v in logs.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
            self.counts[k] = self.counts.get(k, 0) + 1
        self.images += images

    def flush(self) -> tuple[dict[str, float], float]:
        """Mean of each loss and images/s since the last flush; starts a new window."""
        now = time.perf_counter()
        mean = {k: v / self.counts[k] for k, v in self.sums.items()}
        ips = self.images / max(now - self.t0, 1e-9)
        self.sums, self.counts, self.images, self.t0 = {}, {}, 0, now
        return mean, ips
