"""The typed recipe: the dataclasses a recipe file is mapped onto (:class:`Recipe` and its data,
train, stage and loss tables), and their TOML-shaped dump. Reading a file, ``--set`` overrides and
validation are :mod:`facerestore.recipe`'s.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Mapping
from typing import Any, Literal, Optional

from .errors import RecipeError


#: generator output -> the batch tensor it is compared with, unless a loss names ``target``.
DEFAULT_TARGETS = {
    "sr": "hq",
    "coarse": "hq",
    "denoised": "clean",
    "noise_map": "occlusion",
    "keep": "occlusion",
    "heatmaps": "heatmaps",
}
#: batch tensors a loss may use as target (``heatmaps`` are rendered from the HQ landmarks).
BATCH_TENSORS = ("hq", "lq", "clean", "occlusion", "occlusion_hq", "heatmaps")


@dataclasses.dataclass
class DataConfig:
    """Where faces come from. In a recipe file, relative paths are relative to that file."""

    train: list[str] = dataclasses.field(default_factory=list)
    val: str = ""
    #: faces from ``val`` degraded once with ``val_seed`` and reused at every validation
    val_count: int = 64
    val_seed: int = 1234
    #: DataLoader processes that only decode images (degradation runs on the device)
    workers: int = 2
    #: probability of mirroring a training face (the val set is never mirrored)
    hflip: float = 0.0
    extensions: list[str] = dataclasses.field(default_factory=lambda: [".jpg", ".jpeg", ".png", ".webp"])


@dataclasses.dataclass
class StageConfig:
    """A phase of a staged schedule: which generator parts train, for how many steps."""

    name: str
    steps: int
    #: keys of ``Generator.stage_modules()`` optimised in this stage; the rest is frozen
    train: list[str] = dataclasses.field(default_factory=lambda: ["generator"])


@dataclasses.dataclass
class TrainConfig:
    steps: int = 10000
    batch_size: int = 16
    lr: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    scheduler: Literal["constant", "cosine", "step"] = "cosine"
    #: linear learning-rate warm-up
    warmup_steps: int = 0
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    log_every: int = 50
    val_every: int = 1000
    ckpt_every: int = 1000
    keep_last: int = 3
    seed: int = 0
    #: mixed precision (bf16/fp16 autocast) on CUDA
    amp: bool = True
    #: bf16 autocast on a CPU with native bf16 (AVX512-BF16/AMX): ~2x conv throughput here
    cpu_amp: bool = False
    #: start the generator from these weights (a bundled model name or a .safetensors path,
    #: relative to the recipe): tensors of the same name and shape load, new ones keep their init
    init: str = ""
    #: the discriminator trains alone for this many steps before each adversarial term's ``start``,
    #: so the first gradient a warm-started generator gets from it is not a random critic's
    d_warmup: int = 0
    channels_last: bool = True
    stages: list[StageConfig] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class LossSpec:
    """One weighted term. ``on`` is a generator output (``sr``, ``denoised``, ``noise_map``,
    ``heatmaps``, ``coarse``, ``keep``); ``target`` defaults from :data:`DEFAULT_TARGETS`; ``start`` is the step at which
    the term switches on (adversarial warm-up); ``every`` = k computes an expensive term (identity,
    perceptual) on one step in k only, at its weight; ``stages`` limits it to named stages."""

    type: str
    on: str = "sr"
    target: str = ""
    weight: float = 1.0
    start: int = 0
    every: int = 1
    stages: list[str] = dataclasses.field(default_factory=list)
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    path: str = ""

    def resolved_target(self) -> str:
        return self.target or DEFAULT_TARGETS.get(self.on, "hq")

    def spec(self) -> dict[str, Any]:
        return {"type": self.type, **self.params}


@dataclasses.dataclass
class Recipe:
    name: str
    scale: int = 4
    hq_size: int = 128
    description: str = ""
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    degradation: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    generator: dict[str, Any] = dataclasses.field(default_factory=dict)
    discriminator: Optional[dict[str, Any]] = None
    losses: list[LossSpec] = dataclasses.field(default_factory=list)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    source: str = ""

    @property
    def lq_size(self) -> int:
        return self.hq_size // self.scale

    def loss_index(self, type: str) -> int:
        """Index of the recipe's only loss of ``type``, for ``--set loss.N.KEY=...`` overrides
        (scripts that name a term by its type keep working when the recipe's list changes)."""
        found = [i for i, spec in enumerate(self.losses) if spec.type == type]
        if len(found) != 1:
            raise RecipeError("loss", f"{len(found)} losses of type {type!r}; types: "
                              f"{', '.join(spec.type for spec in self.losses)}")
        return found[0]

    # -- serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The recipe as TOML-shaped data (what a file would contain), defaults filled in."""
        out: dict[str, Any] = {"name": self.name, "description": self.description, "scale": self.scale,
                               "hq_size": self.hq_size, "data": dataclasses.asdict(self.data),
                               "degradation": copy.deepcopy(self.degradation),
                               "generator": copy.deepcopy(self.generator)}
        if self.discriminator is not None:
            out["discriminator"] = copy.deepcopy(self.discriminator)
        out["loss"] = [{"type": l.type, "on": l.on, "target": l.resolved_target(), "weight": l.weight,
                        "start": l.start, "every": l.every, "stages": list(l.stages), **copy.deepcopy(l.params)}
                       for l in self.losses]
        train = dataclasses.asdict(self.train)
        train["betas"] = list(train["betas"])
        out["train"] = train
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=False)

    def to_toml(self) -> str:
        return dumps_toml(self.to_dict())


def dumps_toml(data: Mapping[str, Any]) -> str:
    """Minimal TOML writer for recipe-shaped data (tables, arrays of tables, scalars, arrays)."""
    lines: list[str] = []

    def scalar(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(scalar(x) for x in v) + "]"
        if isinstance(v, Mapping):
            return "{ " + ", ".join(f"{_key(k)} = {scalar(x)}" for k, x in v.items()) + " }"
        raise TypeError(f"cannot write {type(v).__name__} as TOML")

    def table(prefix: str, d: Mapping[str, Any], array: bool = False) -> None:
        plain = {k: v for k, v in d.items() if v is not None and not _is_table(v) and not _is_table_array(v)}
        if prefix:
            lines.append("")
            lines.append(f"[[{prefix}]]" if array else f"[{prefix}]")
        for k, v in plain.items():
            lines.append(f"{_key(k)} = {scalar(v)}")
        for k, v in d.items():
            if _is_table(v):
                table(f"{prefix}.{_key(k)}" if prefix else _key(k), v)
        for k, v in d.items():
            if _is_table_array(v):
                for item in v:
                    table(f"{prefix}.{_key(k)}" if prefix else _key(k), item, array=True)

    table("", data)
    return "\n".join(lines).lstrip("\n") + "\n"


def _is_table(v: Any) -> bool:
    return isinstance(v, Mapping)


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, Mapping) for x in v)


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else json.dumps(k)
