"""Template face masks (``template_mask``): RGBA cut-outs in MaskTheFace format (``masks.cfg`` +
PNGs) read once per process, warped onto the face anchors, optionally recoloured or textured;
head-turned variants (``_left``/``_right``) are picked from the landmarks. Placement:
:mod:`.mask_placement`.
"""

from __future__ import annotations

import configparser
import math
import pathlib
import threading
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from facerestore.errors import FaceRestoreError
from facerestore.interfaces import Degradation, DegradationBatch

from .degradation_random import Range, bernoulli, check_prob
from .mask_placement import Placement, composite, map_grid


_TEMPLATE_CACHE: dict[tuple, "_TemplateSet"] = {}
_CACHE_LOCK = threading.Lock()


class _TemplateSet:
    """Templates of one folder at one working size, premultiplied RGBA tensors on the CPU."""

    def __init__(self, names: list[str], images: list[Tensor], anchors: list[Tensor],
                 shade_ref: list[float], textures: Optional[Tensor]):
        self.names, self.images, self.anchors, self.shade_ref, self.textures = names, images, anchors, shade_ref, textures
        self._device: dict[str, tuple[list[Tensor], Optional[Tensor]]] = {}

    def on(self, device: torch.device) -> tuple[list[Tensor], Optional[Tensor]]:
        key = str(device)
        if key not in self._device:
            self._device[key] = ([im.to(device) for im in self.images],
                                 None if self.textures is None else self.textures.to(device))
        return self._device[key]


def read_masks_cfg(folder: pathlib.Path) -> dict[str, tuple[pathlib.Path, list[tuple[float, float]]]]:
    """``masks.cfg`` -> name: (PNG path, six anchors a..f). Sections without a template file or
    without all six anchors (MaskTheFace's ``empty``/``inpaint`` placeholders) are skipped."""
    cfg_path = folder / "masks.cfg"
    parser = configparser.ConfigParser(comment_prefixes=("#", ";"), inline_comment_prefixes=None)
    try:
        parser.read_string(cfg_path.read_text(encoding="utf-8"))
    except (OSError, configparser.Error) as exc:
        raise FaceRestoreError(f"cannot read mask templates config {cfg_path}: {exc}") from None
    out = {}
    for name in parser.sections():
        sec = parser[name]
        if "template" not in sec or not all(f"mask_{k}" in sec for k in "abcdef"):
            continue
        rel = pathlib.Path(sec["template"].strip())
        candidates = [folder / rel, folder / "templates" / rel.name, folder / rel.name]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            continue
        pts = []
        for k in "abcdef":
            x, y = (float(s) for s in sec[f"mask_{k}"].split(","))
            pts.append((x, y))
        out[name] = (path, pts)
    return out


def texture_square(im: Any, size: int = 96) -> Any:
    """A cloth texture as the renderer uses it: RGB, centre square, ``size`` px (PIL in, PIL out)."""
    from PIL import Image

    im = im.convert("RGB")
    s = min(im.size)
    im = im.crop(((im.width - s) // 2, (im.height - s) // 2, (im.width + s) // 2, (im.height + s) // 2))
    return im.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=None)


def _load_textures(folder: pathlib.Path, size: int = 96) -> Optional[Tensor]:
    from PIL import Image

    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"))
    tex = []
    for f in files:
        try:
            with Image.open(f) as im:
                im = texture_square(im, size)
                tex.append(torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8).view(size, size, 3))
        except OSError:
            continue
    if not tex:
        return None
    return torch.stack(tex).permute(0, 3, 1, 2).float() / 255


