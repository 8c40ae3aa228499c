"""One door to every model: ``load(name_or_path)``.

    from facerestore import models
    m = models.load("masked-any", device="auto")      # bundled name, "bicubic", a .safetensors or a recipe .toml
    out = m.generator(faces)                          # (B, 3, m.lq_size, m.lq_size) -> dict with "sr"

* ``bicubic``: no weights, a ``sr_only`` generator with the ``bicubic`` upsampler (the baseline
  every trained model must beat; what tests use, so they need no training);
* a bundled name: a safetensors file shipped under ``facerestore/weights/``, described as data in
  ``weights/models.toml`` (:class:`ModelInfo`: file, recipe, scales, size, licence, sha256,
  metrics), in the spirit of timm's pretrained configs;
* a ``.safetensors`` path: a facerestore checkpoint (its recipe is inside it);
* a ``.toml`` path: a recipe, built with freshly initialised weights (a third party's plugin
  before training, a shape check).

``restore``, ``eval``, ``serve``, ``export``, ``doctor`` and training's ``train.init`` all resolve
names here and nowhere else.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Optional

from .defaults import DEFAULT_MODEL
from .errors import FaceRestoreError, MissingWeightsError

if TYPE_CHECKING:  # torch is imported where a model is built: the CLI's --help lists names without it
    import torch
    from torch import nn

WEIGHTS_DIR = pathlib.Path(__file__).resolve().parent / "weights"
#: weight-free models
BUILTIN = ("bicubic",)
#: face size the weight-free models assume (LQ input = HQ_SIZE / scale)
HQ_SIZE = 128


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What a bundled model is (one table of ``weights/models.toml``)."""

    name: str
    file: str
    recipe: str
    summary: str
    scales: tuple[int, int]
    size: int
    licence: str
    sha256: str
    metrics: Mapping[str, float]

    @property
    def path(self) -> pathlib.Path:
        return WEIGHTS_DIR / self.file


@functools.lru_cache(maxsize=1)
def bundled() -> dict[str, ModelInfo]:
    """Bundled model name -> :class:`ModelInfo`, in the order of ``weights/models.toml``."""
    import tomllib

    data = tomllib.loads((WEIGHTS_DIR / "models.toml").read_text(encoding="utf-8"))
    return {name: ModelInfo(name=name, file=t["file"], recipe=t["recipe"], summary=t["summary"],
                            scales=tuple(t["scales"]), size=int(t["size"]), licence=t["licence"],
                            sha256=t["sha256"], metrics=dict(t.get("metrics", {})))
            for name, t in data.items()}


def known_models() -> list[str]:
    return [*BUILTIN, *bundled()]


def info(name: str) -> ModelInfo:
    """A bundled model's facts; an unknown name is an error listing the known ones."""
    try:
        return bundled()[name]
    except KeyError:
        raise FaceRestoreError(f"unknown model {name!r}: known names are {', '.join(known_models())}, "
                               "or give the path of a .safetensors checkpoint") from None


@dataclasses.dataclass
class Model:
    """A loaded generator (eval mode) with its recipe (None for ``bicubic``), bundled facts (None
    for a file) and geometry: ``lq_size`` pixels in, ``hq_size = lq_size * scale`` out."""

    generator: nn.Module
    recipe: Optional[Any]
    name: str
    info: Optional[ModelInfo]
    scale: int
    lq_size: int
    source: str

    @property
    def hq_size(self) -> int:
        return self.lq_size * self.scale


