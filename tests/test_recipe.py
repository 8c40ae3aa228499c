"""Recipes: typed loading, errors that name the TOML path, overrides, resolution."""

from __future__ import annotations

import pathlib
import tomllib

import pytest
import torch
from torch import nn

from facerestore.errors import RecipeError, UnknownComponentError
from facerestore.interfaces import Degradation, Discriminator, Generator, Loss, Upsampler, UpsamplerOutput
from facerestore.recipe import apply_override, load_recipe, parse_value, resolve_recipe
from facerestore.recipe_config import dumps_toml
from facerestore.registry import Registry


class Shrink(Degradation):
    """Test degradation."""

    def __init__(self, scale: int = 4, sigma: tuple[float, float] = (0.0, 1.0)):
        self.scale, self.sigma = scale, sigma

    def __call__(self, batch, generator):
        return batch


class Near(Upsampler):
    """Nearest neighbour."""

    def __init__(self, scale: int = 4, width: int = 8):
        super().__init__()
        self.scale = scale

    def forward(self, x, identity=None):
        return UpsamplerOutput(nn.functional.interpolate(x, scale_factor=self.scale))


class Only(Generator):
    """Upsampler only."""

    def __init__(self, upsampler: Upsampler):
        super().__init__()
        self.upsampler = upsampler

    def forward(self, lq):
        return {"sr": self.upsampler(lq).image}


class L1(Loss):
    """Mean absolute error."""

    def __init__(self, reduction: str = "mean"):
        super().__init__()

    def forward(self, pred, target, **context):
        return (pred - target).abs().mean()


class Critic(Discriminator):
    """Mean value."""

    def __init__(self, channels: int = 8):
        super().__init__()

    def forward(self, x):
        return x.mean((1, 2, 3))[:, None]


@pytest.fixture
def reg() -> Registry:
    r = Registry()
    r.register("degradation", "shrink", Shrink)
    r.register("upsampler", "near", Near)
    r.register("generator", "only", Only)
    r.register("loss", "l1", L1)
    r.register("discriminator", "critic", Critic)
    return r


GOOD = """
name = "t"
scale = 4
hq_size = 64

[data]
train = ["faces"]
val = "val"

[[degradation]]
type = "shrink"
sigma = [0.5, 2]

[generator]
type = "only"
[generator.upsampler]
type = "near"
scale = 4

[discriminator]
type = "critic"

[[loss]]
type = "l1"
on = "sr"
weight = 2

[train]
steps = 100
batch_size = 4
"""


def write(tmp_path, text: str):
    p = tmp_path / "r.toml"
    p.write_text(text)
    return p


def test_good_recipe_loads_typed(tmp_path, reg, monkeypatch):
    monkeypatch.chdir(tmp_path)  # data paths resolve from the recipe's folder: here, the cwd
    r = load_recipe(write(tmp_path, GOOD), registry=reg)
    assert r.name == "t" and r.lq_size == 16 and r.train.steps == 100 and r.train.batch_size == 4
    assert r.data.train == ["faces"] and r.losses[0].weight == 2.0 and r.losses[0].resolved_target() == "hq"
    assert r.degradation[0] == {"type": "shrink", "sigma": [0.5, 2]}
    assert reg.build("generator", r.generator)(torch.rand(1, 3, 16, 16))["sr"].shape == (1, 3, 64, 64)


