"""The HTTP API beside the web app, and the guard in front of both.

``POST /api/restore`` (multipart field ``image``) -> the restored photo (PNG; ``?format=jpeg``)
with its summary as JSON in the ``X-Facerestore-Summary`` header, or ``?format=json`` -> one JSON
body with the summary and the image as base64. ``GET /api/health``. OpenAPI docs at ``/docs``.
Every refusal is ``{"error": "<one line>"}`` with a 4xx/5xx status.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import http.cookies
import json
import logging
import re
import time
import urllib.parse
from typing import Literal, Optional

from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..defaults import DEFAULT_DETECTOR
from .. import __version__
from .config import ServeConfig
from .engine import Engine, Options, ServeError

#: multipart framing allowed on top of the image itself
MULTIPART_SLACK = 64 * 1024
COOKIE = "facerestore_token"
OPEN_PATHS = ("/api/health",)


def error(status: int, message: str, headers: Optional[dict] = None) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split())}, status_code=status, headers=headers)


def build_app(config: ServeConfig, engine: Optional[Engine] = None) -> FastAPI:
    """FastAPI app: the API routes, the Gradio UI at ``/`` (unless ``config.ui`` is False), the guard."""
    engine = engine or Engine(config)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        engine.close()

    app = FastAPI(title="facerestore", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Face restoration over HTTP: see docs/serve.md.")
    app.state.engine = engine
    _handlers(app)
    _routes(app, engine, config)
    if config.ui:
        from .ui import mount_ui

        mount_ui(app, engine, config)
    app.add_middleware(Guard, token=config.token, max_body=config.max_upload_bytes + MULTIPART_SLACK)
    app.add_middleware(AccessLog)  # outermost: refusals by the guard are logged too
    return app


def _handlers(app: FastAPI) -> None:
    """Every refusal as one line of JSON (FastAPI's default 422 body is a nested list)."""

    @app.exception_handler(ServeError)
    async def _serve_error(_req: Request, exc: ServeError):
        return error(exc.status, exc.message, {"Retry-After": "1"} if exc.status in (429, 503) else None)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_req: Request, exc: RequestValidationError):
        parts = [f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'request'}: {e.get('msg', 'invalid')}"
                 for e in exc.errors()]
        return error(422, "; ".join(parts) or "invalid request")

    @app.exception_handler(Exception)
    async def _bug(_req: Request, exc: Exception):  # logged by uvicorn; the client gets one line
        return error(500, f"internal error ({type(exc).__name__}: {str(exc)[:200]})")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, exc: StarletteHTTPException):
        return error(exc.status_code, exc.detail, getattr(exc, "headers", None))


def _routes(app: FastAPI, engine: Engine, config: ServeConfig) -> None:
    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        """The API reference, rendered here (FastAPI's Swagger UI would load scripts from a CDN)."""
        from .docs_page import render

        return HTMLResponse(render(app.openapi()))

    @app.get("/api/health", tags=["api"])
    async def health() -> dict:
        """Liveness and load: the served model, the device, requests running and waiting."""
        base = engine.base(None)
        return {"status": "ok", "version": __version__, "model": config.model, "models": engine.models,
                "device": str(base.device), "workers": config.workers, "queue": engine.stats(),
                "fidelity": engine.supports_fidelity, "detectors": engine.detectors}

    @app.post("/api/restore", tags=["api"], response_class=Response, responses=_DOC_RESPONSES)
    async def restore(
        image: UploadFile = File(..., description="The photo (any format Pillow reads)."),
        fmt: Literal["png", "jpeg", "json"] = Query("png", alias="format",
                                                    description="png, jpeg, or json (summary + base64 PNG)."),
        model: Optional[str] = Query(None, description="A model this server offers (see /api/health)."),
        fidelity: Optional[float] = Query(None, ge=0, le=1, description="Fidelity weight, if the model has one."),
        upscale: float = Query(1.0, ge=1, le=config.max_upscale, description="Enlarge the whole photo."),
        detector: str = Query(DEFAULT_DETECTOR, description="Face detector (registry name)."),
        min_face: float = Query(0.0, ge=0, description="Skip faces with a smaller eye distance (px)."),
        max_face: float = Query(0.0, ge=0, description="Skip faces with a larger eye distance (px; 0: none)."),
    ) -> Response:
        """Restore the faces of one photo."""
        data = await image.read(config.max_upload_bytes + 1)
        if len(data) > config.max_upload_bytes:
            raise ServeError(413, f"upload larger than {config.max_upload_mb:g} MB")
        name = _display_name(image.filename)
        if not data:
            raise ServeError(400, f"{name}: empty file (0 bytes)")
        opts = Options(model, fidelity, upscale, detector, min_face, max_face)
        out = await engine.run(engine.process, data, name, opts, "png" if fmt == "json" else fmt)
        if fmt == "json":
            return JSONResponse({"summary": out.summary, "media_type": out.media_type,
                                 "image_base64": base64.b64encode(out.data).decode("ascii")})
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name.rsplit(".", 1)[0])[:80] or "image"
        ext = "png" if fmt == "png" else "jpg"
        return Response(out.data, media_type=out.media_type, headers={
            "X-Facerestore-Summary": json.dumps(out.summary, ensure_ascii=True),
            "Content-Disposition": f'inline; filename="{stem}_restored.{ext}"'})


