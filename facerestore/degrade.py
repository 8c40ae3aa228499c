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
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Optional

import torch
from torch import Tensor

from .errors import FaceRestoreError
from .interfaces import Degradation, DegradationBatch
from .registry import Registry
from .components import default_registry

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
    """Run ``pipeline`` on ``hq`` (B, 3, H, W) float in [0, 1] on its device.

    A size-keeping linear step (blur) followed by another linear step (downscale) is applied as
    one product of their per-sample matrices (:meth:`Degradation.linear`): the blur is computed
    only where the downscale reads it; results equal the step-by-step ones to float rounding."""
    if hq.dim() != 4 or hq.shape[1] != 3:
        raise ValueError(f"expected hq of shape (B, 3, H, W), got {tuple(hq.shape)}")
    batch = DegradationBatch.from_hq(hq.float(), landmarks)
    pending = None
    for step in pipeline:
        op = step.linear(batch, generator)
        if op is None:
            batch = pending.apply(batch) if pending is not None else batch
            pending, batch = None, step(batch, generator)
        elif pending is None and _keeps_size(op, batch):
            pending = op  # wait: the next step may be linear too
        else:
            batch = (pending.then(op) if pending is not None else op).apply(batch)
            pending = None
    return pending.apply(batch) if pending is not None else batch


def _keeps_size(op, batch: DegradationBatch) -> bool:
    return op.my.shape[-2] == batch.lq.shape[-2] and op.mx.shape[-2] == batch.lq.shape[-1]


# --------------------------------------------------------------------------------------------
# Paired sets
# --------------------------------------------------------------------------------------------
def _save_png(t: Tensor, path: pathlib.Path) -> None:
    from PIL import Image

    from .pixels import to_uint8

    a = to_uint8(t).cpu()
    if a.shape[0] == 1:
        Image.fromarray(a[0].numpy(), mode="L").save(path)
    else:
        Image.fromarray(a.permute(1, 2, 0).contiguous().numpy(), mode="RGB").save(path)


def clear_output(out: pathlib.Path, replace: bool) -> None:
    """Refuse a non-empty ``out``; with ``replace``, remove a paired set's own folders and
    manifest there (anything else in it is refused too: it is not ours to delete)."""
    import shutil

    if not out.is_dir() or not any(out.iterdir()):
        return
    if not replace:
        raise FaceRestoreError(f"{out} is not empty: give another folder, or --replace to replace the set in it")
    ours = set(SUBDIRS) | {"manifest.json"}
    foreign = sorted(p.name for p in out.iterdir() if p.name not in ours)
    if foreign:
        raise FaceRestoreError(f"{out} holds files that are not a paired set's ({', '.join(foreign[:3])}): "
                               "not replaced; give another folder")
    for name in SUBDIRS:
        shutil.rmtree(out / name, ignore_errors=True)
    (out / "manifest.json").unlink(missing_ok=True)


def write_paired_set(out_dir: str | pathlib.Path, batches: Iterator[tuple[DegradationBatch, list[str]]],
                     manifest: dict[str, Any]) -> dict[str, Any]:
    """Write batches (with the source path of each sample) as a paired set; return the manifest."""
    out = pathlib.Path(out_dir)
    for sub in SUBDIRS:
        (out / sub).mkdir(parents=True, exist_ok=True)
    files = []
    sizes: dict[str, int] = {}
    for batch, sources in batches:
        sizes = {"hq_size": int(batch.hq.shape[-1]), "lq_size": int(batch.lq.shape[-1])}
        for i, src in enumerate(sources):
            stem = f"{len(files):05d}"
            _save_png(batch.hq[i], out / "hq" / f"{stem}.png")
            _save_png(batch.lq[i], out / "lq" / f"{stem}.png")
            _save_png(batch.clean[i], out / "lq_clean" / f"{stem}.png")
            _save_png(batch.occlusion[i], out / "occlusion" / f"{stem}.png")
            _save_png(batch.occlusion_hq[i], out / "occlusion_hq" / f"{stem}.png")
            files.append({"stem": stem, "source": src})
    manifest = {"format": FORMAT, "version": VERSION, **manifest, **sizes, "count": len(files), "files": files}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return manifest