def load_templates(folder: str | pathlib.Path, names: list[str], max_size: int = 256,
                   textures: str = "textures") -> _TemplateSet:
    """Read (once per process, cached) the RGBA templates of ``folder`` named ``names`` or, if
    ``names`` is empty, all of them."""
    from PIL import Image

    root = pathlib.Path(folder).expanduser().resolve()
    key = (str(root), tuple(names), max_size, textures)
    with _CACHE_LOCK:
        if key in _TEMPLATE_CACHE:
            return _TEMPLATE_CACHE[key]
        entries = read_masks_cfg(root)
        if names:
            missing = [n for n in names if n not in entries]
            if missing:
                raise FaceRestoreError(f"mask templates {missing} not found in {root / 'masks.cfg'} "
                                       f"(available: {', '.join(sorted(entries))})")
            entries = {n: entries[n] for n in names}
        if not entries:
            raise FaceRestoreError(f"no usable mask templates in {root} (masks.cfg + RGBA PNGs)")
        imgs, anchors, refs, used = [], [], [], []
        for name, (path, pts) in sorted(entries.items()):
            with Image.open(path) as im:
                im = im.convert("RGBA")
                scale = min(1.0, max_size / max(im.size))
                size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
                full = (im.width, im.height)
                if scale < 1:
                    im = im.resize(size, Image.Resampling.LANCZOS)
                t = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8).view(size[1], size[0], 4)
            t = t.permute(2, 0, 1).float() / 255
            a = t[3:]
            rgb = t[:3] * a
            imgs.append(torch.cat([rgb, a], 0))
            # anchors in grid_sample coordinates [-1, 1] of the template
            anchors.append(torch.tensor([[x / full[0] * 2 - 1, y / full[1] * 2 - 1] for x, y in pts]))
            lum = t[:3].mean(0)[a[0] > 0.5]
            refs.append(float(lum.quantile(0.7)) if lum.numel() else 1.0)
            used.append(name)
        tex_dir = root / textures if textures else None
        tex = _load_textures(tex_dir) if tex_dir is not None and tex_dir.is_dir() else None
        ts = _TemplateSet(used, imgs, anchors, refs, tex)
        _TEMPLATE_CACHE[key] = ts
        return ts


def _pose_families(names: list[str]) -> dict[str, list[int]]:
    """family -> [frontal, left, right] template indices (-1 where a variant is missing)."""
    fam: dict[str, list[int]] = {}
    for i, n in enumerate(names):
        base, slot = n, 0
        for suffix, s in (("_left", 1), ("_right", 2)):
            if n.endswith(suffix):
                base, slot = n[: -len(suffix)], s
        fam.setdefault(base, [-1, -1, -1])[slot] = i
    for idx in fam.values():
        front = next(i for i in idx if i >= 0) if idx[0] < 0 else idx[0]
        for s in range(3):
            if idx[s] < 0:
                idx[s] = front
    return fam


