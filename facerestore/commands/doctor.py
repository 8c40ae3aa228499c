"""`facerestore doctor`."""

from __future__ import annotations

import typer

from . import not_built


def register(app: typer.Typer) -> None:
    @app.command("doctor", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def doctor() -> None:
        """Not implemented yet (issue 4: pretrained helpers)."""
        not_built("doctor", "issue 4: pretrained helpers")
