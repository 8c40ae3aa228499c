"""`facerestore convert`: legacy pickles are read with weights_only=True, never plain pickle."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from typer.testing import CliRunner

from facerestore.checkpoint import load_generator
from facerestore.cli import app
from facerestore.recipe import load_recipe
from facerestore.components import default_registry

runner = CliRunner()


@pytest.fixture
def small(repo):
    path = repo / "recipes" / "jdsr_gan_small.toml"
    return path, load_recipe(path)


def test_convert_basicsr_style_checkpoint(tmp_path, small):
    recipe_path, recipe = small
    torch.manual_seed(0)
    gen = default_registry().build("generator", recipe.generator)
    legacy = tmp_path / "net_g.pth"
    torch.save({"params_ema": {f"module.{k}": v for k, v in gen.state_dict().items()}, "iter": 10}, legacy)
    out = tmp_path / "net_g.safetensors"
    result = runner.invoke(app, ["convert", str(legacy), str(out), "--recipe", str(recipe_path)])
    assert result.exit_code == 0, result.output
    loaded, r = load_generator(out)
    assert r.name == recipe.name
    for k, v in gen.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED_BY_PICKLE",))


def test_convert_refuses_code_in_pickle(tmp_path, small, monkeypatch):
    recipe_path, _ = small
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"state_dict": _Evil()}))
    result = runner.invoke(app, ["convert", str(evil), str(tmp_path / "x.safetensors"), "--recipe", str(recipe_path)])
    assert result.exit_code == 2
    assert "weights_only=True" in result.output
    assert not (tmp_path / "PWNED_BY_PICKLE").exists()


def test_mismatching_weights_name_the_first_tensor(tmp_path, small):
    recipe_path, recipe = small
    gen = default_registry().build("generator", recipe.generator)
    state = dict(gen.state_dict())
    first = next(iter(state))
    state[first] = torch.zeros(1, 2, 3)
    legacy = tmp_path / "bad.pth"
    torch.save(state, legacy)
    result = runner.invoke(app, ["convert", str(legacy), str(tmp_path / "x.safetensors"), "--recipe", str(recipe_path)])
    assert result.exit_code == 2
    assert f"tensor {first!r} has shape (1, 2, 3)" in result.output