@dataclasses.dataclass
class PairedSet:
    """A paired set in memory: uint8-backed float tensors in [0, 1], CPU, in stem order."""

    hq: Tensor                      # (N, 3, H, W)
    lq: Tensor                      # (N, 3, h, w)
    clean: Optional[Tensor]         # (N, 3, h, w) denoising target, None when the set has none
    occlusion: Optional[Tensor]     # (N, 1, h, w)
    occlusion_hq: Optional[Tensor]  # (N, 1, H, W)
    stems: list[str]
    manifest: dict[str, Any]

    def __len__(self) -> int:
        return len(self.stems)

    def batches(self, batch_size: int, device: torch.device | str = "cpu") -> Iterator[DegradationBatch]:
        """The set as :class:`DegradationBatch` es (what validation feeds the model)."""
        for i in range(0, len(self), batch_size):
            sl = slice(i, i + batch_size)
            lq, hq = self.lq[sl].to(device), self.hq[sl].to(device)
            occ = self.occlusion[sl].to(device) if self.occlusion is not None else lq.new_zeros(lq.shape[0], 1, *lq.shape[-2:])
            occ_hq = self.occlusion_hq[sl].to(device) if self.occlusion_hq is not None else hq.new_zeros(hq.shape[0], 1, *hq.shape[-2:])
            clean = self.clean[sl].to(device) if self.clean is not None else lq
            yield DegradationBatch(hq=hq, lq=lq, clean=clean, occlusion=occ, occlusion_hq=occ_hq)


def _read_png(path: pathlib.Path, channels: int) -> Tensor:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB" if channels == 3 else "L")
            t = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8).view(im.height, im.width, channels)
    except OSError as exc:
        raise FaceRestoreError(f"cannot read {path}: {exc}") from None
    return t.permute(2, 0, 1).float() / 255


