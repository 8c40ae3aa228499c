"""The process-wide component registry and the helpers that use it.

Dependencies go one way: :mod:`facerestore.registry` (the data structure) <-
:mod:`facerestore.plugins` (discovery through entry points) <- this module (the default registry,
filled by discovery on first use). Code that is handed a registry uses that one; only code with
none (a component built directly in Python) falls back to the default.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

from .registry import Factory, Registry

_DEFAULT: Optional[Registry] = None


def default_registry() -> Registry:
    """The registry with every installed plugin loaded (loaded once, on first call)."""
    global _DEFAULT
    if _DEFAULT is None:
        from .plugins import load_plugins

        reg = Registry()
        load_plugins(reg)
        _DEFAULT = reg
    return _DEFAULT


def reset_default_registry() -> None:
    """Forget the loaded plugins (tests; after installing a plugin in a running process)."""
    global _DEFAULT
    _DEFAULT = None


def create(kind: str, name: str, /, **params: Any) -> Any:
    """Build a registered component by kind and name: ``create("attention", "se", channels=64)``."""
    return default_registry().create(kind, name, **params)


def resolve(value: Any, kind: str, registry: Optional[Registry] = None) -> Any:
    """A component given as a built object, a registered name or a spec dict (``{"type": ...}``)
    -> the object, built with ``registry`` (the default one when None). For direct Python use:
    ``JDSRGenerator(denoiser="jdsr_denoiser")``."""
    if isinstance(value, (str, Mapping)):
        return (registry or default_registry()).build(kind, value, kind)
    return value


def factory(value: Any, kind: str, registry: Optional[Registry] = None) -> Factory:
    """A :class:`~facerestore.registry.Factory` from a Factory, a registered name or a spec dict,
    resolved in ``registry`` (the default one when None). For direct Python use, as :func:`resolve`."""
    return Factory.coerce(value, kind, registry or default_registry())


def build_generator(recipe: Any, registry: Optional[Registry] = None) -> Any:
    """A recipe's generator (fresh weights), its scale checked against the recipe's: the one place
    a generator is built from a recipe (checkpoints, training, ``convert``, model statistics)."""
    gen = (registry or default_registry()).build("generator", recipe.generator, "generator")
    own = getattr(gen, "scale", None)
    if own is not None and int(own) != int(recipe.scale):
        from .errors import RecipeError

        raise RecipeError("scale", f"the recipe says {recipe.scale} but its generator "
                                   f"({recipe.generator.get('type')}) magnifies by {own}")
    return gen
