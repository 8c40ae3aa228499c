"""Reading and writing photos for every command: one place that knows about odd files.

``read_image`` turns anything Pillow can open into a ``(3, H, W)`` float RGB tensor in [0, 1]
and an :class:`~facerestore.image_decode.ImageInfo` that remembers what to give back on write
(alpha, grayscale, bit depth; Pillow's modes are converted by :mod:`facerestore.image_decode`).
Whatever goes wrong with a file (missing, empty, truncated, not an image, too many pixels, no
permission) becomes an :class:`~facerestore.errors.InputImageError` whose one-line
message names the file, so a command can report it and carry on with the next input.

Handling of unusual inputs (also the table in ``docs/restore.md``):

* EXIF orientation is applied (the tensor is upright, as viewers show it);
* grayscale (``L``, ``I;16``, ``1``) is read as 3 equal channels, ``info.grayscale`` set, and
  written back as grayscale;
* palette images are expanded (with their transparency, if any, as alpha);
* RGBA/LA: the alpha plane is kept in ``info.alpha`` (1, H, W) and re-attached by ``write_image``;
* 16-bit grayscale PNG/TIFF (``I;16``, ``I``) is read at full precision (/65535) and can be
  written back at 16 bits; 16-bit *RGB* PNG is read by Pillow at 8-bit precision (``info.bits``
  still says 16);
* CMYK JPEG is converted to sRGB through its ICC profile when it has one, else by Pillow;
* animated GIF/WebP/APNG: the first frame is used (``info.frames`` says how many there were);
* more than ``max_pixels`` pixels (default :data:`DEFAULT_MAX_PIXELS`, env
  ``FACERESTORE_MAX_PIXELS``) is refused before decoding, so a decompression bomb costs nothing.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import pathlib
import stat
import struct
import warnings
from collections.abc import Iterable, Iterator
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from .errors import InputImageError
from .image_decode import ImageInfo, pil_to_tensor, source_bits
from .pixels import to_hwc_uint8

#: Pillow's own default (about 89.5 megapixels, a 0.25 GB RGB bitmap): enough for any camera,
#: small enough that a single photo cannot exhaust memory as a float tensor (~1 GB).
DEFAULT_MAX_PIXELS = 89_478_485
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
#: formats whose output keeps the input's extension; anything else is written as PNG
WRITABLE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


def max_pixels_default() -> int:
    env = os.environ.get("FACERESTORE_MAX_PIXELS", "").strip()
    if env:
        try:
            return max(1, int(float(env)))
        except ValueError:
            pass
    return DEFAULT_MAX_PIXELS


def pixel_count(n: int) -> str:
    """``12.3 megapixels`` for large counts, ``40,000 pixels`` below one megapixel (so a small
    limit never reads as "0.0")."""
    return f"{n / 1e6:.1f} megapixels" if n >= 1_000_000 else f"{n:,} pixels"


def check_output_pixels(name: str | os.PathLike[str], width: int, height: int, upscale: float,
                        limit: Optional[int] = None) -> None:
    """The one pixel-limit rule for outputs (photos, uploads, video frames): an input of
    ``width x height`` enlarged by ``upscale`` must stay within ``limit`` (default
    :func:`max_pixels_default`); refused before any work, in one line (a 13 TB allocation is not
    something to find out after 14 s). Inputs are checked by their readers against the same limit."""
    limit = limit or max_pixels_default()
    ow, oh = round(width * upscale), round(height * upscale)
    if ow * oh > limit:
        raise InputImageError(f"{name}: the output would be {ow}x{oh} = {pixel_count(ow * oh)} "
                              f"(--upscale {upscale:g}), over the limit of {pixel_count(limit)}; "
                              "lower --upscale or raise --max-pixels")


def _fail(path: str, why: str) -> InputImageError:
    return InputImageError(f"{path}: {why}")


def _check_file(path: pathlib.Path) -> None:
    shown = str(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise _fail(shown, "no such file") from None
    except PermissionError:
        raise _fail(shown, "permission denied") from None
    except OSError as exc:
        raise _fail(shown, f"cannot access ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise _fail(shown, "is a directory, not an image")
    if not stat.S_ISREG(st.st_mode):
        raise _fail(shown, "not a regular file")
    if st.st_size == 0:
        raise _fail(shown, "empty file (0 bytes)")
    if not os.access(path, os.R_OK):
        raise _fail(shown, "permission denied")


def read_image(path: str | os.PathLike[str], max_pixels: int | None = None) -> tuple[Tensor, ImageInfo]:
    """Read a photo as ``(3, H, W)`` float32 RGB in [0, 1] plus :class:`ImageInfo`.

    Raises :class:`InputImageError` (message starts with the path) for anything unreadable.
    """
    from PIL import Image, UnidentifiedImageError

    path = pathlib.Path(path)
    shown = str(path)
    _check_file(path)
    limit = max_pixels or max_pixels_default()
    # Pillow warns above MAX_IMAGE_PIXELS and raises above twice that; our own check below is the
    # one that counts, so keep Pillow's at least as permissive and silence its warning.
    Image.MAX_IMAGE_PIXELS = max(limit, Image.MAX_IMAGE_PIXELS or 0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
                if w <= 0 or h <= 0:
                    raise _fail(shown, f"invalid image size {w}x{h}")
                if w * h > limit:
                    raise _too_many_pixels(shown, w, h, limit)
                frames = int(getattr(img, "n_frames", 1) or 1)
                if frames > 1:
                    img.seek(0)
                fmt = img.format
                bits = source_bits(img)
                img.load()
                return pil_to_tensor(img, shown, fmt, frames, bits)
    except InputImageError:
        raise
    except Image.DecompressionBombError:  # Pillow's own check fired first (over twice its limit)
        w, h = _header_size(path)
        raise _too_many_pixels(shown, w, h, limit) from None
    except UnidentifiedImageError:
        raise _fail(shown, "not an image (or a format Pillow cannot read)") from None
    except PermissionError:
        raise _fail(shown, "permission denied") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _fail(shown, f"corrupt or truncated image ({msg})") from None
    except MemoryError:
        raise _fail(shown, "not enough memory to decode this image") from None


def _too_many_pixels(shown: str, w: int, h: int, limit: int) -> InputImageError:
    return _fail(shown, f"{w}x{h} = {pixel_count(w * h)} exceeds the limit of {pixel_count(limit)} "
                        "(set --max-pixels or FACERESTORE_MAX_PIXELS to allow it)")


def _header_size(path: pathlib.Path) -> tuple[int, int]:
    """Width and height from the header alone, Pillow's decompression-bomb check off for it."""
    from PIL import Image

    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with Image.open(path) as img:
            return img.size
    finally:
        Image.MAX_IMAGE_PIXELS = saved


