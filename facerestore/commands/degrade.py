"""`facerestore degrade`."""

from __future__ import annotations

import typer

from . import not_built


def register(app: typer.Typer) -> None:
    @app.command("degrade", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def degrade() -> None:
        """Not implemented yet (issue 3: degradation)."""
        not_built("degrade", "issue 3: degradation")
