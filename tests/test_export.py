"""`facerestore export`: ONNX output matches PyTorch (onnxruntime), torch.export round trip."""

from __future__ import annotations

import warnings

import pytest
import torch
from typer.testing import CliRunner

from facerestore.cli import app
from facerestore.commands.export import export_pt2, onnx_max_error
from facerestore.models import load

from test_restore import tiny_checkpoint


def tiny_inpaint_checkpoint(path) -> str:
    """A small ``jdsr_inpaint`` (32 px faces, scale 1) with a live branch and occlusion map."""
    from facerestore.checkpoint import save_generator
    from facerestore.components import default_registry
    from facerestore.recipe import load_recipe

    from test_inpaint import INPAINT

    recipe = load_recipe({"name": "tiny_inpaint", "scale": 1, "hq_size": 32, "generator": INPAINT})
    torch.manual_seed(0)
    gen = default_registry().build("generator", recipe.generator, "generator")
    with torch.no_grad():
        gen.inpaint.refine[-1].bias.fill_(0.1)
    save_generator(path, gen, recipe)
    return str(path)


def test_onnx_parity_checkpoint(tmp_path):
    """A generative checkpoint (FFT-free Fourier units) exports with both outputs: the face and the
    occlusion map at the face's size, as ``restore`` reads them."""
    pytest.importorskip("onnx", reason="onnx not installed (pip install facerestore[export])")
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install facerestore[export])")
    ckpt = tiny_inpaint_checkpoint(tmp_path / "tiny.safetensors")
    res = CliRunner().invoke(app, ["export", "--model", ckpt, "--onnx", str(tmp_path / "m.onnx")])
    assert res.exit_code == 0, res.output
    gen = load(ckpt).generator
    x = torch.rand(5, 3, 32, 32)  # another batch size than the export example
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    sr, occ = (torch.from_numpy(t) for t in sess.run(["sr", "occlusion"], {"lq": x.numpy()}))
    with torch.no_grad():  # the reference straight from the generator, not from the export wrapper
        out = gen(x)
    ref_occ = out["noise_map"].clamp(0, 1)
    assert sr.shape == (5, 3, 32, 32) and occ.shape == (5, 1, 32, 32)
    assert (sr - out["sr"].clamp(0, 1)).abs().max() < 1e-4
    assert (occ - ref_occ).abs().max() < 1e-4 and ref_occ.amax() > 0.01  # the map, not zeros
    assert "max abs difference" in res.output and "occlusion: (B, 1, 32, 32)" in res.output


def test_onnx_parity_bicubic(tmp_path):
    pytest.importorskip("onnx", reason="onnx not installed")
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed")
    res = CliRunner().invoke(app, ["export", "--model", "bicubic", "--onnx", str(tmp_path / "b.onnx")])
    assert res.exit_code == 0, res.output
    gen = load("bicubic").generator
    assert onnx_max_error(gen, 32, tmp_path / "b.onnx") < 1e-4


def test_pt2_round_trip(tmp_path, capfd):
    ckpt = tiny_checkpoint(tmp_path / "tiny.safetensors")
    gen = load(ckpt).generator
    capfd.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export_pt2(gen, 16, tmp_path / "m.pt2")
    # torch logs (not warns) about an archive name without .pt2, such as a temporary file's
    assert ".pt2" not in capfd.readouterr().err and not [str(w.message) for w in caught if ".pt2" in str(w.message)]
    loaded = torch.export.load(str(tmp_path / "m.pt2")).module()
    x = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        got, ref = loaded(x), gen(x)
    assert torch.allclose(got[0], ref["sr"].clamp(0, 1), atol=1e-5)
    assert got[1].shape == (3, 1, 64, 64) and not got[1].any()  # no occlusion estimate: zeros


def test_export_needs_a_target():
    res = CliRunner().invoke(app, ["export", "--model", "bicubic"])
    assert res.exit_code == 2 and "nothing to do" in res.output


def test_export_averages_repeated_models(tmp_path):
    from facerestore.checkpoint import read_metadata, save_generator

    a = tiny_checkpoint(tmp_path / "a.safetensors")
    m = load(a)
    gen, recipe = m.generator, m.recipe
    with torch.no_grad():  # a second point of "the same run": every weight moved
        for p in gen.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    save_generator(tmp_path / "b.safetensors", gen, recipe)
    out = tmp_path / "soup.safetensors"
    res = CliRunner().invoke(app, ["export", "-m", a, "-m", str(tmp_path / "b.safetensors"), "--safetensors", str(out)])
    assert res.exit_code == 0, res.output
    assert "averaged the weights of 2 models" in res.output
    ga, gb, soup = (load(str(p)).generator.state_dict()
                    for p in (a, tmp_path / "b.safetensors", out))
    moved = [k for k in soup if soup[k].is_floating_point() and not torch.equal(ga[k], gb[k])]
    assert moved and all(torch.allclose(soup[k], (ga[k] + gb[k]) / 2, atol=1e-6) for k in moved)
    assert read_metadata(out)["exported_from"] == "a.safetensors + b.safetensors"
    # another architecture is refused, naming a tensor
    res = CliRunner().invoke(app, ["export", "-m", a, "-m", "masked-any", "--safetensors", str(tmp_path / "x.safetensors")])
    assert res.exit_code != 0 and "model 2's recipe" in res.output and not (tmp_path / "x.safetensors").exists()
    meta = read_metadata(out)
    assert meta["averaged"] == "2"


def test_average_into_refuses_other_shapes_and_names():
    from torch import nn

    from facerestore.checkpoint import CheckpointError, average_into

    a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    avg = (a.weight.detach() + b.weight.detach()) / 2
    assert torch.allclose(average_into(a, iter([b]), "t").weight, avg)
    with pytest.raises(CheckpointError, match="shape"):
        average_into(nn.Linear(2, 2), [nn.Linear(2, 3)], "t")
    with pytest.raises(CheckpointError, match="model 3 differs"):
        average_into(nn.Linear(2, 2), [nn.Linear(2, 2), nn.Linear(2, 2, bias=False)], "t")


def test_export_set_changes_the_recipe_not_the_weights(tmp_path):
    """``--set generator.gate=true`` ships the same weights with a setting the recipe now carries;
    a change that alters the parameters is refused."""
    src = tiny_inpaint_checkpoint(tmp_path / "src.safetensors")
    out = tmp_path / "gated.safetensors"
    res = CliRunner().invoke(app, ["export", "-m", src, "--safetensors", str(out), "--set", "generator.gate=true"])
    assert res.exit_code == 0, res.output
    a, b = load(src), load(str(out))
    assert b.recipe.generator["gate"] is True and not a.recipe.generator.get("gate", False)
    assert all(torch.equal(v, b.generator.state_dict()[k]) for k, v in a.generator.state_dict().items())
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert not torch.allclose(a.generator(x)["sr"], b.generator(x)["sr"])  # the setting took effect
    res = CliRunner().invoke(app, ["export", "-m", src, "--safetensors", str(tmp_path / "x.safetensors"),
                                   "--set", "generator.inpaint_channels=16"])
    assert res.exit_code == 2 and "Traceback" not in res.output
