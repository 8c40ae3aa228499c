"""Evaluation protocols: a named, fixed way to degrade a folder of faces for scoring.

A protocol is a TOML file (``facerestore eval --protocol FILE``; the ones the benchmarks report are
in ``benchmarks/protocols/``)::

    name = "r4"                                   # how reports call it
    description = "the jdsr_gan recipe's degradation at x4"
    hq_size = 128                                 # faces read at this size (centre square crop)
    seed = 0                                      # the degradation's seed
    faces = "../../../shared/data/celeba/val"     # optional: the faces it degrades by default

    [[degradation]]                               # the recipe format's steps, in order
    type = "random_mask"
    folder = "../../../shared/data/masks/masktheface"

Relative paths (``faces``, a step's ``folder``) are relative to the protocol file, as in a recipe.
No ``[[degradation]]`` at all is a protocol too: the faces as they are, with no occlusion (a sharp
face a model should give back unchanged). Faces are degraded by
:func:`facerestore.eval_sets.degrade_faces`: in batches of 32 with one generator seeded ``seed`` on
the CPU, so a protocol, a face folder and a seed give the same pairs on any machine.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import tomllib
from typing import Any, Optional

from .errors import FaceRestoreError, RecipeError

_KEYS = {"name", "description", "hq_size", "seed", "faces", "degradation"}


@dataclasses.dataclass
class Protocol:
    """A loaded protocol; ``degradation`` is the list of step specs, paths already resolved."""

    name: str
    degradation: list[dict[str, Any]]
    hq_size: int = 128
    seed: int = 0
    faces: str = ""
    description: str = ""
    #: the file it was read from ('' for one made in code)
    source: str = ""

    def degrade(self, faces: str | os.PathLike[str] | None = None, *, seed: Optional[int] = None,
                limit: Optional[int] = None, device: Any = "cpu"):
        """The :class:`facerestore.eval_sets.PairedSet` of ``faces`` (default: the protocol's own)
        degraded by this protocol with ``seed`` (default: the protocol's)."""
        from .eval_sets import degrade_faces

        folder = faces if faces is not None else self.faces
        if not folder:
            raise FaceRestoreError(f"protocol {self.name!r} names no faces: give a face folder (eval --data)")
        data = degrade_faces(folder, self, self.seed if seed is None else seed, limit=limit, device=device)
        data.description.pop("recipe", None)
        data.description.update(protocol=self.name, protocol_file=self.source)
        return data


def load_protocol(path: str | os.PathLike[str]) -> Protocol:
    """Read and check a protocol file (every step is validated against the registry)."""
    from .components import default_registry
    from .recipe import resolve_paths

    path = pathlib.Path(path)
    if not path.is_file():
        raise FaceRestoreError(f"protocol file not found: {path}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise FaceRestoreError(f"{path} is not a valid TOML file: {exc}") from None
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise FaceRestoreError(f"{path}: unknown key {unknown[0]!r}; a protocol has {', '.join(sorted(_KEYS))}")
    steps = data.get("degradation", [])
    if not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps):
        raise FaceRestoreError(f"{path}: degradation must be [[degradation]] tables")
    for key, kind in (("name", str), ("description", str), ("faces", str), ("hq_size", int), ("seed", int)):
        if key in data and (not isinstance(data[key], kind) or isinstance(data[key], bool)):
            raise FaceRestoreError(f"{path}: {key} must be a {kind.__name__}, got {data[key]!r}")
    if data.get("hq_size", 128) < 1:
        raise FaceRestoreError(f"{path}: hq_size must be >= 1")
    base = path.parent
    resolve_paths(data, base)  # a step's folder, as in a recipe
    faces = data.get("faces", "")
    if faces and not pathlib.Path(faces).expanduser().is_absolute():
        faces = os.path.relpath(base / faces)
    registry = default_registry()
    for i, spec in enumerate(steps):
        try:
            registry.validate("degradation", spec, f"degradation[{i}]")
        except RecipeError as exc:
            raise FaceRestoreError(f"{path}: {exc}") from None
    return Protocol(name=data.get("name", path.stem), degradation=steps, hq_size=data.get("hq_size", 128),
                    seed=data.get("seed", 0), faces=faces, description=data.get("description", ""),
                    source=str(path))
