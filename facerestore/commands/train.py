"""`facerestore train`."""

from __future__ import annotations

import typer

from . import not_built


def register(app: typer.Typer) -> None:
    @app.command("train", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def train() -> None:
        """Not implemented yet (issue 6: training engine)."""
        not_built("train", "issue 6: training engine")
