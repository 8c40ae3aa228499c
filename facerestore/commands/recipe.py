"""`facerestore recipe check|show`: validate and print recipes without loading weights or data."""

from __future__ import annotations

import pathlib
from typing import List, Optional

import typer

from . import user_errors

SET_HELP = "Override a recipe value: KEY.PATH=VALUE (TOML literal), e.g. train.steps=20. Repeatable."


def register(app: typer.Typer) -> None:
    recipe_app = typer.Typer(help="Validate and inspect recipes.", no_args_is_help=True)
    app.add_typer(recipe_app, name="recipe")

    @recipe_app.command("check")
    @user_errors
    def check(
        recipes: List[pathlib.Path] = typer.Argument(..., help="Recipe TOML file(s)."),
        set_: Optional[List[str]] = typer.Option(None, "--set", help=SET_HELP),
    ) -> None:
        """Validate recipe(s): structure, types, component names and parameters."""
        from ..recipe import load_recipe

        for path in recipes:
            r = load_recipe(path, set_ or [])
            typer.echo(f"ok: {path} ({r.name}, x{r.scale}, {r.lq_size}->{r.hq_size})")

    @recipe_app.command("show")
    @user_errors
    def show(
        recipe: pathlib.Path = typer.Argument(..., help="Recipe TOML file."),
        set_: Optional[List[str]] = typer.Option(None, "--set", help=SET_HELP),
        stats: bool = typer.Option(True, "--stats/--no-stats", help="Build the generator to count parameters and FLOPs."),
    ) -> None:
        """Print the fully resolved recipe (every default filled in), parameters and GFLOPs per face."""
        from ..recipe import load_recipe, resolve_recipe

        r = load_recipe(recipe, set_ or [])
        typer.echo(resolve_recipe(r).to_toml())
        if stats:
            from ..modelstats import generator_stats

            for line in generator_stats(r):
                typer.echo(f"# {line}")
