"""Face-mask degradations: placement, exact occlusion maps, templates, determinism."""

from __future__ import annotations

import pathlib

import pytest
import torch

from facerestore.degrade import build_pipeline, degrade_batch, make_generator
from facerestore.errors import FaceRestoreError
from facerestore.interfaces import DegradationBatch
from facerestore.landmarks import TEMPLATE_5, template_landmarks
from facerestore.components import create

S = 128


def faces(b: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, S, S, generator=g)


def run(spec: dict, hq: torch.Tensor, seed: int = 0, landmarks=None) -> DegradationBatch:
    return degrade_batch(hq, build_pipeline([spec]), make_generator(seed, "cpu"), landmarks)


@pytest.fixture()
def template_folder(tmp_path: pathlib.Path) -> pathlib.Path:
    """A MaskTheFace-style folder: one frontal template (flat red trapezoid) + a left variant."""
    from PIL import Image, ImageDraw

    folder = tmp_path / "masks"
    (folder / "templates").mkdir(parents=True)
    for name in ("flat", "flat_left"):
        im = Image.new("RGBA", (200, 150), (0, 0, 0, 0))
        ImageDraw.Draw(im).polygon([(10, 20), (100, 5), (190, 20), (180, 100), (100, 145), (20, 100)],
                                   fill=(200, 30, 30, 255))
        im.save(folder / "templates" / f"{name}.png")
    cfg = ""
    for name in ("flat", "flat_left"):
        cfg += (f"[{name}]\ntemplate: masks/templates/{name}.png\nmask_a: 10, 20\nmask_b: 100, 5\n"
                "mask_c: 190, 20\nmask_d: 20, 100\nmask_e: 100, 145\nmask_f: 180, 100\n\n")
    cfg += ";[commented]\n;template: x.png\n\n[empty]\n"
    (folder / "masks.cfg").write_text(cfg)
    return folder


MASKS = [
    {"type": "procedural_mask"},
    {"type": "random_mask", "template_prob": 0.0},
]


