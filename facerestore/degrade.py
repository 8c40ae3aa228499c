"""Running degradation pipelines, and fixed paired sets written to disk for evaluation.

A pipeline is the recipe's ordered ``[[degradation]]`` list built into components; it runs on the
device of the batch, batched, with a ``torch.Generator`` on that device, so a seed reproduces a
batch on one device.

Paired-set format (version 1), written by :func:`write_paired_set` / ``facerestore degrade`` and
read by :func:`load_paired_set`::

    OUT/hq/<stem>.png         clean HQ face, RGB 8-bit (hq_size x hq_size)
    OUT/lq/<stem>.png         degraded input, RGB 8-bit (lq_size x lq_size)
    OUT/lq_clean/<stem>.png   denoising target: lq geometry, no mask, no noise/JPEG, RGB 8-bit
    OUT/occlusion/<stem>.png  mask coverage at lq size, grey 8-bit (255 = covered)
    OUT/occlusion_hq/<stem>.png  binary mask at hq size, grey 8-bit
    OUT/manifest.json         {"format": "facerestore-paired", "version": 1, "seed", "recipe",
                               "degradation": [specs], "hq_size", "lq_size", "scale", "source",
                               "batch_size", "device", "files": [{"stem", "source"}],
                               "landmarks": "template" | "cache"}

Stems are ``00000``, ``00001``... in the sorted order of the source files (the source path is in
the manifest), so the set does not depend on file names.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Optional

import torch
from torch import Tensor

from .errors import FaceRestoreError
from .interfaces import Degradation, DegradationBatch
from .registry import Registry, default_registry

FORMAT = "facerestore-paired"
VERSION = 1
SUBDIRS = ("hq", "lq", "lq_clean", "occlusion", "occlusion_hq")


def build_pipeline(specs: Sequence[Mapping[str, Any]], registry: Registry | None = None) -> list[Degradation]:
    """Build the recipe's ``[[degradation]]`` specs, in order (errors name ``degradation[i]``)."""
    reg = registry or default_registry()
    return [reg.build("degradation", spec, f"degradation[{i}]") for i, spec in enumerate(specs)]


def make_generator(seed: int, device: torch.device | str) -> torch.Generator:
    g = torch.Generator(device=torch.device(device))
    g.manual_seed(int(seed))
    return g


@torch.no_grad()
def degrade_batch(hq: Tensor, pipeline: Sequence[Degradation], generator: torch.Generator,
                  landmarks: Optional[Tensor] = None) -> DegradationBatch:
    """Run ``pipeline`` on ``hq`` (B, 3, H, W) float in [0, 1] on its device."""
    if hq.dim() != 4 or hq.shape[1] != 3:
        raise ValueError(f"expected hq of shape (B, 3, H, W), got {tuple(hq.shape)}")
    batch = DegradationBatch.from_hq(hq.float(), landmarks)
    for step in pipeline:
        batch = step(batch, generator)
    return batch


# --------------------------------------------------------------------------------------------
# Paired sets
# --------------------------------------------------------------------------------------------
def _save_png(t: Tensor, path: pathlib.Path) -> None:
    from PIL import Image

    a = (t.detach().float().clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu()
    if a.shape[0] == 1:
        Image.fromarray(a[0].numpy(), mode="L").save(path)
    else:
        Image.fromarray(a.permute(1, 2, 0).contiguous().numpy(), mode="RGB").save(path)


def write_paired_set(out_dir: str | pathlib.Path, batches: Iterator[tuple[DegradationBatch, list[str]]],
                     manifest: dict[str, Any]) -> dict[str, Any]:
    """Write batches (with the source path of each sample) as a paired set; return the manifest."""
    out = pathlib.Path(out_dir)
    for sub in SUBDIRS:
        (out / sub).mkdir(parents=True, exist_ok=True)
    files = []
    for batch, sources in batches:
        for i, src in enumerate(sources):
            stem = f"{len(files):05d}"
            _save_png(batch.hq[i], out / "hq" / f"{stem}.png")
            _save_png(batch.lq[i], out / "lq" / f"{stem}.png")
            _save_png(batch.clean[i], out / "lq_clean" / f"{stem}.png")
            _save_png(batch.occlusion[i], out / "occlusion" / f"{stem}.png")
            _save_png(batch.occlusion_hq[i], out / "occlusion_hq" / f"{stem}.png")
            files.append({"stem": stem, "source": src})
    manifest = {"format": FORMAT, "version": VERSION, **manifest, "count": len(files), "files": files}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return manifest


@dataclasses.dataclass
class PairedSet:
    """A paired set in memory: uint8-backed float tensors in [0, 1], CPU, in stem order."""

    hq: Tensor
    lq: Tensor
    clean: Tensor
    occlusion: Tensor
    occlusion_hq: Tensor
    stems: list[str]
    manifest: dict[str, Any]

    def __len__(self) -> int:
        return len(self.stems)

    def batches(self, batch_size: int, device: torch.device | str = "cpu") -> Iterator[DegradationBatch]:
        """The set as :class:`DegradationBatch` es (what validation feeds the model)."""
        for i in range(0, len(self), batch_size):
            sl = slice(i, i + batch_size)
            yield DegradationBatch(hq=self.hq[sl].to(device), lq=self.lq[sl].to(device),
                                   clean=self.clean[sl].to(device), occlusion=self.occlusion[sl].to(device),
                                   occlusion_hq=self.occlusion_hq[sl].to(device))


def _read_png(path: pathlib.Path, channels: int) -> Tensor:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB" if channels == 3 else "L")
            t = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8).view(im.height, im.width, channels)
    except OSError as exc:
        raise FaceRestoreError(f"cannot read {path}: {exc}") from None
    return t.permute(2, 0, 1).float() / 255


