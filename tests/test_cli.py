"""The command line: help, plugin listing, recipe check/show, error exits."""

from __future__ import annotations

from typer.testing import CliRunner

from facerestore.cli import app

runner = CliRunner()


def test_help_lists_the_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for cmd in ("train", "restore", "eval", "degrade", "plugins", "recipe", "doctor"):
        assert cmd in result.output


def test_plugins_lists_all_six_kinds_with_params_and_source():
    result = runner.invoke(app, ["plugins"])
    assert result.exit_code == 0, result.output
    for kind in ("degradation", "denoiser", "upsampler", "attention", "loss", "discriminator"):
        header = next(l for l in result.output.splitlines() if l.startswith(kind + " ("))
        assert not header.endswith("(0)"), header
    assert "[facerestore 0.1.0]" in result.output
    assert "channels: int required" in result.output  # parameters with type and default


def test_plugins_kind_filter_and_unknown_kind():
    result = runner.invoke(app, ["plugins", "--kind", "attention", "--no-params"])
    assert result.exit_code == 0 and "cbam" in result.output and "denoiser (" not in result.output
    bad = runner.invoke(app, ["plugins", "--kind", "optimizer"])
    assert bad.exit_code == 2 and "unknown kind 'optimizer'" in bad.output


def test_recipe_check_unknown_component_fails_with_path_and_known_names(repo, tmp_path):
    text = (repo / "recipes" / "jdsr_gan.toml").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace('type = "jdsr_denoiser"', 'type = "cbdnet_xl"', 1))
    result = runner.invoke(app, ["recipe", "check", str(bad)])
    assert result.exit_code == 2
    assert "generator.denoiser.type: unknown denoiser 'cbdnet_xl'; known denoiser names: " in result.output
    assert "jdsr_denoiser" in result.output
    assert "Traceback" not in result.output


def test_recipe_check_set_override(repo):
    ok = runner.invoke(app, ["recipe", "check", str(repo / "recipes" / "jdsr_gan.toml"),
                             "--set", "generator.upsampler.attention.type=se"])
    assert ok.exit_code == 0, ok.output
    bad = runner.invoke(app, ["recipe", "check", str(repo / "recipes" / "jdsr_gan.toml"), "--set", "train.steps=-1"])
    assert bad.exit_code == 2 and "train.steps: must be at least 1" in bad.output


def test_recipe_show_prints_resolved_recipe_and_stats(repo):
    result = runner.invoke(app, ["recipe", "show", str(repo / "recipes" / "jdsr_gan.toml")])
    assert result.exit_code == 0, result.output
    assert "[generator.denoiser]" in result.output and "[[degradation]]" in result.output
    assert "M parameters" in result.output and "GFLOPs per face" in result.output
    assert "denoiser: JDSRDenoiser" in result.output
