"""Face folders, loaders, landmark cache and the `facerestore degrade` command."""

from __future__ import annotations

import json
import pathlib
import warnings

import pytest
import torch
from PIL import Image

from facerestore.data import FaceFolder, load_face, make_loader, to_float
from facerestore.errors import FaceRestoreError
from facerestore.interfaces import Detection
from facerestore.landmark_cache import LandmarkCache, build_landmark_cache
from facerestore.landmarks import TEMPLATE_5


@pytest.fixture()
def face_dir(tmp_path: pathlib.Path, astronaut) -> pathlib.Path:
    """Nested folder of astronaut crops in several formats and sizes, plus a broken file."""
    root = tmp_path / "faces"
    (root / "a" / "b").mkdir(parents=True)
    img = Image.fromarray((astronaut.permute(1, 2, 0) * 255).byte().numpy())
    crops = [(127, 1, 321, 195), (120, 0, 330, 240), (110, 10, 340, 200)]
    for i, box in enumerate(crops):
        img.crop(box).save(root / f"f{i}.png")
        img.crop(box).save(root / "a" / f"g{i}.jpg", quality=95)
    img.crop(crops[0]).save(root / "a" / "b" / "h.webp")
    (root / "a" / "broken.jpg").write_bytes(b"not a jpeg")
    (root / "notes.txt").write_text("ignored")
    return root


def test_face_folder(face_dir):
    ds = FaceFolder(face_dir, hq_size=64)
    assert len(ds) == 8  # 7 images + the broken one (skipped when read)
    assert [p.suffix for p in ds.files].count(".txt") == 0
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        items = [ds[i] for i in range(len(ds))]
    assert any("broken.jpg" in str(x.message) for x in w)
    for it in items:
        assert it["hq"].dtype == torch.uint8 and it["hq"].shape == (3, 64, 64)
    assert "landmarks" not in items[0]


def test_centre_crop(tmp_path):
    a = torch.zeros(100, 200, 3, dtype=torch.uint8)
    a[:, :50] = torch.tensor([255, 0, 0], dtype=torch.uint8)
    a[:, 150:] = torch.tensor([0, 0, 255], dtype=torch.uint8)
    a[:, 50:150] = torch.tensor([0, 255, 0], dtype=torch.uint8)
    Image.fromarray(a.numpy()).save(tmp_path / "x.png")
    t = load_face(tmp_path / "x.png", 32)
    assert t[1].float().mean() > 250 and t[0].float().max() < 10 and t[2].float().max() < 10


def test_loader_and_to_float(face_dir):
    loader = make_loader(face_dir, hq_size=32, batch_size=3, workers=0, seed=1)
    batch = next(iter(loader))
    assert batch["hq"].shape == (3, 3, 32, 32) and batch["hq"].dtype == torch.uint8
    x = to_float(batch, "cpu", channels_last=True)
    assert x.dtype == torch.float32 and x.is_contiguous(memory_format=torch.channels_last)
    # the scale exactly: x * 255 gives back the uint8 pixels (a divisor of 510 passed `x.max() <= 1`)
    assert torch.equal((x * 255).round().to(torch.uint8), batch["hq"]) and x.max() > 0.5
    # a float batch is already in [0, 1]: kept as it is; the default layout is the plain one
    again = to_float(x.contiguous())
    assert torch.equal(again, x) and again.is_contiguous() and again.device.type == "cpu"
    order1 = [int(i) for b in make_loader(face_dir, 32, 2, 0, seed=5, drop_last=False) for i in b["index"]]
    order2 = [int(i) for b in make_loader(face_dir, 32, 2, 0, seed=5, drop_last=False) for i in b["index"]]
    assert order1 == order2


def test_missing_folder(tmp_path):
    with pytest.raises(FaceRestoreError, match="not found"):
        FaceFolder(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FaceRestoreError, match="no images"):
        FaceFolder(tmp_path / "empty")


class FakeDetector:
    """Finds one face per image, with landmarks at the template shifted right by 0.05."""

    def __init__(self):
        self.calls = 0

    def detect(self, images):
        self.calls += len(images)
        out = []
        for im in images:
            s = im.shape[-1]
            lm = (TEMPLATE_5 + torch.tensor([0.05, 0.0])) * s
            out.append(Detection(boxes=torch.tensor([[0.0, 0, s, s]]), scores=torch.tensor([0.99]),
                                 landmarks=lm.unsqueeze(0)))
        return out


