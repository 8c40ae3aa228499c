"""Image reading/writing and input expansion on odd files (all made here, nothing downloaded)."""

from __future__ import annotations

import io as _io
import os
import struct
import sys
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from facerestore.errors import InputImageError
from facerestore.io import iter_inputs, read_image, write_image


def gradient(h: int = 48, w: int = 64) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), (x + y) * 255 // (w + h - 2)], -1).astype(np.uint8)


def png16(path, arr: np.ndarray) -> None:
    """A 16-bit PNG written by hand (Pillow cannot write 16-bit RGB)."""
    arr = arr if arr.ndim == 3 else arr[..., None]
    h, w, c = arr.shape
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, {1: 0, 3: 2}[c], 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_rgb_roundtrip(tmp_path):
    arr = gradient()
    Image.fromarray(arr).save(tmp_path / "a.png")
    t, info = read_image(tmp_path / "a.png")
    assert t.shape == (3, 48, 64) and t.dtype == torch.float32
    assert info.alpha is None and not info.grayscale and info.bits == 8
    assert np.array_equal((t.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), arr)
    write_image(tmp_path / "b.png", t)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b.png")), arr)


def test_rgba_alpha_kept(tmp_path):
    arr = np.dstack([gradient(), np.tile(np.linspace(0, 255, 64).astype(np.uint8), (48, 1))])
    Image.fromarray(arr, "RGBA").save(tmp_path / "a.png")
    t, info = read_image(tmp_path / "a.png")
    assert t.shape == (3, 48, 64)
    assert info.alpha is not None and info.alpha.shape == (1, 48, 64)
    write_image(tmp_path / "b.png", t, alpha=info.alpha)
    back = np.asarray(Image.open(tmp_path / "b.png"))
    assert back.shape == (48, 64, 4) and np.array_equal(back, arr)


def test_grayscale_and_palette(tmp_path):
    g = gradient()[..., 0]
    Image.fromarray(g, "L").save(tmp_path / "g.png")
    t, info = read_image(tmp_path / "g.png")
    assert info.grayscale and torch.equal(t[0], t[1]) and torch.equal(t[1], t[2])
    write_image(tmp_path / "g2.png", t, grayscale=True)
    assert Image.open(tmp_path / "g2.png").mode == "L"
    assert np.array_equal(np.asarray(Image.open(tmp_path / "g2.png")), g)

    pal = Image.fromarray(gradient()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.save(tmp_path / "p.png")
    t, info = read_image(tmp_path / "p.png")
    assert t.shape == (3, 48, 64) and info.mode == "P"
    assert np.array_equal((t.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), np.asarray(pal.convert("RGB")))


def test_16bit_png(tmp_path):
    g = np.linspace(0, 65535, 48 * 64).reshape(48, 64).astype(np.uint16)
    png16(tmp_path / "g16.png", g)
    t, info = read_image(tmp_path / "g16.png")
    assert info.bits == 16 and info.grayscale
    assert torch.allclose(t[0], torch.from_numpy(g.astype(np.float32) / 65535), atol=1e-6)  # full precision
    write_image(tmp_path / "out16.png", t, bits=16, grayscale=True)
    back = Image.open(tmp_path / "out16.png")
    assert back.mode.startswith("I") and np.abs(np.asarray(back).astype(np.int64) - g).max() <= 1

    rgb = (gradient().astype(np.uint16) * 257)
    png16(tmp_path / "rgb16.png", rgb)
    t, info = read_image(tmp_path / "rgb16.png")
    assert info.bits == 16 and t.shape == (3, 48, 64)
    assert np.abs(t.permute(1, 2, 0).numpy() - rgb / 65535).max() < 1 / 255 + 1e-6  # 8-bit precision


def test_cmyk_jpeg(tmp_path):
    arr = gradient()
    Image.fromarray(arr).convert("CMYK").save(tmp_path / "c.jpg", quality=98)
    t, info = read_image(tmp_path / "c.jpg")
    assert info.mode == "CMYK" and t.shape == (3, 48, 64)
    assert np.abs(t.permute(1, 2, 0).numpy() * 255 - arr).mean() < 6


def test_exif_orientation(tmp_path):
    arr = np.zeros((40, 60, 3), np.uint8)
    arr[:10, :20] = 255  # a white block top-left of the stored pixels
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # stored rotated: viewers turn it 90 degrees clockwise
    img.save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=98)
    t, info = read_image(tmp_path / "r.jpg")
    assert info.orientation == 6
    assert t.shape == (3, 60, 40)  # upright: portrait
    # rotated clockwise, the top-left block ends up top-right
    assert t[:, :18, -8:].mean() > 0.9 and t[:, :18, :8].mean() < 0.1


