"""`facerestore restore` end to end on generated files (detector faked, `bicubic` model)."""

from __future__ import annotations

import io as _io
import os

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import facerestore.restore as restore_mod
from facerestore.cli import app

from test_restore import FakeDetector, skdata  # noqa: F401  (skdata: skips without scikit-image)


@pytest.fixture
def fake_detector(monkeypatch):
    monkeypatch.setattr(restore_mod, "default_detector", lambda device="cpu", name="mtcnn": FakeDetector())


def run(*args):
    return CliRunner().invoke(app, ["restore", *map(str, args)])


def astro() -> np.ndarray:
    return skdata.astronaut()


def noise_photo() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8)


def test_no_face_copied_with_warning(tmp_path, fake_detector):
    Image.fromarray(noise_photo()).save(tmp_path / "empty.png")
    res = run(tmp_path / "empty.png", "-o", tmp_path / "out", "--model", "bicubic")
    assert res.exit_code == 0, res.output
    assert "warning" in res.output and "no face" in res.output
    assert (tmp_path / "out" / "empty.png").read_bytes() == (tmp_path / "empty.png").read_bytes()
    assert "1 photos, 0 faces found" in res.output


def test_corrupted_among_good(tmp_path, fake_detector):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(astro()).save(src / "a_face.png")
    buf = _io.BytesIO()
    Image.fromarray(astro()).save(buf, format="JPEG")
    (src / "b_broken.jpg").write_bytes(buf.getvalue()[:3000])
    (src / "c_text.png").write_text("not an image")
    Image.fromarray(noise_photo()).save(src / "d_noface.jpg")
    res = run(src, "-o", tmp_path / "out", "--model", "bicubic")
    assert res.exit_code == 1, res.output
    out = tmp_path / "out" / "in"
    assert sorted(p.name for p in out.iterdir()) == ["a_face.png", "d_noface.jpg"]
    assert "b_broken.jpg" in res.output and "c_text.png" in res.output
    assert "Traceback" not in res.output
    assert "2 photos, 1 faces found, 1 restored, 0 skipped, 1 without faces, 2 failed" in res.output
    restored = np.asarray(Image.open(out / "a_face.png"))
    assert restored.shape == (512, 512, 3) and np.abs(restored.astype(int) - astro()).max() > 0


def test_odd_formats(tmp_path, fake_detector):
    a = astro()
    Image.fromarray(np.dstack([a, np.full(a.shape[:2], 200, np.uint8)])).save(tmp_path / "rgba.png")
    gray = np.asarray(Image.fromarray(a).convert("L"))
    Image.fromarray(gray).save(tmp_path / "gray.png")
    Image.fromarray((gray.astype(np.uint16) * 257)).save(tmp_path / "gray16.png")
    Image.fromarray(a).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    rotated = Image.fromarray(np.rot90(a, k=1).copy())  # stored turned left; EXIF 6 turns it back
    exif = rotated.getexif()
    exif[0x0112] = 6
    rotated.save(tmp_path / "exif.jpg", exif=exif.tobytes(), quality=95)
    res = run(tmp_path / "rgba.png", tmp_path / "gray.png", tmp_path / "gray16.png", tmp_path / "cmyk.jpg",
              tmp_path / "exif.jpg", "-o", tmp_path / "out", "--model", "bicubic")
    assert res.exit_code == 0, res.output
    # the fake detector only sees the upright astronaut: a face in all 5 means EXIF was applied
    assert "5 photos, 5 faces found, 5 restored" in res.output, res.output
    out = tmp_path / "out"
    rgba = Image.open(out / "rgba.png")
    assert rgba.mode == "RGBA" and np.asarray(rgba)[..., 3].min() == 200
    assert Image.open(out / "gray.png").mode == "L"
    assert not np.array_equal(np.asarray(Image.open(out / "gray.png")), gray)  # restored, not copied
    g16 = Image.open(out / "gray16.png")
    assert g16.mode.startswith("I") and np.asarray(g16).max() > 255
    exif_out = Image.open(out / "exif.jpg")
    assert exif_out.size == (512, 512)  # upright, and its face was found (5 faces above)
    assert Image.open(out / "cmyk.jpg").mode == "RGB"


def test_upscale_save_faces_compare(tmp_path, fake_detector):
    Image.fromarray(astro()).save(tmp_path / "a.png")
    res = run(tmp_path / "a.png", "-o", tmp_path / "out", "--model", "bicubic", "--upscale", "2",
              "--save-faces", "--compare")
    assert res.exit_code == 0, res.output
    assert Image.open(tmp_path / "out" / "a.png").size == (1024, 1024)
    assert Image.open(tmp_path / "out" / "faces" / "a_face0_input.png").size == (32, 32)
    assert Image.open(tmp_path / "out" / "faces" / "a_face0_restored.png").size == (128, 128)
    assert Image.open(tmp_path / "out" / "compare" / "a.jpg").size == (2048, 1024)


