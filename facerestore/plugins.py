"""Plugin discovery: pluggy hooks over the ``facerestore`` entry-point group.

A plugin is any importable object (usually a module) named by an entry point in group
``facerestore`` that implements the hook::

    from facerestore.plugins import hookimpl

    @hookimpl
    def facerestore_register(registry):
        registry.register("attention", "my_block", MyBlock)

The built-in components (``facerestore_plugins``, the repo's ``plugins/`` folder) are found the
same way, through the entry point ``builtin`` in this distribution's own metadata. Each plugin is
loaded and called on its own: one that fails to import or to register is recorded in
``registry.load_errors`` with its name and error, its partial registrations are rolled back, and
the other plugins still load.
"""

from __future__ import annotations

import importlib.metadata as md
import traceback
from typing import Any

import pluggy

from .registry import Registry

PROJECT = "facerestore"
ENTRY_POINT_GROUP = "facerestore"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class FaceRestoreSpec:
    """Hook specifications a facerestore plugin may implement."""

    @hookspec
    def facerestore_register(self, registry: Registry) -> None:
        """Register this plugin's components: ``registry.register(kind, name, cls)``."""


def plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(FaceRestoreSpec)
    return pm


def _source_of(ep: md.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    if dist is not None:
        return f"{dist.name} {dist.version}"
    return ep.value


def _dist_name(ep: md.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return dist.name if dist is not None else ""


def ep_key(ep: md.EntryPoint) -> str:
    """The plugin's name: ``distribution:entry point``, so two packages that both call their
    entry point ``plugin`` are two plugins, not one silently dropped."""
    dist = _dist_name(ep)
    return f"{dist}:{ep.name}" if dist else ep.name


def entry_points() -> list[md.EntryPoint]:
    """The group's entry points, one per (distribution, name): the same distribution visible
    twice on ``sys.path`` is loaded once."""
    out, seen = [], set()
    for ep in md.entry_points(group=ENTRY_POINT_GROUP):
        key = (_dist_name(ep), ep.name)
        if key not in seen:
            seen.add(key)
            out.append(ep)
    return out


def load_plugins(registry: Registry, extra: dict[str, Any] | None = None) -> pluggy.PluginManager:
    """Load every entry point of group ``facerestore`` (plus ``extra`` name -> plugin objects,
    for tests and embedding) into ``registry``; return the plugin manager.

    Failures are recorded as ``(plugin name, one-line error)`` in ``registry.load_errors``.
    """
    pm = plugin_manager()
    candidates: list[tuple[str, str, Any]] = []  # (name, source, plugin object or entry point)
    for ep in entry_points():
        candidates.append((ep_key(ep), _source_of(ep), ep))
    for name, obj in (extra or {}).items():
        candidates.append((name, getattr(obj, "__name__", name), obj))

    for name, source, obj in candidates:
        try:
            plugin = obj.load() if isinstance(obj, md.EntryPoint) else obj
            pm.register(plugin, name=name)
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the others
            registry.load_errors.append((name, _describe(exc, "import")))
            continue
        impls = [i for i in pm.hook.facerestore_register.get_hookimpls() if i.plugin_name == name]
        if not impls:
            registry.load_errors.append((name, "does not implement facerestore_register(registry)"))
            pm.unregister(name=name)
            continue
        try:
            with registry.transaction(source):
                for impl in impls:
                    impl.function(registry=registry)
        except Exception as exc:  # noqa: BLE001 - rolled back by the transaction
            registry.load_errors.append((name, _describe(exc, "register")))
            pm.unregister(name=name)
    return pm


def _describe(exc: BaseException, stage: str) -> str:
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    loc = f" ({where.filename}:{where.lineno})" if where else ""
    return f"failed to {stage}: {type(exc).__name__}: {exc}{loc}"
