"""The Gradio web app: drop photos, compare before/after with a slider, download the results.

Every photo goes through the same :class:`~.engine.Engine` queue as the HTTP API, so the UI and
the API share one model and one limit. The theme uses system fonts only (Gradio's default would
load web fonts); analytics are off (set in :mod:`facerestore.serve`).
"""

from __future__ import annotations

import json
import pathlib
import re
import uuid
from typing import Any

import gradio as gr
import numpy as np
import torch
import torch.nn.functional as F

from ..defaults import DEFAULT_DETECTOR
from .config import ServeConfig
from .engine import Engine, Options, ServeError

#: the light-blue "mask" drawn over the astronaut's nose and mouth (pixels of the 512x512 photo)
MASK_POLYGON = [(188, 117), (262, 117), (270, 148), (252, 174), (225, 183), (197, 175), (180, 148)]
MASK_COLOUR = (150, 200, 235)


def example_photo(size: int = 512) -> np.ndarray:
    """``skimage.data.astronaut()`` wearing a synthetic mask, resized to ``size``: (H, W, 3) uint8."""
    from PIL import Image, ImageDraw
    from skimage import data

    img = Image.fromarray(data.astronaut())
    ImageDraw.Draw(img).polygon(MASK_POLYGON, fill=MASK_COLOUR)
    if size != img.width:
        img = img.resize((size, size), Image.BICUBIC)
    return np.asarray(img)


def write_examples(folder: pathlib.Path) -> list[list[Any]]:
    """Example rows ``[[files], upscale]``: the masked astronaut at 512 px, and at 128 px upscaled x4
    (a face about the size the model was trained on)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for size, upscale in ((512, 1.0), (128, 4.0)):
        path = folder / f"astronaut_masked_{size}.png"
        Image.fromarray(example_photo(size)).save(path)
        rows.append([[str(path)], upscale])
    return rows


THEME_FONTS = dict(font=["ui-sans-serif", "system-ui", "sans-serif"],
                   font_mono=["ui-monospace", "Consolas", "monospace"])


def mount_ui(app, engine: Engine, config: ServeConfig):
    """Mount the UI at ``/`` of ``app`` with Gradio's own queue sized like the engine's."""
    demo = build_ui(engine, config)
    demo.queue(max_size=config.queue + config.workers, default_concurrency_limit=config.workers)
    return gr.mount_gradio_app(
        app, demo, path="/", theme=gr.themes.Default(**THEME_FONTS), footer_links=["api", "settings"],
        max_file_size=config.max_upload_bytes, allowed_paths=[str(engine.tmp)], ssr_mode=False,
        server_name=config.host, server_port=config.port, enable_monitoring=False, mcp_server=False, pwa=False)


def build_ui(engine: Engine, config: ServeConfig) -> gr.Blocks:
    """The page: inputs and options on the left, slider, summary and downloads on the right."""
    with gr.Blocks(title="facerestore", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown("## facerestore\nDrop one or more photos; faces are found, restored and pasted back. "
                    "The HTTP API is at [/docs](/docs).")
        with gr.Row():
            with gr.Column():
                files = gr.File(label="Photos", file_count="multiple", file_types=["image"], elem_id="photos")
                with gr.Accordion("Options", open=True):
                    model = gr.Dropdown(engine.models, value=config.model, label="Model")
                    fidelity = gr.Slider(0, 1, value=engine.fidelity_default, step=0.05, label="Fidelity",
                                         info="0 realistic .. 1 faithful: 1 keeps the photo's visible pixels "
                                              "(and a generative model's faithful fill)",
                                         visible=engine.supports_fidelity)
                    upscale = gr.Slider(1, config.max_upscale, value=1, step=0.5, label="Upscale")
                    detector = gr.Dropdown(engine.detectors, value=DEFAULT_DETECTOR, label="Face detector")
                    with gr.Row():
                        min_face = gr.Number(0, minimum=0, label="Min face (eye distance, px)")
                        max_face = gr.Number(0, minimum=0, label="Max face (px, 0: no limit)")
                run = gr.Button("Restore", variant="primary", elem_id="restore")
            with gr.Column():
                slider = gr.ImageSlider(label="Before / after", type="filepath", elem_id="slider")
                choose = gr.Dropdown([], label="Photo shown", visible=False)
                summary = gr.Markdown(label="Summary", elem_id="summary")
                downloads = gr.File(label="Download", file_count="multiple", elem_id="downloads")
        shown = gr.State([])
        gr.Examples(write_examples(engine.tmp / "examples"), inputs=[files, upscale])

        # named parameters and labelled outputs: what Gradio's API page and gradio_client show
        def restore(photos, model, fidelity, upscale, detector, min_face, max_face):
            return restore_photos(engine, photos, model, fidelity, upscale, detector, min_face, max_face)

        run.click(restore, [files, model, fidelity, upscale, detector, min_face, max_face],
                  [slider, choose, summary, downloads, shown], api_name="restore")
        choose.change(pick, [choose, shown], slider, api_name=False)
    return demo


def pick(name: str, shown: list) -> Any:
    """The slider value for the photo chosen in the drop-down."""
    for n, before, after in shown:
        if n == name:
            return (before, after)
    return gr.skip()


def restore_photos(engine: Engine, paths, model, fidelity, upscale, detector, min_face, max_face):
    """Restore each dropped photo through the engine's queue; write results and summary.json."""
    if not paths:
        raise gr.Error("Drop one or more photos first.")
    opts = Options(model, float(fidelity) if engine.supports_fidelity else None, float(upscale), detector,
                   float(min_face or 0), float(max_face or 0))
    out = engine.tmp / "ui" / uuid.uuid4().hex
    _sweep(out.parent)
    out.mkdir(parents=True)
    shown, downloads, rows, errors = [], [], [], []
    for i, path in enumerate(paths):
        name = pathlib.Path(path).name
        try:
            res = engine.run_sync(engine.process, pathlib.Path(path).read_bytes(), name, opts, "png", True)
        except ServeError as exc:
            errors.append(exc.message)
            continue
        stem = f"{i:02d}_" + re.sub(r"[^A-Za-z0-9._-]+", "_", pathlib.Path(name).stem)[:60]
        after = out / f"{stem}_restored.png"
        after.write_bytes(res.data)
        before = out / f"{stem}_before.png"
        _write_before(before, res.before, res.image)
        shown.append((name, str(before), str(after)))
        downloads.append(str(after))
        rows.append(res.summary)
    (out / "summary.json").write_text(json.dumps({"photos": rows, "errors": errors}, indent=2))
    downloads.append(str(out / "summary.json"))
    first = (shown[0][1], shown[0][2]) if shown else None
    names = [s[0] for s in shown]
    choose = gr.update(choices=names, value=names[0] if names else None, visible=len(names) > 1)
    return first, choose, _summary_markdown(rows, errors), downloads, shown


