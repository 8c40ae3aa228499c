"""Issue 13: `restore` on real-photo workflows: no lost outputs, umask modes, size guard,
progress, GFPGAN/CodeFormer conventions, aligned crops of any size, mask-aware compositing.

Detector faked and the weight-free ``bicubic`` model (plus a tiny random ``jdsr_any``), so no
training and no ../shared data are needed.
"""

from __future__ import annotations

import importlib.util
import io
import os
import stat
import time

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from facerestore import align
from facerestore.cli import app
from facerestore.progress import ItemProgress
from facerestore.restore import Restorer

from test_restore import ASTRO_BOX, ASTRO_LM, FakeDetector, astronaut, restorer, seam_ratio  # noqa: F401
from test_restore_cli import astro, fake_detector, run  # noqa: F401
from test_same_bits import on_threads


def save_astro(path, size=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(astro())
    (im.resize(size) if size else im).save(path)
    return path


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# -- 2. no data loss -----------------------------------------------------------------------------
def test_same_names_in_two_folders_both_written(tmp_path, fake_detector):
    a = save_astro(tmp_path / "coll" / "a" / "x.png")
    b = save_astro(tmp_path / "coll" / "b" / "x.png")
    res = run(a, b, "-o", tmp_path / "out", "--model", "bicubic", "-q")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "out" / "a" / "x.png").is_file() and (tmp_path / "out" / "b" / "x.png").is_file()
    assert "summary: 2 photos" in res.output


def test_a_clash_is_an_error_never_silent(tmp_path, fake_detector):
    save_astro(tmp_path / "d" / "x.png")
    save_astro(tmp_path / "d" / "x.jpg")  # both map to x<suffix>.png with --ext png
    res = run(tmp_path / "d", "-o", tmp_path / "out", "--model", "bicubic", "--ext", "png", "-q")
    assert res.exit_code == 1
    assert "already the output of" in res.output
    assert "summary: 1 photos" in res.output and "1 failed" in res.output


# -- 3. file modes -------------------------------------------------------------------------------
@pytest.mark.parametrize("umask, expected", [(0o022, 0o644), (0o027, 0o640)])
def test_outputs_follow_the_umask(tmp_path, fake_detector, umask, expected):
    save_astro(tmp_path / "a.png")
    old = os.umask(umask)
    try:
        res = run(tmp_path / "a.png", "-o", tmp_path / "out", "--model", "bicubic", "--compare", "--save-faces", "-q")
    finally:
        os.umask(old)
    assert res.exit_code == 0, res.output
    files = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert len(files) == 4  # photo, compare, face input, face restored
    assert {mode(p) for p in files} == {expected}


# -- 4. size guard -------------------------------------------------------------------------------
def test_upscale_over_the_limit_fails_fast_with_one_line(tmp_path, fake_detector):
    save_astro(tmp_path / "a.png")
    t0 = time.perf_counter()
    res = run(tmp_path / "a.png", "-o", tmp_path / "out", "--model", "bicubic", "--upscale", "1000")
    assert res.exit_code == 2
    assert time.perf_counter() - t0 < 5
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "--upscale 1000" in lines[0] and "megapixels" in lines[0]
    assert not (tmp_path / "out").exists()


def test_small_pixel_limits_are_printed_readably(tmp_path, fake_detector):
    save_astro(tmp_path / "a.png")
    res = run(tmp_path / "a.png", "-o", tmp_path / "out", "--model", "bicubic", "--max-pixels", "40000")
    assert res.exit_code == 1
    assert "40,000 pixels" in res.output and "limit of 0.0" not in res.output


# -- 5. progress ---------------------------------------------------------------------------------
def test_progress_prints_lines_when_not_a_terminal():
    buf = io.StringIO()
    with ItemProgress(3, "restore", unit="photos", every=0.0, stream=buf) as p:
        for _ in range(3):
            p.advance()
    lines = buf.getvalue().splitlines()
    assert lines[-1].startswith("restore: 3/3 photos") and "/s" in lines[-1]
    assert "ETA" in lines[0]


