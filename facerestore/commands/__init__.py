"""CLI commands, one module per command; each exposes ``register(app)``.

Modules import their heavy dependencies inside the command function so that ``facerestore --help``
stays fast.
"""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from ..errors import FaceRestoreError

F = TypeVar("F", bound=Callable[..., Any])

#: exit code for user errors (bad recipe, missing file, missing weights)
EXIT_USER_ERROR = 2


def user_errors(fn: F) -> F:
    """Print a :class:`FaceRestoreError` as one line on stderr and exit 2, without a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _one_line_warning
                return fn(*args, **kwargs)
        except FaceRestoreError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(EXIT_USER_ERROR) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings (e.g. a skipped unreadable image) as one ``warning: ...`` line, no source excerpt."""
    kind = "" if category is UserWarning else f"{category.__name__}: "
    text = " ".join(str(message).split())
    try:
        print(f"warning: {kind}{text}", file=file or sys.stderr)
    except OSError:
        pass


def echo_err(msg: str) -> None:
    print(msg, file=sys.stderr)
