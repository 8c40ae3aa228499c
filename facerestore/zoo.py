"""Model names for ``restore``, ``eval`` and ``export``: built-in, bundled, or a checkpoint path.

* ``bicubic``: no weights, a ``sr_only`` generator with the ``bicubic`` upsampler (the baseline
  every trained model must beat; also what tests use, so they need no training);
* a bundled name (:data:`BUNDLED`): a safetensors file shipped inside the package under
  ``facerestore/weights/``: the default ``masked-any`` (``recipes/masked_any.toml``, faces at any
  scale), ``masked-gen`` (``recipes/masked_gen.toml``, masked-any plus a generative fill) and
  ``jdsr-x4`` (``recipes/jdsr_gan_small.toml``, 32 -> 128 px); see docs/model-card.md;
* anything else is a path to a facerestore safetensors checkpoint (its recipe is inside it).
"""

from __future__ import annotations

import os
import pathlib
from typing import TYPE_CHECKING, Optional

from .defaults import DEFAULT_MODEL
from .errors import FaceRestoreError, MissingWeightsError

if TYPE_CHECKING:  # torch is imported where a model is built: the CLI's --help lists names without it
    import torch
    from torch import nn

WEIGHTS_DIR = pathlib.Path(__file__).resolve().parent / "weights"
#: bundled model name -> file under :data:`WEIGHTS_DIR`
BUNDLED: dict[str, str] = {
    "masked-any": "masked-any.safetensors",
    "masked-gen": "masked-gen.safetensors",
    "jdsr-x4": "jdsr-x4.safetensors",
}
#: bundled model name -> one line: what it is and what it was trained on (`facerestore doctor`);
#: each version's training is in docs/model-history.md
BUNDLED_INFO: dict[str, str] = {
    "masked-any": "recipes/masked_any.toml: aligned 128 px faces at any scale (x1-x8), faithful; celeba/train, "
                  "15 versions; docs/model-card.md",
    "jdsr-x4": "recipes/jdsr_gan_small.toml, 32 -> 128 px; celeba/train, 48,000 images; docs/model-card.md",
    "masked-gen": "recipes/masked_gen.toml: masked-any plus a generative inpainting branch (FFC), version 2; "
                  "celeba/train + celeba/extra + AAF, 17,632 images; --fidelity 1 gives masked-any; docs/model-card.md",
}
#: weight-free models: name -> (generator spec given the scale)
BUILTIN = ("bicubic",)
#: face size the weight-free models assume (LQ input = HQ_SIZE / scale)
HQ_SIZE = 128


def known_models() -> list[str]:
    return [*BUILTIN, *BUNDLED]


def bundled_path(name: str) -> pathlib.Path:
    return WEIGHTS_DIR / BUNDLED[name]


def _looks_like_path(s: str) -> bool:
    return os.sep in s or "/" in s or pathlib.Path(s).suffix != "" or pathlib.Path(s).exists()


def resolve_model(name_or_path: str | os.PathLike[str] = DEFAULT_MODEL, device: str | torch.device = "cpu",
                  scale: int = 4) -> tuple[nn.Module, Optional[object]]:
    """Build a generator (eval mode, on ``device``) and return it with its recipe (None for
    weight-free models). ``scale`` only applies to ``bicubic``."""
    from .checkpoint import load_generator
    from .device import resolve_device

    dev = resolve_device(device)
    name = os.fspath(name_or_path)
    if name == "bicubic":
        from .components import default_registry

        gen = default_registry().build("generator", {"type": "sr_only", "upsampler": {"type": "bicubic", "scale": scale}},
                                       "model")
        return gen.to(dev).eval(), None
    if name in BUNDLED:
        path = bundled_path(name)
        if not path.is_file():
            raise MissingWeightsError(
                f"the bundled model {name!r} is not in this install ({path} is missing). Pass a checkpoint "
                f"with --model PATH.safetensors, train one with `facerestore train recipes/jdsr_gan.toml`, "
                f"or use --model bicubic for the weight-free baseline.")
        return load_generator(path, dev)
    if not _looks_like_path(name):
        raise FaceRestoreError(f"unknown model {name!r}: known names are {', '.join(known_models())}, "
                               "or give the path of a .safetensors checkpoint")
    return load_generator(name, dev)


def model_geometry(generator: nn.Module, recipe: Optional[object]) -> tuple[int, int]:
    """``(scale, lq_size)``: the model's magnification and the face size it takes as input."""
    scale = int(getattr(recipe, "scale", 0) or getattr(generator, "scale", 1) or 1)
    hq = int(getattr(recipe, "hq_size", 0) or HQ_SIZE)
    return scale, max(1, hq // scale)
