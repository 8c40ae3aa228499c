"""Component registry: one namespace per interface kind, explicit names, validated parameters.

In the spirit of timm's ``register_model``/``create_model``/``list_models``, but explicit: nothing
is registered by importing a module. Plugins register their components from the
``facerestore_register(registry)`` hook (see :mod:`facerestore.plugins`), and
``create(kind, name, **params)`` checks ``params`` against the component's constructor signature
before building it, so a recipe error is reported with its TOML path instead of a ``TypeError``
deep inside a model.

Parameters annotated with an interface class (``denoiser: Denoiser``) take a nested component
spec ``{"type": "...", ...}`` and are built recursively; parameters annotated
``Factory[Attention]`` take a spec too but receive a :class:`Factory`, which the host calls as
often as it needs (``attention(channels=64)``), adding its own arguments.

TOML scalars are checked against ``bool``/``int``/``float``/``str``/``Path`` by
:mod:`facerestore.toml_values`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar, Union

from .errors import InvalidParameterError, RecipeError, UnknownComponentError
from .interfaces import INTERFACES
from .toml_values import SCALARS, type_of

T = TypeVar("T")
_REQUIRED = inspect.Parameter.empty
#: Keys of a component spec that belong to whoever hosts the component, not to its constructor.
SPEC_KEYS = ("type",)


class Factory(Generic[T]):
    """A deferred component: ``factory(**host_args)`` builds a new instance each call.

    Used for parts a network instantiates many times (attention in every residual block) and
    whose constructor needs host-provided values (``channels``).
    """

    def __init__(self, registry: "Registry", kind: str, name: str, params: Mapping[str, Any]):
        self.registry, self.kind, self.name, self.params = registry, kind, name, dict(params)

    def __call__(self, **host_args: Any) -> T:
        return self.registry.create(self.kind, self.name, **{**self.params, **host_args})

    def __repr__(self) -> str:
        return f"Factory({self.kind}:{self.name}, {self.params})"

    @staticmethod
    def coerce(value: "Factory[T] | str | Mapping[str, Any]", kind: str, registry: "Registry") -> "Factory[T]":
        """Accept a Factory, a component name or a spec dict (for direct, non-recipe use), resolved
        in ``registry`` (``facerestore.components.factory`` supplies the process-wide one: the
        registry never reaches for discovery, which sits above it)."""
        if isinstance(value, Factory):
            return value
        reg = registry
        spec = reg.normalize_spec(value, f"<{kind}>")
        params = reg.validate(kind, spec, f"<{kind}>", partial=True)
        return Factory(reg, kind, spec["type"], params)


@dataclasses.dataclass(frozen=True)
class ParamInfo:
    name: str
    annotation: Any
    default: Any  # inspect.Parameter.empty when required
    #: "value", "component" (nested instance) or "factory" (nested Factory)
    role: str = "value"
    #: registry kind of a nested component/factory
    component_kind: str | None = None

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED

    def type_name(self) -> str:
        return _type_name(self.annotation)


@dataclasses.dataclass(frozen=True)
class Entry:
    kind: str
    name: str
    obj: Callable[..., Any]
    source: str
    params: tuple[ParamInfo, ...]
    accepts_extra: bool  # constructor takes **kwargs

    @property
    def doc(self) -> str:
        """First line of the component's docstring."""
        doc = inspect.getdoc(self.obj) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""


