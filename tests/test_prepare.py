"""`facerestore prepare`: photos -> aligned training faces, every rejection reported."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter
from typer.testing import CliRunner

from facerestore import align
from facerestore.cli import app
from facerestore.prepare import PrepareRules, judge

from test_restore import ASTRO_BOX, ASTRO_LM, FakeDetector, astronaut, skdata  # noqa: F401


def det_for(lm: torch.Tensor, score: float = 0.99):
    from facerestore.interfaces import Detection

    return Detection(ASTRO_BOX[None].clone(), torch.tensor([score]), lm[None].clone())


def test_judge_accepts_a_sharp_face_and_aligns_it_to_the_template():
    rules = PrepareRules(size=128)
    crop, pts, why = judge(astronaut(), det_for(ASTRO_LM), rules)
    assert why == "" and crop.shape == (3, 128, 128)
    assert (pts - align.template(128)).abs().max() < 3  # landmarks land on the template


@pytest.mark.parametrize("case, reason", [("low score", "no confident face"), ("small", "too small"),
                                          ("blurred", "blurred"), ("two faces", "several faces"),
                                          ("edge", "crop outside the photo")])
def test_judge_rejects_with_a_reason(case, reason):
    from facerestore.interfaces import Detection

    img, det = astronaut(), det_for(ASTRO_LM)
    if case == "low score":
        det = det_for(ASTRO_LM, 0.8)
    elif case == "small":
        img = torch.nn.functional.interpolate(img[None], scale_factor=0.5, mode="area")[0]
        det = det_for(ASTRO_LM * 0.5)
    elif case == "blurred":
        pil = Image.fromarray(skdata.astronaut()).filter(ImageFilter.GaussianBlur(6))
        img = torch.from_numpy(np.array(pil)).permute(2, 0, 1).float() / 255
    elif case == "two faces":
        det = Detection(torch.cat([ASTRO_BOX[None]] * 2), torch.tensor([0.99, 0.98]),
                        torch.stack([ASTRO_LM, ASTRO_LM + torch.tensor([150.0, 200.0])]))
    elif case == "edge":
        img = img[:, 60:, 180:]  # the face at the top-left corner of what is left
        det = det_for(ASTRO_LM - torch.tensor([180.0, 60.0]))
    crop, _, why = judge(img, det, PrepareRules(size=128))
    assert crop is None and why.startswith(reason), why


def test_prepare_command_writes_faces_cache_and_reasons(tmp_path, monkeypatch):
    import facerestore.restore as restore_mod

    monkeypatch.setattr(restore_mod, "default_detector", lambda device="cpu", name="mtcnn": FakeDetector())
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    Image.fromarray(skdata.astronaut()).save(src / "sub" / "astro.jpg")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(src / "noise.png")
    (src / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    res = CliRunner().invoke(app, ["prepare", str(src), str(tmp_path / "dst"), "--size", "128"])
    assert res.exit_code == 0, res.output
    assert Image.open(tmp_path / "dst" / "sub" / "astro.png").size == (128, 128)
    assert "skipped" in res.output and "noise.png: no confident face" in res.output
    assert "broken.jpg" in res.output
    assert "prepared 1 faces" in res.output and "rejected 2" in res.output
    cache = json.loads((tmp_path / "dst" / "landmarks.json").read_text())
    (entry,) = cache["entries"].values()
    assert np.allclose(entry["landmarks"], (align.template(1)).tolist(), atol=0.03)
