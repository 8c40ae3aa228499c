"""`facerestore serve`: a local web app (Gradio) and an HTTP API (FastAPI) over one shared model.

* :mod:`.engine`: the model(s), loaded once and shared; a bounded queue in front of a pool of
  worker threads; upload decoding and result encoding through :mod:`facerestore.io`.
* :mod:`.api`: the FastAPI app (``POST /api/restore``, ``GET /api/health``, ``/docs``), the token
  and body-size guard, and :func:`build_app`, which mounts the Gradio UI at ``/``.
* :mod:`.ui`: the Gradio Blocks (before/after slider, options, downloads, examples).

Offline by construction: analytics off, a theme without web fonts, no share link; the browser
test checks that the page asks nothing of any host but the server. Docs: ``docs/serve.md``.
Nothing here is imported by ``facerestore --help``; gradio and fastapi load with this package.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os

from ..defaults import DEFAULT_MODEL

# before gradio is imported anywhere: no telemetry, no version check, no Hub look-ups
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("HF_HUB_OFFLINE", "1")

MB = 1024 * 1024


@dataclasses.dataclass
class ServeConfig:
    """What ``facerestore serve`` was asked for; the defaults are the command's."""

    host: str = "127.0.0.1"
    port: int = 7860
    model: str = DEFAULT_MODEL
    device: str = "auto"
    #: restorations that run at once (threads sharing the one model)
    workers: int = 1
    #: requests that may wait for a worker; beyond that the server answers 429
    queue: int = 16
    #: seconds a request may take, waiting included, before it is answered 504
    timeout: float = 60.0
    max_upload_mb: float = 20.0
    #: decoded pixels per photo (and per result, after upscaling)
    max_pixels: int = 40_000_000
    max_upscale: float = 4.0
    token: str | None = None
    ui: bool = True

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MB)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses: the only binds allowed without a token."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def build_app(config: ServeConfig, engine=None):
    """The ASGI app (FastAPI with the Gradio UI mounted); see :func:`.api.build_app`."""
    from .api import build_app as _build

    return _build(config, engine)
