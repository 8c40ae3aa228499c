"""The web app in a real browser: Debian's chromium, headless, driven by Playwright for Python
through its executable path (no browser download). Upload a photo, press Restore, wait for the
before/after slider, check the shown result against the API's answer for the same photo, and
check that the page asked nothing of any host but the server (no CDN, fonts, analytics).

Skips, saying why, only when chromium or Playwright is not installed (``make browser`` installs
chromium; Playwright comes with the ``web`` extra).
"""

from __future__ import annotations

import io
import shutil
import urllib.parse

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio")
httpx = pytest.importorskip("httpx")
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make browser)"),
              pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")]  # gradio's own pandas use

from facerestore.serve import ServeConfig  # noqa: E402
from facerestore.serve.background import serve_in_thread  # noqa: E402
from facerestore.serve.ui import example_photo  # noqa: E402

#: no first-run, sync, update or safe-browsing traffic; no GPU or sandbox in a container
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WAIT_MS = 120_000


def open_page(pw, profile, url: str, outside: list[str]):
    """A fresh chromium profile whose requests to anything but ``url``'s host are recorded and aborted."""
    ctx = pw.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM, headless=True,
                                                args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 1000})
    host = urllib.parse.urlsplit(url).netloc

    def route(r):
        if urllib.parse.urlsplit(r.request.url).netloc == host or r.request.url.startswith(("data:", "blob:")):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    ctx.route("**/*", route)
    return ctx, ctx.new_page()


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(np.int16)


def test_upload_restore_and_show(tmp_path):
    photo = tmp_path / "astronaut.png"
    Image.fromarray(example_photo(128)).save(photo)
    outside: list[str] = []
    config = ServeConfig(model="bicubic", device="cpu", workers=1, queue=2, timeout=120)
    with serve_in_thread(config) as (url, _app), sync_api.sync_playwright() as pw:
        ctx, page = open_page(pw, tmp_path / "profile", url, outside)
        try:
            page.goto(url + "/")
            page.wait_for_selector("#photos input[type=file]", state="attached", timeout=WAIT_MS)
            page.set_input_files("#photos input[type=file]", str(photo))
            page.wait_for_selector("#photos >> text=astronaut", timeout=WAIT_MS)
            page.click("#restore")
            page.wait_for_function("[...document.querySelectorAll('#slider img')]"
                                   ".filter(i => i.complete && i.naturalWidth > 0).length >= 2", timeout=WAIT_MS)
            page.wait_for_selector("#summary table", timeout=WAIT_MS)
            page.screenshot(path=str(tmp_path / "serve.png"), full_page=True)
            srcs = page.eval_on_selector_all("#slider img", "imgs => imgs.map(i => [i.src, i.naturalWidth])")
            summary = page.inner_text("#summary")
            links = page.eval_on_selector_all("#downloads a[download]", "as => as.map(a => a.download)")
        finally:
            ctx.close()
        shown = {src.rsplit("/", 1)[-1]: (src, width) for src, width in srcs}
        after = next(v for k, v in shown.items() if "restored" in k)
        assert after[1] == 128, srcs
        got = pixels(httpx.get(after[0], timeout=30).content)
        api = pixels(httpx.post(url + "/api/restore", files={"image": ("astronaut.png", photo.read_bytes())},
                                timeout=120).content)
        assert got.shape == api.shape and np.abs(got - api).mean() < 2.0  # the slider shows the API's result
        assert np.abs(got - pixels(photo.read_bytes())).max() > 0  # ... which is not the input
    assert "astronaut.png\t1\t1\t0" in summary.replace(" ", ""), summary
    assert any(name.endswith("_restored.png") for name in links) and "summary.json" in links, links
    assert (tmp_path / "serve.png").stat().st_size > 10_000
    assert not outside, f"the page tried to reach other hosts: {outside}"
