"""The shared model and the bounded queue in front of it.

One :class:`Engine` per server: one :class:`~facerestore.restore.Restorer` per model (the served
one at start, the other known names on first use), shared by all requests; a request's options
(upscale, min/max face, detector, fidelity) become the :class:`~facerestore.options.RestoreOptions`
of its call, as for every other front door. Work runs in ``workers`` threads; at most ``workers + queue`` requests are admitted
at a time, the rest are refused at once (429), so a flood costs no memory and no request hangs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import os
import pathlib
import re
import shutil
import tempfile
import threading
import time
import uuid
from typing import Any, Callable, Optional

import torch
from torch import Tensor

from ..defaults import DEFAULT_DETECTOR
from ..options import RestoreOptions
from .config import ServeConfig


class ServeError(Exception):
    """An answer other than success: HTTP ``status`` and a one-line ``message``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = " ".join(str(message).split())


@dataclasses.dataclass(frozen=True)
class Options:
    """Per-request restore options (``model=None``: the served model)."""

    model: Optional[str] = None
    fidelity: Optional[float] = None
    upscale: float = 1.0
    detector: str = DEFAULT_DETECTOR
    min_face: float = 0.0
    max_face: float = 0.0


@dataclasses.dataclass
class Outcome:
    """A finished restoration: encoded ``data`` of ``media_type`` and its ``summary``."""

    data: bytes
    media_type: str
    summary: dict
    image: Optional[Tensor] = None
    before: Optional[Tensor] = None


FORMATS = {"png": (".png", "image/png"), "jpeg": (".jpg", "image/jpeg")}