def test_aligned_mode(tmp_path, monkeypatch):
    def no_detector(device="cpu", name="mtcnn"):
        raise AssertionError("--aligned must not run the detector")

    monkeypatch.setattr(restore_mod, "default_detector", no_detector)
    face = Image.fromarray(astro()).crop((150, 40, 300, 190)).resize((96, 96))
    face.save(tmp_path / "face.png")
    res = run(tmp_path / "face.png", "-o", tmp_path / "out", "--model", "bicubic", "--aligned", "--save-faces")
    assert res.exit_code == 0, res.output
    assert Image.open(tmp_path / "out" / "face.png").size == (128, 128)
    assert Image.open(tmp_path / "out" / "faces" / "face_input.png").size == (32, 32)
    assert "1 aligned faces restored" in res.output


def test_tta_option_reaches_the_restorer(tmp_path, monkeypatch):
    seen = []
    real = restore_mod.Restorer.from_pretrained.__func__

    def spy(cls, *a, **kw):
        seen.append(kw["options"].tta)
        return real(cls, *a, **kw)

    monkeypatch.setattr(restore_mod.Restorer, "from_pretrained", classmethod(spy))
    Image.fromarray(astro()).crop((150, 40, 300, 190)).resize((96, 96)).save(tmp_path / "face.png")
    for extra in ([], ["--tta"]):
        res = run(tmp_path / "face.png", "-o", tmp_path / "out", "--model", "bicubic", "--aligned", "-q", *extra)
        assert res.exit_code == 0, res.output
    assert seen == [False, True]


def test_user_errors_exit_2(tmp_path, fake_detector, without_default_weights):
    Image.fromarray(noise_photo()).save(tmp_path / "x.png")
    res = run(tmp_path / "x.png", "-o", tmp_path / "out", "--model", "no-such-model")
    assert res.exit_code == 2 and "known names" in res.output and "Traceback" not in res.output
    res = run(tmp_path / "x.png", "-o", tmp_path / "out")  # the bundled file missing from this install
    assert res.exit_code == 2 and "is not in this install" in res.output and "--model" in res.output
    assert "Traceback" not in res.output


def test_missing_input_reported(tmp_path, fake_detector):
    Image.fromarray(noise_photo()).save(tmp_path / "x.png")
    res = run(tmp_path / "x.png", tmp_path / "nope.png", "-o", tmp_path / "out", "--model", "bicubic")
    assert res.exit_code == 1 and "nope.png" in res.output
    assert (tmp_path / "out" / "x.png").exists()


@pytest.mark.shared
def test_t1_group_photo(tmp_path):
    """Acceptance: the 6 faces of insightface's t1.jpg, real MTCNN (needs ../shared/data)."""
    path = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "scenes", "insightface", "t1.jpg")
    if not os.path.exists(path):
        pytest.skip("needs ../shared/data/scenes/insightface/t1.jpg")
    from facerestore.components import default_registry

    if ("detector", "mtcnn") not in default_registry():
        pytest.skip("detector 'mtcnn' is not registered")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    res = run(path, "-o", tmp_path, "--model", "bicubic")
    assert res.exit_code == 0, res.output
    assert "6 faces found, 6 restored" in res.output
    assert Image.open(tmp_path / "t1.jpg").size == Image.open(path).size


def test_folder_without_images_is_an_error(tmp_path, fake_detector):
    """Nothing to restore is a one-line error (exit 2), not an all-zero summary and exit 0."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.txt").write_text("no photos here")
    res = run(tmp_path / "in", "-o", tmp_path / "out", "--model", "bicubic")
    assert res.exit_code == 2, res.output
    assert "no images or videos in" in res.output and "summary" not in res.output
    assert len(res.output.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_output_names_keep_their_case(tmp_path, fake_detector):
    Image.fromarray(astro()).save(tmp_path / "c.JPG", format="JPEG")
    Image.fromarray(noise_photo()).save(tmp_path / "D.Png")
    res = run(tmp_path / "c.JPG", tmp_path / "D.Png", "-o", tmp_path / "out", "--model", "bicubic")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["D.Png", "c.JPG"]
    with Image.open(tmp_path / "out" / "c.JPG") as im:
        assert im.format == "JPEG"
