"""`facerestore plugins`: what is installed, by kind, with parameters and origin."""

from __future__ import annotations

from typing import Optional

import typer

from . import EXIT_USER_ERROR, user_errors


def register(app: typer.Typer) -> None:
    @app.command("plugins")
    @user_errors
    def plugins(
        kind: Optional[str] = typer.Option(None, "--kind", "-k", help="Only this kind (degradation, denoiser, ...)."),
        verbose: bool = typer.Option(True, "--params/--no-params", help="List each component's parameters."),
    ) -> None:
        """List registered components by kind: parameters, defaults, one-line docs, source package."""
        from ..components import default_registry

        reg = default_registry()
        if kind is not None and kind not in reg.kinds:
            typer.echo(f"error: unknown kind {kind!r}; kinds: {', '.join(reg.kinds)}", err=True)
            raise typer.Exit(EXIT_USER_ERROR)
        for k in [kind] if kind else reg.kinds:
            entries = reg.entries(k)
            typer.secho(f"{k} ({len(entries)})", bold=True)
            for e in entries:
                typer.echo(f"  {e.name:<22} {e.doc}  [{e.source}]")
                if verbose:
                    for p in e.params:
                        default = "required" if p.required else f"= {p.default!r}"
                        typer.echo(f"      {p.name}: {p.type_name()} {default}")
        for name, err in reg.load_errors:
            typer.secho(f"plugin {name!r} {err}", fg="red", err=True)
