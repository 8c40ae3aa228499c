"""The screenshot in docs/serve.md: the web app after restoring the masked-astronaut example.

    python tools/serve_screenshot.py [--model masked-any] [--out docs/img/serve.png]

Starts ``facerestore serve`` in this process on 127.0.0.1, opens it in Debian's chromium
(headless, through Playwright's executable_path; nothing is downloaded), picks the 128-px example
(upscale 4), presses Restore, waits for the before/after slider and saves a full-page PNG.
Requests to any other host are aborted and listed.
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import sys
import tempfile
import time
import urllib.parse

REPO = pathlib.Path(__file__).resolve().parents[1]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def shoot(url: str, out: pathlib.Path, chromium: str) -> list[str]:
    """Restore the small example in the page at ``url``; write the screenshot; return blocked URLs."""
    from playwright.sync_api import sync_playwright

    outside: list[str] = []
    host = urllib.parse.urlsplit(url).netloc
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(profile, executable_path=chromium, headless=True, args=ARGS,
                                                    viewport={"width": 1280, "height": 960})

        def route(r):
            if urllib.parse.urlsplit(r.request.url).netloc == host or r.request.url.startswith(("data:", "blob:")):
                return r.continue_()
            outside.append(r.request.url)
            return r.abort()

        ctx.route("**/*", route)
        page = ctx.new_page()
        page.goto(url + "/")
        page.click("text=astronaut_masked_128.png", timeout=120_000)
        page.wait_for_selector("#photos >> text=astronaut_masked_128", timeout=60_000)
        page.click("#restore")
        page.wait_for_function("[...document.querySelectorAll('#slider img')]"
                               ".filter(i => i.complete && i.naturalWidth > 0).length >= 2", timeout=300_000)
        page.wait_for_selector("#summary table", timeout=60_000)
        time.sleep(0.5)
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out), full_page=True)
        ctx.close()
    return outside


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="masked-any")
    ap.add_argument("--out", type=pathlib.Path, default=REPO / "docs" / "img" / "serve.png")
    args = ap.parse_args(argv)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("error: chromium is not installed (make browser)", file=sys.stderr)
        return 2
    from facerestore.serve import ServeConfig
    from facerestore.serve.background import serve_in_thread

    with serve_in_thread(ServeConfig(model=args.model, device="cpu", timeout=300)) as (url, _app):
        outside = shoot(url, args.out, chromium)
    print(f"wrote {args.out}" + (f"; blocked requests to other hosts: {outside}" if outside else
                                 "; the page asked no other host"))
    return 1 if outside else 0


if __name__ == "__main__":
    raise SystemExit(main())
