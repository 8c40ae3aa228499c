"""Recipes: TOML files read, overridden (``--set KEY.PATH=VALUE``), mapped onto the typed
configuration of :mod:`facerestore.recipe_config` and validated.

A recipe names components by ``type`` and gives their parameters; the registry validates those
against the component's constructor. Everything else (data, schedule, which loss sees which
output) is typed in :mod:`facerestore.recipe_config`. Every error names its TOML path, e.g.
``generator.denoiser.type``.

Layout (see ``recipes/jdsr_gan.toml``)::

    name = "jdsr_gan"          scale = 4      hq_size = 128
    [data]                     folders, validation set
    [[degradation]]            ordered list of degradation specs (HQ -> LQ, on the device)
    [generator]                generator spec; nested [generator.denoiser], [generator.upsampler]...
    [discriminator]            optional
    [[loss]]                   type, on (generator output), weight, start, stages + loss params
    [train]                    optimiser, schedule, EMA, checkpoints; optional [[train.stages]]
"""

from __future__ import annotations

import copy
import dataclasses
import os
import pathlib
import tomllib
import typing
from collections.abc import Mapping
from typing import Any

from .errors import RecipeError
from .registry import Registry, check_type
from .components import default_registry
from .recipe_config import BATCH_TENSORS, DEFAULT_TARGETS, DataConfig, LossSpec, Recipe, TrainConfig


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------
_TOP_KEYS = {"name", "description", "scale", "hq_size", "data", "degradation", "generator",
             "discriminator", "loss", "train"}
_LOSS_KEYS = {"type", "on", "target", "weight", "start", "every", "stages"}


def load_recipe(source: str | pathlib.Path | Mapping[str, Any], overrides: list[str] | None = None, *,
                registry: Registry | None = None, validate: bool = True) -> Recipe:
    """Read a recipe file (or already-parsed data), apply ``key.path=value`` overrides, map it onto
    :class:`Recipe` and validate every component spec against ``registry``."""
    if isinstance(source, Mapping):
        data, origin = copy.deepcopy(dict(source)), "<dict>"
    else:
        origin = str(source)
        path = pathlib.Path(source)
        if not path.is_file():
            raise RecipeError("", f"recipe file not found: {path}")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise RecipeError("", f"{path} is not valid TOML: {exc}") from None
        except UnicodeDecodeError:
            raise RecipeError("", f"{path} is not UTF-8 text") from None
    if not isinstance(source, Mapping):
        resolve_paths(data, pathlib.Path(source).parent)
    for item in overrides or []:  # paths given on the command line are the user's: from the cwd
        apply_override(data, item)
    recipe = recipe_from_dict(data)
    recipe.source = origin
    if validate:
        validate_recipe(recipe, registry or default_registry())
    return recipe


#: keys of a degradation spec that name files or folders
PATH_KEYS = ("folder",)


def resolve_paths(data: dict[str, Any], base: pathlib.Path) -> None:
    """Make the recipe's relative paths (``data.train``, ``data.val``, a degradation's
    ``folder``, ``train.init``, a loss's ``teacher`` file) relative to the recipe file's folder
    ``base`` instead of the working directory. They stay relative (to the working directory) so
    runs and checkpoints do not embed absolute paths of one machine."""
    def fix(p: Any) -> Any:
        if not isinstance(p, str) or not p or pathlib.Path(p).expanduser().is_absolute():
            return p
        return os.path.relpath(base / p)

    def fix_model(table: Any, key: str) -> None:  # a model file; a model name stays a name
        if isinstance(table, dict) and str(table.get(key, "")).endswith(".safetensors"):
            table[key] = fix(table[key])

    section = data.get("data")
    if isinstance(section, dict):
        if isinstance(section.get("train"), list):
            section["train"] = [fix(p) for p in section["train"]]
        elif isinstance(section.get("train"), str):
            section["train"] = fix(section["train"])
        if "val" in section:
            section["val"] = fix(section["val"])
    fix_model(data.get("train"), "init")
    for spec in data.get("degradation", []) if isinstance(data.get("degradation"), list) else []:
        if isinstance(spec, dict):
            for key in PATH_KEYS:
                if key in spec:
                    spec[key] = fix(spec[key])
    for spec in data.get("loss", []) if isinstance(data.get("loss"), list) else []:
        fix_model(spec, "teacher")  # distill's


