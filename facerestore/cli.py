"""The ``facerestore`` command line (typer). Each command lives in ``facerestore.commands.<name>``."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="facerestore",
    help="Modular face restoration: masked low-resolution faces in, unmasked high-resolution faces out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # plain help: rich markup ate "[[degradation]]" and printed "<bool>" beside every flag
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"facerestore {version('facerestore')}")
        except PackageNotFoundError:  # running from a source tree that is not installed
            typer.echo("facerestore (not installed)")
        raise typer.Exit()


@app.callback()
def _root(show_version: bool = typer.Option(False, "--version", "-V", callback=_version, is_eager=True,
                                            help="Print the version and exit.")) -> None:
    """Modular face restoration: masked low-resolution faces in, unmasked high-resolution faces out."""

COMMANDS = ["train", "restore", "eval", "degrade", "plugins", "recipe", "doctor", "export", "convert", "prepare", "serve"]

for _name in COMMANDS:
    importlib.import_module(f"facerestore.commands.{_name}").register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
