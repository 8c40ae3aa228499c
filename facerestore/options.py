"""What one restore call may choose, and where its outputs go: the same rules for every front door
(``restore`` on photos, folders and videos, the web app, the HTTP API, a cluster runner).

:class:`RestoreOptions` is per call: a :class:`~facerestore.restore.Restorer` (the model and its
detectors, built once) takes one with each photo, batch or clip, so a server holds one restorer per
model whatever its requests ask for. :class:`OutputNaming` maps an input to its output file.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any, Optional

from .defaults import DEFAULT_DETECTOR
from .errors import FaceRestoreError

MASK_SHAPES = ("face", "square", "ellipse")
EXTENSIONS = ("auto", "png", "jpg")


class OptionError(FaceRestoreError, ValueError):
    """An option value out of its range (one line; exit 2 in the CLI, 400 in the server)."""


@dataclasses.dataclass(frozen=True)
class RestoreOptions:
    """Per-call restore options (hashable: a server may key results by them).

    ``fidelity`` 0 realistic .. 1 faithful (CodeFormer's w; see :class:`~facerestore.restore.Restorer`);
    ``upscale`` >= 1 enlarges the whole photo; ``detector`` a registry name; ``min_face`` /
    ``max_face`` eye distances in photo pixels (0: no limit); ``min_score`` None for the detector's
    own hint; ``only_center_face``, ``draw_box``, ``color_match``, ``mask_shape``, ``tta`` as the CLI
    options of the same names. Outputs: ``ext`` (auto keeps the input's format), ``suffix`` added to
    the file name, ``max_pixels`` the largest input or output (None: ``FACERESTORE_MAX_PIXELS`` or
    about 89.5 MP).
    """

    fidelity: float = 0.0
    upscale: float = 1.0
    detector: str = DEFAULT_DETECTOR
    min_face: float = 0.0
    max_face: float = 0.0
    min_score: Optional[float] = None
    only_center_face: bool = False
    draw_box: bool = False
    color_match: bool = True
    mask_shape: str = "face"
    tta: bool = False
    ext: str = "auto"
    suffix: str = ""
    max_pixels: Optional[int] = None

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.fidelity) <= 1.0:
            raise OptionError(f"fidelity must be in [0, 1], got {self.fidelity}")
        if float(self.upscale) < 1:
            raise OptionError(f"upscale must be >= 1, got {self.upscale}")
        if self.min_face < 0 or self.max_face < 0:
            raise OptionError("min_face and max_face must be >= 0 (0: no limit)")
        if self.min_score is not None and not 0.0 <= self.min_score <= 1.0:
            raise OptionError(f"min_score must be in [0, 1], got {self.min_score}")
        if self.mask_shape not in MASK_SHAPES:
            raise OptionError(f"mask_shape must be one of {', '.join(MASK_SHAPES)}, got {self.mask_shape!r}")
        if self.ext not in EXTENSIONS:
            raise OptionError(f"--ext must be auto, png or jpg, got {self.ext!r}")
        if "/" in self.suffix or "\\" in self.suffix:
            raise OptionError("--suffix must not contain a path separator")
        if self.max_pixels is not None and self.max_pixels < 1:
            raise OptionError(f"max_pixels must be >= 1, got {self.max_pixels}")

    def replace(self, **changes: Any) -> "RestoreOptions":
        return dataclasses.replace(self, **changes)


class OutputNaming:
    """Output paths: ``OUT/<relative path><suffix><ext>`` for photos, ``OUT/<relative path>.mp4``
    for videos; each claimed once per run, so a second input that maps to the same file is an
    error, never a silent overwrite."""

    def __init__(self, out: str | os.PathLike[str], options: RestoreOptions = RestoreOptions()):
        self.out, self.ext, self.suffix = pathlib.Path(out), options.ext, options.suffix
        self.claimed: dict[pathlib.Path, pathlib.Path] = {}

    def target(self, item: Any) -> pathlib.Path:
        """A photo's output (``item.relative`` its path relative to the input root)."""
        from .io import output_extension

        rel = pathlib.Path(item.relative)
        ext = output_extension(rel) if self.ext == "auto" else f".{self.ext}"
        return self.out / rel.parent / f"{rel.stem}{self.suffix}{ext}"

    def video_target(self, item: Any) -> pathlib.Path:
        """A video's output: H.264 in MP4, whatever the input's container."""
        return self.out / pathlib.Path(item.relative).with_suffix(".mp4")

    def claim(self, item: Any, target: pathlib.Path) -> Optional[str]:
        """None when ``target`` is free, else why not."""
        key = pathlib.Path(os.path.abspath(target))
        other = self.claimed.get(key)
        if other is not None:
            return f"{item.path}: its output {target} is already the output of {other}; not overwritten"
        self.claimed[key] = item.path
        return None