def _sweep(folder: pathlib.Path, max_age: float = 3600.0) -> None:
    """Forget results older than an hour (Gradio keeps its own copies as long, ``delete_cache``)."""
    import shutil
    import time

    for d in folder.glob("*") if folder.is_dir() else []:
        try:
            if time.time() - d.stat().st_mtime > max_age:
                shutil.rmtree(d, ignore_errors=True)
        except OSError:
            pass


def _write_before(path: pathlib.Path, before: torch.Tensor, after: torch.Tensor) -> None:
    """The input at the result's size (bicubic, like the upscaled background), for the slider."""
    from ..io import write_image

    if tuple(before.shape[-2:]) != tuple(after.shape[-2:]):
        before = F.interpolate(before[None], size=after.shape[-2:], mode="bicubic", align_corners=False)[0]
    write_image(path, before.clamp(0, 1))


def _summary_markdown(rows: list[dict], errors: list[str]) -> str:
    lines = ["| photo | faces | restored | skipped | seconds |", "|---|---|---|---|---|"]
    for r in rows:
        name = r["file"].replace("|", "\\|")
        counts = f"{r['faces_found']} | {r['faces_restored']} | {r['faces_skipped']}"
        lines.append(f"| {name} | {counts} | {r['seconds']:.2f} |")
    notes = [f"* {r['file']}: {n}" for r in rows for n in r["notes"] + r["skipped"]]
    errs = [f"* error: {e}" for e in errors]
    return "\n".join((lines if rows else []) + ([""] if rows and (notes or errs) else []) + notes + errs)