def geometry(generator: nn.Module, recipe: Optional[Any]) -> tuple[int, int]:
    """``(scale, lq_size)``: the model's magnification and the face size it takes as input."""
    scale = int(getattr(recipe, "scale", 0) or getattr(generator, "scale", 1) or 1)
    hq = int(getattr(recipe, "hq_size", 0) or HQ_SIZE)
    return scale, max(1, hq // scale)


def _looks_like_path(s: str) -> bool:
    return os.sep in s or "/" in s or pathlib.Path(s).suffix != "" or pathlib.Path(s).exists()


def weights_file(name_or_path: str | os.PathLike[str]) -> pathlib.Path:
    """The safetensors file behind a bundled name or a path (``train.init``, ``export``)."""
    name = os.fspath(name_or_path)
    if name in bundled():
        path = info(name).path
        if not path.is_file():
            raise MissingWeightsError(
                f"the bundled model {name!r} is not in this install ({path} is missing). Pass a checkpoint "
                f"with --model PATH.safetensors, train one with `facerestore train recipes/jdsr_gan.toml`, "
                f"or use --model bicubic for the weight-free baseline.")
        return path
    if name in BUILTIN:
        raise FaceRestoreError(f"{name!r} is weight-free: it has no weights file")
    if not _looks_like_path(name):
        info(name)  # raises, listing the known names
    return pathlib.Path(name)


def load(name_or_path: str | os.PathLike[str] = DEFAULT_MODEL, device: str | torch.device = "cpu",
         dtype: Optional[torch.dtype] = None, scale: int = 4) -> Model:
    """Build a model (eval mode, on ``device``, parameters cast to ``dtype`` when given).
    ``scale`` only applies to ``bicubic``."""
    from .device import resolve_device

    dev = resolve_device(device)
    name = os.fspath(name_or_path)
    if name == "bicubic":
        from .components import default_registry

        gen = default_registry().build("generator", {"type": "sr_only", "upsampler": {"type": "bicubic",
                                                                                      "scale": scale}}, "model")
        recipe, facts, source = None, None, "bicubic interpolation (sr_only generator, bicubic upsampler)"
    elif name.lower().endswith(".toml"):
        from .components import build_generator
        from .recipe import load_recipe

        recipe = load_recipe(name)
        gen, facts, source = build_generator(recipe), None, f"recipe {name} (untrained weights)"
    else:
        from .checkpoint import load_generator

        path = weights_file(name)
        facts = bundled().get(name)
        gen, recipe = load_generator(path, dev)
        source = (f"bundled model {name} (recipe {recipe.name})" if facts else
                  f"checkpoint {name} (recipe {getattr(recipe, 'name', '?')})")
    gen = gen.to(dev).eval()
    if dtype is not None:
        gen = gen.to(dtype)
    s, lq = geometry(gen, recipe)
    if facts is not None and s * lq != facts.size:
        raise FaceRestoreError(f"bundled model {name!r}: its file gives {s * lq} px faces, models.toml says {facts.size}")
    return Model(gen, recipe, name, facts, s, lq, source)


def takes_fidelity(generator: nn.Module) -> bool:
    """A generative model (``jdsr_inpaint``) takes the fidelity: 0 its realistic fill, 1 its faithful one."""
    import inspect

    return "fidelity" in inspect.signature(generator.forward).parameters


def fit_input(x: torch.Tensor, size: int) -> torch.Tensor:
    """Aligned crops ``(B, 3, h, w)`` resized (bicubic, antialiased when shrinking) to the model's
    ``size`` x ``size`` input; unchanged when they already are."""
    import torch.nn.functional as F

    if tuple(x.shape[-2:]) == (size, size):
        return x
    big = x.shape[-1] > size or x.shape[-2] > size
    return F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=big).clamp(0, 1)


def run_faces(generator: nn.Module, x: torch.Tensor, fidelity: float = 0.0, tta: bool = False,
              amp: Optional[Callable[[], Any]] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass of ``generator`` over model-sized faces ``x``: ``(sr (B, 3, H, H), occlusion
    (B, 1, H, H))`` float32 in [0, 1] (zeros for a model without an occlusion estimate).
    ``tta``: averaged with the pass over the mirrored faces (BasicSR's self-ensemble). ``amp``:
    a context manager factory (autocast) around the generator call alone."""
    import contextlib

    import torch.nn.functional as F

    def once(inp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with amp() if amp is not None else contextlib.nullcontext():
            out = generator(inp, fidelity=fidelity) if takes_fidelity(generator) else generator(inp)
        sr = out["sr"].float().clamp(0, 1).contiguous()
        occ = out.get("noise_map")
        occ = (sr.new_zeros(sr.shape[0], 1, *sr.shape[-2:]) if occ is None else
               F.interpolate(occ.float(), size=sr.shape[-2:], mode="bilinear", align_corners=False))
        return sr, occ.clamp(0, 1)

    sr, occ = once(x)
    if tta:
        sr_f, occ_f = once(x.flip(-1))
        sr, occ = (sr + sr_f.flip(-1)) / 2, (occ + occ_f.flip(-1)) / 2
    return sr, occ
