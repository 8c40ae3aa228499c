"""Restore pipeline: alignment, paste-back without seams, the Python API, model resolution.

No training needed: the weight-free ``bicubic`` model and a tiny random-init checkpoint.
Detection is faked (landmarks measured once with MTCNN on ``skimage.data.astronaut()``) except
in the test that runs the real MTCNN detector.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from facerestore import align
from facerestore.errors import CheckpointError, FaceRestoreError, MissingWeightsError
from facerestore.interfaces import Detection, FaceDetector
from facerestore.restore import Restorer

skdata = pytest.importorskip("skimage.data")

#: MTCNN (facenet-pytorch) landmarks of skimage.data.astronaut(): eyes, nose, mouth corners
ASTRO_LM = torch.tensor([[205.01, 101.73], [246.76, 103.71], [224.67, 128.96], [201.72, 139.25], [245.27, 141.86]])
ASTRO_BOX = torch.tensor([181.05, 62.16, 267.75, 172.05])


def astronaut() -> torch.Tensor:
    return torch.from_numpy(skdata.astronaut()).permute(2, 0, 1).float() / 255


def luma(img: torch.Tensor) -> torch.Tensor:
    from facerestore.io import luma as luma_

    return luma_(img)[0]


class FakeDetector(FaceDetector):
    """Finds the astronaut's face when the image is the astronaut (upright, colour or grey)."""

    def __init__(self):
        self.ref = astronaut()
        self.calls = 0

    def detect(self, images):
        self.calls += 1
        out = []
        for img in images:
            img = img.float().cpu()
            hit = img.shape == self.ref.shape and (luma(img) - luma(self.ref)).abs().mean() < 0.05
            if img.shape[-2:] == (1024, 1024):  # --upscale 2 is applied after detection; never here
                hit = False
            n = 1 if hit else 0
            out.append(Detection(ASTRO_BOX[None][:n].clone(), torch.ones(n), ASTRO_LM[None][:n].clone()))
        return out


def restorer(**kw) -> Restorer:
    return Restorer.from_pretrained("bicubic", device="cpu", detector=FakeDetector(), **kw)


# ----------------------------------------------------------------------------------------------
# alignment
# ----------------------------------------------------------------------------------------------
def test_umeyama_recovers_similarity():
    g = torch.Generator().manual_seed(0)
    src = torch.rand(3, 5, 2, generator=g) * 100
    ang, s, t = torch.tensor([0.3, -1.0, 2.0]), torch.tensor([0.5, 2.0, 1.0]), torch.tensor([[3.0, -4.0]])
    rot = torch.stack([torch.stack([ang.cos(), -ang.sin()], -1), torch.stack([ang.sin(), ang.cos()], -1)], 1)
    dst = s[:, None, None] * src @ rot.transpose(1, 2) + t
    m = align.umeyama(src, dst)
    assert torch.allclose(m[:, :, :2], s[:, None, None] * rot, atol=1e-4)
    assert torch.allclose(m[:, :, 2], t.expand(3, 2), atol=1e-3)


def test_alignment_puts_landmarks_on_template():
    m = align.alignment_matrices(ASTRO_LM[None], 32)
    pts = ASTRO_LM @ m[0, :, :2].T + m[0, :, 2]
    tpl = align.template(32) - 0.5
    assert (pts - tpl).norm(dim=-1).max() < 1.5  # 5 points, 4 dof: a least-squares fit, not exact


def test_large_faces_are_antialiased():
    """A fine stripe pattern warped to a small crop: direct sampling aliases, the box-filtered
    path returns its mean (grey)."""
    x = torch.arange(512).float()
    stripes = ((x % 2)[None, None, :].expand(3, 512, 512)).contiguous()
    lm = (align.template(32) - 0.5) * 10 + 50  # a face 10x bigger than the crop, inside the image
    m = align.alignment_matrices(lm[None], 32)
    smooth = align.warp_crops(stripes, m, 32)
    aliased = align.warp_crops(stripes, m, 32, antialias=False)
    assert (smooth - 0.5).abs().max() < 0.1
    assert (aliased - 0.5).abs().max() > 0.3