def load_paired_set(directory: str | pathlib.Path, limit: int | None = None) -> PairedSet:
    """Read a set written by ``facerestore degrade`` (checks the manifest and every file)."""
    root = pathlib.Path(directory)
    mpath = root / "manifest.json"
    if not mpath.is_file():
        raise FaceRestoreError(f"{root} is not a paired set: no manifest.json (make one with `facerestore degrade`)")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise FaceRestoreError(f"{mpath} is not valid JSON: {exc}") from None
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise FaceRestoreError(f"{mpath}: unsupported format {manifest.get('format')!r} version {manifest.get('version')!r}")
    stems = [f["stem"] for f in manifest["files"]][: limit if limit is not None else None]
    if not stems:
        raise FaceRestoreError(f"{root}: the paired set is empty")
    cols: dict[str, list[Tensor]] = {s: [] for s in SUBDIRS}
    for stem in stems:
        for sub in SUBDIRS:
            p = root / sub / f"{stem}.png"
            if not p.is_file():
                raise FaceRestoreError(f"{root}: missing {sub}/{stem}.png listed in manifest.json")
            cols[sub].append(_read_png(p, 1 if sub.startswith("occlusion") else 3))
    t = {k: torch.stack(v) for k, v in cols.items()}
    return PairedSet(hq=t["hq"], lq=t["lq"], clean=t["lq_clean"], occlusion=t["occlusion"],
                     occlusion_hq=t["occlusion_hq"], stems=stems, manifest=manifest)


# --------------------------------------------------------------------------------------------
# Before/after figure
# --------------------------------------------------------------------------------------------
def make_grid(batch: DegradationBatch, columns: int = 4, size: int | None = None) -> Tensor:
    """A (3, H, W) picture: for each face, HQ | degraded LQ | mask coverage, upsampled
    (nearest) to the HQ size so the low resolution is visible as it is."""
    import torch.nn.functional as F

    s = size or batch.hq.shape[-1]
    hq = F.interpolate(batch.hq, size=(s, s), mode="bilinear", antialias=True, align_corners=False)
    lq = F.interpolate(batch.lq, size=(s, s), mode="nearest")
    occ = F.interpolate(batch.occlusion, size=(s, s), mode="nearest").expand(-1, 3, -1, -1)
    tiles = torch.stack([hq, lq, occ], 1).clamp(0, 1)  # (B, 3 tiles, 3, s, s)
    b = tiles.shape[0]
    rows = math.ceil(b / columns)
    pad = 4
    cell_w = 3 * s + 2 * 1
    canvas = torch.ones(3, rows * (s + pad) + pad, columns * (cell_w + pad) + pad)
    for i in range(b):  # a figure, not the hot path
        r, c = divmod(i, columns)
        y, x = pad + r * (s + pad), pad + c * (cell_w + pad)
        for k in range(3):
            canvas[:, y:y + s, x + k * (s + 1):x + k * (s + 1) + s] = tiles[i, k].cpu()
    return canvas


def save_grid(batch: DegradationBatch, path: str | pathlib.Path, columns: int = 4) -> None:
    p = pathlib.Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    _save_png(make_grid(batch, columns), p)
