"""The README's main job (`make demo`) on the bundled astronaut face."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from facerestore import demo


def test_demo_writes_side_by_side(tmp_path):
    pytest.importorskip("facenet_pytorch")
    pytest.importorskip("skimage")
    out = tmp_path / "demo.png"
    assert demo.main(["--model", "bicubic", "--out", str(out), "--device", "cpu"]) == 0
    img = Image.open(out)
    assert img.size == (3 * 128, 128)
    # the panels' content, each computed here: the masked input (32 px, nearest-upscaled), its
    # bicubic restoration (the `bicubic` model), the aligned original
    panel = torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1).float() / 255
    lq_big, restored, original = panel[:, :, :128], panel[:, :, 128:256], panel[:, :, 256:]
    hq, _ = demo.aligned_face(demo.load_photo(None)[0], 128)
    assert (original - hq[0]).abs().max() <= 1 / 255 + 1e-6
    lq = lq_big[:, ::4, ::4]
    assert torch.equal(F.interpolate(lq[None], scale_factor=4, mode="nearest")[0], lq_big)
    assert (lq_big - original).abs().amax(0).gt(0.2).float().mean() > 0.05  # the mask is in the input
    up = F.interpolate(lq[None], size=(128, 128), mode="bicubic", align_corners=False).clamp(0, 1)[0]
    assert (restored - up).abs().max() <= 2 / 255


def test_demo_reports_a_photo_without_face(tmp_path):
    pytest.importorskip("facenet_pytorch")
    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 200), (120, 130, 140)).save(blank)
    assert demo.main([str(blank), "--model", "bicubic", "--out", str(tmp_path / "o.png"), "--device", "cpu"]) == 2
