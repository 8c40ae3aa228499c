"""The models an evaluation scores: a bundled model, a checkpoint or ``bicubic`` wrapped as an
:class:`EvalModel` (``restore(lq) -> sr``), at the set's geometry or adapted to any input size as
``restore`` uses it.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclasses.dataclass
class EvalModel:
    """A restorer under test: ``restore(lq) -> sr`` with ``lq`` on the evaluation device."""

    name: str
    restore: Callable[[Tensor], Tensor]
    source: str = ""
    module: Optional[nn.Module] = None
    scale: int = 4
    #: resizes any input to its own input size and its output to the target's, as `restore`
    #: does; such a model can be scored on a set of any geometry
    adaptive: bool = False

    @property
    def params(self) -> int:
        return 0 if self.module is None else sum(p.numel() for p in self.module.parameters())


def _generator_model(name: str, gen: nn.Module, source: str) -> EvalModel:
    def restore(lq: Tensor) -> Tensor:
        out = gen(lq)
        return out["sr"] if isinstance(out, dict) else out

    return EvalModel(name, restore, source, gen, int(getattr(gen, "scale", 4)))


def adaptive_model(spec: str, hq_size: int, device: torch.device | str = "cpu", precision: str = "fp32",
                   tta: bool = False, fidelity: float = 0.0) -> EvalModel:
    """A model scored on inputs of any size the way ``restore`` uses it: the input is resized to
    the model's input size (:meth:`facerestore.restore.Restorer.run_model`), the output to the
    target size; ``tta``: mirrored self-ensemble; ``fidelity``: passed to a generative model
    (0 realistic, 1 faithful). ``bicubic`` is the input itself, resized."""
    if spec == "bicubic":
        def resize(lq: Tensor) -> Tensor:
            if lq.shape[-1] == hq_size:
                return lq
            return F.interpolate(lq, size=(hq_size, hq_size), mode="bicubic", align_corners=False,
                                 antialias=lq.shape[-1] > hq_size).clamp(0, 1)

        return EvalModel("input (bicubic)", resize, "the input, bicubic-resized to the target size", None, 1, True)
    from .restore import Restorer

    r = Restorer.from_pretrained(spec, device=device, channels_last=False, precision=precision, tta=tta,
                                 fidelity=fidelity)
    fid = f"fidelity {fidelity:g}" if fidelity and r.model_has_fidelity else ""
    variant = ", ".join(v for v in (precision if precision != "fp32" else "", "tta" if tta else "", fid) if v)
    name = _display_name(spec) + (f" ({variant})" if variant else "")
    base = _generator_model(name, r.generator, f"{spec} through Restorer.run_model, {precision}"
                            + (", mirrored self-ensemble" if tta else ""))

    def restore(lq: Tensor) -> Tensor:
        return r.run_model(lq)[0]

    return dataclasses.replace(base, restore=restore, adaptive=True)


def _display_name(spec: str) -> str:
    path = pathlib.Path(spec)
    if path.suffix.lower() != ".safetensors":
        return spec
    generic = path.stem in ("model", "final", "last", "best", "ema", "latest", "generator") or path.stem.startswith("ckpt_")
    if generic and path.parent.name:  # runs/<recipe>/ckpt_00004000.safetensors -> "<recipe>"
        return path.parent.name if path.stem.startswith("ckpt_") or path.stem == "last" else f"{path.parent.name}/{path.stem}"
    return path.stem


def eval_model(spec: str, device: torch.device | str = "cpu", scale: int = 4) -> EvalModel:
    """``bicubic``, a bundled model name or a checkpoint file (:func:`facerestore.models.load`,
    the same names ``restore`` takes) as an evaluated model. ``scale`` is used by ``bicubic`` only
    (the data's HQ/LQ ratio)."""
    from .models import load

    m = load(spec, device, scale=scale)
    return _generator_model(_display_name(spec), m.generator, m.source)
