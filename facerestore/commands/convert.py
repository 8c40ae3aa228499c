"""`facerestore convert`."""

from __future__ import annotations

import typer

from . import not_built


def register(app: typer.Typer) -> None:
    @app.command("convert", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def convert() -> None:
        """Not implemented yet (issue 10: convert)."""
        not_built("convert", "issue 10: convert")
