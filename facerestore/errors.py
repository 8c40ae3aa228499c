"""Exceptions the CLI turns into one-line messages (no traceback for user errors)."""

from __future__ import annotations


class FaceRestoreError(Exception):
    """Base class: an error the user can act on; the CLI prints it without a traceback."""


class RecipeError(FaceRestoreError):
    """A recipe (or a component's parameters) is invalid; ``path`` is the TOML path, e.g.
    ``generator.denoiser.type``."""

    def __init__(self, path: str, message: str):
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


class InvalidParameterError(RecipeError, ValueError):
    """A component's constructor refused a parameter value (``ValueError``) while a recipe was built;
    the message gets the component's TOML path. Still a ``ValueError`` for direct callers."""


class UnknownComponentError(RecipeError):
    """A component name that no plugin registered; the message lists the known names."""

    def __init__(self, kind: str, name: str, known: list[str], path: str = ""):
        self.kind, self.name, self.known = kind, name, known
        names = ", ".join(sorted(known)) or "(none registered)"
        super().__init__(path, f"unknown {kind} {name!r}; known {kind} names: {names}")


class MissingWeightsError(FaceRestoreError):
    """Pretrained weights are not installed; the message says what to install or where to put a file."""


class CheckpointError(FaceRestoreError):
    """A model file is not a valid facerestore safetensors checkpoint."""


class InputImageError(FaceRestoreError):
    """An input image cannot be read; the message names the file."""