def test_progress_quiet_and_single_item_print_nothing():
    for kw in ({"quiet": True, "total": 5}, {"total": 1}):
        buf = io.StringIO()
        with ItemProgress(label="x", every=0.0, stream=buf, **kw) as p:
            p.advance()
        assert buf.getvalue() == ""


# -- 8. conventions ------------------------------------------------------------------------------
def test_ext_and_suffix(tmp_path, fake_detector):
    save_astro(tmp_path / "a.png")
    res = run(tmp_path / "a.png", "-o", tmp_path / "out", "--model", "bicubic", "--ext", "jpg", "--suffix", "_r", "-q")
    assert res.exit_code == 0, res.output
    assert Image.open(tmp_path / "out" / "a_r.jpg").format == "JPEG"


def test_draw_box_outlines_the_face(tmp_path, fake_detector):
    save_astro(tmp_path / "a.png")
    res = run(tmp_path / "a.png", "-o", tmp_path / "out", "--model", "bicubic", "--draw-box", "-q")
    assert res.exit_code == 0, res.output
    out = np.asarray(Image.open(tmp_path / "out" / "a.png")).astype(int)
    x0, y0, x1, y1 = [int(round(float(v))) for v in ASTRO_BOX]
    edge = out[y0, x0 + 5:x1 - 5]
    assert (edge[:, 1] > 200).all() and (edge[:, 0] < 60).all()  # green line along the top


def test_only_center_face_skips_the_others():
    class TwoFaces(FakeDetector):
        def detect(self, images):
            d = super().detect(images)[0]
            shift = torch.tensor([50.0, 150.0])
            return [type(d)(torch.cat([d.boxes, d.boxes + shift.repeat(2)]), torch.ones(2),
                            torch.cat([d.landmarks, d.landmarks + shift]))]

    r = Restorer.from_pretrained("bicubic", device="cpu", detector=TwoFaces(), only_center_face=True)
    res = r.restore_many([astronaut()])[0]
    assert res.n_found == 2 and res.n_restored == 1
    assert [f.restored for f in res.faces] == [False, True]  # (274, 267) is nearer (256, 256) than (224, 117)
    assert "centre" in res.faces[0].reason


def test_version_and_short_help():
    r = CliRunner()
    v = r.invoke(app, ["--version"])
    assert v.exit_code == 0 and v.output.startswith("facerestore ")
    h = r.invoke(app, ["restore", "-h"])
    assert h.exit_code == 0
    for flag in ("-w, --fidelity", "-s, --upscale", "--only-center-face", "--draw-box", "--ext", "--suffix",
                 "--detector"):
        assert flag in h.output, flag
    assert "<bool>" not in h.output
    d = r.invoke(app, ["degrade", "-h"])
    assert "[[degradation]]" in d.output


def test_unknown_detector_lists_known_ones(tmp_path):
    save_astro(tmp_path / "a.png")
    res = run(tmp_path / "a.png", "-o", tmp_path / "out", "--model", "bicubic", "--detector", "nope")
    assert res.exit_code == 2
    assert "unknown detector 'nope'" in res.output and "mtcnn" in res.output


# -- aligned crops of any size -------------------------------------------------------------------
def test_aligned_non_square_is_centre_cropped_once(tmp_path):
    face = Image.fromarray(astro()).crop((150, 20, 328, 238))  # 178x218, CelebA's shape
    for i in range(2):
        face.save(tmp_path / f"f{i}.png")
    res = run(tmp_path / "f0.png", tmp_path / "f1.png", "-o", tmp_path / "out", "--model", "bicubic", "--aligned", "-q")
    assert res.exit_code == 0, res.output
    assert res.output.count("centre-cropped") == 1
    assert Image.open(tmp_path / "out" / "f0.png").size == (178, 178)


