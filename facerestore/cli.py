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
)

COMMANDS = ["train", "restore", "eval", "degrade", "plugins", "recipe", "doctor", "export", "convert"]

for _name in COMMANDS:
    importlib.import_module(f"facerestore.commands.{_name}").register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
