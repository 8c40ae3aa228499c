"""A server in a background thread of this process, for tests, benchmarks and screenshots: it binds
127.0.0.1 on a free port before starting, so callers never race for a port."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from . import ServeConfig, build_app


@contextlib.contextmanager
def serve_in_thread(config: ServeConfig, engine: Any = None, start_timeout: float = 120.0) -> Iterator[tuple[str, Any]]:
    """Yield ``(base_url, app)`` while uvicorn serves ``build_app(config)`` on 127.0.0.1; stop after."""
    import uvicorn

    app = build_app(config, engine)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="facerestore-serve")
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", app
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()