#: ITU-R BT.601 luma weights: the one rule for the grey of a colour image
LUMA = (0.299, 0.587, 0.114)


def luma(x: Tensor, dim: int = -3) -> Tensor:
    """Luminance of RGB ``x`` along ``dim`` (the channels: -3 for ``(3, H, W)`` and ``(B, 3, H, W)``,
    -1 for channels-last arrays), kept as a size-1 dimension. Works on numpy arrays too."""
    r, g, b = (x.take(i, axis=dim) if isinstance(x, np.ndarray) else x.select(dim, i) for i in range(3))
    y = LUMA[0] * r + LUMA[1] * g + LUMA[2] * b
    return np.expand_dims(y, dim) if isinstance(y, np.ndarray) else y.unsqueeze(dim)


def write_image(path: str | os.PathLike[str], tensor: Tensor, alpha: Optional[Tensor] = None, bits: int = 8, *,
                grayscale: bool = False, quality: int = 95, icc_profile: Optional[bytes] = None) -> pathlib.Path:
    """Write a ``(3, H, W)`` float [0, 1] tensor atomically (format from the extension).

    ``alpha`` (1, H, W) is re-attached where the format can hold it (PNG, WebP, TIFF); JPEG/BMP
    drop it. ``grayscale`` writes one luminance channel; ``bits=16`` is honoured for grayscale
    PNG/TIFF (Pillow cannot write 16-bit RGB), else 8 bits are written.
    """
    from PIL import Image

    from .checkpoint import atomic_write_bytes

    path = pathlib.Path(path)
    ext = path.suffix.lower()
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".bmp": "BMP",
           ".tif": "TIFF", ".tiff": "TIFF"}.get(ext)
    if fmt is None:
        raise InputImageError(f"{path}: cannot write images with extension {ext!r}; "
                              f"use one of {', '.join(WRITABLE_EXTENSIONS)}")
    t = tensor.detach().float().cpu().clamp(0, 1)
    if t.dim() != 3 or t.shape[0] not in (1, 3):
        raise ValueError(f"expected a (3, H, W) tensor, got {tuple(t.shape)}")
    if t.shape[0] == 1:
        t, grayscale = t.expand(3, -1, -1), True
    keep_alpha = alpha is not None and fmt in ("PNG", "WEBP", "TIFF")
    if grayscale:
        lum = luma(t)[0].clamp(0, 1)
        if bits == 16 and fmt in ("PNG", "TIFF") and not keep_alpha:
            img = Image.fromarray((lum * 65535).round().to(torch.int32).numpy().astype(np.uint16))
        else:
            img = Image.fromarray(to_hwc_uint8(lum[None])[..., 0])
            if keep_alpha:
                img.putalpha(Image.fromarray(to_hwc_uint8(alpha.float().cpu())[..., 0]))
    else:
        img = Image.fromarray(to_hwc_uint8(t))
        if keep_alpha:
            img.putalpha(Image.fromarray(to_hwc_uint8(alpha.float().cpu())[..., 0]))
    kwargs: dict = {}
    if fmt in ("JPEG", "WEBP"):
        kwargs["quality"] = quality
    if icc_profile and fmt in ("JPEG", "PNG", "WEBP", "TIFF"):
        kwargs["icc_profile"] = icc_profile
    atomic_write_bytes(path, lambda tmp: img.save(tmp, format=fmt, **kwargs))
    return path


