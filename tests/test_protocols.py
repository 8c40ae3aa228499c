"""Evaluation protocols (facerestore.protocols, `facerestore eval --protocol FILE`) and the files the
benchmarks report (benchmarks/protocols/), read by the same loader."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from typer.testing import CliRunner

from facerestore.cli import app
from facerestore.errors import FaceRestoreError
from facerestore.protocols import load_protocol

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "benchmarks" / "protocols"
QUICK = ["--model", "bicubic", "--quiet", "--skip", "lpips,fd,identity,landmarks,speed"]

MASKED_X4 = '''name = "masked x4"
hq_size = 64
seed = 5
faces = "../faces"

[[degradation]]
type = "procedural_mask"

[[degradation]]
type = "downscale"
scale = 4
'''
PLAIN_X2 = '''name = "plain x2"
hq_size = 64
faces = "../faces"

[[degradation]]
type = "downscale"
scale = 2
'''
CLEAN = '''name = "clean"
hq_size = 64
'''


@pytest.fixture
def setup(tmp_path, astronaut) -> pathlib.Path:
    """``faces/`` (three shifted astronaut faces) and ``protocols/`` beside it, whose files name the
    faces relative to themselves (``../faces``)."""
    faces, protocols = tmp_path / "faces", tmp_path / "protocols"
    faces.mkdir()
    protocols.mkdir()
    face = F.interpolate(astronaut[None, :, 30:230, 130:330], size=(96, 96), mode="area")[0]
    for i in range(3):
        arr = (torch.roll(face, 4 * i, dims=-1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
        Image.fromarray(arr).save(faces / f"f{i}.png")
    for name, text in (("masked_x4", MASKED_X4), ("plain_x2", PLAIN_X2), ("clean", CLEAN)):
        (protocols / f"{name}.toml").write_text(text)
    return tmp_path


def _eval(args: list[str], out: pathlib.Path) -> dict:
    r = CliRunner().invoke(app, ["eval", *QUICK, *args, "--json", str(out)])
    assert r.exit_code == 0, r.output
    return json.loads(out.read_text())


def test_eval_protocol_degrades_as_the_file_says(setup):
    """Two protocols give two different sets of the same faces: the input size, the mask and the
    scores follow the file (faces found relative to it: no --data)."""
    a = _eval(["--protocol", str(setup / "protocols/masked_x4.toml")], setup / "a.json")
    b = _eval(["--protocol", str(setup / "protocols/plain_x2.toml")], setup / "b.json")
    assert a["data"]["protocol"] == "masked x4" and b["data"]["protocol"] == "plain x2"
    assert (a["data"]["count"], a["data"]["hq_size"], a["data"]["lq_size"]) == (3, 64, 16)
    assert (b["data"]["count"], b["data"]["hq_size"], b["data"]["lq_size"]) == (3, 64, 32)
    assert a["data"]["seed"] == 5 and b["data"]["seed"] == 0  # the file's seed, else 0
    assert a["models"][0]["counts"]["psnr_occluded"] == 3  # every face masked
    assert b["models"][0]["counts"].get("psnr_occluded", 0) == 0  # no mask in plain x2
    assert b["models"][0]["metrics"]["psnr"] > a["models"][0]["metrics"]["psnr"] + 3


def test_eval_protocol_seed_and_data_options(setup, tmp_path):
    """--seed overrides the protocol's (another mask), --data its faces; the same seed gives the
    same set again; the command scores exactly what Protocol.degrade gives."""
    proto = setup / "protocols/masked_x4.toml"
    first = _eval(["--protocol", str(proto)], tmp_path / "1.json")
    again = _eval(["--protocol", str(proto), "--seed", "5", "--data", str(setup / "faces")], tmp_path / "2.json")
    other = _eval(["--protocol", str(proto), "--seed", "6"], tmp_path / "3.json")
    assert first["models"][0]["metrics"] == again["models"][0]["metrics"]
    assert other["data"]["seed"] == 6 and other["models"][0]["metrics"] != first["models"][0]["metrics"]
    two = _eval(["--protocol", str(proto), "--data", str(setup / "faces"), "--limit", "2"], tmp_path / "4.json")
    assert two["data"]["count"] == 2

    p = load_protocol(proto)
    a, b = p.degrade(setup / "faces"), p.degrade(setup / "faces", seed=6)
    assert a.lq.shape == (3, 3, 16, 16) and a.hq.shape == (3, 3, 64, 64)
    assert all(a.occlusion_hq[i].sum() > 0 for i in range(3))
    assert not torch.equal(a.occlusion_hq, b.occlusion_hq)


def test_a_protocol_without_steps_is_the_faces_themselves(setup):
    p = load_protocol(setup / "protocols/clean.toml")
    assert p.faces == "" and p.seed == 0 and p.degradation == []
    data = p.degrade(setup / "faces")
    assert torch.equal(data.lq, data.hq) and data.hq.shape[-1] == 64
    assert torch.count_nonzero(data.occlusion_hq) == 0
    r = _eval(["--protocol", str(setup / "protocols/clean.toml"), "--data", str(setup / "faces")], setup / "c.json")
    assert r["models"][0]["metrics"]["psnr"] == "inf"  # bicubic at x1 gives the face back


def test_protocol_user_errors(setup):
    protocols = setup / "protocols"
    (protocols / "typo.toml").write_text('name = "t"\nscael = 4\n')
    (protocols / "step.toml").write_text('name = "t"\n[[degradation]]\ntype = "no_such_step"\n')
    (protocols / "param.toml").write_text('name = "t"\n[[degradation]]\ntype = "downscale"\nscael = 4\n')
    for name, words in (("typo", "unknown key 'scael'"), ("step", "no_such_step"), ("param", "scael")):
        with pytest.raises(FaceRestoreError, match=words):
            load_protocol(protocols / f"{name}.toml")
    with pytest.raises(FaceRestoreError, match="not found"):
        load_protocol(protocols / "missing.toml")

    def run(*args: str):
        return CliRunner().invoke(app, ["eval", *QUICK, *args])

    r = run("--protocol", str(protocols / "typo.toml"), "--data", str(setup / "faces"))
    assert r.exit_code == 2 and "typo.toml" in r.output and "scael" in r.output
    r = run("--protocol", str(protocols / "clean.toml"))  # names no faces, none given
    assert r.exit_code == 2 and "names no faces" in r.output
    r = run("--protocol", str(protocols / "clean.toml"), "--recipe", str(ROOT / "recipes/jdsr_gan.toml"),
            "--data", str(setup / "faces"))
    assert r.exit_code == 2 and "give one" in r.output
    r = run()
    assert r.exit_code == 2 and "--data is required" in r.output


def test_shipped_protocols_load_and_r4_is_the_jdsr_gan_recipe():
    """Every file in benchmarks/protocols/ is valid and called by its file name (``_`` for a
    space), and ``r4`` is recipes/jdsr_gan.toml's degradation, as the benchmarks' texts say."""
    from facerestore.recipe import load_recipe

    files = sorted(SHIPPED.glob("*.toml"))
    assert len(files) >= 9
    loaded = {f.stem: load_protocol(f) for f in files}
    for stem, p in loaded.items():
        assert p.name.replace(" ", "_") == stem
        assert p.hq_size == 128 and p.seed == 0
        assert pathlib.Path(p.faces).resolve() == (ROOT.parent / "shared/data/celeba/val").resolve()
    assert loaded["r4"].degradation == load_recipe(ROOT / "recipes/jdsr_gan.toml").degradation
    assert loaded["r1_clean"].degradation == []


def test_benchmarks_import_as_a_package():
    """Every script in benchmarks/ imports as ``benchmarks.NAME`` from the repository root (the
    documented ``python -m benchmarks.NAME``), with no sys.path edits, and by_scale's table names
    exactly the shipped protocols."""
    names = sorted(p.stem for p in (ROOT / "benchmarks").glob("*.py") if p.stem != "__init__")
    code = ("import importlib, json, sys\n"
            f"mods = [importlib.import_module('benchmarks.' + n) for n in {names!r}]\n"
            "print(json.dumps(sys.modules['benchmarks.by_scale'].PROTOCOLS))\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    table = json.loads(r.stdout.strip().splitlines()[-1])
    assert sorted(n.replace(" ", "_") for n in table) == sorted(p.stem for p in SHIPPED.glob("*.toml"))
    for path in [*(ROOT / "benchmarks").glob("*.py"), *(ROOT / "tools").glob("*.py")]:
        assert "sys.path" not in path.read_text(encoding="utf-8"), path


@pytest.mark.shared
def test_shipped_r4_on_the_val_faces(shared_data):
    """With ../shared: the r4 file degrades two celeba/val faces to 32 px inputs with masks."""
    p = load_protocol(SHIPPED / "r4.toml")
    data = p.degrade(limit=2)
    assert len(data) == 2 and data.lq.shape[-1] == 32 and data.hq.shape[-1] == 128
    assert data.description["protocol"] == "r4"