def test_landmark_cache(face_dir, tmp_path):
    for f in face_dir.rglob("broken.jpg"):
        f.unlink()
    det = FakeDetector()
    path = tmp_path / "lm.json"
    cache = build_landmark_cache(face_dir, path, detector_obj=det)
    assert det.calls == 7
    data = json.loads(path.read_text())
    assert data["format"] == "facerestore-landmarks" and len(data["entries"]) == 7
    build_landmark_cache(face_dir, path, detector_obj=det)
    assert det.calls == 7, "cached images are not detected again"
    cache = LandmarkCache(path)
    lm = cache.get(face_dir / "f0.png", 128)
    assert torch.allclose(lm, (TEMPLATE_5 + torch.tensor([0.05, 0.0])) * 128, atol=1e-4)
    # a changed file falls back to the template until the cache is rebuilt
    Image.new("RGB", (50, 50)).save(face_dir / "f0.png")
    assert torch.allclose(LandmarkCache(path).get(face_dir / "f0.png", 128), TEMPLATE_5 * 128)
    ds = FaceFolder(face_dir, 64, landmark_cache=LandmarkCache(path))
    assert ds[1]["landmarks"].shape == (5, 2)


def test_degrade_cli(face_dir, tmp_path):
    from typer.testing import CliRunner

    from facerestore.cli import app
    from facerestore.degrade import load_paired_set

    recipe = tmp_path / "r.toml"
    recipe.write_text('name = "t"\nscale = 4\nhq_size = 64\n'
                      '[[degradation]]\ntype = "random_mask"\ntemplate_prob = 0.0\n'
                      '[[degradation]]\ntype = "gaussian_blur"\n'
                      '[[degradation]]\ntype = "downscale"\nscale = 4\n'
                      '[[degradation]]\ntype = "gaussian_noise"\n'
                      '[[degradation]]\ntype = "jpeg"\n')
    out, grid = tmp_path / "out", tmp_path / "grid.png"
    runner = CliRunner()
    res = runner.invoke(app, ["degrade", str(face_dir), str(out), "--recipe", str(recipe), "--seed", "3",
                              "--limit", "5", "--grid", str(grid), "--batch-size", "2"])
    assert res.exit_code == 0, res.output
    for sub in ("hq", "lq", "lq_clean", "occlusion", "occlusion_hq"):
        assert len(list((out / sub).glob("*.png"))) == 4  # a/broken.jpg (among the first 5) skipped, not duplicated
    ps = load_paired_set(out)
    assert ps.lq.shape == (4, 3, 16, 16) and ps.hq.shape == (4, 3, 64, 64)
    assert "a/broken.jpg" not in [f["source"] for f in ps.manifest["files"]]
    assert ps.manifest["seed"] == 3 and ps.manifest["degradation"][0]["type"] == "random_mask"
    assert grid.is_file()
    # same seed, same set
    out2 = tmp_path / "out2"
    runner.invoke(app, ["degrade", str(face_dir), str(out2), "--recipe", str(recipe), "--seed", "3",
                        "--limit", "5", "--batch-size", "2"])
    assert torch.equal(load_paired_set(out2).lq, ps.lq)
    # user errors are one line, exit 2
    bad = runner.invoke(app, ["degrade", str(face_dir), str(out2), "--recipe", str(tmp_path / "none.toml")])
    assert bad.exit_code == 2 and "recipe file not found" in bad.output
    # a set already there is refused; --replace replaces it whole (a smaller set leaves no stale pairs)
    again = runner.invoke(app, ["degrade", str(face_dir), str(out), "--recipe", str(recipe), "--limit", "2"])
    assert again.exit_code == 2 and "not empty" in again.output and "--replace" in again.output
    assert len(list((out / "hq").glob("*.png"))) == 4
    again = runner.invoke(app, ["degrade", str(face_dir), str(out), "--recipe", str(recipe), "--limit", "2", "--replace"])
    assert again.exit_code == 0, again.output
    count = load_paired_set(out).manifest["count"]
    assert 1 <= count < 4
    for sub in ("hq", "lq", "lq_clean", "occlusion", "occlusion_hq"):
        assert len(list((out / sub).glob("*.png"))) == count
    (out / "mine.txt").write_text("keep")
    foreign = runner.invoke(app, ["degrade", str(face_dir), str(out), "--recipe", str(recipe), "--replace"])
    assert foreign.exit_code == 2 and "mine.txt" in foreign.output and (out / "hq").is_dir()