def test_animated_gif_first_frame(tmp_path):
    frames = [Image.fromarray(np.full((16, 16, 3), v, np.uint8)) for v in (10, 200, 90)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    t, info = read_image(tmp_path / "a.gif")
    assert info.frames == 3 and abs(t.mean().item() * 255 - 10) < 3


@pytest.mark.parametrize("case", ["empty", "truncated_jpeg", "truncated_png", "text", "missing", "directory"])
def test_bad_files_one_line_error(tmp_path, case):
    p = tmp_path / "bad file é.png"
    buf = _io.BytesIO()
    if case == "empty":
        p.write_bytes(b"")
    elif case == "truncated_jpeg":
        p = tmp_path / "t.jpg"
        Image.fromarray(gradient(200, 200)).save(buf, format="JPEG")
        p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    elif case == "truncated_png":
        Image.fromarray(gradient(200, 200)).save(buf, format="PNG")
        p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    elif case == "text":
        p.write_text("hello, I am not an image\n")
    elif case == "directory":
        p.mkdir()
    with pytest.raises(InputImageError) as err:
        read_image(p)
    msg = str(err.value)
    assert str(p) in msg and "\n" not in msg


def test_pixel_limit_checked_before_decoding(tmp_path, monkeypatch):
    # a header claiming 20000x20000 pixels; the data is tiny and would never decode
    Image.new("L", (2000, 2000)).save(tmp_path / "big.png")
    with pytest.raises(InputImageError, match="megapixels exceeds the limit"):
        read_image(tmp_path / "big.png", max_pixels=1_000_000)
    # a valid header (CRC recomputed) claiming 20000x20000: refused by the pixel limit, by its
    # message, before any decoding (the data could never fill it)
    raw = bytearray((tmp_path / "big.png").read_bytes())
    raw[16:24] = struct.pack(">II", 20000, 20000)  # IHDR width, height
    raw[29:33] = struct.pack(">I", zlib.crc32(bytes(raw[12:29])))  # CRC over "IHDR" + its 13 bytes
    (tmp_path / "bomb.png").write_bytes(bytes(raw))
    with monkeypatch.context() as m:  # Pillow reads the header: a valid PNG start
        m.setattr(Image, "MAX_IMAGE_PIXELS", None)
        with Image.open(tmp_path / "bomb.png") as im:
            assert im.size == (20000, 20000)
    with pytest.raises(InputImageError, match=r"bomb\.png: 20000x20000 = 400\.0 megapixels exceeds the limit"):
        read_image(tmp_path / "bomb.png")


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="needs POSIX permissions, not root")
def test_unreadable_permissions(tmp_path):
    p = tmp_path / "locked.png"
    Image.fromarray(gradient()).save(p)
    p.chmod(0)
    try:
        with pytest.raises(InputImageError, match="permission denied"):
            read_image(p)
    finally:
        p.chmod(0o644)


def test_iter_inputs_folders_globs_loops(tmp_path):
    root = tmp_path / "photos"
    (root / "b" / "deep").mkdir(parents=True)
    for rel in ["z.png", "a.jpg", "b/c.png", "b/deep/d.webp", "notes.txt"]:
        (root / rel).write_bytes(b"x")
    os.symlink(root, root / "b" / "loop")  # a directory loop
    items = list(iter_inputs([str(root)]))
    assert [str(i.relative) for i in items] == ["photos/a.jpg", "photos/z.png", "photos/b/c.png",
                                                "photos/b/deep/d.webp"]
    assert all(i.error is None for i in items)
    globbed = list(iter_inputs([str(root / "*.png"), str(root / "nothing*.png"), str(tmp_path / "missing.jpg")]))
    assert [i.path.name for i in globbed] == ["z.png", "nothing*.png", "missing.jpg"]
    assert globbed[0].error is None and "no file matches" in globbed[1].error and "no such file" in globbed[2].error
    # a file named twice is processed once
    assert len(list(iter_inputs([str(root / "a.jpg"), str(root / "a.jpg")]))) == 1


def test_luma_of_numpy_channels_last_matches_the_tensor_rule():
    """One luminance rule for tensors (channels at -3) and numpy arrays (channels at -1)."""
    from facerestore.io import LUMA, luma

    rng = np.random.default_rng(0)
    hwc = rng.random((5, 7, 3)).astype(np.float32)
    y = luma(hwc, dim=-1)
    assert isinstance(y, np.ndarray) and y.shape == (5, 7, 1)
    expect = LUMA[0] * hwc[..., 0] + LUMA[1] * hwc[..., 1] + LUMA[2] * hwc[..., 2]
    np.testing.assert_allclose(y[..., 0], expect, rtol=1e-6)
    t = luma(torch.from_numpy(hwc).permute(2, 0, 1))
    assert t.shape == (1, 5, 7)
    np.testing.assert_allclose(t[0].numpy(), y[..., 0], rtol=1e-6)


@pytest.mark.parametrize("ext, fmt", [(".jpg", "JPEG"), (".jpeg", "JPEG"), (".png", "PNG"), (".webp", "WEBP"),
                                      (".bmp", "BMP"), (".tif", "TIFF"), (".tiff", "TIFF"), (".PNG", "PNG")])
def test_write_image_picks_the_format_from_the_extension(tmp_path, ext, fmt):
    img = torch.rand(3, 9, 11)
    out = write_image(tmp_path / f"x{ext}", img)
    with Image.open(out) as im:
        assert im.format == fmt and im.size == (11, 9)


def test_write_image_clamps_both_ends(tmp_path):
    """Out-of-range floats saturate to 0 and 255 (not wrap or overflow) in 8-bit output."""
    img = torch.full((3, 4, 4), 1.5)
    img[:, :2] = -0.5
    with Image.open(write_image(tmp_path / "x.png", img)) as im:
        a = np.asarray(im)
    assert (a[:2] == 0).all() and (a[2:] == 255).all()