def _spy_model(monkeypatch) -> list[int]:
    """Count the faces each ``Restorer.run_model`` call is given (output == input must not pass
    because the model never ran)."""
    calls: list[int] = []
    original = Restorer.run_model

    def counted(self, batch, *args, **kwargs):
        calls.append(batch.shape[0])
        return original(self, batch, *args, **kwargs)

    monkeypatch.setattr(Restorer, "run_model", counted)
    return calls


def test_aligned_512_comes_back_at_512(tmp_path, monkeypatch):
    Image.fromarray(astro()).crop((100, 0, 356, 256)).resize((512, 512)).save(tmp_path / "big.png")
    calls = _spy_model(monkeypatch)
    res = run(tmp_path / "big.png", "-o", tmp_path / "out", "--model", "bicubic", "--aligned", "-q")
    assert res.exit_code == 0, res.output
    assert calls == [1]
    out = np.asarray(Image.open(tmp_path / "out" / "big.png"))
    assert out.shape == (512, 512, 3)
    # no occlusion estimate and a face 4x the model's output: every pixel is the input's
    assert np.array_equal(out, np.asarray(Image.open(tmp_path / "big.png")))


# -- mask-aware compositing ----------------------------------------------------------------------
def test_fidelity_one_and_no_mask_leave_the_photo_unchanged(monkeypatch):
    img = astronaut()
    calls = _spy_model(monkeypatch)
    res = restorer(fidelity=1.0).restore_many([img])[0]
    assert res.n_restored == 1 and calls == [1]
    assert not torch.equal(res.restored, res.aligned)  # the model changed the face; compositing kept the photo
    assert torch.equal((res.image * 255).round(), (img * 255).round())


def test_large_sharp_face_keeps_its_own_pixels():
    """A face twice the model's output size in the photo: the visible face is not replaced."""
    img = torch.nn.functional.interpolate(astronaut()[None], scale_factor=4, mode="bicubic")[0].clamp(0, 1)

    class Big(FakeDetector):
        def detect(self, images):
            return [type(super().detect([astronaut()])[0])(ASTRO_BOX[None] * 4, torch.ones(1), ASTRO_LM[None] * 4 + 1.5)]

    r = Restorer.from_pretrained("bicubic", device="cpu", detector=Big())
    out = r.restore_many([img])[0].image
    assert (out - img).abs().max() < 1e-6


def test_occlusion_is_replaced_and_the_border_shows_no_seam():
    """Weights from an occlusion estimate: 1 on the mask whatever the fidelity, smooth edges."""
    occ = torch.zeros(1, 1, 128, 128)
    occ[..., 80:120, 30:98] = 1.0
    w = align.composite_weights(occ, torch.tensor([0.25]), fidelity=1.0, size=128)
    assert w[0, 0, 100, 64] == 1.0 and w[0, 0, 40, 64] == 0.0  # mask replaced, eyes kept
    occ[..., 80:, 30:98] = 1.0  # a mask down to the crop's bottom edge: replaced to its last 3 rows
    w = align.composite_weights(occ, torch.tensor([0.25]), fidelity=0.0, size=128)
    assert w[0, 0, 124, 64] == 1.0 and w[0, 0, 127, 64] < 0.2 and w[0, 0, 124, 20] < 0.5
    img = astronaut()
    m = align.alignment_matrices(ASTRO_LM[None], 128)
    face = (align.warp_crops(img, m, 128) + torch.tensor([0.12, -0.08, 0.05]).view(1, 3, 1, 1)).clamp(0, 1)
    out = align.paste_faces(img, face, m, w, color_match=False)
    assert (out - img).abs().max() > 0.05  # pasted where the mask was
    assert seam_ratio(out, img, w, m) <= 1.0


