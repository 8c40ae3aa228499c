"""A restricted unpickler for weight files that are pickles of numpy arrays.

``pickle.load`` imports and calls whatever the file names, so a weight file could run code.
:func:`load_numpy_pickle` admits only what a pickle of numpy arrays in plain containers needs
(``numpy.core.multiarray._reconstruct``/``scalar``, ``numpy.core.numeric._frombuffer``, ``numpy.ndarray``, ``numpy.dtype``,
``collections.OrderedDict``, latin-1 ``_codecs.encode`` for protocol-2 bytes) and refuses every other global before anything is called.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
from typing import Any

from ..errors import FaceRestoreError


class UnsafePickleError(FaceRestoreError):
    """A pickle names something other than numpy arrays and plain containers."""


def _numpy_globals() -> dict[tuple[str, str], Any]:
    import numpy as np

    try:  # numpy >= 2: the real module is numpy._core; numpy.core is a deprecated alias
        from numpy._core import multiarray
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray  # type: ignore[no-redef]
    allowed: dict[tuple[str, str], Any] = {}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "_reconstruct")] = multiarray._reconstruct
        allowed[(mod, "scalar")] = multiarray.scalar
    try:
        from numpy._core.numeric import _frombuffer
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.numeric import _frombuffer  # type: ignore[no-redef]
    for mod in ("numpy.core.numeric", "numpy._core.numeric"):  # protocol 5 out-of-band arrays
        allowed[(mod, "_frombuffer")] = _frombuffer
    for mod in ("numpy", "numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "ndarray")] = np.ndarray
        allowed[(mod, "dtype")] = np.dtype
    allowed[("collections", "OrderedDict")] = collections.OrderedDict
    allowed[("_codecs", "encode")] = _latin1_encode
    return allowed


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """Protocol-2 pickles write ``bytes`` as ``_codecs.encode(str, "latin1")``; nothing else."""
    if encoding != "latin1" or not isinstance(text, str):
        raise UnsafePickleError(f"refused _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler whose ``find_class`` knows only numpy array reconstruction and OrderedDict."""

    def __init__(self, file, *, source: str = "<pickle>"):
        super().__init__(file)
        self._allowed = _numpy_globals()
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self._source}: refused to unpickle {module}.{name} (only numpy arrays and plain "
                "containers are allowed in weight files)") from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self._source}: refused persistent id in pickle")


def loads_numpy_pickle(data: bytes, source: str = "<bytes>") -> Any:
    """Unpickle ``data`` with :class:`NumpyOnlyUnpickler`."""
    return NumpyOnlyUnpickler(io.BytesIO(data), source=source).load()


def load_numpy_pickle(path: str | os.PathLike[str]) -> Any:
    """Read a pickle of numpy arrays from ``path``, refusing anything that could run code."""
    with open(path, "rb") as fh:
        return NumpyOnlyUnpickler(fh, source=str(path)).load()
