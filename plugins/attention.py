"""Built-in attention components."""

from __future__ import annotations


def register(registry) -> None:
    """Register this module's components (none yet)."""
