"""Registry: explicit names per kind, validated parameters, nested specs, useful errors."""

from __future__ import annotations

from typing import Literal

import pytest
import torch
from torch import nn

from facerestore.errors import RecipeError, UnknownComponentError
from facerestore.interfaces import INTERFACES, Attention, Denoiser, DenoiserOutput, Upsampler, UpsamplerOutput
from facerestore.registry import Factory, Registry, check_type


class Gate(Attention):
    """Multiply by a learned scalar."""

    def __init__(self, channels: int, init: float = 1.0, mode: Literal["mul", "add"] = "mul"):
        super().__init__(channels)
        self.w = nn.Parameter(torch.full((1, channels, 1, 1), init))

    def forward(self, x):
        return x * self.w


class Ident(Denoiser):
    """Returns its input."""

    def __init__(self, sizes: tuple[int, int] = (1, 2), names: list[str] | None = None):
        super().__init__()
        self.sizes, self.names = sizes, names

    def forward(self, lq):
        return DenoiserOutput(lq)


class Up(Upsampler):
    """Nearest upsampling with attention on the result."""

    def __init__(self, scale: int, attention: Factory[Attention] = "gate", pre: Denoiser | None = None):
        super().__init__()
        self.scale = scale
        self.att = nn.ModuleList([attention(channels=3) for _ in range(2)])
        self.pre = pre

    def forward(self, x, identity=None):
        return UpsamplerOutput(self.att[1](self.att[0](nn.functional.interpolate(x, scale_factor=self.scale))))


@pytest.fixture
def reg() -> Registry:
    r = Registry()
    r.register("attention", "gate", Gate)
    r.register("denoiser", "ident", Ident)
    r.register("upsampler", "up", Up)
    return r


def test_one_namespace_per_interface_kind(reg):
    assert set(reg.kinds) == set(INTERFACES)
    assert {"degradation", "denoiser", "upsampler", "attention", "loss", "discriminator"} <= set(reg.kinds)
    reg.register("denoiser", "gate", Ident)  # same name, other kind: no clash
    assert reg.get("attention", "gate").obj is Gate and reg.get("denoiser", "gate").obj is Ident


def test_create_validates_and_builds(reg):
    att = reg.create("attention", "gate", channels=4, init=2)
    assert isinstance(att, Gate) and att.w.shape == (1, 4, 1, 1) and float(att.w.detach()[0, 0]) == 2.0


def test_unknown_name_lists_known_names(reg):
    reg.register("attention", "other", Gate)
    with pytest.raises(UnknownComponentError) as exc:
        reg.create("attention", "cbma", channels=3)
    msg = str(exc.value)
    assert "attention" in msg and "'cbma'" in msg and "gate" in msg and "other" in msg


def test_unknown_kind(reg):
    with pytest.raises(RecipeError, match="unknown component kind 'optimizer'"):
        reg.create("optimizer", "adam")


def test_parameter_errors_name_the_path(reg):
    with pytest.raises(RecipeError, match=r"attention:gate\.init: expected a number, got a string"):
        reg.create("attention", "gate", channels=3, init="big")
    with pytest.raises(RecipeError, match=r"unknown parameter .* parameters: channels, init, mode"):
        reg.create("attention", "gate", channels=3, nope=1)
    with pytest.raises(RecipeError, match="needs parameter"):
        reg.create("attention", "gate")
    with pytest.raises(RecipeError, match="expected one of 'mul', 'add'"):
        reg.create("attention", "gate", channels=3, mode="pow")
    with pytest.raises(RecipeError, match=r"\[1\]: expected an integer"):
        reg.create("denoiser", "ident", sizes=[1, 2.5])