class Registry:
    """Components by kind and name. ``kinds`` are fixed by the core (:data:`INTERFACES`)."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Entry]] = {kind: {} for kind in INTERFACES}
        self.load_errors: list[tuple[str, str]] = []  # (plugin name, error) from discovery
        self._current_source = "<runtime>"

    # -- registration ------------------------------------------------------------------------
    def register(self, kind: str, name: str, obj: Callable[..., Any] | None = None, *,
                 source: str | None = None, replace: bool = False):
        """Register ``obj`` (a class or factory function) as ``kind``/``name``.

        Usable as a call or, with ``obj`` omitted, as a decorator. Registering a taken name is an
        error unless ``replace=True``, so two plugins cannot silently shadow each other.
        """
        self._check_kind(kind)
        if obj is None:
            return lambda o: self.register(kind, name, o, source=source, replace=replace)
        if not name or not isinstance(name, str):
            raise ValueError(f"component name must be a non-empty string, got {name!r}")
        existing = self._entries[kind].get(name)
        if existing is not None and not replace:
            raise ValueError(f"{kind} {name!r} is already registered by {existing.source}")
        params, extra = _signature_params(obj)
        self._entries[kind][name] = Entry(kind, name, obj, source or self._current_source, params, extra)
        return obj

    @contextlib.contextmanager
    def transaction(self, source: str):
        """Registrations inside are attributed to ``source``; if the block raises, every one of
        them is rolled back (a plugin that fails half way leaves nothing behind)."""
        snapshot = {k: dict(v) for k, v in self._entries.items()}
        previous, self._current_source = self._current_source, source
        try:
            yield self
        except BaseException:
            self._entries = snapshot
            raise
        finally:
            self._current_source = previous

    # -- lookup ------------------------------------------------------------------------------
    @property
    def kinds(self) -> list[str]:
        return list(self._entries)

    def names(self, kind: str) -> list[str]:
        self._check_kind(kind)
        return sorted(self._entries[kind])

    def entries(self, kind: str | None = None) -> list[Entry]:
        kinds = [kind] if kind else self.kinds
        return [self._entries[k][n] for k in kinds for n in self.names(k)]

    def get(self, kind: str, name: str, path: str = "") -> Entry:
        self._check_kind(kind, path)
        try:
            return self._entries[kind][name]
        except KeyError:
            raise UnknownComponentError(kind, name, self.names(kind), path) from None

    def __contains__(self, key: tuple[str, str]) -> bool:
        kind, name = key
        return name in self._entries.get(kind, {})

    # -- validation and construction ---------------------------------------------------------
    def normalize_spec(self, spec: Any, path: str) -> dict[str, Any]:
        """A component spec is ``{"type": name, **params}``; a bare string means no params."""
        if isinstance(spec, str):
            return {"type": spec}
        if not isinstance(spec, Mapping):
            raise RecipeError(path, f"expected a component table with a 'type' key, got {type_of(spec)}")
        if "type" not in spec:
            raise RecipeError(f"{path}.type" if path else "type", "missing component 'type'")
        if not isinstance(spec["type"], str):
            raise RecipeError(f"{path}.type", f"expected a string, got {type_of(spec['type'])}")
        return dict(spec)

    def validate(self, kind: str, spec: Any, path: str = "", *, partial: bool = False) -> dict[str, Any]:
        """Check a spec against the component's signature; return its normalised parameters.

        ``partial``: required parameters may be missing (the host of a Factory supplies them).
        Nested component specs are validated recursively and kept as normalised specs.
        """
        spec = self.normalize_spec(spec, path)
        entry = self.get(kind, spec["type"], _join(path, "type"))
        given = {k: v for k, v in spec.items() if k not in SPEC_KEYS}
        known = {p.name: p for p in entry.params}
        out: dict[str, Any] = {}
        for key, value in given.items():
            sub = _join(path, key)
            info = known.get(key)
            if info is None:
                if entry.accepts_extra:
                    out[key] = value
                    continue
                names = ", ".join(known) or "(none)"
                raise RecipeError(sub, f"unknown parameter for {kind} {entry.name!r}; parameters: {names}")
            if info.role == "value":
                out[key] = check_type(value, info.annotation, sub)
            else:
                nested = self.normalize_spec(value, sub)
                params = self.validate(info.component_kind, nested, sub, partial=info.role == "factory")
                out[key] = {"type": nested["type"], **params}
        if not partial:
            missing = [p.name for p in entry.params if p.required and p.name not in out]
            if missing:
                raise RecipeError(path, f"{kind} {entry.name!r} needs parameter(s): {', '.join(missing)}")
        return out

    def build(self, kind: str, spec: Any, path: str = "") -> Any:
        """Validate a spec and build the component (nested components built first)."""
        spec = self.normalize_spec(spec, path)
        params = self.validate(kind, spec, path)
        return self._construct(kind, spec["type"], params, path)

    def create(self, kind: str, name: str, /, **params: Any) -> Any:
        """``create("attention", "cbam", channels=64)``: validate, then build."""
        return self.build(kind, {"type": name, **params}, f"{kind}:{name}")

    def _construct(self, kind: str, name: str, params: dict[str, Any], path: str) -> Any:
        entry = self.get(kind, name, path)
        roles = {p.name: p for p in entry.params}
        kwargs: dict[str, Any] = {}
        for key, value in params.items():
            info = roles.get(key)
            if info is not None and info.role == "component":
                kwargs[key] = self._construct(info.component_kind, value["type"],
                                              {k: v for k, v in value.items() if k != "type"}, _join(path, key))
            elif info is not None and info.role == "factory":
                kwargs[key] = Factory(self, info.component_kind, value["type"],
                                      {k: v for k, v in value.items() if k != "type"})
            else:
                kwargs[key] = value
        # Defaults that name a nested component (e.g. ``attention: Factory[Attention] = "cbam"``)
        for info in entry.params:
            if info.name not in kwargs and info.role != "value" and isinstance(info.default, (str, Mapping)):
                kwargs[info.name] = self._construct_default(info, path)
        try:
            return entry.obj(**kwargs)
        except RecipeError:
            raise
        except ValueError as exc:  # the constructor refused a value the signature could not rule out
            msg = " ".join(str(exc).split()) or type(exc).__name__
            raise InvalidParameterError(path, f"{kind} {name!r}: {msg}") from exc

    def _construct_default(self, info: ParamInfo, path: str) -> Any:
        sub = _join(path, info.name)
        spec = self.normalize_spec(info.default, sub)
        params = self.validate(info.component_kind, spec, sub, partial=info.role == "factory")
        if info.role == "factory":
            return Factory(self, info.component_kind, spec["type"], params)
        return self._construct(info.component_kind, spec["type"], params, sub)

    def _check_kind(self, kind: str, path: str = "") -> None:
        if kind not in self._entries:
            raise RecipeError(path, f"unknown component kind {kind!r}; kinds: {', '.join(self._entries)}")


# --------------------------------------------------------------------------------------------
# Signature inspection and type checking
# --------------------------------------------------------------------------------------------
def _signature_params(obj: Callable[..., Any]) -> tuple[tuple[ParamInfo, ...], bool]:
    target = obj.__init__ if inspect.isclass(obj) else obj
    sig = inspect.signature(target)
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # unresolvable forward refs: fall back to raw annotations
        hints = {}
    params: list[ParamInfo] = []
    extra = False
    for i, p in enumerate(sig.parameters.values()):
        if inspect.isclass(obj) and i == 0:
            continue  # self
        if p.kind is p.VAR_KEYWORD:
            extra = True
            continue
        if p.kind is p.VAR_POSITIONAL:
            continue
        ann = hints.get(p.name, p.annotation)
        role, ckind = _role(ann)
        params.append(ParamInfo(p.name, ann, p.default, role, ckind))
    return tuple(params), extra


def _role(ann: Any) -> tuple[str, str | None]:
    if typing.get_origin(ann) in (Union, types.UnionType):  # ``Denoiser | None``: optional component
        inner = [a for a in typing.get_args(ann) if a is not type(None)]
        if len(inner) == 1:
            return _role(inner[0])
    if typing.get_origin(ann) is Factory:
        (inner,) = typing.get_args(ann)
        return "factory", getattr(inner, "kind", None)
    for iface in INTERFACES.values():
        if ann is iface:
            return "component", iface.kind
    return "value", None


def check_type(value: Any, ann: Any, path: str) -> Any:
    """Check ``value`` (parsed from TOML) against a constructor annotation; return it converted
    (int -> float where a float is expected, list -> tuple for tuples). Unknown annotations pass."""
    if ann is _REQUIRED or ann is Any:
        return value
    origin = typing.get_origin(ann)
    args = typing.get_args(ann)
    if origin in (Union, types.UnionType):
        for arg in args:
            try:
                return check_type(value, arg, path)
            except RecipeError:
                continue
        raise RecipeError(path, f"expected {_type_name(ann)}, got {type_of(value)}")
    if ann is type(None):
        if value is None:
            return None
        raise RecipeError(path, f"expected none, got {type_of(value)}")
    if origin is typing.Literal:
        if value in args:
            return value
        raise RecipeError(path, f"expected one of {', '.join(map(repr, args))}, got {value!r}")
    if ann in SCALARS:
        return SCALARS[ann](value, path)
    if origin in (list, tuple, typing.Sequence, __import__("collections.abc").abc.Sequence):
        return _check_sequence(value, ann, origin, args, path)
    if origin in (dict, Mapping, typing.Mapping) or ann is dict:
        if not isinstance(value, Mapping):
            raise RecipeError(path, f"expected a table, got {type_of(value)}")
        return dict(value)
    return value


def _check_sequence(value: Any, ann: Any, origin: Any, args: tuple, path: str) -> Any:
    """A TOML array against ``list[T]``, ``Sequence[T]``, ``tuple[T, ...]`` or a fixed-length tuple."""
    if not isinstance(value, (list, tuple)):
        raise RecipeError(path, f"expected {_type_name(ann)}, got {type_of(value)}")
    if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        if len(value) != len(args):
            raise RecipeError(path, f"expected {len(args)} values ({_type_name(ann)}), got {len(value)}")
        return tuple(check_type(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    inner = args[0] if args else Any
    items = [check_type(v, inner, f"{path}[{i}]") for i, v in enumerate(value)]
    return tuple(items) if origin is tuple else items


def _type_name(ann: Any) -> str:
    if ann is _REQUIRED:
        return "any"
    origin = typing.get_origin(ann)
    args = typing.get_args(ann)
    if origin is Factory:
        return f"{getattr(args[0], 'kind', '?')} spec"
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin is not None:
        inner = ", ".join("..." if a is Ellipsis else _type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    if ann is type(None):
        return "None"
    if inspect.isclass(ann) and getattr(ann, "kind", None) in INTERFACES:
        return f"{ann.kind} spec"
    return getattr(ann, "__name__", str(ann))


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