def _display_name(filename: Optional[str]) -> str:
    """The upload's base name, one line, bounded (it goes into messages and headers)."""
    name = (filename or "image").replace("\\", "/").rsplit("/", 1)[-1]
    name = " ".join(name.split())[:120]
    return name or "image"


_DOC_RESPONSES = {
    200: {"content": {"image/png": {}, "image/jpeg": {}, "application/json": {}},
          "description": "The restored photo; its summary (JSON) in the X-Facerestore-Summary header."},
    400: {"description": "Not an image, corrupt, too many pixels, unknown model or detector."},
    401: {"description": "The server has a token and the request did not carry it."},
    403: {"description": "No token and a Host header that is not localhost/127.x/[::1] (DNS rebinding)."},
    413: {"description": "Upload larger than --max-upload-mb."},
    422: {"description": "A missing field or an option out of range."},
    429: {"description": "Queue full: retry after the Retry-After seconds."},
    503: {"description": "The server is shutting down."},
    504: {"description": "Not done within --timeout seconds."},
}


def _local_host(scope) -> bool:
    """Whether the request's Host header names a loopback address (or is absent, as in HTTP/1.0)."""
    from .config import is_loopback

    host = dict(scope.get("headers", [])).get(b"host", b"").decode("latin-1").strip()
    if not host:
        return True
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return is_loopback(name)


#: one line per HTTP request: ``client method path status seconds`` (never the query string: it may
#: hold the token); `facerestore serve` prints it to stderr
ACCESS_LOG = logging.getLogger("facerestore.serve.access")


class AccessLog:
    """ASGI middleware writing each HTTP request to :data:`ACCESS_LOG` once its response has
    started (status known) or the request failed (status 500)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0, status = time.perf_counter(), [500]

        async def watched(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watched)
        finally:
            client = scope.get("client") or ("-", 0)
            ACCESS_LOG.info("%s %s %s %d %.3fs", client[0], scope.get("method", "-"), scope.get("path", ""),
                            status[0], time.perf_counter() - t0)


class BodyTooLarge(StarletteHTTPException):
    """Raised from the body stream; an HTTPException so that FastAPI's form parser passes it on."""

    def __init__(self, limit_mb: float):
        super().__init__(413, f"upload larger than {limit_mb:g} MB")


class Guard:
    """ASGI middleware: the bearer token (header, cookie, or ``?token=`` which sets the cookie) on
    every path but the health check, and a byte limit on ``/api/`` request bodies, enforced while
    they stream in (so a huge or lying upload is cut off, not buffered). Without a token the
    server is loopback-only, so a request naming another Host is refused: a web page whose name
    was rebound to 127.0.0.1 (DNS rebinding) cannot use it."""

    def __init__(self, app, token: Optional[str], max_body: int):
        self.app, self.token, self.max_body = app, token, max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if not self.token and not _local_host(scope):
            return await self._deny(scope, send, 403, "this server answers only requests addressed to "
                                                       "localhost or 127.0.0.1 (start it with --token to allow others)")
        if self.token and path not in OPEN_PATHS:
            how = self._authorized(scope)
            if how is None:
                return await self._deny(scope, send)
            if how == "query":
                send = self._with_cookie(send)
        if scope["type"] == "http" and path.startswith("/api/"):
            return await self._bounded(scope, receive, send)
        return await self.app(scope, receive, send)

    def _authorized(self, scope) -> Optional[str]:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer " and self._same(auth[7:].strip()):
            return "header"
        cookies = http.cookies.SimpleCookie()
        with contextlib.suppress(http.cookies.CookieError):
            cookies.load(headers.get("cookie", ""))
        if COOKIE in cookies and self._same(cookies[COOKIE].value):
            return "cookie"
        query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if any(self._same(t) for t in query.get("token", [])):
            return "query"
        return None

    def _same(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self.token.encode())

    async def _deny(self, scope, send, status: int = 401, message: str = "") -> None:
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        message = message or ("missing or wrong token: send 'Authorization: Bearer TOKEN' "
                              "(in a browser, open /?token=TOKEN once)")
        await error(status, message, {"WWW-Authenticate": "Bearer"} if status == 401 else None)(scope, None, send)

    def _with_cookie(self, send):
        morsel = f"{COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict"

        async def wrapped(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"set-cookie", morsel.encode("latin-1"))]}
            await send(message)

        return wrapped

    async def _bounded(self, scope, receive, send) -> None:
        headers = dict(scope.get("headers", []))
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_body:
            return await self._too_large(scope, send)
        seen, started = 0, False

        async def counted():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_body:
                raise BodyTooLarge((self.max_body - MULTIPART_SLACK) / (1024 * 1024))
            return message

        async def tracked(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except BodyTooLarge:
            if not started:
                await self._too_large(scope, send)

    async def _too_large(self, scope, send) -> None:
        mb = (self.max_body - MULTIPART_SLACK) / (1024 * 1024)
        await error(413, f"upload larger than {mb:g} MB", {"Connection": "close"})(scope, None, send)
