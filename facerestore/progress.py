"""One progress display for every command that works through many items (restore, degrade,
eval, prepare): a rich bar with count, rate and ETA on a terminal; a plain line every few
seconds when stderr is not a terminal (logs, CI); nothing with ``quiet``."""

from __future__ import annotations

import sys
import time
from typing import Optional


class ItemProgress:
    """``with ItemProgress(total, "restore", unit="photos") as p: ... p.advance()``.

    ``total`` may be None when unknown (no ETA then). Shown only for more than one item.
    """

    def __init__(self, total: Optional[int], label: str, *, unit: str = "items", quiet: bool = False,
                 every: float = 5.0, stream=None):
        self.total, self.label, self.unit, self.every = total, label, unit, every
        self.stream = stream or sys.stderr
        self.done = 0
        self.enabled = not quiet and (total is None or total > 1)
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._bar = None
        self._task = None
        self._t0 = self._last = 0.0

    def __enter__(self) -> "ItemProgress":
        self._t0 = self._last = time.perf_counter()
        if self.enabled and self.tty:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn)

            self._bar = Progress(TextColumn(f"{self.label}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                                 console=Console(file=self.stream), transient=True)
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total, rate="")
        return self

    def rate(self) -> float:
        return self.done / max(time.perf_counter() - self._t0, 1e-9)

    def line(self) -> str:
        rate = self.rate()
        text = f"{self.label}: {self.done}" + (f"/{self.total}" if self.total else "") + f" {self.unit}, {rate:.1f}/s"
        if self.total and rate > 0:
            text += f", ETA {max(0.0, (self.total - self.done) / rate):.0f}s"
        return text

    def advance(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(self._task, advance=n, rate=f"{self.rate():.1f} {self.unit}/s")
            return
        now = time.perf_counter()
        if now - self._last >= self.every:
            self._last = now
            print(self.line(), file=self.stream, flush=True)

    def update_to(self, done: int, total: Optional[int] = None) -> None:
        """Callback form ``progress(done, total)`` (e.g. frames of a video whose count is known
        only once decoding starts): sets the total and advances to ``done``."""
        if total is not None:
            self.total = max(total, done)
            if self._bar is not None:
                self._bar.update(self._task, total=self.total)
        if done > self.done:
            self.advance(done - self.done)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()