def recipe_from_dict(data: Mapping[str, Any]) -> Recipe:
    if not isinstance(data, Mapping):
        raise RecipeError("", "a recipe must be a TOML table")
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise RecipeError(unknown[0], f"unknown key; allowed top-level keys: {', '.join(sorted(_TOP_KEYS))}")
    if "name" not in data:
        raise RecipeError("name", "missing (every recipe has a name)")
    name = check_type(data["name"], str, "name")
    scale = check_type(data.get("scale", 4), int, "scale")
    if scale not in (1, 2, 4, 8):
        raise RecipeError("scale", f"must be 1, 2, 4 or 8, got {scale}")
    hq_size = check_type(data.get("hq_size", 128), int, "hq_size")
    if not 16 <= hq_size <= 2048 or hq_size % scale:
        raise RecipeError("hq_size", f"must be in 16..2048 and divisible by scale ({scale}), got {hq_size}")
    degradation = _list_of_tables(data.get("degradation", []), "degradation")
    for i, spec in enumerate(degradation):
        _require_type(spec, f"degradation[{i}]")
    degradation = [_downscale_by(scale, spec, i) for i, spec in enumerate(degradation)]
    generator = data.get("generator")
    if generator is None:
        raise RecipeError("generator", "missing (a recipe needs a [generator] table with a type)")
    if not isinstance(generator, Mapping):
        raise RecipeError("generator", "expected a table")
    _require_type(generator, "generator")
    disc = data.get("discriminator")
    if disc is not None:
        if not isinstance(disc, Mapping):
            raise RecipeError("discriminator", "expected a table")
        _require_type(disc, "discriminator")
    losses = []
    for i, raw in enumerate(_list_of_tables(data.get("loss", []), "loss")):
        path = f"loss[{i}]"
        _require_type(raw, path)
        fields = {k: v for k, v in raw.items() if k in _LOSS_KEYS}
        spec = _dataclass_from(LossSpec, {**fields}, path, skip={"params", "path"})
        spec.params = {k: v for k, v in raw.items() if k not in _LOSS_KEYS}
        spec.path = path
        losses.append(spec)
    train = _dataclass_from(TrainConfig, data.get("train", {}), "train")
    _check_train(train)
    data_cfg = _dataclass_from(DataConfig, data.get("data", {}), "data")
    if data_cfg.val_count < 1:
        raise RecipeError("data.val_count", "must be at least 1")
    if data_cfg.workers < 0 or data_cfg.workers > 64:
        raise RecipeError("data.workers", "must be in 0..64")
    if not 0.0 <= data_cfg.hflip <= 1.0:
        raise RecipeError("data.hflip", "must be a probability in [0, 1]")
    return Recipe(name=name, scale=scale, hq_size=hq_size, description=check_type(data.get("description", ""), str, "description"),
                  data=data_cfg, degradation=[dict(d) for d in degradation], generator=dict(generator),
                  discriminator=dict(disc) if disc is not None else None, losses=losses, train=train)


def _check_train(t: TrainConfig) -> None:
    positive = {"steps": t.steps, "batch_size": t.batch_size, "log_every": t.log_every,
                "val_every": t.val_every, "ckpt_every": t.ckpt_every, "keep_last": t.keep_last}
    for key, value in positive.items():
        if value < 1:
            raise RecipeError(f"train.{key}", f"must be at least 1, got {value}")
    if t.steps > 100_000_000:
        raise RecipeError("train.steps", f"unreasonably large ({t.steps})")
    if t.batch_size > 65536:
        raise RecipeError("train.batch_size", f"unreasonably large ({t.batch_size})")
    for key in ("lr", "lr_d"):
        value = getattr(t, key)
        if not 0 < value < 1:
            raise RecipeError(f"train.{key}", f"must be in (0, 1), got {value}")
    if not 0 <= t.ema_decay < 1:
        raise RecipeError("train.ema_decay", f"must be in [0, 1), got {t.ema_decay}")
    for i, b in enumerate(t.betas):
        if not 0 <= b < 1:
            raise RecipeError(f"train.betas[{i}]", f"must be in [0, 1), got {b}")
    if t.d_warmup < 0:
        raise RecipeError("train.d_warmup", "must be >= 0")
    if t.grad_clip < 0:
        raise RecipeError("train.grad_clip", "must be >= 0 (0 disables clipping)")
    if t.warmup_steps < 0 or t.seed < 0 or t.weight_decay < 0:
        raise RecipeError("train", "warmup_steps, seed and weight_decay must be >= 0")
    names = [s.name for s in t.stages]
    for i, s in enumerate(t.stages):
        if s.steps < 1:
            raise RecipeError(f"train.stages[{i}].steps", "must be at least 1")
        if names.count(s.name) > 1:
            raise RecipeError(f"train.stages[{i}].name", f"duplicate stage name {s.name!r}")