def test_bf16_precision_stays_close_to_fp32():
    res = CliRunner().invoke(app, ["restore", "x.png", "--precision", "fp8"])
    assert res.exit_code == 2 and "--precision" in res.output
    from facerestore.device import cpu_has_bf16

    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    a = Restorer.from_pretrained("jdsr-x4", device="cpu").restore_faces(x)
    b = Restorer.from_pretrained("jdsr-x4", device="cpu", precision="bf16").restore_faces(x)
    if not cpu_has_bf16():  # bf16 falls back to float32 here: the outputs are the same bits
        assert torch.equal(a, b)
        pytest.skip("this CPU has no native bf16 (AVX512-BF16/AMX): precision='bf16' runs float32 here")
    assert not torch.equal(a, b), "precision='bf16' did not run in bf16"
    assert (a - b).abs().max() < 0.05 and (a - b).abs().mean() < 0.005


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_checkpoints_and_exports_follow_the_umask(tmp_path, umask):
    """Checkpoints and every export format get 0666 & ~umask (a hard-coded chmod 0644 fails 027/077)."""
    from facerestore.checkpoint import save_tensors
    from facerestore.commands.export import export_onnx, export_pt2
    from facerestore.models import load

    gen = load("bicubic").generator
    old = os.umask(umask)
    try:
        save_tensors(tmp_path / "c.safetensors", {"w": torch.zeros(2)}, {"contents": "generator"})
        export_pt2(gen, 16, tmp_path / "m.pt2")
        if importlib.util.find_spec("onnx") is not None:
            export_onnx(gen, 16, tmp_path / "m.onnx")
        res = CliRunner().invoke(app, ["export", "-m", "jdsr-x4", "--safetensors", str(tmp_path / "e.safetensors"),
                                       "--half"])
        assert res.exit_code == 0, res.output
    finally:
        os.umask(old)
    written = [p for p in tmp_path.iterdir() if p.is_file()]
    assert len(written) >= 3
    for p in written:
        assert mode(p) == 0o666 & ~umask, p.name


def test_progress_callback_form_sets_the_total():
    buf = io.StringIO()
    with ItemProgress(None, "clip.mp4", unit="frames", every=0.0, stream=buf) as p:
        p.update_to(10, 50)
        p.update_to(50, 50)
    assert p.total == 50 and p.done == 50
    assert buf.getvalue().splitlines()[-1].startswith("clip.mp4: 50/50 frames")


@pytest.mark.parametrize("name", ["masked-any", "masked-gen"])
def test_restored_faces_do_not_depend_on_the_thread_count(name):
    """The same faces on 1 and 2 torch threads give the same bits (the local engine runs all cores,
    a Ray worker one; issue 37 asks for the same bytes from both)."""
    grey = astronaut().mean(0, keepdim=True).expand(3, -1, -1)
    photos = [astronaut(), grey, (astronaut() * 1.05).clamp(0, 1), (astronaut() * 0.97 + 0.02)]
    r = Restorer.from_pretrained(name, device="cpu", detector=FakeDetector())
    out = [on_threads(n, lambda: torch.cat([res.restored for res in r.restore_many(photos)])) for n in (1, 2)]
    assert out[0].shape[0] == 4 and torch.equal(out[0], out[1]), float((out[0] - out[1]).abs().max())


def test_an_unreadable_photo_leaves_its_group_one_short(tmp_path, fake_detector, monkeypatch):
    """Groups are cut by listing position, not by photos read: a bad file does not pull the next
    photo into its group (the faces of a group share a forward pass whose output moves with the
    batch), so the Ray engine's units of the same listing write the same bytes."""
    for i in range(10):
        save_astro(tmp_path / "d" / f"p{i:02d}.png")
    (tmp_path / "d" / "p02.png").write_bytes(b"not a png")
    sizes: list[int] = []
    original = Restorer.restore_many

    def spy(self, images, *args, **kwargs):
        sizes.append(len(images))
        return original(self, images, *args, **kwargs)

    monkeypatch.setattr(Restorer, "restore_many", spy)
    res = run(tmp_path / "d", "-o", tmp_path / "out", "--model", "bicubic", "-q")
    assert res.exit_code == 1 and "summary: 9 photos" in res.output, res.output
    assert sizes == [7, 2]
