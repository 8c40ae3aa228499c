"""`facerestore export`."""

from __future__ import annotations

import typer

from . import not_built


def register(app: typer.Typer) -> None:
    @app.command("export", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def export() -> None:
        """Not implemented yet (issue 8: export)."""
        not_built("export", "issue 8: export")
