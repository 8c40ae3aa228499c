"""`facerestore restore`."""

from __future__ import annotations

import typer

from . import not_built


def register(app: typer.Typer) -> None:
    @app.command("restore", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def restore() -> None:
        """Not implemented yet (issue 8: restore)."""
        not_built("restore", "issue 8: restore")
