"""A corpus of bad and unusual input images, made on the spot (nothing downloaded).

``build_corpus(folder)`` writes one file (or folder entry) per case and returns the cases; each
says whether a reader is expected to give pixels (``readable``) or refuse the file with a one-line
error naming it. The big images are crafted PNG streams (a header claiming 20000x20000 with almost
no data, and a genuine 1-bit 20000x20000 bomb that zlib squeezes to ~100 kB), so building the
corpus allocates nothing large. Used by ``tests/test_reliability.py``; run
``python tests/badinputs.py DIR`` to write the corpus somewhere and print what each case is.
"""

from __future__ import annotations

import dataclasses
import io
import os
import pathlib
import struct
import sys
import zlib
from typing import Optional

import numpy as np
from PIL import Image

#: size of the generated "good" faces (a smooth colour field, big enough for every tool)
SIZE = 48


@dataclasses.dataclass
class Case:
    """One corpus entry: ``name`` (test id), ``path`` (what is handed to the tool), ``readable``
    (True: decoded and processed; False: refused with a one-line error naming the file),
    ``why`` (what makes it special), ``needs`` (a reason to skip it here, or None), ``listed``
    (False: not an image a folder walk yields, e.g. a symlink loop)."""

    name: str
    path: pathlib.Path
    readable: bool
    why: str
    needs: Optional[str] = None
    listed: bool = True


