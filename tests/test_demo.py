"""The README's main job (`make demo`) on the bundled astronaut face."""

from __future__ import annotations

import pytest
from PIL import Image

from facerestore import demo


def test_demo_writes_side_by_side(tmp_path):
    pytest.importorskip("facenet_pytorch")
    pytest.importorskip("skimage")
    out = tmp_path / "demo.png"
    assert demo.main(["--model", "bicubic", "--out", str(out), "--device", "cpu"]) == 0
    img = Image.open(out)
    assert img.size == (3 * 128, 128)


def test_demo_reports_a_photo_without_face(tmp_path):
    pytest.importorskip("facenet_pytorch")
    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 200), (120, 130, 140)).save(blank)
    assert demo.main([str(blank), "--model", "bicubic", "--out", str(tmp_path / "o.png"), "--device", "cpu"]) == 2