@pytest.mark.parametrize("spec", MASKS)
def test_occlusion_covers_exactly_the_mask_pixels(spec):
    a, b = faces(16, 1), faces(16, 2)
    ra, rb = run(spec, a, seed=5), run(spec, b, seed=5)
    occ = ra.occlusion_hq
    assert set(occ.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(occ, rb.occlusion_hq), "the mask does not depend on the image"
    covered = occ.expand(-1, 3, -1, -1) > 0.5
    # where the mask is, the pixel is the mask's own colour (identical for two different faces)
    assert torch.equal(ra.lq[covered], rb.lq[covered])
    # elsewhere the image is untouched
    assert torch.equal(ra.lq[~covered], a[~covered])
    assert torch.equal(ra.clean, a) and torch.equal(ra.hq, a)
    assert covered.any(dim=(1, 2, 3)).all(), "every face gets a mask with p=1"


def test_template_occlusion_exact_and_colour(template_folder):
    spec = {"type": "template_mask", "folder": str(template_folder), "families": [], "recolor_prob": 0.0,
            "texture_prob": 0.0}
    hq = faces(12)
    r = run(spec, hq, seed=3)
    covered = r.occlusion_hq.expand(-1, 3, -1, -1) > 0.5
    assert covered.any(dim=(1, 2, 3)).all()
    red = torch.tensor([200, 30, 30]).float().div(255).view(1, 3, 1, 1).expand_as(hq)
    assert torch.allclose(r.lq[covered], red[covered], atol=1e-4)
    assert torch.equal(r.lq[~covered], hq[~covered])
    assert set(r.extras["template_mask.kind"].tolist()) <= {0, 1}


def test_template_recolour_and_pose_variant(template_folder):
    spec = {"type": "template_mask", "folder": str(template_folder), "families": [], "recolor_prob": 1.0,
            "texture_prob": 0.0, "yaw_threshold": 0.1}
    lm = template_landmarks(S, 4)
    lm[:, 2, 0] -= 0.3 * (lm[:, 1, 0] - lm[:, 0, 0])  # nose well left of the eye centre
    r = run(spec, faces(4), landmarks=lm)
    m = create("degradation", "template_mask", **{k: v for k, v in spec.items() if k != "type"})
    names = m.templates.names
    assert [names[i] for i in r.extras["template_mask.kind"].tolist()] == ["flat_left"] * 4
    covered = r.occlusion_hq.expand(-1, 3, -1, -1) > 0.5
    red = torch.tensor([200, 30, 30]).float().div(255).view(1, 3, 1, 1).expand(4, -1, S, S)
    assert not torch.allclose(r.lq[covered], red[covered], atol=0.05), "recolour_prob=1 changes the colour"


def test_missing_template_folder(tmp_path):
    with pytest.raises(FaceRestoreError, match="nowhere"):
        create("degradation", "template_mask", folder=str(tmp_path / "nowhere"))
    with pytest.raises(FaceRestoreError, match="nowhere"):
        create("degradation", "random_mask", folder=str(tmp_path / "nowhere"), template_prob=0.3)
    # template_prob = 0 never touches the folder
    m = create("degradation", "random_mask", folder=str(tmp_path / "nowhere"), template_prob=0.0)
    assert m.template is None


def test_random_mask_mixes_templates_and_procedural(template_folder):
    spec = {"type": "random_mask", "folder": str(template_folder), "template_prob": 0.5, "texture_prob": 0.0,
            "families": []}
    r = run(spec, faces(32), seed=11)
    kinds = r.extras["random_mask.kind"]
    assert (kinds >= 4).any() and (kinds < 4).any()
    assert r.occlusion_hq.flatten(1).amax(1).min() == 1


@pytest.mark.parametrize("spec", [
    {"type": "procedural_mask"},
    {"type": "procedural_mask", "render_size": 0},
    {"type": "template_mask", "families": []},
])
def test_masks_sit_on_the_lower_face(spec, template_folder):
    if spec["type"] == "template_mask":
        spec = {**spec, "folder": str(template_folder)}
    b = 48
    eye_y = float(TEMPLATE_5[:2, 1].mean()) * S
    nose = TEMPLATE_5[2] * S
    mouth = TEMPLATE_5[3:].mean(0) * S
    for landmarks, slack in ((template_landmarks(S, b), 0.0), (None, 8.0)):
        occ = run(spec, faces(b), seed=7, landmarks=landmarks).occlusion_hq[:, 0]
        rows = occ.sum(2)  # (B, H)
        ys = torch.arange(S).float() + 0.5
        centre_y = (rows * ys).sum(1) / rows.sum(1)
        assert (centre_y > nose[1]).all(), "mask mass is below the nose tip"
        assert rows[:, : int(eye_y - slack)].sum() == 0, "nothing on the eyes or forehead"
        # nose tip and mouth covered on every face
        for pt in (nose, mouth):
            x, y = int(pt[0]), int(pt[1])
            assert (occ[:, y, x] == 1).all()
        # reaches below the mouth towards the chin
        lowest = (rows > 0).float().mul(ys).amax(1)
        assert (lowest > mouth[1] + 10).all()


def test_procedural_variety():
    r = run({"type": "procedural_mask"}, faces(64), seed=2)
    kinds = r.extras["procedural_mask.kind"]
    assert set(kinds.tolist()) == {0, 1, 2, 3}
    # masks differ in colour and size
    area = r.occlusion_hq.flatten(1).sum(1)
    assert area.std() / area.mean() > 0.05
    covered = r.occlusion_hq.expand(-1, 3, -1, -1)
    mean_col = (r.lq * covered).flatten(2).sum(2) / covered.flatten(2).sum(2)
    assert mean_col.std(0).min() > 0.05


def test_mask_probability_and_types():
    r = run({"type": "procedural_mask", "p": 0.0}, faces(8))
    assert r.occlusion_hq.sum() == 0 and torch.equal(r.lq, r.hq)
    r = run({"type": "procedural_mask", "types": ["kn95"]}, faces(8))
    assert set(r.extras["procedural_mask.kind"].tolist()) == {2}


def test_mask_after_downscale_blends_coverage():
    hq = faces(4)
    pipe = build_pipeline([{"type": "downscale", "scale": 4}, {"type": "procedural_mask"}])
    r = degrade_batch(hq, pipe, make_generator(0, "cpu"))
    assert r.lq.shape[-1] == 32 and r.occlusion.shape[-1] == 32 and r.occlusion_hq.shape[-1] == 128
    expect = torch.nn.functional.interpolate(r.occlusion_hq, size=(32, 32), mode="area")
    assert torch.allclose(r.occlusion, expect)


def test_mask_cfg_parsing(template_folder):
    from facerestore_plugins.mask_templates import read_masks_cfg

    entries = read_masks_cfg(template_folder)
    assert sorted(entries) == ["flat", "flat_left"]  # placeholders and comments skipped
    assert entries["flat"][1][4] == (100.0, 145.0)


@pytest.mark.shared
def test_real_masktheface_set(shared_data):
    folder = shared_data / "masks" / "masktheface"
    r = run({"type": "template_mask", "folder": str(folder)}, faces(8), seed=1)
    assert r.occlusion_hq.flatten(1).amax(1).min() == 1


# -- one renderer per procedural type (issue 17) ---------------------------------------------------
def _one_type(name: str, size: int = 256, n: int = 6):
    from facerestore.components import create
    from facerestore.interfaces import DegradationBatch

    m = create("degradation", "procedural_mask", types=[name], pattern_prob=0.0, render_size=0, rotation=[0.0, 0.0],
               jitter=0.0, perspective=0.0)
    hq = torch.full((n, 3, size, size), 0.5)
    b = m(DegradationBatch.from_hq(hq), torch.Generator().manual_seed(11))
    lum = b.lq.mean(1)  # (n, H, W)
    return lum, b.occlusion_hq[:, 0] > 0.5


def _columns(lum, cover, x):
    """Mean luminance of covered pixels in column ``x`` of each face."""
    col = torch.where(cover[:, :, x], lum[:, :, x], torch.nan)
    return torch.nanmean(col, 1)


def test_surgical_masks_have_pleats():
    lum, cover = _one_type("surgical")
    centre = lum.shape[-1] // 2
    for i in range(lum.shape[0]):
        rows = lum[i, cover[i, :, centre], centre]
        steps = (rows[1:] - rows[:-1]).abs() > 0.03  # fold edges along the vertical line
        assert int(steps.sum()) >= 6, f"face {i}: {int(steps.sum())} fold edges"  # hems and nose wire alone: 3


def test_cloth_masks_have_a_centre_seam():
    lum, cover = _one_type("cloth")
    c = lum.shape[-1] // 2
    seam = torch.stack([_columns(lum, cover, x) for x in range(c - 1, c + 2)]).amin(0)
    beside = torch.stack([_columns(lum, cover, x) for x in (c - 12, c + 12)]).mean(0)
    assert bool((seam < beside * 0.9).all())


def test_kn95_masks_are_folded_with_one_half_darker():
    lum, cover = _one_type("kn95")
    c = lum.shape[-1] // 2
    left, right = _columns(lum, cover, c - 20), _columns(lum, cover, c + 20)
    assert bool(((left - right).abs() > 0.01).all())  # the half turned from the light
    # pointed: the top edge is highest (smallest row) at the centre
    for i in range(lum.shape[0]):
        top = lambda x: int(cover[i, :, x].float().argmax())  # noqa: E731
        assert top(c) < top(c - 30) and top(c) < top(c + 30)


def test_n95_masks_are_cups_brighter_in_the_middle():
    lum, cover = _one_type("n95")
    c = lum.shape[-1] // 2
    assert bool((_columns(lum, cover, c) > _columns(lum, cover, c - 45)).all())


@pytest.mark.parametrize("size", [(128, 128), (96, 96), (96, 128), (100, 100), (48, 48)])
def test_window_upscale_equals_upscaling_the_whole_image(size):
    """``render`` upscales only the window that holds the masks (plus one zero pixel): the same
    colour and alpha as padding the window to the whole small image and upscaling that."""
    import torch.nn.functional as F

    from facerestore_plugins.mask_procedural import ProceduralMask

    h, w = size
    mask = ProceduralMask(render_size=32)
    lm = template_landmarks(min(h, w), 6, torch.device("cpu")) + torch.tensor([(w - min(h, w)) / 2, 0.0])
    anchors, _ = mask.placement.anchors(lm, torch.Generator().manual_seed(0))
    kind = torch.tensor([0, 1, 2, 3, 0, 1])
    colour, alpha = mask.render(anchors, kind, size, torch.Generator().manual_seed(1))
    sh, sw = (32, 32 * w // h) if h >= w else (32 * h // w, 32)  # k = 4, 3, 4 (non-square), none
    scale = torch.tensor([sw / w, sh / h])
    rgba, (y0, y1, x0, x1) = mask._render(anchors * scale, kind, (sh, sw), torch.Generator().manual_seed(1))
    assert 0 < y0 < y1 <= sh and 0 <= x0 < x1 <= sw  # a window below the eyes, not the whole image
    full = F.pad(rgba, (x0, sw - x1, y0, sh - y1))
    if (sh, sw) != (h, w):
        full = F.interpolate(full, size=(h, w), mode="bilinear", align_corners=False)
        full = torch.cat([full[:, :3], (full[:, 3:] > 0.5).float()], 1)
    # bilinear source positions are computed from another origin: float rounding only (k = 3: 1e-6)
    torch.testing.assert_close(colour, full[:, :3], rtol=0, atol=1e-5)
    assert torch.equal(alpha, full[:, 3:]) and alpha.sum() > 0
