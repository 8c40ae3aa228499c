"""`facerestore serve`: the web app and the HTTP API on one port (docs/serve.md).

A host that is not loopback needs a token: the server refuses to start without one, since
anyone who can reach the port could otherwise use the machine's CPU/GPU and read its errors.
"""

from __future__ import annotations

from typing import Optional

import typer

from ..defaults import DEFAULT_MODEL
from ..models import known_models

from . import user_errors


def register(app: typer.Typer) -> None:
    @app.command("serve")
    @user_errors
    def serve(
        host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; not loopback needs --token."),
        port: int = typer.Option(7860, "--port", min=1, max=65535, help="Port to listen on."),
        workers: int = typer.Option(1, "--workers", min=1, help="Photos restored at once (threads, one model)."),
        model: str = typer.Option(DEFAULT_MODEL, "--model", "-m",
                                  help="Model name (see `facerestore doctor`: "
                                  f"{', '.join(known_models())}) or .safetensors path."),
        device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
        token: Optional[str] = typer.Option(None, "--token", envvar="FACERESTORE_TOKEN",
                                            help="Bearer token every request must carry (env FACERESTORE_TOKEN)."),
        max_upload_mb: float = typer.Option(20.0, "--max-upload-mb", min=0.001, help="Largest upload (413 above)."),
        max_pixels: int = typer.Option(40_000_000, "--max-pixels", min=1,
                                       help="Largest photo, and result, in pixels (400 above)."),
        timeout: float = typer.Option(60.0, "--timeout", min=0.1,
                                      help="Seconds per request, waiting included (504 after)."),
        queue: int = typer.Option(16, "--queue", min=0, help="Requests that may wait for a worker (429 beyond)."),
        ui: bool = typer.Option(True, "--ui/--no-ui", help="Serve the web app at / (else the API only)."),
    ) -> None:
        """Serve a local web app (Gradio) and an HTTP API (POST /api/restore, /docs) over one shared model."""
        from ..errors import FaceRestoreError
        from ..serve import ServeConfig, is_loopback

        if not is_loopback(host) and not token:
            raise FaceRestoreError(f"--host {host} is reachable from other machines: set --token (or "
                                   "FACERESTORE_TOKEN) so that only clients with the token can use it")
        try:
            import uvicorn

            from ..serve.api import build_app
        except ImportError as exc:
            raise FaceRestoreError(f"`facerestore serve` needs the web extra ({exc.name} is missing): "
                                   "pip install 'facerestore[web]'") from None
        config = ServeConfig(host=host, port=port, model=model, device=device, workers=workers, queue=queue,
                             timeout=timeout, max_upload_mb=max_upload_mb, max_pixels=max_pixels, token=token, ui=ui)
        asgi = build_app(config)
        _print_access_log()
        shown = f"[{host}]" if ":" in host else host
        typer.echo(f"facerestore serve: http://{shown}:{port}/ (API docs /docs; model {model}, "
                   f"{workers} worker(s), queue {queue}{', token required' if token else ''}); Ctrl+C stops")
        uvicorn.run(asgi, host=host, port=port, log_level="warning", access_log=False, timeout_graceful_shutdown=5)


def _print_access_log() -> None:
    """Each request as one line on stderr (uvicorn's own access log stays off: ours has the time)."""
    import logging

    from ..serve.api import ACCESS_LOG

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    ACCESS_LOG.addHandler(handler)
    ACCESS_LOG.setLevel(logging.INFO)
    ACCESS_LOG.propagate = False
