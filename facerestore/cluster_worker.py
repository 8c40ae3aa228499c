"""What runs in each actor of ``restore --engine ray`` (:mod:`facerestore.cluster`): the run's
:class:`RunConfig` and :class:`RestoreActor`, the ``map_batches`` callable class that builds one
:class:`~facerestore.restore.Restorer` per actor and restores units of work with the local engine's
:class:`~facerestore.files.FileRestorer`, so both engines write the same files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import socket
import time
from typing import Optional

from .files import ItemRecord, Stats
from .options import RestoreOptions
from .run_manifest import COLUMNS, file_facts


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """The model, options and output folder of a run: everything an actor needs to build its
    restorer and write what the local engine would."""

    out: str
    model: str
    options: RestoreOptions
    device: str = "auto"
    batch_size: int = 16
    precision: str = "fp32"
    aligned: bool = False
    save_faces: bool = False
    compare: bool = False
    video: dict = dataclasses.field(default_factory=dict)

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "RunConfig":
        d = json.loads(text)
        d["options"] = RestoreOptions(**d["options"])
        return cls(**d)

    def fingerprint(self) -> str:
        """What decides the outputs' bytes (model, options, precision, extras, video settings), not
        where or how fast they are made (device, batch size): a rerun with another fingerprint
        redoes every input."""
        d = dataclasses.asdict(self)
        for k in ("out", "device", "batch_size"):
            d.pop(k)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


class RestoreActor:
    """A ``map_batches`` callable class: builds one restorer (model + detector) when the actor
    starts, then restores one unit per call (``kind``: ``photos``, ``aligned`` or ``video``;
    ``items``: JSON ``[[path, relative], ...]``) through :class:`~facerestore.files.FileRestorer`,
    returning one row per input."""

    def __init__(self, config: str, threads: int = 0):
        import torch

        from .restore import Restorer

        if threads:
            torch.set_num_threads(threads)
        self.config = RunConfig.from_json(config)
        self.fingerprint = self.config.fingerprint()
        c = self.config
        self.restorer = Restorer.from_pretrained(c.model, device=c.device, batch_size=c.batch_size,
                                                 precision=c.precision, options=c.options)
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    def __call__(self, batch: dict) -> dict:
        rows: list[dict] = []
        for kind, items in zip(batch["kind"], batch["items"]):
            rows.extend(self.unit(str(kind), [_Item(p, r) for p, r in json.loads(str(items))]))
        return {k: [r[k] for r in rows] for k in ROW_COLUMNS}

    def unit(self, kind: str, items: list) -> list[dict]:
        """Restore a unit; when it raises, its inputs one by one, so only the input that raises
        fails (recorded with the exception)."""
        facts = {}
        for it in items:
            try:
                facts[it.relative] = file_facts(it.path)
            except OSError:
                facts[it.relative] = (-1, -1, "")
        t0 = time.perf_counter()
        try:
            records, messages, stats = self._attempt(kind, items)
        except Exception as exc:  # noqa: BLE001 - one input's exception must not stop the others
            if len(items) > 1:
                return [row for it in items for row in self.unit(kind, [it])]
            it = items[0]
            msg = f"{it.path}: {type(exc).__name__}: {' '.join(str(exc).split()) or 'no message'}"
            stats = Stats()
            stats.failed = 1
            records = [ItemRecord(it, _KIND[kind], "failed", error=msg)]
            messages = [f"error: {msg}"]
        seconds = (time.perf_counter() - t0) / max(1, len(items))
        by_item = {r.item.relative: r for r in records}
        rows = []
        for i, it in enumerate(items):
            rec = by_item.get(it.relative) or ItemRecord(it, _KIND[kind], "failed", error=f"{it.path}: no result")
            size, mtime, sha = facts[it.relative]
            out = pathlib.Path(self.config.out)
            video = dataclasses.asdict(rec.summary) if rec.summary is not None else None
            rows.append(dict(relative=it.relative.as_posix(), path=str(it.path), kind=rec.kind, size=size, mtime_ns=mtime,
                             sha256=sha, status=rec.status,
                             outputs=json.dumps([pathlib.Path(o).relative_to(out).as_posix() for o in rec.outputs]),
                             faces=rec.faces, restored=rec.restored, skipped=rec.skipped, seconds=seconds,
                             error=rec.error, config=self.fingerprint, worker=self.worker, finished=time.time(),
                             video=json.dumps(video) if video else "",
                             messages=json.dumps(messages if i == 0 else []),
                             stats=json.dumps(vars(stats)) if i == 0 else ""))
        return rows

    def _attempt(self, kind: str, items: list):
        from .files import FileRestorer

        c, records, messages = self.config, [], []
        say = lambda prefix: (lambda msg: messages.append(f"{prefix}: {msg}"))  # noqa: E731
        run = FileRestorer(self.restorer, c.out, c.options, save_faces=c.save_faces, compare=c.compare,
                           fail=say("error"), warn=say("warning"), note=say("note"), record=records.append)
        if kind == "video":
            run.videos(items, c.video)
        elif kind == "aligned":
            run.aligned(items)
        else:
            run.photos(items)
        return records, messages, run.stats


_KIND = {"photos": "photo", "aligned": "aligned", "video": "video"}

#: the columns of the rows the actors return: the manifest's, plus a video's summary, and on each
#: unit's first row its messages and counts (for the driver's display and closing summary)
ROW_COLUMNS = tuple(c for c in COLUMNS if c != "run") + ("video", "messages", "stats")


class _Item:
    """An input as :class:`~facerestore.io.InputFile` has it (``path``, ``relative``, no
    ``error``: the driver kept those), rebuilt in an actor from two strings."""

    def __init__(self, path: str, relative: str):
        self.path, self.relative = pathlib.Path(path), pathlib.Path(relative)
        self.error: Optional[str] = None