def output_extension(path: str | os.PathLike[str]) -> str:
    """The extension a result for ``path`` is written with, its case kept (``c.JPG`` -> ``.JPG``);
    GIF and unknown formats -> ``.png``."""
    ext = pathlib.Path(path).suffix
    return ext if ext.lower() in WRITABLE_EXTENSIONS else ".png"


# --------------------------------------------------------------------------------------------
# Inputs: files, folders, globs
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class InputFile:
    """One input: ``path`` to read, ``relative`` to name its outputs (keeps a folder's layout),
    ``error`` when the input could not even be listed (missing, permission denied)."""

    path: pathlib.Path
    relative: pathlib.Path
    error: Optional[str] = None


def _has_magic(s: str) -> bool:
    return any(c in s for c in "*?[")


def iter_inputs(inputs: Iterable[str | os.PathLike[str]],
                extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> Iterator[InputFile]:
    """Expand files, folders (recursive, sorted, symlink loops visited once) and globs.

    Explicitly named files are always yielded, whatever their extension (the reader decides);
    files found in folders are filtered by ``extensions``. Problems (no such path, a glob that
    matches nothing, an unreadable folder) are yielded as items with ``error`` set, in order.
    """
    seen: set[str] = set()
    exts = tuple(e.lower() for e in extensions)
    for raw in inputs:
        item = os.fspath(raw)
        p = pathlib.Path(item)
        if os.path.lexists(item):
            targets = [p]
        elif _has_magic(item):
            targets = [pathlib.Path(m) for m in sorted(glob.glob(item, recursive=True))]
            if not targets:
                yield InputFile(p, pathlib.Path(p.name), f"{item}: no file matches this pattern")
                continue
        else:
            yield InputFile(p, pathlib.Path(p.name), f"{item}: no such file or directory")
            continue
        for t in targets:
            if t.is_dir():
                yield from _walk(t, exts, seen)
            else:
                key = os.path.realpath(t)
                if key in seen:
                    continue
                seen.add(key)
                yield InputFile(t, pathlib.Path(t.name))


def _walk(root: pathlib.Path, exts: tuple[str, ...], seen: set[str]) -> Iterator[InputFile]:
    visited: set[tuple[int, int]] = set()
    stack = [root]
    base = root.name or root.resolve().name
    while stack:
        folder = stack.pop()
        try:
            st = folder.stat()
            key = (st.st_dev, st.st_ino)
            if key in visited:  # a symlink loop or a second link to a visited folder
                continue
            visited.add(key)
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except PermissionError:
            yield InputFile(folder, pathlib.Path(base) / folder.relative_to(root), f"{folder}: permission denied")
            continue
        except OSError as exc:
            yield InputFile(folder, pathlib.Path(base) / folder.relative_to(root),
                            f"{folder}: cannot list folder ({exc.strerror or exc})")
            continue
        subdirs = []
        for e in entries:
            path = pathlib.Path(e.path)
            try:
                is_dir = e.is_dir(follow_symlinks=True)
            except OSError:
                is_dir = False
            if is_dir:
                subdirs.append(path)
            elif e.name.lower().endswith(exts) and not e.name.startswith("."):
                real = os.path.realpath(path)
                if real in seen:
                    continue
                seen.add(real)
                yield InputFile(path, pathlib.Path(base) / path.relative_to(root))
        stack.extend(reversed(subdirs))  # depth-first, in sorted order