@pytest.mark.parametrize("old,new,path,message", [
    ('type = "near"', 'type = "nearest"', "generator.upsampler.type", "unknown upsampler 'nearest'; known upsampler names: near"),
    ('type = "only"', 'type = 3', "generator.type", "expected a string"),
    ("steps = 100", 'steps = "many"', "train.steps", "expected an integer"),
    ("steps = 100", "steps = 0", "train.steps", "must be at least 1"),
    ("steps = 100", "stpes = 100", "train.stpes", "unknown key"),
    ("sigma = [0.5, 2]", 'sigma = [0.5, "x"]', "degradation[0].sigma[1]", "expected a number"),
    ("sigma = [0.5, 2]", "sigma = [0.5, 2, 3]", "degradation[0].sigma", "expected 2 values"),
    ("scale = 4\n\n[discriminator]", "scale = 4\nwidth = true\n[discriminator]", "generator.upsampler.width", "expected an integer"),
    ('on = "sr"', 'on = "srr"', "loss[0].on", "unknown generator output 'srr'"),
    ("weight = 2", "weight = 2\nalpha = 1", "loss[0].alpha", "unknown parameter for loss 'l1'"),
    ('type = "critic"', 'type = "critic"\nchannels = 1.5', "discriminator.channels", "expected an integer"),
    ("hq_size = 64", "hq_size = 66", "hq_size", "divisible by scale"),
    ('name = "t"', 'name = "t"\nnmae = 1', "nmae", "unknown key"),
    ('val = "val"', 'val = "val"\nworkers = 1000', "data.workers", "0..64"),
    ('val = "val"', 'val = "val"\nhflip = 1.5', "data.hflip", "probability"),
])
def test_errors_name_the_toml_path(tmp_path, reg, old, new, path, message):
    assert old in GOOD
    with pytest.raises(RecipeError) as exc:
        load_recipe(write(tmp_path, GOOD.replace(old, new, 1)), registry=reg)
    assert exc.value.path == path, str(exc.value)
    assert message in str(exc.value)


def test_missing_pieces(tmp_path, reg):
    with pytest.raises(RecipeError, match="generator: missing"):
        load_recipe({"name": "x"}, registry=reg)
    with pytest.raises(RecipeError, match=r"generator\.upsampler\.type: missing component 'type'"):
        load_recipe({"name": "x", "generator": {"type": "only", "upsampler": {"scale": 2}}}, registry=reg)
    with pytest.raises(RecipeError, match="needs parameter.*upsampler"):
        load_recipe({"name": "x", "generator": {"type": "only"}}, registry=reg)
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "nope.toml", registry=reg)
    bad = write(tmp_path, "name = [")
    with pytest.raises(RecipeError, match="not valid TOML"):
        load_recipe(bad, registry=reg)


def test_overrides(tmp_path, reg):
    r = load_recipe(write(tmp_path, GOOD), ["train.steps=20", "degradation.0.sigma=[1, 3]",
                                             "generator.upsampler.type=near", "loss.0.weight=0.5",
                                             "train.lr=1e-4", "data.val=elsewhere"], registry=reg)
    assert r.train.steps == 20 and r.degradation[0]["sigma"] == [1, 3]
    assert r.losses[0].weight == 0.5 and r.train.lr == 1e-4 and r.data.val == "elsewhere"
    with pytest.raises(RecipeError, match="unknown upsampler 'zz'"):
        load_recipe(write(tmp_path, GOOD), ["generator.upsampler.type=zz"], registry=reg)
    with pytest.raises(RecipeError, match="KEY.PATH=VALUE"):
        apply_override({}, "train.steps")
    with pytest.raises(RecipeError, match="expected an index"):
        apply_override({"degradation": [{}]}, "degradation.3.sigma=1")
    assert parse_value("20") == 20 and parse_value("true") is True and parse_value("se") == "se"
    assert parse_value("[0.5, 1]") == [0.5, 1] and parse_value('"a b"') == "a b"


def test_resolved_recipe_round_trips_through_toml(tmp_path, reg):
    r = load_recipe(write(tmp_path, GOOD), registry=reg)
    full = resolve_recipe(r, reg)
    assert full.generator["upsampler"] == {"type": "near", "scale": 4, "width": 8}
    assert full.degradation[0]["scale"] == 4
    assert full.losses[0].params == {"reduction": "mean"}
    text = full.to_toml()
    again = load_recipe(tomllib.loads(text), registry=reg)
    assert again.to_dict() == full.to_dict()
    assert tomllib.loads(dumps_toml({"a": {"b": [1, 2]}, "c": [{"type": "x"}, {"type": "y"}]})) == \
        {"a": {"b": [1, 2]}, "c": [{"type": "x"}, {"type": "y"}]}