def face(size: int = SIZE, seed: int = 0) -> np.ndarray:
    """A smooth random colour field (H, W, 3) uint8 (stands in for a face; no real photo needed)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((size, size), Image.BILINEAR))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(width: int, height: int, bit_depth: int, color_type: int, rows: Optional[bytes] = None,
              idat_limit: Optional[int] = None) -> bytes:
    """A PNG stream written by hand. ``rows``: raw scanlines (filter byte + data) or, when None,
    all-zero scanlines compressed row by row (never materialising the image). ``idat_limit``: keep
    only that many compressed bytes (a header that lies about the data behind it)."""
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[color_type]
    row_bytes = (width * channels * bit_depth + 7) // 8
    comp = zlib.compressobj(9)
    if rows is not None:
        data = comp.compress(rows) + comp.flush()
    else:
        blank = b"\x00" * (row_bytes + 1)
        parts = [comp.compress(blank * min(256, height - y)) for y in range(0, height, 256)]
        data = b"".join(parts) + comp.flush()
    if idat_limit is not None:
        data = data[:idat_limit]
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    out = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", data)
    return out + (_chunk(b"IEND", b"") if idat_limit is None else b"")


def _rgb16_png(img: np.ndarray) -> bytes:
    h, w, _ = img.shape
    arr = img.astype(">u2") * 257
    rows = b"".join(b"\x00" + arr[y].tobytes() for y in range(h))
    return png_bytes(w, h, 16, 2, rows=rows)


def _save(img: Image.Image, path: pathlib.Path, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


def build_corpus(folder: str | os.PathLike[str]) -> list[Case]:
    """Write every case into ``folder`` (created) and return them, in a fixed order."""
    root = pathlib.Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    good = Image.fromarray(face(seed=1))
    cases: list[Case] = []

    def add(name: str, filename: str, readable: bool, why: str, **kw) -> pathlib.Path:
        p = root / filename
        cases.append(Case(name, p, readable, why, **kw))
        return p

    add("zero_byte", "zero_byte.png", False, "empty file").write_bytes(b"")
    jpeg = io.BytesIO()
    Image.fromarray(face(160, seed=2)).save(jpeg, format="JPEG", quality=90)
    add("truncated_jpeg", "truncated.jpg", False, "JPEG cut after 40% of its bytes").write_bytes(
        jpeg.getvalue()[: len(jpeg.getvalue()) * 2 // 5])
    png = io.BytesIO()
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (160, 160, 3), dtype=np.uint8)).save(png, format="PNG")
    add("truncated_png", "truncated.png", False, "PNG cut in the middle of its IDAT").write_bytes(
        png.getvalue()[: len(png.getvalue()) // 2])
    add("wrong_extension", "jpeg_named.png", True, "a JPEG file named .png (content decides)").write_bytes(
        jpeg.getvalue())
    add("text_as_png", "text.png", False, "a text file named .png").write_text("this is not an image\n" * 20)
    _save(Image.fromarray(face(1, seed=4)), add("one_pixel", "one_pixel.png", True, "1x1 image"), "PNG")
    add("bomb_header", "bomb_header.png", False,
        "PNG header claiming 20000x20000 RGB, 200 bytes of data").write_bytes(png_bytes(20000, 20000, 8, 2, idat_limit=200))
    add("bomb_1bit", "bomb_1bit.png", False,
        "valid 20000x20000 1-bit PNG (~100 kB file, 1.2 GB as RGB)").write_bytes(png_bytes(20000, 20000, 1, 0))
    add("huge_12k", "huge_12k.png", False,
        "valid 12000x12000 1-bit PNG: over the 89.5 MP limit but under Pillow's own bomb error").write_bytes(
        png_bytes(12000, 12000, 1, 0))
    gray16 = (face(seed=5)[..., 0].astype(np.uint16) * 257)
    _save(Image.fromarray(gray16), add("gray16", "gray16.png", True, "16-bit grayscale PNG (I;16)"), "PNG")
    add("rgb16", "rgb16.png", True, "16-bit RGB PNG").write_bytes(_rgb16_png(face(seed=6)))
    _save(good.quantize(16), add("palette", "palette.png", True, "palette (P) PNG"), "PNG")
    pal_t = good.quantize(16)
    _save(pal_t, add("palette_transparent", "palette_t.png", True, "palette PNG with a transparent index"),
          "PNG", transparency=0)
    _save(good.convert("CMYK"), add("cmyk", "cmyk.jpg", True, "CMYK JPEG"), "JPEG", quality=90)
    rgba = np.dstack([face(seed=7), np.full((SIZE, SIZE), 128, np.uint8)])
    _save(Image.fromarray(rgba), add("rgba", "rgba.png", True, "RGBA PNG, half transparent"), "PNG")
    _save(good.convert("L"), add("grayscale", "gray.png", True, "8-bit grayscale"), "PNG")
    _save(good.convert("1"), add("bilevel", "bilevel.png", True, "1-bit black and white"), "PNG")
    rotated = Image.fromarray(np.rot90(face(SIZE, seed=8)[:, : SIZE // 2], k=1).copy())
    exif = rotated.getexif()
    exif[0x0112] = 6
    _save(rotated, add("exif_rotated", "exif_rotated.jpg", True, "JPEG with EXIF orientation 6"), "JPEG",
          exif=exif.tobytes(), quality=90)
    frames = [Image.fromarray(face(seed=10 + i)) for i in range(3)]
    _save(frames[0], add("animated_gif", "animated.gif", True, "3-frame animated GIF"), "GIF",
          save_all=True, append_images=frames[1:], duration=100, loop=0)
    p = add("animated_webp", "animated.webp", True, "3-frame animated WebP")
    try:
        _save(frames[0], p, "WEBP", save_all=True, append_images=frames[1:], duration=100, loop=0)
        with Image.open(p) as im:
            assert getattr(im, "n_frames", 1) == 3
    except Exception:  # noqa: BLE001 - a Pillow built without (animated) WebP
        cases[-1].needs = "this Pillow cannot write animated WebP"
        p.unlink(missing_ok=True)
    odd = root / "dir with spaces"
    odd.mkdir(exist_ok=True)
    _save(good, add("unicode_path", "dir with spaces/fäce 顔 #1.png", True, "spaces and non-ASCII in the path"),
          "PNG")
    locked = add("unreadable", "locked.png", False, "mode 000 (no read permission)",
                 needs="running as root: permissions do not stop root" if _is_root() else None)
    _save(good, locked, "PNG")
    os.chmod(locked, 0)
    loop_dir = root / "loop"
    loop_dir.mkdir(exist_ok=True)
    link = loop_dir / "again"
    if not link.is_symlink():
        link.symlink_to("..", target_is_directory=True)
    cases.append(Case("symlink_loop", loop_dir, True, "folder holding a symlink to its parent (visited once)",
                      listed=False))
    return cases


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def write_good(folder: str | os.PathLike[str], n: int = 3, size: int = SIZE, prefix: str = "good") -> list[pathlib.Path]:
    """``n`` readable PNG faces (the rest of the batch that must still be processed)."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = folder / f"{prefix}_{i}.png"
        Image.fromarray(face(size, seed=100 + i)).save(p)
        out.append(p)
    return out


def unlock(cases: list[Case]) -> None:
    """Give permissions back (so pytest can delete tmp_path)."""
    for c in cases:
        if c.path.exists() and not c.path.is_symlink():
            os.chmod(c.path, 0o755 if c.path.is_dir() else 0o644)


if __name__ == "__main__":  # pragma: no cover - a helper for looking at the corpus
    target = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "badinputs")
    for c in build_corpus(target):
        size = c.path.stat().st_size if c.path.is_file() and os.access(c.path, os.R_OK) else "-"
        print(f"{c.name:22s} {'readable' if c.readable else 'refused ':9s} {size!s:>9} B  {c.why}"
              + (f"  [skip: {c.needs}]" if c.needs else ""))
