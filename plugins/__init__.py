"""facerestore's built-in components, registered through the ``facerestore`` entry point exactly
as a third-party plugin would be (see ``pyproject.toml``: ``builtin = "facerestore_plugins"``).

Each module exposes ``register(registry)``; importing a module registers nothing. Modules import
only torch/kornia at module level; dlib, timm and facenet-pytorch are imported inside the
components that need them.
"""

from __future__ import annotations

import importlib

from facerestore.plugins import hookimpl

MODULES = (
    "degradations",
    "masks",
    "attention",
    "denoisers",
    "upsamplers",
    "generators",
    "inpaint",
    "discriminators",
    "losses",
    "perceptual",
    "identity",
    "detectors",
)


@hookimpl
def facerestore_register(registry) -> None:
    for name in MODULES:
        importlib.import_module(f"{__name__}.{name}").register(registry)