def test_nested_component_and_factory(reg):
    up = reg.build("upsampler", {"type": "up", "scale": 2, "attention": {"type": "gate", "init": 3.0},
                                 "pre": {"type": "ident"}})
    assert isinstance(up.pre, Ident)
    assert [float(a.w.detach().flatten()[0]) for a in up.att] == [3.0, 3.0]
    assert up.att[0] is not up.att[1]  # the factory builds a fresh module per call
    out = up(torch.rand(1, 3, 4, 4))
    assert out.image.shape == (1, 3, 8, 8)
    # default nested spec ("gate" as a plain string) is built too
    assert isinstance(reg.build("upsampler", {"type": "up", "scale": 2}).att[0], Gate)
    with pytest.raises(UnknownComponentError, match=r"^u\.attention\.type: unknown attention 'nope'"):
        reg.validate("upsampler", {"type": "up", "scale": 2, "attention": "nope"}, "u")
    with pytest.raises(RecipeError, match=r"u\.attention\.init: expected a number"):
        reg.validate("upsampler", {"type": "up", "scale": 2, "attention": {"type": "gate", "init": []}}, "u")


def test_duplicate_registration_refused_unless_replace(reg):
    with pytest.raises(ValueError, match="already registered"):
        reg.register("attention", "gate", Gate)
    reg.register("attention", "gate", Ident, replace=True)
    assert reg.get("attention", "gate").obj is Ident


def test_decorator_form_and_listing(reg):
    @reg.register("attention", "deco")
    class Deco(Gate):
        """Decorated."""

    assert reg.get("attention", "deco").doc == "Decorated."
    assert reg.names("attention") == ["deco", "gate"]
    assert [e.name for e in reg.entries("attention")] == ["deco", "gate"]
    params = {p.name: p for p in reg.get("attention", "gate").params}
    assert params["channels"].required and params["init"].default == 1.0
    assert params["mode"].type_name() == "'mul' | 'add'"


def test_check_type_conversions():
    assert check_type(3, float, "x") == 3.0 and isinstance(check_type(3, float, "x"), float)
    assert check_type([1, 2], tuple[float, float], "x") == (1.0, 2.0)
    assert check_type(None, int | None, "x") is None
    with pytest.raises(RecipeError):
        check_type(True, int, "x")  # bools are not integers in a recipe
    with pytest.raises(RecipeError, match="finite"):
        check_type(float("nan"), float, "x")
    with pytest.raises(RecipeError, match="expected 2 values"):
        check_type([1, 2, 3], tuple[float, float], "x")


def test_transaction_rolls_back_and_attributes_the_source():
    from facerestore.interfaces import Attention

    class A(Attention):
        def forward(self, x):
            return x

    reg = Registry()
    with reg.transaction("pkg 1.0"):
        reg.register("attention", "kept", A)
    assert reg.get("attention", "kept").source == "pkg 1.0"
    with pytest.raises(RuntimeError):
        with reg.transaction("bad 0.1"):
            reg.register("attention", "half", A)
            raise RuntimeError("boom")
    assert reg.names("attention") == ["kept"]
    reg.register("attention", "later", A)
    assert reg.get("attention", "later").source == "<runtime>"


def test_registry_module_does_not_import_discovery():
    import subprocess
    import sys

    code = "import sys, facerestore.registry; print('facerestore.plugins' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_factory_coerce_uses_the_registry_it_is_given():
    from facerestore.interfaces import Attention

    class Only(Attention):
        def forward(self, x):
            return x

    reg = Registry()
    reg.register("attention", "only_here", Only)
    f = Factory.coerce("only_here", "attention", reg)
    assert isinstance(f(channels=4), Only)


def test_decorator_keeps_source_and_replace_and_names_are_checked():
    """``register`` as a decorator forwards ``source`` and ``replace``; a name must be a
    non-empty string, each condition on its own."""
    reg = Registry()

    @reg.register("attention", "gate", source="plugin-a")
    class Gate(Attention):
        def forward(self, x):
            return x

    entry = reg.get("attention", "gate")
    assert entry.obj is Gate and entry.source == "plugin-a" and entry.kind == "attention" and entry.name == "gate"
    with pytest.raises(ValueError, match="already registered by plugin-a"):
        reg.register("attention", "gate")(Gate)

    @reg.register("attention", "gate", source="plugin-b", replace=True)
    class Gate2(Gate):
        pass

    assert reg.get("attention", "gate").obj is Gate2 and reg.get("attention", "gate").source == "plugin-b"
    for bad in ("", 3):
        with pytest.raises(ValueError, match="non-empty string"):
            reg.register("attention", bad, Gate)