def validate_recipe(recipe: Recipe, registry: Registry) -> None:
    """Validate every component spec (no weights, no data touched)."""
    for i, spec in enumerate(recipe.degradation):
        registry.validate("degradation", spec, f"degradation[{i}]")
    registry.validate("generator", recipe.generator, "generator")
    if recipe.discriminator is not None:
        registry.validate("discriminator", recipe.discriminator, "discriminator")
    stage_names = {s.name for s in recipe.train.stages}
    for loss in recipe.losses:
        registry.validate("loss", loss.spec(), loss.path)
        if loss.on not in DEFAULT_TARGETS:
            raise RecipeError(f"{loss.path}.on", f"unknown generator output {loss.on!r}; outputs: {', '.join(DEFAULT_TARGETS)}")
        if loss.resolved_target() not in BATCH_TENSORS:
            raise RecipeError(f"{loss.path}.target", f"unknown target {loss.target!r}; targets: {', '.join(BATCH_TENSORS)}")
        for s in loss.stages:
            if s not in stage_names:
                raise RecipeError(f"{loss.path}.stages", f"no stage named {s!r} in train.stages")
        if loss.weight < 0 or loss.start < 0:
            raise RecipeError(loss.path, "weight and start must be >= 0")
        if loss.every < 1:
            raise RecipeError(f"{loss.path}.every", f"must be >= 1, got {loss.every}")


def resolve_spec(registry: Registry, kind: str, spec: Mapping[str, Any], path: str = "") -> dict[str, Any]:
    """A component spec with every parameter default filled in (for ``recipe show``)."""
    params = registry.validate(kind, spec, path, partial=True)
    entry = registry.get(kind, spec["type"] if isinstance(spec, Mapping) else spec)
    out: dict[str, Any] = {"type": entry.name}
    for p in entry.params:
        if p.name in params:
            value = params[p.name]
            if p.role != "value" and isinstance(value, Mapping):
                value = resolve_spec(registry, p.component_kind, value, f"{path}.{p.name}")
            out[p.name] = value
        elif not p.required:
            if p.role != "value" and isinstance(p.default, (str, Mapping)):
                out[p.name] = resolve_spec(registry, p.component_kind, registry.normalize_spec(p.default, p.name), f"{path}.{p.name}")
            elif _toml_value(p.default):
                out[p.name] = list(p.default) if isinstance(p.default, tuple) else p.default
    for k, v in params.items():  # **kwargs extras
        out.setdefault(k, v)
    return _plain(out)


def _plain(v: Any) -> Any:
    """Tuples (from typed validation) back to TOML arrays."""
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, Mapping):
        return {k: _plain(x) for k, x in v.items()}
    return v


def resolve_recipe(recipe: Recipe, registry: Registry | None = None) -> Recipe:
    """A copy of ``recipe`` whose component specs list every parameter with its value."""
    registry = registry or default_registry()
    r = copy.deepcopy(recipe)
    r.degradation = [resolve_spec(registry, "degradation", s, f"degradation[{i}]") for i, s in enumerate(r.degradation)]
    r.generator = resolve_spec(registry, "generator", r.generator, "generator")
    if r.discriminator is not None:
        r.discriminator = resolve_spec(registry, "discriminator", r.discriminator, "discriminator")
    for loss in r.losses:
        full = resolve_spec(registry, "loss", loss.spec(), loss.path)
        loss.params = {k: v for k, v in full.items() if k != "type"}
    return r