class Gate:
    """Admission counter: ``capacity`` requests in flight (running or waiting), no more."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.active = 0
        self.closed = False
        self._lock = threading.Lock()

    def enter(self) -> None:
        with self._lock:
            if self.closed:
                raise ServeError(503, "the server is shutting down")
            if self.active >= self.capacity:
                raise ServeError(429, f"busy: {self.active} requests in progress or queued; retry shortly")
            self.active += 1

    def leave(self) -> None:
        with self._lock:
            self.active -= 1


class Engine:
    """Models, detectors and the worker pool of one server (thread-safe)."""

    #: every model takes a fidelity (generative ones inside the mask too)
    supports_fidelity = True
    fidelity_default = RestoreOptions().fidelity

    def __init__(self, config: ServeConfig):
        from ..models import known_models

        self.config = config
        self.models = list(dict.fromkeys([config.model, *known_models()]))
        self._lock = threading.RLock()
        self._bases: dict[str, Any] = {}
        self.gate = Gate(config.workers + config.queue)
        self._pool = concurrent.futures.ThreadPoolExecutor(config.workers, thread_name_prefix="facerestore")
        self.tmp = pathlib.Path(tempfile.mkdtemp(prefix="facerestore-serve-"))
        self.base(config.model)  # fail at start (exit 2), not on the first request

    # -- models ---------------------------------------------------------------------------------
    def base(self, model: Optional[str]):
        """The Restorer for ``model`` (one of :attr:`models`), loaded on first use, then shared."""
        from ..restore import Restorer

        name = model or self.config.model
        if name not in self.models:
            raise ServeError(400, f"unknown model {name!r}; this server offers {', '.join(self.models)}")
        with self._lock:
            if name not in self._bases:
                self._bases[name] = Restorer.from_pretrained(name, device=self.config.device)
            return self._bases[name]

    @property
    def detectors(self) -> list[str]:
        from ..components import default_registry

        return default_registry().names("detector")

    def restorer(self, opts: Options):
        """The shared Restorer of ``opts.model`` and the request's :class:`RestoreOptions`."""
        from ..options import OptionError

        if opts.detector not in self.detectors:
            raise ServeError(400, f"unknown detector {opts.detector!r}; known: {', '.join(self.detectors)}")
        base = self.base(opts.model)
        fidelity = base.options.fidelity if opts.fidelity is None else opts.fidelity
        try:
            return base, base.options.replace(fidelity=fidelity, upscale=opts.upscale, detector=opts.detector,
                                              min_face=opts.min_face, max_face=opts.max_face,
                                              max_pixels=self.config.max_pixels)
        except OptionError as exc:
            raise ServeError(400, str(exc)) from None

    # -- queue ----------------------------------------------------------------------------------
    def submit(self, fn: Callable, *args: Any) -> concurrent.futures.Future:
        """Admit a job or refuse it at once (429 full, 503 closing)."""
        self.gate.enter()
        try:
            fut = self._pool.submit(fn, *args)
        except RuntimeError:
            self.gate.leave()
            raise ServeError(503, "the server is shutting down") from None
        fut.add_done_callback(lambda _f: self.gate.leave())
        return fut

    async def run(self, fn: Callable, *args: Any) -> Any:
        """Run a job in the pool from async code; 504 after ``timeout`` seconds (waiting included)."""
        fut = self.submit(fn, *args)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(fut), self.config.timeout)
        except asyncio.TimeoutError:
            fut.cancel()  # a job still waiting never runs; a running one finishes, then frees its slot
            raise ServeError(504, f"timed out after {self.config.timeout:g} s") from None

    def run_sync(self, fn: Callable, *args: Any) -> Any:
        """The same from a thread (the Gradio UI's handlers)."""
        fut = self.submit(fn, *args)
        try:
            return fut.result(timeout=self.config.timeout)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise ServeError(504, f"timed out after {self.config.timeout:g} s") from None

    def stats(self) -> dict:
        active = self.gate.active
        running = min(active, self.config.workers)
        return {"running": running, "waiting": active - running, "capacity": self.gate.capacity}

    def close(self) -> None:
        self.gate.closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- one photo --------------------------------------------------------------------------------
    def process(self, data: bytes, filename: str, opts: Options, fmt: str = "png", keep: bool = False) -> Outcome:
        """Decode an upload, restore its faces, encode the result (runs in a worker thread).
        ``keep``: also return the tensors (the UI shows them)."""
        from ..errors import FaceRestoreError

        try:
            return self._process(data, filename, opts, fmt, keep)
        except FaceRestoreError as exc:  # e.g. a model whose weights are missing, a detector without its package
            raise ServeError(400, str(exc)) from None

    def _process(self, data: bytes, filename: str, opts: Options, fmt: str, keep: bool) -> Outcome:
        t0 = time.perf_counter()
        from ..io import check_output_pixels

        img, info = self.decode(data, filename)
        h, w = img.shape[-2:]
        r, ropts = self.restorer(opts)
        check_output_pixels(filename, w, h, ropts.upscale, ropts.max_pixels)
        notes = [f"{info.frames} frames, only the first is restored"] if info.frames > 1 else []
        res = r.restore_many([img], [self._detect(r, ropts, img, notes)], ropts)[0]
        encoded, media = self.encode(res.image, info, fmt)
        summary = {"file": filename, "width": w, "height": h, "model": r.name, "faces_found": res.n_found,
                   "faces_restored": res.n_restored, "faces_skipped": res.n_skipped,
                   "skipped": sorted({f.reason for f in res.faces if not f.restored}),
                   "notes": notes + (["no face found"] if res.n_found == 0 else []),
                   "seconds": round(time.perf_counter() - t0, 3)}
        return Outcome(encoded, media, summary, res.image if keep else None, img if keep else None)

    @staticmethod
    def _detect(r, ropts, img: Tensor, notes: list[str]):
        """Faces of one photo; a detector failing on an odd image means no faces, as in restore."""
        from ..errors import FaceRestoreError
        from ..interfaces import Detection

        try:
            return r.detect([img], ropts)[0]
        except FaceRestoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. MTCNN on a 1x1 image
            notes.append(f"face detection failed ({type(exc).__name__}); photo returned unchanged")
            return Detection(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, 5, 2))

    def decode(self, data: bytes, filename: str):
        """Upload bytes -> ``io.read_image`` (all its guards) through a private temporary file;
        errors name the upload, not the temporary path."""
        from ..errors import InputImageError
        from ..io import read_image

        path = self.tmp / f"in-{uuid.uuid4().hex}{_safe_suffix(filename)}"
        try:
            path.write_bytes(data)
            return read_image(path, self.config.max_pixels)
        except InputImageError as exc:
            raise ServeError(400, str(exc).replace(str(path), filename)) from None
        finally:
            path.unlink(missing_ok=True)

    def encode(self, image: Tensor, info, fmt: str) -> tuple[bytes, str]:
        """A result tensor -> file bytes through ``io.write_image`` (alpha, grayscale, 16 bits kept)."""
        import torch.nn.functional as F

        from ..io import write_image

        suffix, media = FORMATS[fmt]
        alpha = info.alpha
        if alpha is not None and tuple(alpha.shape[-2:]) != tuple(image.shape[-2:]):
            alpha = F.interpolate(alpha[None], size=image.shape[-2:], mode="bilinear", align_corners=False)[0]
        path = self.tmp / f"out-{uuid.uuid4().hex}{suffix}"
        try:
            write_image(path, image, alpha=alpha, bits=info.bits, grayscale=info.grayscale,
                        icc_profile=info.icc_profile)
            return path.read_bytes(), media
        finally:
            path.unlink(missing_ok=True)


def _safe_suffix(filename: str) -> str:
    """The upload's extension if it is a plain one (the reader goes by content anyway)."""
    ext = os.path.splitext(filename or "")[1].lower()
    return ext if re.fullmatch(r"\.[a-z0-9]{1,5}", ext) else ".img"
