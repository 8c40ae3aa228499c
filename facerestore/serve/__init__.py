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

import os

# before gradio is imported anywhere: no telemetry, no version check, no Hub look-ups
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from .config import MB, ServeConfig, is_loopback  # noqa: E402,F401  (after the environment is set)


def build_app(config: ServeConfig, engine=None):
    """The ASGI app (FastAPI with the Gradio UI mounted); see :func:`.api.build_app`."""
    from .api import build_app as _build

    return _build(config, engine)
