"""`facerestore serve`: the HTTP API against real servers on 127.0.0.1 (uvicorn in a thread, and
once the command itself in a subprocess): formats, the bad-input corpus, limits, the busy and
timeout paths, the token, and that nothing in the process tries to reach any other host.

The model is ``bicubic`` (no weights) and photos are small: the server's plumbing is under test.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import io
import json
import logging
import os
import re
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio")
httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")

import badinputs  # noqa: E402
from facerestore.serve import ServeConfig, is_loopback  # noqa: E402
from facerestore.serve.background import serve_in_thread  # noqa: E402
from facerestore.serve.ui import example_photo  # noqa: E402

LOCAL_HOSTS = {"127.0.0.1", "::1", "localhost", None, ""}
#: every attempt of this process to resolve or connect to a host other than loopback
OUTSIDE: list[str] = []
#: servers running now (the audit hook stays installed for the session, but only watches then)
WATCHING = [0]


def _audit(event: str, args) -> None:
    """Record (and stop) any socket use aimed away from loopback, from any library in the process,
    while a test server runs."""
    if not WATCHING[0]:
        return
    if event == "socket.connect":
        addr = args[1]
        host = addr[0] if isinstance(addr, tuple) else None
        if host is not None and not is_loopback(str(host)):
            OUTSIDE.append(f"connect {addr}")
            raise OSError(f"test: network access to {addr} blocked")
    elif event == "socket.getaddrinfo":
        host = args[0].decode() if isinstance(args[0], bytes) else args[0]
        if host not in LOCAL_HOSTS and not is_loopback(str(host)):
            OUTSIDE.append(f"getaddrinfo {host}")
            raise OSError(f"test: name lookup of {host} blocked")


sys.addaudithook(_audit)


@contextlib.contextmanager
def running(config: ServeConfig, engine=None):
    """A server for ``config`` on a free 127.0.0.1 port, watched by the audit hook; yields (URL, app).
    Every server checks on its way out that nothing tried to reach another host while it ran."""
    seen = len(OUTSIDE)
    WATCHING[0] += 1
    try:
        with serve_in_thread(config, engine) as got:
            yield got
    finally:
        WATCHING[0] -= 1
    assert not OUTSIDE[seen:], f"the server or the UI tried to reach another host: {OUTSIDE[seen:]}"


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def photo() -> bytes:
    """The masked astronaut at 128 px (one face, cheap to detect)."""
    return png(example_photo(128))


@pytest.fixture(scope="module")
def server():
    config = ServeConfig(model="bicubic", device="cpu", workers=1, queue=4, timeout=60, max_upload_mb=1,
                         max_pixels=2_000_000)
    with running(config) as (url, _app), httpx.Client(base_url=url, timeout=60) as client:
        yield client


def post(client, data: bytes, name: str = "photo.png", **params):
    return client.post("/api/restore", params=params, files={"image": (name, data, "application/octet-stream")})


def one_line_error(resp) -> str:
    msg = resp.json()["error"]
    assert msg and "\n" not in msg and "Traceback" not in msg, msg
    return msg


def test_restore_png_jpeg_json(server, photo):
    r = post(server, photo)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    summary = json.loads(r.headers["x-facerestore-summary"])
    assert (summary["faces_found"], summary["faces_restored"], summary["faces_skipped"]) == (1, 1, 0)
    assert summary["model"] == "bicubic" and summary["seconds"] >= 0
    out = np.asarray(Image.open(io.BytesIO(r.content)))
    assert out.shape == (128, 128, 3)
    assert (out != example_photo(128)).any(axis=2).mean() > 0.01  # the face was replaced

    r = post(server, photo, format="jpeg", upscale=2)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(r.content)).size == (256, 256)

    r = post(server, photo, format="json", min_face=1000)
    body = r.json()
    assert r.status_code == 200 and body["media_type"] == "image/png"
    assert body["summary"]["faces_skipped"] == 1 and body["summary"]["skipped"]
    assert Image.open(io.BytesIO(base64.b64decode(body["image_base64"]))).size == (128, 128)


def test_health_docs_and_options(server, photo):
    h = server.get("/api/health").json()
    assert h["status"] == "ok" and h["model"] == "bicubic" and "mtcnn" in h["detectors"]
    assert server.get("/openapi.json").json()["paths"]["/api/restore"]["post"]
    docs = server.get("/docs")
    assert docs.status_code == 200 and "/api/restore" in docs.text
    assert "<script" not in docs.text and "<link" not in docs.text and "src=" not in docs.text  # nothing fetched
    assert post(server, photo, model="/etc/passwd").status_code == 400  # only the models it offers
    assert "unknown detector" in one_line_error(post(server, photo, detector="nope"))
    assert post(server, photo, format="gif").status_code == 422
    assert post(server, photo, upscale=0.5).status_code == 422
    r = post(server, photo, fidelity=0.5)
    assert r.status_code == (200 if h["fidelity"] else 400), r.text
    assert post(server, photo, fidelity=1.5).status_code == 422
    assert "image" in one_line_error(server.post("/api/restore"))
    ui = server.get("/")
    assert ui.status_code == 200 and "fonts.googleapis" not in ui.text
    rebound = server.get("/api/health", headers={"Host": "attacker.example:7860"})  # DNS rebinding
    assert rebound.status_code == 403 and "localhost" in one_line_error(rebound)
    assert server.get("/api/health", headers={"Host": "localhost:7860"}).status_code == 200


def test_bad_input_corpus(server, tmp_path):
    """Every case of the reliability corpus over HTTP: readable ones restored (200), the others a
    4xx with one line naming the upload; the server answers throughout."""
    cases = badinputs.build_corpus(tmp_path)
    try:
        for case in cases:
            if case.needs or not case.listed or case.name == "unreadable":
                continue  # a file the client itself cannot read is not the server's input
            r = post(server, case.path.read_bytes(), name=case.path.name)
            if case.readable:
                assert r.status_code == 200, (case.name, r.text)
                assert json.loads(r.headers["x-facerestore-summary"])["file"] == case.path.name
            else:
                assert 400 <= r.status_code < 500, (case.name, r.status_code, r.text)
                assert case.path.name in one_line_error(r), case.name
        assert server.get("/api/health").status_code == 200
    finally:
        badinputs.unlock(cases)


def test_size_and_pixel_limits(server, photo):
    big = os.urandom(1024 * 1024 + 10)
    r = post(server, big, name="big.png")
    assert r.status_code == 413 and "1 MB" in one_line_error(r)

    def chunked():  # no Content-Length: the limit must hold while the body streams in
        yield b"--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"x.png\"\r\n\r\n"
        for _ in range(40):
            yield b"\0" * 65536
        yield b"\r\n--b--\r\n"

    r = server.post("/api/restore", content=chunked(), headers={"content-type": "multipart/form-data; boundary=b"})
    assert r.status_code == 413, r.text
    r = post(server, png(example_photo(512)), name="a.png", upscale=4)  # 2048x2048 result > 2 MP
    assert r.status_code == 400 and "over the limit of 2.0 megapixels" in one_line_error(r)
    r = post(server, png(np.zeros((1500, 1500, 3), np.uint8)), name="wide.png")
    assert r.status_code == 400 and "wide.png" in one_line_error(r)
    assert post(server, photo).status_code == 200


def test_busy_429_and_timeout_504(photo):
    """One worker, one waiting place: a burst gets 200s and immediate 429s, none hangs; a slow
    job past --timeout gets 504; the server stays up."""
    config = ServeConfig(model="bicubic", device="cpu", workers=1, queue=1, timeout=20, ui=False)
    with running(config) as (url, app), httpx.Client(base_url=url, timeout=30) as client:
        engine = app.state.engine
        real = engine.process

        def slow(*args, **kwargs):
            time.sleep(float(os.environ.get("_SERVE_TEST_DELAY", "1.0")))
            return real(*args, **kwargs)

        engine.process = slow
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            codes = sorted(pool.map(lambda _i: post(client, photo).status_code, range(6)))
        assert set(codes) <= {200, 429} and codes.count(200) >= 2 and 429 in codes, codes
        r = post(client, photo)
        assert r.status_code == 200
        engine.config.timeout = 0.3
        r = post(client, photo)
        assert r.status_code == 504 and "timed out" in one_line_error(r)
        time.sleep(1.2)  # the timed-out job finishes and frees its place
        engine.config.timeout = 20
        engine.process = real
        assert post(client, photo).status_code == 200
        assert client.get("/api/health").json()["queue"]["running"] == 0


def test_token(photo):
    config = ServeConfig(model="bicubic", device="cpu", token="s3cret", ui=False)
    with running(config) as (url, _app), httpx.Client(base_url=url, timeout=60) as client:
        assert client.get("/api/health").status_code == 200  # open: for monitoring
        r = post(client, photo)
        assert r.status_code == 401 and "token" in one_line_error(r)
        assert client.post("/api/restore", headers={"Authorization": "Bearer wrong"},
                           files={"image": ("p.png", photo)}).status_code == 401
        ok = client.post("/api/restore", headers={"Authorization": "Bearer s3cret"}, files={"image": ("p.png", photo)})
        assert ok.status_code == 200
        assert client.get("/docs").status_code == 401
        r = client.get("/docs", params={"token": "s3cret"})  # a browser's first visit sets a cookie
        assert r.status_code == 200 and "facerestore_token" in r.headers["set-cookie"]
        assert client.get("/docs").status_code == 200  # the client kept the cookie


def test_cli_refuses_open_host_without_token():
    from typer.testing import CliRunner

    from facerestore.cli import app

    r = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--model", "bicubic"], env={"FACERESTORE_TOKEN": ""})
    assert r.exit_code == 2 and "--token" in r.output
    assert is_loopback("127.0.0.2") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2") and not is_loopback("example.org")


def test_cli_serves_and_stops():
    """The command itself: starts, answers, stops cleanly on SIGINT (Ctrl+C). (The API only: the
    UI and restoration are tested above, in this process, where they cost less.)"""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "facerestore.cli", "serve", "--model", "bicubic", "--device", "cpu",
                             "--port", str(port), "--no-ui"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=env, text=True)
    try:
        url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the server exited: {proc.stdout.read()}")
            assert time.monotonic() < deadline, "the server did not answer within 90 s"
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url + "/api/health", timeout=2).status_code == 200:
                    break
            time.sleep(0.3)
        r = httpx.post(url + "/api/restore", files={"image": ("notes.png", b"not an image")}, timeout=60)
        assert r.status_code == 400 and r.json()["error"].startswith("notes.png: not an image")
        assert httpx.get(url + "/", timeout=5).status_code == 404  # --no-ui
    finally:
        proc.send_signal(2)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
    assert "Traceback" not in out and f"127.0.0.1:{port}" in out
    # the access log: one line per request, method, path, status and seconds
    assert re.search(r" 127\.0\.0\.1 POST /api/restore 400 \d+\.\d{3}s$", out, re.M), out
    assert re.search(r" 127\.0\.0\.1 GET / 404 \d+\.\d{3}s$", out, re.M), out


def test_each_request_is_logged_without_its_query(server, photo, caplog):
    """Every request, served or refused, gives one access-log record; the query string (where a
    browser sends ?token=) is never written."""
    caplog.set_level(logging.INFO, logger="facerestore.serve.access")
    assert post(server, photo).status_code == 200
    assert server.get("/api/nope", params={"token": "s3cret"}).status_code == 404
    lines = [r.getMessage() for r in caplog.records if r.name == "facerestore.serve.access"]
    assert any(re.fullmatch(r"127\.0\.0\.1 POST /api/restore 200 \d+\.\d{3}s", m) for m in lines), lines
    assert any(re.fullmatch(r"127\.0\.0\.1 GET /api/nope 404 \d+\.\d{3}s", m) for m in lines), lines
    assert not any("s3cret" in m for m in lines)


def test_gradio_api_names_its_parameters_and_outputs(server):
    """Through Gradio's own client, `/restore` takes named parameters and returns labelled values
    (it took `paths, param_1 ... param_6` and returned an unlabelled `value_19`)."""
    gradio_client = pytest.importorskip("gradio_client")
    api = gradio_client.Client(str(server.base_url), verbose=False).view_api(return_format="dict", print_info=False)
    endpoint = api["named_endpoints"]["/restore"]
    names = [p["parameter_name"] for p in endpoint["parameters"]]
    assert names == ["photos", "model", "fidelity", "upscale", "detector", "min_face", "max_face"], names
    labels = [r["label"] for r in endpoint["returns"]]
    assert labels == ["Before / after", "Photo shown", "Summary", "Download"], labels


def test_every_server_checks_that_nothing_left_loopback():
    """The check runs when any test server stops, not in one fixture: a lookup of another host
    during its life (blocked by the audit hook before it leaves the process) fails the test."""
    config = ServeConfig(model="bicubic", device="cpu", workers=1, queue=1, ui=False)
    with pytest.raises(AssertionError, match="another host"):
        with running(config):
            with pytest.raises(OSError, match="blocked"):
                socket.getaddrinfo("example.invalid", 80)
    del OUTSIDE[:]  # recorded on purpose above