def _set_stems(root: pathlib.Path) -> tuple[list[str], dict[str, Any]]:
    """Stems in set order and the manifest: ours (``facerestore-paired``, version checked) lists
    them; a set with the same layout from elsewhere (no or another manifest) is read in name order."""
    mpath = root / "manifest.json"
    manifest: dict[str, Any] = {}
    if mpath.is_file():
        try:
            manifest = json.loads(mpath.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise FaceRestoreError(f"{mpath} is not valid JSON: {exc}") from None
    if manifest.get("format") == FORMAT:
        if manifest.get("version") != VERSION:
            raise FaceRestoreError(f"{mpath}: unsupported version {manifest.get('version')!r} (this reader: {VERSION})")
        return [f["stem"] for f in manifest["files"]], manifest
    if not (root / "lq").is_dir() or not (root / "hq").is_dir():
        raise FaceRestoreError(f"{root} is not a paired set: expected folders lq/ and hq/ "
                               "(written by `facerestore degrade`); for a folder of faces use --recipe")
    return sorted(p.stem for p in (root / "lq").glob("*.png")), manifest


def load_paired_set(directory: str | pathlib.Path, limit: int | None = None) -> PairedSet:
    """Read a paired set (the format above; ``lq_clean``, ``occlusion`` and ``occlusion_hq`` may be
    missing: None then). Every listed file must exist; a file that cannot be decoded drops its
    pair with a warning naming it (``manifest["skipped_unreadable"]``), not the whole set. An
    occlusion map given only at LQ size is resized to HQ size (bilinear: soft edges)."""
    import warnings

    import torch.nn.functional as F

    root = pathlib.Path(directory)
    if not root.is_dir():
        raise FaceRestoreError(f"paired set not found: {root} (make one with `facerestore degrade`)")
    stems, manifest = _set_stems(root)
    stems = stems[: limit if limit is not None else None]
    if not stems:
        raise FaceRestoreError(f"{root}: the paired set is empty")
    subdirs = [s for s in SUBDIRS if s in ("lq", "hq") or (root / s).is_dir()]
    cols: dict[str, list[Tensor]] = {s: [] for s in subdirs}
    kept, skipped = [], []
    for stem in stems:
        paths = {sub: root / sub / f"{stem}.png" for sub in subdirs}
        missing = [sub for sub, p in paths.items() if not p.is_file()]
        if missing:
            raise FaceRestoreError(f"{root}: missing {missing[0]}/{stem}.png (the set lists lq/{stem}.png)")
        try:
            row = {sub: _read_png(p, 1 if sub.startswith("occlusion") else 3) for sub, p in paths.items()}
        except FaceRestoreError as exc:
            warnings.warn(f"skipping pair {stem!r}: {exc}", stacklevel=2)
            skipped.append(stem)
            continue
        kept.append(stem)
        for sub, t in row.items():
            cols[sub].append(t)
    if not kept:
        raise FaceRestoreError(f"{root}: none of the {len(skipped)} pairs could be read")
    t = {k: _stack(v, k, root) for k, v in cols.items()}
    occ_hq = t.get("occlusion_hq")
    if occ_hq is None and "occlusion" in t:
        occ_hq = F.interpolate(t["occlusion"], size=t["hq"].shape[-2:], mode="bilinear", align_corners=False).clamp(0, 1)
    if skipped:
        manifest = {**manifest, "skipped_unreadable": skipped}
    return PairedSet(hq=t["hq"], lq=t["lq"], clean=t.get("lq_clean"), occlusion=t.get("occlusion"),
                     occlusion_hq=occ_hq, stems=kept, manifest=manifest)


def _stack(items: list[Tensor], what: str, root: pathlib.Path) -> Tensor:
    shapes = {tuple(t.shape) for t in items}
    if len(shapes) != 1:
        raise FaceRestoreError(f"{root}/{what}: images differ in size ({sorted(shapes)[:3]})")
    return torch.stack(items)


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


# --------------------------------------------------------------------------------------------
# Folder -> paired set (``facerestore degrade``)
# --------------------------------------------------------------------------------------------
def read_degradation_recipe(path: str | pathlib.Path) -> tuple[list[dict[str, Any]], int, int, str]:
    """``(degradation specs, hq_size, scale, name)`` from a recipe file. Only those keys are read,
    so a recipe whose model components are not installed still works here."""
    import tomllib

    from .errors import RecipeError
    from .recipe import resolve_paths

    p = pathlib.Path(path)
    if not p.is_file():
        raise RecipeError("", f"recipe file not found: {p}")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RecipeError("", f"{p} is not valid TOML: {exc}") from None
    resolve_paths(data, p.parent)  # a mask ``folder`` is relative to the recipe, as in training
    specs = data.get("degradation", [])
    if not isinstance(specs, list) or not specs:
        raise RecipeError("degradation", f"{p} has no [[degradation]] steps")
    hq_size = data.get("hq_size", 128)
    scale = data.get("scale", 4)
    if not isinstance(hq_size, int) or not isinstance(scale, int):
        raise RecipeError("hq_size", "hq_size and scale must be integers")
    return [dict(s) for s in specs], hq_size, scale, str(data.get("name", p.stem))


def degrade_folder(src: str | pathlib.Path, out: str | pathlib.Path, recipe: str | pathlib.Path, seed: int = 0,
                   limit: int | None = None, device: str = "cpu", batch_size: int = 32,
                   landmark_cache: str | pathlib.Path | None = None,
                   grid: str | pathlib.Path | None = None,
                   progress: Optional[Callable[[int], None]] = None, replace: bool = False) -> dict[str, Any]:
    """Degrade the faces under ``src`` once with the recipe's pipeline and write a paired set;
    ``progress(n)`` is called after each batch with the number of source files it covered.
    A non-empty ``out`` is refused unless ``replace`` (then the old set's folders and manifest go
    first: a smaller new set must not leave stale pairs beside its manifest)."""
    from .data import FaceFolder
    from .landmark_cache import LandmarkCache

    specs, hq_size, scale, name = read_degradation_recipe(recipe)
    clear_output(pathlib.Path(out), replace)
    pipeline = build_pipeline(specs)
    cache = LandmarkCache(landmark_cache, src) if landmark_cache else None
    ds = FaceFolder(src, hq_size, landmark_cache=cache, limit=limit)
    gen = make_generator(seed, device)
    first: list[DegradationBatch] = []
    src_root = pathlib.Path(src)

    def batches() -> Iterator[tuple[DegradationBatch, list[str]]]:
        for start in range(0, len(ds), batch_size):
            items = [ds[i] for i in range(start, min(len(ds), start + batch_size))]
            if progress is not None:
                progress(len(items))
            items = [it for k, it in enumerate(items) if it["index"] == start + k]  # unreadable: skipped
            if not items:
                continue
            hq = torch.stack([it["hq"] for it in items]).to(device).float() / 255
            lm = torch.stack([it["landmarks"] for it in items]).to(device) if cache is not None else None
            batch = degrade_batch(hq, pipeline, gen, lm)
            if grid is not None and sum(b.hq.shape[0] for b in first) < 16:
                first.append(batch.to("cpu"))
            names = []
            for it in items:
                f = ds.files[it["index"]]
                try:
                    names.append(f.relative_to(src_root).as_posix())
                except ValueError:
                    names.append(str(f))
            yield batch, names

    manifest = write_paired_set(out, batches(), {
        "recipe": str(recipe), "recipe_name": name, "degradation": specs, "seed": int(seed),
        "hq_size": hq_size, "scale": scale, "source": str(src), "batch_size": batch_size,
        "device": str(device), "landmarks": "cache" if cache is not None else "template",
    })
    if grid is not None and first:
        merged = DegradationBatch(**{k: torch.cat([getattr(b, k) for b in first])[:16]
                                     for k in ("hq", "lq", "clean", "occlusion", "occlusion_hq")})
        save_grid(merged, grid)
    return manifest