def _toml_value(v: Any) -> bool:
    if isinstance(v, bool | int | float | str):
        return True
    if isinstance(v, (list, tuple)):
        return all(_toml_value(x) for x in v)
    if isinstance(v, Mapping):
        return all(isinstance(k, str) and _toml_value(x) for k, x in v.items())
    return False


# --------------------------------------------------------------------------------------------
# Overrides
# --------------------------------------------------------------------------------------------
def parse_value(text: str) -> Any:
    """A TOML literal (``20``, ``1e-4``, ``true``, ``[1, 2]``, ``"x"``); bare words are strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_override(data: dict[str, Any], item: str) -> None:
    """``train.steps=20``, ``degradation.0.sigma=[0.5, 2]``, ``generator.upsampler.attention.type=se``."""
    if "=" not in item:
        raise RecipeError(item, "an override is KEY.PATH=VALUE")
    key, _, text = item.partition("=")
    parts = [p for p in key.strip().split(".")]
    if not all(parts):
        raise RecipeError(key, "empty component in key path")
    node: Any = data
    walked = []
    for part in parts[:-1]:
        walked.append(part)
        if isinstance(node, list):
            node = node[_index(node, part, walked)]
        else:
            if part not in node:
                node[part] = {}
            if not isinstance(node[part], (dict, list)):
                raise RecipeError(".".join(walked), f"is a value, cannot set {key}")
            node = node[part]
    last = parts[-1]
    value = parse_value(text.strip())
    if isinstance(node, list):
        node[_index(node, last, parts)] = value
    else:
        node[last] = value


def _index(node: list, part: str, walked: list[str]) -> int:
    if not part.lstrip("-").isdigit() or not -len(node) <= int(part) < len(node):
        raise RecipeError(".".join(walked), f"expected an index in 0..{len(node) - 1}")
    return int(part)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------
def _downscale_by(scale: int, spec: Mapping[str, Any], i: int) -> dict[str, Any]:
    """The scale is declared once, at the top: a ``downscale`` step takes it when it names none
    and must agree when it does (a x4 model trained on x2 inputs is a silent failure)."""
    spec = dict(spec)
    if spec.get("type") != "downscale":
        return spec
    if "scale" not in spec:
        spec["scale"] = scale
    elif spec["scale"] != scale:
        raise RecipeError(f"degradation[{i}].scale", f"{spec['scale']} differs from the recipe's scale ({scale}); "
                                                     "leave it out to use the recipe's")
    return spec


def _list_of_tables(value: Any, path: str) -> list[Mapping[str, Any]]:
    if not isinstance(value, list):
        raise RecipeError(path, "expected an array of tables ([[...]])")
    for i, v in enumerate(value):
        if not isinstance(v, Mapping):
            raise RecipeError(f"{path}[{i}]", "expected a table")
    return value


def _require_type(spec: Mapping[str, Any], path: str) -> None:
    if "type" not in spec:
        raise RecipeError(f"{path}.type", "missing component 'type'")
    if not isinstance(spec["type"], str):
        raise RecipeError(f"{path}.type", "expected a string")


def _dataclass_from(cls: type, raw: Any, path: str, skip: set[str] = frozenset()):
    if not isinstance(raw, Mapping):
        raise RecipeError(path, "expected a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in skip}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise RecipeError(f"{path}.{unknown[0]}", f"unknown key; allowed: {', '.join(fields)}")
    kwargs = {}
    for name, f in fields.items():
        sub = f"{path}.{name}"
        if name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise RecipeError(sub, "missing")
            continue
        ann = hints[name]
        if typing.get_origin(ann) is list and dataclasses.is_dataclass(typing.get_args(ann)[0]):
            inner = typing.get_args(ann)[0]
            items = _list_of_tables(raw[name], sub)
            kwargs[name] = [_dataclass_from(inner, v, f"{sub}[{i}]") for i, v in enumerate(items)]
        else:
            kwargs[name] = check_type(raw[name], ann, sub)
    return cls(**kwargs)
