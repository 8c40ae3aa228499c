"""TOML scalars checked against the annotations ``bool``, ``int``, ``float``, ``str`` and ``Path``
(converted where a recipe may write them loosely: an integer for a float), and the words an error
message uses for the value it got.
"""

from __future__ import annotations

import pathlib
from typing import Any

from .errors import RecipeError


def check_bool(value: Any, path: str) -> bool:
    if isinstance(value, bool):
        return value
    raise RecipeError(path, f"expected a boolean, got {type_of(value)}")


def check_int(value: Any, path: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise RecipeError(path, f"expected an integer, got {type_of(value)}")


def check_float(value: Any, path: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise RecipeError(path, f"expected a number, got {type_of(value)}")
    try:
        value = float(value)
    except OverflowError:  # an integer beyond float range (TOML integers are unbounded)
        raise RecipeError(path, "expected a finite number, got an integer too large for a float") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise RecipeError(path, "expected a finite number")
    return value


def check_str(value: Any, path: str) -> str:
    if isinstance(value, str):
        return value
    raise RecipeError(path, f"expected a string, got {type_of(value)}")


def check_path(value: Any, path: str) -> str:
    if isinstance(value, (str, pathlib.Path)):
        return str(value)
    raise RecipeError(path, f"expected a path string, got {type_of(value)}")


#: annotation -> checker of a TOML scalar
SCALARS = {bool: check_bool, int: check_int, float: check_float, str: check_str,
           pathlib.Path: check_path, "Path": check_path}


def type_of(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
             list: "an array", tuple: "an array", dict: "a table", type(None): "nothing"}
    for t, n in names.items():
        if type(value) is t:
            return f"{n} ({value!r})" if t in (bool, int, float, str) else n
    return type(value).__name__
