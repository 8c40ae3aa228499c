"""Plugin discovery: entry points, error isolation, and a real third-party plugin install."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types


from facerestore.interfaces import Attention
from facerestore.plugins import hookimpl, load_plugins
from facerestore.registry import Registry
from facerestore.components import default_registry


class Noop(Attention):
    """Does nothing."""

    def forward(self, x):
        return x


def _plugin(name: str, body) -> types.SimpleNamespace:
    ns = types.SimpleNamespace(__name__=name)
    ns.facerestore_register = hookimpl(body)
    return ns


def test_builtin_components_come_through_the_entry_point():
    reg = default_registry()
    sources = {e.source for e in reg.entries()}
    assert any(s.startswith("facerestore ") for s in sources), sources
    # every one of the six core interface kinds has at least one built-in component
    for kind in ("degradation", "denoiser", "upsampler", "attention", "loss", "discriminator"):
        assert reg.names(kind), f"no built-in {kind}"
    assert not reg.load_errors, reg.load_errors


def test_broken_plugins_are_reported_and_others_still_load():
    class Exploding:
        __name__ = "exploding"

        def __getattr__(self, item):  # registering it with pluggy fails like a bad import would
            raise ImportError("No module named 'missing_dependency'")

    def bad_register(registry):
        registry.register("attention", "half_done", Noop)
        raise RuntimeError("boom while registering")

    def good_register(registry):
        registry.register("attention", "fine", Noop)

    reg = Registry()
    load_plugins(reg, extra={
        "bad_import": Exploding(),
        "bad_register": _plugin("bad_register", bad_register),
        "no_hook": types.SimpleNamespace(__name__="no_hook"),
        "good": _plugin("good", good_register),
    })
    errors = dict(reg.load_errors)
    assert "bad_register" in errors and "RuntimeError: boom while registering" in errors["bad_register"]
    assert "does not implement facerestore_register" in errors["no_hook"]
    assert "bad_import" in errors
    assert "fine" in reg.names("attention")
    assert "half_done" not in reg.names("attention")  # partial registration rolled back
    assert reg.get("attention", "fine").source == "good"


def test_example_plugin_installs_and_is_usable_by_name(tmp_path, repo):
    """pip-installs examples/facerestore-eca into a temporary target and uses it from a recipe."""
    target = tmp_path / "site"
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(repo / "examples" / "facerestore-eca")],
        capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stderr
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}
    cli = [sys.executable, "-m", "facerestore.cli"]
    listed = subprocess.run(cli + ["plugins", "--kind", "attention"], capture_output=True, text=True, env=env, timeout=120)
    assert listed.returncode == 0, listed.stderr
    line = next(l for l in listed.stdout.splitlines() if l.strip().startswith("eca"))
    assert "facerestore-eca 0.1.0" in line and "Efficient channel attention" in line
    # usable by name in a recipe: swap the SR attention for the third-party one and build it
    code = (
        "import json, torch\n"
        "from facerestore.recipe import load_recipe\n"
        "from facerestore.components import default_registry\n"
        f"r = load_recipe({str(repo / 'recipes' / 'jdsr_gan_small.toml')!r}, ['generator.upsampler.attention.type=eca'])\n"
        "g = default_registry().build('generator', r.generator, 'generator')\n"
        "names = sorted({type(m).__name__ for m in g.modules()})\n"
        "out = g(torch.rand(2, 3, r.lq_size, r.lq_size))\n"
        "print(json.dumps({'modules': names, 'sr': list(out['sr'].shape)}))\n")
    used = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert used.returncode == 0, used.stderr
    result = json.loads(used.stdout.strip().splitlines()[-1])
    assert "ECA" in result["modules"]
    assert result["sr"] == [2, 3, 128, 128]
    # without the plugin on the path the same override is a clean recipe error
    missing = subprocess.run(cli + ["recipe", "check", str(repo / "recipes" / "jdsr_gan_small.toml"),
                                    "--set", "generator.upsampler.attention.type=eca"],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2
    assert "generator.upsampler.attention.type: unknown attention 'eca'" in missing.stderr


def test_same_named_entry_points_of_two_packages_both_load(monkeypatch):
    """Two distributions that both call their entry point ``plugin``: two plugins, none dropped;
    the same distribution seen twice on sys.path: loaded once."""
    import importlib.metadata as md

    import facerestore.plugins as plugins_mod

    eps = []
    for pkg, comp in (("pkg-a", "from_a"), ("pkg-b", "from_b"), ("pkg-a", "from_a")):
        mod = types.ModuleType(f"fr_same_name_{comp}")
        mod.facerestore_register = hookimpl(lambda registry, comp=comp: registry.register("attention", comp, Noop))
        sys.modules[mod.__name__] = mod
        dist = types.SimpleNamespace(name=pkg, version="1.0")
        eps.append(md.EntryPoint("plugin", mod.__name__, "facerestore")._for(dist))
    monkeypatch.setattr(plugins_mod.md, "entry_points", lambda group: eps)
    reg = Registry()
    load_plugins(reg)
    assert not reg.load_errors, reg.load_errors
    assert {"from_a", "from_b"} <= set(reg.names("attention"))
    assert reg.get("attention", "from_b").source == "pkg-b 1.0"
