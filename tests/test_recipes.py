"""Every shipped recipe loads, builds and is consistent; parts swap by editing recipe data only."""

from __future__ import annotations

import json
import pathlib
import tomllib

import pytest
import torch
from typer.testing import CliRunner

from facerestore.cli import app
from facerestore.errors import MissingWeightsError
from facerestore.recipe import load_recipe
from facerestore.components import default_registry

REPO = pathlib.Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / "recipes").glob("*.toml"))
SHARED = REPO.parent / "shared" / "data"
EXPECTED = {"jdsr_gan", "jdsr_gan_small", "jdsr_gan_x8", "jdsr_gan_paper", "two_stage", "sr_only", "bicubic", "masked_any"}

_loss_cache: dict[str, object] = {}


def build_loss(spec: dict):
    """Build a loss once per distinct spec; ``None`` when its pretrained weights are missing."""
    key = json.dumps(spec, sort_keys=True)
    if key not in _loss_cache:
        try:
            _loss_cache[key] = default_registry().build("loss", spec, spec["type"])
        except MissingWeightsError:
            _loss_cache[key] = None
    return _loss_cache[key]


def test_the_expected_recipes_are_shipped():
    assert {p.stem for p in RECIPES} >= EXPECTED


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_loads_builds_and_is_consistent(path):
    r = load_recipe(path)
    assert r.name == path.stem
    reg = default_registry()
    g = reg.build("generator", r.generator, "generator")
    assert g.scale == r.scale
    if r.discriminator is not None:
        reg.build("discriminator", r.discriminator, "discriminator")
    for loss in r.losses:
        build_loss(loss.spec())
    # the generator produces every output a loss is applied to, at the documented sizes
    lq = r.lq_size
    with torch.no_grad():
        out = g.eval()(torch.rand(1, 3, lq, lq))
    assert out["sr"].shape == (1, 3, r.hq_size, r.hq_size)
    for loss in r.losses:
        assert loss.on in out, f"{path.name}: {loss.path} is on {loss.on!r}, not produced by the generator"
    if "heatmaps" in out:
        assert out["heatmaps"].shape[-2:] == (r.hq_size, r.hq_size)
    # staged schedules name existing generator parts
    parts = set(g.stage_modules())
    for stage in r.train.stages:
        assert set(stage.train) <= parts, (stage.name, parts)
    # the degradation ends at the recipe's LQ size
    downs = [d for d in r.degradation if d["type"] == "downscale"]
    if r.scale == 1 and r.degradation:  # any-scale recipes: a random downscale, then back to the working size
        types = [d["type"] for d in r.degradation]
        last_resize = max(i for i, t in enumerate(types) if t == "resize")
        assert types.index("random_downscale") < last_resize and r.degradation[last_resize]["size"] == r.hq_size
    else:
        assert [d.get("scale") for d in downs] == [r.scale] or not r.degradation


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_degradation_pipeline_builds(path):
    r = load_recipe(path)
    needs_shared = any(d["type"] in ("template_mask", "random_mask") and d.get("template_prob", 0.5) > 0
                       or d["type"] == "template_mask" for d in r.degradation)
    if needs_shared and not SHARED.is_dir():
        pytest.skip(f"{path.name} uses MaskTheFace templates from {SHARED} (absent)")
    from facerestore.degrade import build_pipeline, degrade_batch, make_generator
    from facerestore.interfaces import DegradationBatch

    pipeline = build_pipeline(r.degradation)
    hq = torch.rand(2, 3, r.hq_size, r.hq_size, generator=torch.Generator().manual_seed(0))
    batch = degrade_batch(hq, pipeline, make_generator(0, "cpu"), None)
    assert isinstance(batch, DegradationBatch)
    lq = r.hq_size // r.scale
    assert batch.lq.shape == (2, 3, lq, lq) and batch.hq.shape == hq.shape
    assert batch.occlusion_hq.shape == (2, 1, r.hq_size, r.hq_size)
    for t in (batch.lq, batch.hq, batch.occlusion_hq):
        assert torch.isfinite(t).all() and t.min() >= 0 and t.max() <= 1
    if r.degradation and r.scale == 1:  # at x1 the chain must have changed the faces (seed 0)
        assert not torch.equal(batch.lq, hq)


def _data(name: str) -> dict:
    return tomllib.loads((REPO / "recipes" / f"{name}.toml").read_text())


def test_swap_attention_by_editing_the_recipe():
    from facerestore_plugins.attention import CBAM, NoAttention, SqueezeExcitation

    for name, cls in (("cbam", CBAM), ("se", SqueezeExcitation), ("identity", NoAttention)):
        r = load_recipe(REPO / "recipes/jdsr_gan.toml", [f"generator.upsampler.attention.type={name}"])
        g = default_registry().build("generator", r.generator)
        assert all(type(b.attention) is cls for b in g.upsampler.blocks)
    data = _data("jdsr_gan_small")  # the same edit made to the TOML data, with a parameter
    data["generator"]["upsampler"]["attention"] = {"type": "se", "reduction": 4}
    g = default_registry().build("generator", load_recipe(data).generator)
    assert all(isinstance(b.attention, SqueezeExcitation) for b in g.upsampler.blocks)
    assert g.upsampler.blocks[0].attention.mlp[0].out_channels == 8


def test_swap_discriminator_patch_to_timm():
    pytest.importorskip("timm")
    from facerestore_plugins.discriminators import TimmDiscriminator

    data = _data("jdsr_gan")
    data["discriminator"] = {"type": "timm", "backbone": "resnet18"}
    r = load_recipe(data)
    d = default_registry().build("discriminator", r.discriminator)
    assert isinstance(d, TimmDiscriminator)
    assert d(torch.rand(2, 3, r.hq_size, r.hq_size)).shape == (2, 1)


def test_drop_the_identity_loss():
    data = _data("jdsr_gan")
    n = len(data["loss"])
    data["loss"] = [l for l in data["loss"] if l["type"] != "identity"]
    r = load_recipe(data)
    built = [build_loss(loss.spec()) for loss in r.losses]
    from facerestore_plugins.losses import IdentityLoss

    assert len(built) == n - 1 and not any(isinstance(b, IdentityLoss) for b in built)
    default_registry().build("generator", r.generator)


def test_bad_edits_are_reported_with_their_path():
    from facerestore.errors import RecipeError

    with pytest.raises(RecipeError, match="generator.upsampler.attention.type"):
        load_recipe(REPO / "recipes/jdsr_gan.toml", ["generator.upsampler.attention.type=nope"])
    with pytest.raises(RecipeError, match="generator.denoiser.channels"):
        load_recipe(REPO / "recipes/jdsr_gan.toml", ["generator.denoiser.channels=1.5"])


def test_cli_recipe_check_every_recipe():
    result = CliRunner().invoke(app, ["recipe", "check", *map(str, RECIPES)])
    assert result.exit_code == 0, result.output
    assert result.output.count("ok: ") == len(RECIPES)


