"""Evaluate restoration models on one paired set: metrics, Markdown/JSON reports, comparison grid.
What is scored: the set (:mod:`facerestore.eval_sets`) and the models (:mod:`facerestore.eval_models`).

Every model sees the same faces in the same order; batches are the outer loop and models the
inner one, so target-side work (identity descriptors, target landmarks) is done once per face.
Outputs are rounded to 8 bits before scoring (what a user gets when saving a PNG), targets are
8-bit PNGs already. Speed (faces/s) is timed separately on random inputs (see
:func:`facerestore.metrics.faces_per_second`). Definitions of every number: ``docs/metrics.md``.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import pathlib
import platform
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from . import metrics as M
from . import network_metrics as NM
from .pixels import quantize, to_uint8
from .errors import FaceRestoreError

if TYPE_CHECKING:
    from .eval_models import EvalModel
    from .eval_sets import PairedSet

#: optional metric groups (pixel metrics are always computed)
OPTIONAL_GROUPS = ("lpips", "fd", "identity", "landmarks", "speed")

#: metric key -> (table header, definition, higher_is_better, format)
METRICS: dict[str, tuple[str, str, bool, str]] = {
    "psnr": ("PSNR", "PSNR (dB) on RGB, per image, averaged", True, "{:.2f}"),
    "ssim": ("SSIM", "SSIM on RGB (Gaussian 11x11, sigma 1.5), averaged over channels and images", True, "{:.4f}"),
    "psnr_y": ("PSNR-Y", "PSNR (dB) on BT.601 Y", True, "{:.2f}"),
    "ssim_y": ("SSIM-Y", "SSIM on BT.601 Y", True, "{:.4f}"),
    "psnr_occluded": ("PSNR occl.", "PSNR (dB) inside the occlusion map (mask-weighted MSE, HQ size); faces with a mask only", True, "{:.2f}"),
    "psnr_visible": ("PSNR vis.", "PSNR (dB) outside the occlusion map (weights 1 - map)", True, "{:.2f}"),
    "lpips": ("LPIPS", "LPIPS VGG distance to the target (lower is better)", False, "{:.4f}"),
    "fd_vgg16": ("FD-VGG16", "Fréchet distance of VGG16 relu5_3 features, outputs vs targets over the set "
                 "(realism; not comparable with published FID; lower is better)", False, "{:.1f}"),
    "id_cosine": ("ID cos", "cosine similarity of identity embeddings, output vs target", True, "{:.4f}"),
    "id_distance": ("ID dist", "Euclidean distance of dlib's 128-D descriptors, output vs target (lower is better)", False, "{:.4f}"),
    "id_verified": ("verified %", "share of faces whose descriptor distance to the target is < 0.6 (dlib's threshold)", True, "{:.1f}"),
    "landmark_nme": ("NME %", "68-point landmark NME (dlib), normalised by inter-ocular distance, in % (lower is better)", False, "{:.2f}"),
    "faces_per_s": ("faces/s", "restored faces per second, batch 16, after warm-up", True, "{:.1f}"),
}


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class ModelResult:
    name: str
    source: str
    params: int
    values: dict[str, float] = dataclasses.field(default_factory=dict)
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    speed: dict[str, float] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0


@dataclasses.dataclass
class EvalReport:
    models: list[ModelResult]
    data: dict[str, Any]
    settings: dict[str, Any]
    unavailable: dict[str, str]
    #: per grid face: input (upscaled), one output per model, target; (3, H, W) each, CPU
    grid: list[list[Tensor]] = dataclasses.field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        keys = [k for k in METRICS if any(k in m.values for m in self.models)]
        return {
            "data": self.data,
            "settings": self.settings,
            "machine": machine_description(self.settings.get("device", "cpu")),
            "unavailable": self.unavailable,
            "definitions": {k: METRICS[k][1] for k in keys},
            "models": [{"name": m.name, "source": m.source, "params": m.params,
                        "metrics": {k: _json_number(m.values[k]) for k in keys if k in m.values},
                        "counts": {k: m.counts[k] for k in keys if k in m.counts},
                        "speed": m.speed, "eval_seconds": round(m.seconds, 2)} for m in self.models],
        }

    def to_markdown(self) -> str:
        keys = [k for k in METRICS if any(k in m.values for m in self.models)]
        head = ["model", "params (M)"] + [METRICS[k][0] + (" ↑" if METRICS[k][2] else " ↓") for k in keys]
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
        for m in self.models:
            cells = [m.name, f"{m.params / 1e6:.2f}"]
            for k in keys:
                v = m.values.get(k)
                cells.append("n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else
                             ("inf" if math.isinf(v) else METRICS[k][3].format(v)))
            lines.append("| " + " | ".join(cells) + " |")
        notes = [f"- {k}: not computed: {why}" for k, why in self.unavailable.items()]
        n = self.data.get("count", "?")
        occl = self.models[0].counts.get("psnr_occluded") if self.models else None
        lines.append("")
        lines.append(f"{n} faces; " + (f"PSNR occl. over the {occl} faces with a mask; " if occl is not None else "")
                     + f"device {self.settings.get('device')}; outputs rounded to 8 bits before scoring.")
        if notes:
            lines.append("")
            lines.extend(notes)
        return "\n".join(lines) + "\n"


def _json_number(v: float) -> Any:
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


def machine_description(device: str | torch.device = "cpu") -> str:
    device = torch.device(device)
    if device.type == "cuda":
        what = torch.cuda.get_device_name(device)
    else:
        what = f"{os.cpu_count()}-core {platform.machine()} CPU ({torch.get_num_threads()} torch threads)"
    return f"{what}, torch {torch.__version__}, Python {platform.python_version()}"


class _MetricNets:
    """The optional networks, built once per evaluation; failures become 'unavailable' notes."""

    def __init__(self, device: torch.device, skip: Sequence[str], log: Callable[[str], None]):
        self.unavailable: dict[str, str] = {}
        self.lpips = self.identity = self.landmarks = self.fd = None
        for group, cls in (("lpips", NM.LPIPSMetric), ("fd", NM.VGGFeatureMetric), ("identity", NM.IdentityMetric),
                           ("landmarks", NM.LandmarkMetric)):
            if group in skip:
                self.unavailable[group] = "skipped (--skip)"
                continue
            try:
                setattr(self, group, cls(device))
            except NM.MetricUnavailable as exc:
                self.unavailable[group] = str(exc)
                log(f"note: {group} not computed: {exc}")


def _quantize(x: Tensor) -> Tensor:
    return quantize(x)


def _check(models: Sequence[EvalModel], data: PairedSet, skip: Sequence[str]) -> None:
    unknown = set(skip) - set(OPTIONAL_GROUPS)
    if unknown:
        raise FaceRestoreError(f"--skip: unknown metric group(s) {', '.join(sorted(unknown))}; "
                               f"groups: {', '.join(OPTIONAL_GROUPS)}")
    if not models:
        raise FaceRestoreError("no model to evaluate")
    if len(data) == 0:
        raise FaceRestoreError("the paired set is empty")
    for m in models:
        if not m.adaptive and m.scale * data.lq_size != data.hq_size:
            raise FaceRestoreError(f"model {m.name!r} upscales x{m.scale} but the set pairs "
                                   f"{data.lq_size}px inputs with {data.hq_size}px targets")


def _score(vals: dict[str, list[Tensor]], sr: Tensor, hq: Tensor, occ: Optional[Tensor], nets: "_MetricNets",
           id_target: Any, lm_target: Any) -> None:
    """Append one batch's per-face metrics (``sr``, ``hq`` (B, 3, H, W), ``occ`` (B, 1, H, W) or
    None) to ``vals`` (metric key -> list of (B,) tensors)."""
    def add(key: str, v: Tensor) -> None:
        vals.setdefault(key, []).append(v.detach().double().cpu())

    add("psnr", M.psnr(sr, hq))
    add("ssim", M.ssim(sr, hq))
    add("psnr_y", M.psnr_y(sr, hq))
    add("ssim_y", M.ssim_y(sr, hq))
    if occ is not None:
        covered = occ.flatten(1).amax(1) > 0
        inside = M.masked_psnr(sr, hq, occ)
        add("psnr_occluded", torch.where(covered, inside, torch.full_like(inside, math.nan)))
        add("psnr_visible", M.masked_psnr(sr, hq, 1 - occ))
    if nets.lpips is not None:
        add("lpips", nets.lpips(sr, hq))
    if nets.fd is not None:  # per-face descriptors; the set-level distance is taken in ``evaluate``
        vals.setdefault("_fd_features", []).append(nets.fd(sr).cpu())
    if nets.identity is not None:
        r = nets.identity(sr, hq, cache=id_target)
        add("id_cosine", r["cosine"])
        add("id_distance", r["distance"])
        add("id_verified", r["verified"] * 100.0)
    if nets.landmarks is not None:
        add("landmark_nme", nets.landmarks(sr, hq, target_cache=lm_target) * 100.0)


@torch.inference_mode()
def evaluate(models: Sequence[EvalModel], data: PairedSet, device: torch.device | str = "cpu",
             batch_size: int = 16, skip: Sequence[str] = (), grid_faces: int = 6, quantize: bool = True,
             speed_seconds: float = 3.0, log: Callable[[str], None] = lambda s: None,
             progress: Optional[Callable[[int], None]] = None) -> EvalReport:
    """Score every model on ``data`` (see the module docstring); returns an :class:`EvalReport`.
    ``progress(n)`` is called after each batch of ``n`` faces (all models scored)."""
    device = torch.device(device)
    _check(models, data, skip)
    nets = _MetricNets(device, skip, log)
    per: dict[str, dict[str, list[Tensor]]] = {m.name: {} for m in models}
    seconds = {m.name: 0.0 for m in models}
    grid: list[list[Tensor]] = []
    real_feats: list[Tensor] = []
    n = len(data)
    for start in range(0, n, batch_size):
        sl = slice(start, min(start + batch_size, n))
        lq = data.lq[sl].to(device)
        hq = data.hq[sl].to(device)
        occ = None if data.occlusion_hq is None else data.occlusion_hq[sl].to(device)
        id_target = nets.identity.target_cache(hq) if nets.identity is not None else None
        if nets.fd is not None:
            real_feats.append(nets.fd(hq).cpu())
        lm_target = nets.landmarks.target_landmarks(hq) if nets.landmarks is not None else None
        outs = []
        for m in models:
            t0 = time.perf_counter()
            sr = m.restore(lq).float()
            if m.adaptive and sr.shape[-2:] != hq.shape[-2:]:
                sr = F.interpolate(sr, size=hq.shape[-2:], mode="bicubic", align_corners=False,
                                   antialias=sr.shape[-1] > hq.shape[-1])
            if sr.shape != hq.shape:
                raise FaceRestoreError(f"model {m.name!r} returned {tuple(sr.shape)} for targets {tuple(hq.shape)}")
            sr = _quantize(sr) if quantize else sr.clamp(0, 1)
            _score(per[m.name], sr, hq, occ, nets, id_target, lm_target)
            seconds[m.name] += time.perf_counter() - t0
            outs.append(sr)
        for i in range(min(len(lq), grid_faces - len(grid))):
            up = F.interpolate(lq[i:i + 1], size=hq.shape[-2:], mode="nearest")[0]
            grid.append([t.cpu() for t in (up, *(o[i] for o in outs), hq[i])])
        if progress is not None:
            progress(sl.stop - sl.start)
        else:
            log(f"evaluated {sl.stop}/{n} faces")
    results = []
    for m in models:
        res = ModelResult(m.name, m.source, m.params, seconds=seconds[m.name])
        feats = per[m.name].pop("_fd_features", None)
        for key, chunks in per[m.name].items():
            res.values[key], res.counts[key] = M.nan_mean(torch.cat(chunks))
        if feats is not None and n >= 2:
            res.values["fd_vgg16"], res.counts["fd_vgg16"] = NM.frechet_distance(torch.cat(feats), torch.cat(real_feats)), n
        if "speed" not in skip:
            if m.module is not None and device.type != "mps":
                m.module.to(memory_format=torch.channels_last)
            res.speed = {k: round(v, 3) for k, v in M.faces_per_second(
                m.restore, data.lq_size, device, batch_size=16, min_time=speed_seconds).items()}
            res.values["faces_per_s"] = res.speed["faces_per_s"]
            log(f"{m.name}: {res.speed['faces_per_s']:.1f} faces/s")
        results.append(res)
    if "speed" in skip:
        nets.unavailable["speed"] = "skipped (--skip)"
    settings = {"device": str(device), "batch_size": batch_size, "quantize_outputs_8bit": quantize,
                "torch_threads": torch.get_num_threads(), "skip": list(skip),
                "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    data_desc = {**data.description, "count": len(data), "lq_size": data.lq_size, "hq_size": data.hq_size,
                 "occlusion_map": data.occlusion_hq is not None}
    return EvalReport(results, data_desc, settings, nets.unavailable, grid)


# --------------------------------------------------------------------------------------------
# Grid
# --------------------------------------------------------------------------------------------
def save_grid(report: EvalReport, path: str | os.PathLike[str], labels: Optional[Sequence[str]] = None) -> pathlib.Path:
    """PNG: one row per face, columns input (nearest-upscaled) | each model | target, labelled."""
    from PIL import Image, ImageDraw

    if not report.grid:
        raise FaceRestoreError("no faces to draw")
    labels = list(labels or ["input"] + [m.name for m in report.models] + ["target"])
    cols = len(report.grid[0])
    h, w = report.grid[0][0].shape[-2:]
    pad, head = 2, 14
    canvas = Image.new("RGB", (cols * (w + pad) + pad, head + len(report.grid) * (h + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for c, label in enumerate(labels):
        text = label if len(label) * 6 <= w else label[: max(1, w // 6 - 1)] + "…"
        draw.text((pad + c * (w + pad) + 2, 1), text, fill="black")
    for r, row in enumerate(report.grid):
        for c, img in enumerate(row):
            arr = to_uint8(img).permute(1, 2, 0).numpy()
            canvas.paste(Image.fromarray(arr), (pad + c * (w + pad), head + pad + r * (h + pad)))
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path


def write_json(report: EvalReport, path: str | os.PathLike[str]) -> None:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.to_json(), indent=2) + "\n")