class TemplateMask(Degradation):
    """MaskTheFace RGBA mask templates warped onto the face landmarks, optionally recoloured."""

    def __init__(self, folder: str = "",
                 families: list[str] = ["surgical", "surgical_blue", "surgical_green", "cloth", "KN95", "N95"],
                 recolor_prob: float = 0.3, texture_prob: float = 0.25, textures: str = "textures",
                 pose_aware: bool = True, yaw_threshold: float = 0.12, template_size: int = 256,
                 top: Range = (0.3, 0.6), chin: Range = (0.6, 0.9), width: Range = (1.02, 1.22),
                 rotation: Range = (-5.0, 5.0), perspective: float = 0.03, jitter: float = 0.02,
                 p: float = 1.0):
        """``folder``: a MaskTheFace-style folder (``masks.cfg``, PNGs, optional ``textures``
        sub-folder of images); ``families``: template names without the ``_left``/``_right``
        suffix (empty = all); ``pose_aware``: use the head-turned variant when the nose is more
        than ``yaw_threshold`` eye distances off the eye centre. Placement as ``procedural_mask``."""
        if not folder:
            raise FaceRestoreError("template masks need `folder`: a MaskTheFace-style folder (masks.cfg + PNGs); "
                                   "in a recipe, a path relative to the recipe file")
        path = pathlib.Path(folder).expanduser()
        if not (path / "masks.cfg").is_file():
            raise FaceRestoreError(f"mask template folder {str(folder)!r} not found or has no masks.cfg "
                                   f"(resolved: {path.resolve()}); give the MaskTheFace folder as `folder`")
        self.folder, self.families = str(folder), list(families)
        self.recolor_prob = check_prob("recolor_prob", recolor_prob)
        self.texture_prob = check_prob("texture_prob", texture_prob)
        self.textures, self.pose_aware, self.yaw_threshold = textures, pose_aware, float(yaw_threshold)
        self.template_size = int(template_size)
        self.placement = Placement(top, chin, width, rotation, perspective, jitter)
        self.p = check_prob("p", p)
        self._set: Optional[_TemplateSet] = None

    @property
    def templates(self) -> _TemplateSet:
        if self._set is None:
            root = pathlib.Path(self.folder).expanduser()
            all_names = list(read_masks_cfg(root.resolve()))
            names = [n for n in all_names if not self.families or n in self.families
                     or n.rsplit("_", 1)[0] in self.families and n.rsplit("_", 1)[1] in ("left", "right")]
            if self.families and not names:
                raise FaceRestoreError(f"none of the mask families {self.families} is in {root / 'masks.cfg'}")
            self._set = load_templates(root, names, self.template_size, self.textures)
        return self._set

    def __call__(self, batch: DegradationBatch, generator: torch.Generator) -> DegradationBatch:
        b, dev = batch.hq.shape[0], batch.hq.device
        applied = bernoulli(generator, b, self.p, dev)
        lm = self.placement.landmarks(batch, generator)
        anchors, yaw = self.placement.anchors(lm, generator)
        tid = self.choose(generator, yaw)
        colour, alpha = self.render(anchors, tid, batch.hq.shape[-2:], generator)
        alpha = alpha * applied.view(-1, 1, 1, 1)
        return composite(batch, colour, alpha, torch.where(applied, tid, torch.full_like(tid, -1)), "template_mask")

    def choose(self, generator: torch.Generator, yaw: Tensor) -> Tensor:
        """A template index per sample: a random family, then its pose variant."""
        ts = self.templates
        fam = _pose_families(ts.names)
        table = torch.tensor(list(fam.values()), device=yaw.device)  # (F, 3)
        n = yaw.shape[0]
        f = (torch.rand(n, generator=generator, device=yaw.device) * len(fam)).long().clamp_max(len(fam) - 1)
        slot = torch.zeros_like(f)
        if self.pose_aware:
            slot = torch.where(yaw < -self.yaw_threshold, 1, torch.where(yaw > self.yaw_threshold, 2, 0))
        return table[f, slot]

    def render(self, anchors: Tensor, tid: Tensor, size, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        h, w = int(size[0]), int(size[1])
        n, dev = anchors.shape[0], anchors.device
        ts = self.templates
        images, textures = ts.on(dev)
        # per-sample recolouring choices (drawn for every sample, used where chosen)
        u = torch.rand(n, 4, generator=generator, device=dev)
        hsv = torch.stack([u[:, 0] * 2 * math.pi, 0.1 + 0.8 * u[:, 1], 0.35 + 0.6 * u[:, 2]], 1)
        from kornia.color import hsv_to_rgb

        recolour = hsv_to_rgb(hsv.view(n, 3, 1, 1))
        mode = torch.rand(n, generator=generator, device=dev)
        use_tex = (mode < self.texture_prob) & (textures is not None)
        use_col = (~use_tex) & (mode < self.texture_prob + self.recolor_prob)
        n_tex = 1 if textures is None else textures.shape[0]
        tex_id = (torch.rand(n, generator=generator, device=dev) * n_tex).long().clamp_max(n_tex - 1)
        tex_rep = 1.5 + 2 * torch.rand(n, generator=generator, device=dev)

        colour = anchors.new_zeros(n, 3, h, w)
        alpha = anchors.new_zeros(n, 1, h, w)
        if n == 0:
            return colour, alpha
        grid = None
        anchor_t = torch.stack([ts.anchors[int(i)] for i in range(len(ts.names))]).to(dev)[tid]  # (n, 6, 2)
        grid = map_grid(anchors, anchor_t, h, w)  # (n, H, W, 2) template coordinates
        for t in torch.unique(tid).tolist():  # one grid_sample per template used in the batch
            idx = (tid == t).nonzero().squeeze(1)
            img = images[t].unsqueeze(0).expand(idx.numel(), -1, -1, -1)
            out = F.grid_sample(img, grid[idx], mode="bilinear", padding_mode="zeros", align_corners=False)
            a = out[:, 3:]
            rgb = out[:, :3] / a.clamp_min(1e-3)
            colour[idx] = rgb.clamp(0, 1)
            alpha[idx] = (a > 0.5).float()
            # luminance relative to the template's bright fabric = shading to keep when recolouring
            shade = (rgb.mean(1, keepdim=True) / ts.shade_ref[t]).clamp(0, 1.3)
            if bool(use_col[idx].any()):
                sel = use_col[idx].view(-1, 1, 1, 1)
                colour[idx] = torch.where(sel, (recolour[idx] * shade).clamp(0, 1), colour[idx])
            if textures is not None and bool(use_tex[idx].any()):
                sel = use_tex[idx].view(-1, 1, 1, 1)
                tg = grid[idx] * tex_rep[idx].view(-1, 1, 1, 1)
                tex = F.grid_sample(textures[tex_id[idx]], tg, mode="bilinear", padding_mode="reflection",
                                    align_corners=False)
                colour[idx] = torch.where(sel, (tex * shade).clamp(0, 1), colour[idx])
        return colour, alpha
