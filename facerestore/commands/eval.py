"""`facerestore eval`."""

from __future__ import annotations

import typer

from . import not_built


def register(app: typer.Typer) -> None:
    @app.command("eval", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def eval() -> None:
        """Not implemented yet (issue 7: evaluation)."""
        not_built("eval", "issue 7: evaluation")