def test_blend_mask_shape():
    for shape in ("square", "ellipse"):
        m = align.blend_mask(128, shape)[0, 0]
        assert m.shape == (128, 128) and m.min() >= 0 and m.max() <= 1
        assert m[0].max() == 0 and m[:, 0].max() == 0 and m[-1].max() == 0  # zero at the crop border
        assert m[64, 64] == 1
    sq = align.blend_mask(128, "square")[0, 0]
    # the mask must cover the mouth and chin of the template (where a face mask sits)
    assert sq[int(0.93 * 128), 64] > 0.9


# ----------------------------------------------------------------------------------------------
# paste-back
# ----------------------------------------------------------------------------------------------
def _grad(img: torch.Tensor) -> torch.Tensor:
    gx = F.pad((img[:, :, 1:] - img[:, :, :-1]).abs(), (0, 1, 0, 0))
    gy = F.pad((img[:, 1:, :] - img[:, :-1, :]).abs(), (0, 0, 0, 1))
    return (gx + gy).sum(0)


def _alpha_map(img: torch.Tensor, mask: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Where (and how much) the pasted face covers the photo."""
    ones = torch.ones(1, 3, mask.shape[-1], mask.shape[-1])
    return align.paste_faces(torch.zeros_like(img), ones, m, mask, color_match=False)[0]


def seam_ratio(out: torch.Tensor, img: torch.Tensor, mask: torch.Tensor, m: torch.Tensor) -> float:
    """Mean gradient magnitude of ``out`` along the blend border (where the mask crosses 0.5),
    relative to the larger of: ``out``'s gradient inside the face, the photo's own gradient on that
    border. A visible seam adds a step along the whole border line, so the ratio exceeds 1."""
    a = _alpha_map(img, mask, m)
    line, inside = (a > 0.3) & (a < 0.7), a > 0.99
    g_out, g_in = _grad(out), _grad(img)
    return float(g_out[line].mean() / torch.maximum(g_out[inside].mean(), g_in[line].mean()))


def test_paste_keeps_outside_and_has_no_seam():
    img = astronaut()
    r = restorer()
    res = r.restore_many([img])[0]
    assert res.n_found == 1 and res.n_restored == 1
    out = res.image
    assert out.shape == img.shape
    m = align.alignment_matrices(ASTRO_LM[None], r.hq_size)
    alpha = _alpha_map(img, align.blend_mask(r.hq_size, "face"), m)
    outside = alpha == 0
    assert outside.float().mean() > 0.8  # the face is a small part of the photo
    assert torch.equal(out[:, outside], img[:, outside])  # untouched outside the face
    assert (out - img)[:, alpha > 0.99].abs().mean() > 0.005  # the face was replaced
    assert seam_ratio(out, img, align.blend_mask(r.hq_size, "face"), m) <= 1.0
    # a restored face with a colour cast: the feathered paste still shows no seam...
    cast = torch.tensor([0.12, -0.08, 0.05])[:, None, None]
    hq = (r.restore_faces(res.aligned) + cast).clamp(0, 1)
    for color_match in (False, True):
        soft = align.paste_faces(img, hq, m, align.blend_mask(r.hq_size, "face"), color_match=color_match)
        assert seam_ratio(soft, img, align.blend_mask(r.hq_size, "face"), m) <= 1.0
    # ...while a hard-edged paste of the same face does (the measure can fail)
    hard_mask = torch.zeros(1, 1, r.hq_size, r.hq_size)
    hard_mask[..., 4:-4, 4:-4] = 1
    hard = align.paste_faces(img, hq, m, hard_mask, color_match=False)
    assert seam_ratio(hard, img, hard_mask, m) > 1.3


def test_color_match_removes_cast():
    img = astronaut()
    r = restorer()
    res = r.restore_many([img])[0]
    m = align.alignment_matrices(ASTRO_LM[None], r.hq_size)
    cast = (res.restored + 0.1).clamp(0, 1)
    ref = align.warp_crops(img, m, r.hq_size)
    fixed = align.match_colors(cast, ref, align.blend_mask(r.hq_size, "face"))
    ring = (align.blend_mask(r.hq_size, "face") > 0.1) & (align.blend_mask(r.hq_size, "face") < 0.9)
    err = lambda x: (x - ref)[:, :, ring[0, 0]].mean().abs().item()  # noqa: E731
    assert err(fixed) < err(cast) / 3


def test_upscale_and_min_face():
    img = astronaut()
    up = restorer(upscale=2).restore_many([img])[0]
    assert up.image.shape == (3, 1024, 1024) and up.n_restored == 1
    plain = F.interpolate(img[None], scale_factor=2, mode="bicubic", align_corners=False)[0].clamp(0, 1)
    assert torch.equal(up.image[:, 700:], plain[:, 700:])  # background (below the face): bicubic
    skipped = restorer(min_face=60).restore_many([img])[0]  # eye distance here is ~42 px
    assert skipped.n_found == 1 and skipped.n_skipped == 1 and "min-face" in skipped.faces[0].reason
    assert torch.equal(skipped.image, img)
    big = restorer(max_face=30).restore_many([img])[0]
    assert big.n_skipped == 1 and "max-face" in big.faces[0].reason and torch.equal(big.image, img)
    assert restorer(max_face=60).restore_many([img])[0].n_restored == 1


# ----------------------------------------------------------------------------------------------
# API
# ----------------------------------------------------------------------------------------------
def test_api_round_trip_kinds():
    r = restorer()
    arr = skdata.astronaut()
    out = r.restore(arr)
    assert isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.shape == arr.shape
    assert np.abs(out.astype(int) - arr).max() > 0
    pil = r.restore(Image.fromarray(arr))
    assert isinstance(pil, Image.Image) and pil.size == (512, 512) and pil.mode == "RGB"
    assert np.array_equal(np.asarray(pil), out)
    t = r.restore(astronaut())
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32 and t.shape == (3, 512, 512)
    rgba = Image.fromarray(np.dstack([arr, np.full(arr.shape[:2], 128, np.uint8)]))
    back = r.restore(rgba)
    assert back.mode == "RGBA" and np.asarray(back)[..., 3].max() == 128


def test_restore_faces_batching():
    r = restorer(batch_size=4)
    g = torch.Generator().manual_seed(1)
    faces = torch.rand(10, 3, 32, 32, generator=g)
    out = r.restore_faces(faces)
    assert out.shape == (10, 3, 128, 128) and out.min() >= 0 and out.max() <= 1
    assert torch.allclose(out[3], r.restore_faces(faces[3:4])[0], atol=1e-6)
    big = r.restore_faces(torch.rand(2, 3, 100, 100, generator=g))  # resized to the model input
    assert big.shape == (2, 3, 128, 128)
    assert r.restore_faces(faces[0]).shape == (3, 128, 128)


def tiny_checkpoint(path) -> str:
    from facerestore.checkpoint import save_generator
    from facerestore.recipe import load_recipe
    from facerestore.components import default_registry

    recipe = load_recipe({"name": "tiny", "scale": 4, "hq_size": 64,
                          "generator": {"type": "sr_only", "upsampler": {"type": "jdsr_sr", "channels": 8, "blocks": 1,
                                                                         "prior_channels": 4, "landmarks": 0}}})
    torch.manual_seed(0)
    gen = default_registry().build("generator", recipe.generator, "generator")
    save_generator(path, gen, recipe)
    return str(path)


def test_checkpoint_model(tmp_path):
    path = tiny_checkpoint(tmp_path / "tiny.safetensors")
    r = Restorer.from_pretrained(path, device="cpu", detector=FakeDetector())
    assert (r.scale, r.lq_size, r.hq_size) == (4, 16, 64)
    faces = torch.rand(3, 3, 16, 16)
    out = r.restore_faces(faces)
    with torch.no_grad():
        ref = r.generator(faces)["sr"].clamp(0, 1)
    assert out.shape == (3, 3, 64, 64) and torch.allclose(out, ref, atol=1e-5)
    photo = r.restore_many([astronaut()])[0]
    assert photo.n_restored == 1 and photo.image.shape == (3, 512, 512)


def test_tta_averages_the_mirrored_pass(tmp_path):
    path = tiny_checkpoint(tmp_path / "tiny.safetensors")
    plain = Restorer.from_pretrained(path, device="cpu", channels_last=False)
    tta = Restorer.from_pretrained(path, device="cpu", channels_last=False, tta=True)
    faces = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    a, b = plain.restore_faces(faces), plain.restore_faces(faces.flip(-1)).flip(-1)
    out = tta.restore_faces(faces)
    assert not torch.allclose(a, b, atol=1e-3)  # the random network is not mirror-symmetric
    assert torch.allclose(out, (a + b) / 2, atol=1e-5)
    # a mirror-symmetric input gives a mirror-symmetric output
    sym = torch.cat([faces[..., :8], faces[..., :8].flip(-1)], -1)
    out = tta.restore_faces(sym)
    assert torch.allclose(out, out.flip(-1), atol=1e-5)


def test_tta_averages_the_mirrored_occlusion_map(tmp_path):
    from facerestore.checkpoint import save_generator
    from facerestore.components import default_registry
    from facerestore.recipe import load_recipe

    recipe = load_recipe({"name": "tiny_any", "scale": 1, "hq_size": 32, "generator": {
        "type": "jdsr_any", "identity_channels": 4, "fusion_channels": 8, "fusion_blocks": 1,
        "denoiser": {"type": "jdsr_denoiser", "channels": 4, "depth": 1, "blocks": 1,
                     "estimator_layers": 3, "estimator_channels": 4},
        "upsampler": {"type": "jdsr_sr", "channels": 8, "blocks": 1, "scale": 4, "landmarks": 0, "prior_channels": 4}}})
    torch.manual_seed(0)
    gen = default_registry().build("generator", recipe.generator, "generator")
    with torch.no_grad():  # an estimator far from its flat start, so the map is not mirror-symmetric
        for p in gen.core.denoiser.estimator.parameters():
            p.mul_(8)
    save_generator(tmp_path / "any.safetensors", gen, recipe)
    plain = Restorer.from_pretrained(tmp_path / "any.safetensors", device="cpu", channels_last=False)
    tta = Restorer.from_pretrained(tmp_path / "any.safetensors", device="cpu", channels_last=False, tta=True)
    faces = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    (sr_a, occ_a), (sr_b, occ_b) = plain.run_model(faces), plain.run_model(faces.flip(-1))
    assert not torch.allclose(occ_a, occ_b.flip(-1), atol=1e-3)
    sr, occ = tta.run_model(faces)
    assert torch.allclose(occ, (occ_a + occ_b.flip(-1)) / 2, atol=1e-5)
    assert torch.allclose(sr, (sr_a + sr_b.flip(-1)) / 2, atol=1e-5)


def test_model_resolution_errors(tmp_path, monkeypatch, capsys, without_default_weights):
    from facerestore import demo, models
    from facerestore.defaults import DEFAULT_MODEL

    with pytest.raises(MissingWeightsError, match=r"--model PATH\.safetensors"):
        Restorer.from_pretrained(DEFAULT_MODEL, device="cpu")
    # the demo falls back to the weight-free baseline, with a warning
    monkeypatch.setattr(demo, "aligned_face", lambda img, size, name="": (torch.rand(1, 3, size, size), 1.0))
    assert demo.main(["--out", str(tmp_path / "d.png"), "--device", "cpu"]) == 0
    assert (tmp_path / "d.png").is_file() and "falling back to the weight-free bicubic" in capsys.readouterr().err
    with pytest.raises(FaceRestoreError, match="known names"):
        models.load("no-such-model")
    (tmp_path / "m.pt").write_bytes(b"PK")
    with pytest.raises(CheckpointError, match="convert"):
        models.load(str(tmp_path / "m.pt"))
    with pytest.raises(CheckpointError, match="not found"):
        models.load(str(tmp_path / "missing.safetensors"))


def test_real_mtcnn_finds_astronaut():
    from facerestore.components import default_registry

    pytest.importorskip("facenet_pytorch")
    if ("detector", "mtcnn") not in default_registry():
        pytest.skip("detector 'mtcnn' is not registered in this install (plugins/detectors.py)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    r = Restorer.from_pretrained("bicubic", device="cpu")
    det = r.detector.detect([astronaut()])[0]
    assert det.boxes.shape[0] >= 1
    best = det.scores.argmax()
    assert (det.landmarks[best] - ASTRO_LM).norm(dim=-1).max() < 6
    res = r.restore_many([astronaut()])[0]
    assert res.n_restored >= 1 and res.image.shape == (3, 512, 512)