def test_unknown_component_error_is_recipe_error(tmp_path, reg):
    with pytest.raises(UnknownComponentError) as exc:
        load_recipe(write(tmp_path, GOOD.replace('type = "critic"', 'type = "patchgan"')), registry=reg)
    assert exc.value.kind == "discriminator" and exc.value.known == ["critic"]


def test_recipe_paths_are_relative_to_the_recipe_file(tmp_path, monkeypatch):
    from facerestore.recipe import load_recipe

    (tmp_path / "proj" / "recipes").mkdir(parents=True)
    path = tmp_path / "proj" / "recipes" / "r.toml"
    path.write_text('name = "r"\n[data]\ntrain = ["../faces", "/abs/faces"]\nval = "../val"\n'
                    '[[degradation]]\ntype = "random_mask"\ntemplate_prob = 0.0\nfolder = "../masks"\n'
                    '[generator]\ntype = "sr_only"\n[generator.upsampler]\ntype = "bicubic"\n'
                    '[train]\ninit = "../w/g.safetensors"\n')
    monkeypatch.chdir(tmp_path)
    r = load_recipe(path)
    assert r.data.train == ["proj/faces", "/abs/faces"] and r.data.val == "proj/val"
    assert r.degradation[0]["folder"] == "proj/masks" and r.train.init == "proj/w/g.safetensors"
    # `facerestore degrade --recipe` reads the same paths the same way
    from facerestore.degrade import read_degradation_recipe

    assert read_degradation_recipe(path)[0][0]["folder"] == "proj/masks"
    # a bundled model's name is not a path
    assert load_recipe(path, ["train.init='masked-any'"]).train.init == "masked-any"
    # command-line overrides are the user's paths: from the working directory
    r = load_recipe(path, ["data.val=elsewhere"])
    assert r.data.val == "elsewhere"


def test_no_component_default_points_into_shared():
    from facerestore.components import default_registry

    for entry in default_registry().entries():
        for p in entry.params:
            assert "shared" not in str(p.default), (entry.kind, entry.name, p.name, p.default)


def test_loss_index_names_a_term_by_type():
    """Scripts override a term as ``loss.N.KEY``; ``loss_index`` finds N by the term's type."""
    root = pathlib.Path(__file__).resolve().parents[1]
    recipe = load_recipe(root / "recipes" / "masked_any.toml")
    adv = recipe.loss_index("adversarial")
    assert recipe.losses[adv].type == "adversarial" and recipe.losses[adv].weight == 0.0
    over = load_recipe(root / "recipes" / "masked_any.toml", [f"loss.{adv}.weight=0.01"])
    assert over.losses[adv].weight == 0.01
    with pytest.raises(RecipeError, match="2 losses of type 'pixel'"):
        recipe.loss_index("pixel")
    with pytest.raises(RecipeError, match="0 losses of type 'style'"):
        recipe.loss_index("style")


def test_scale_is_declared_once():
    """A ``downscale`` step takes the recipe's scale, and one that disagrees is refused."""
    base = {"name": "s", "scale": 8, "hq_size": 128, "generator": {"type": "sr_only", "upsampler": "bicubic"}}
    r = load_recipe({**base, "degradation": [{"type": "downscale", "mode": "bicubic"}]})
    assert r.degradation[0]["scale"] == 8
    assert load_recipe({**base, "degradation": [{"type": "downscale", "scale": 8}]}).degradation[0]["scale"] == 8
    with pytest.raises(RecipeError, match=r"degradation\[1\]\.scale.*differs from the recipe's scale \(8\)"):
        load_recipe({**base, "degradation": [{"type": "gaussian_blur"}, {"type": "downscale", "scale": 4}]})
    shipped = pathlib.Path(__file__).resolve().parents[1] / "recipes"
    for path in shipped.glob("*.toml"):  # the shipped recipes say it once
        for step in tomllib.loads(path.read_text())["degradation"]:
            assert step["type"] != "downscale" or "scale" not in step, path.name
