"""The docs quote the defaults the code has: default model and detector, the component count in
the sample `doctor` output, the bundled models' one-line descriptions."""

from __future__ import annotations

import pathlib
import re

import pytest

from facerestore.defaults import DEFAULT_DETECTOR, DEFAULT_MODEL

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
#: the lab notebook quotes defaults as they were when each version was written
HISTORY = {"model-history.md", "benchmarks.md"}


def quoted(pattern: str) -> list[tuple[str, str]]:
    """(file name, captured name) for every match of ``pattern`` in the current docs."""
    return [(p.name, m) for p in DOCS if p.name not in HISTORY
            for m in re.findall(pattern, p.read_text(encoding="utf-8"))]


@pytest.mark.parametrize("pattern", [
    r"\| `detector` \| `([\w-]+)` \|",           # a table of options with their defaults
    r"default `([\w-]+)` detector",
    r"detector `([\w-]+)` \(the default\)",
])
def test_docs_quote_the_default_detector(pattern):
    for name, value in quoted(pattern):
        assert value == DEFAULT_DETECTOR, f"{name} quotes {value!r} as the default detector ({DEFAULT_DETECTOR!r})"


@pytest.mark.parametrize("pattern", [
    r"The default, \*\*`([\w-]+)`\*\*",
    r"^# `([\w-]+)` \(default\)",
    r"\| `model` \| `([\w-]+)` \(default\) \|",
])
def test_docs_quote_the_default_model(pattern):
    found = [(n, v) for p in DOCS if p.name not in HISTORY
             for n, v in [(p.name, m) for m in re.findall(pattern, p.read_text(encoding="utf-8"), flags=re.M)]]
    for name, value in found:
        assert value == DEFAULT_MODEL, f"{name} calls {value!r} the default model ({DEFAULT_MODEL!r})"
    if pattern.startswith("^#"):  # the model card names the default in a heading
        assert found, "docs/model-card.md has no '# `NAME` (default)' heading"


def test_sample_doctor_output_counts_the_components():
    from facerestore.components import default_registry

    (count,) = [int(n) for _, n in quoted(r"\((\d+) components registered\)")]
    assert count == len(default_registry().entries())


def test_docs_name_scripts_that_exist():
    """Every benchmark or tool the docs (the lab notebook included) and the recipes name is there:
    ``benchmarks/NAME.py`` / ``python -m benchmarks.NAME``, ``tools/NAME.py``, ``benchmarks/protocols/NAME.toml``."""
    texts = [p.read_text(encoding="utf-8") for p in DOCS + sorted((ROOT / "recipes").glob("*.toml"))]
    texts.append((ROOT / "Makefile").read_text(encoding="utf-8"))
    named = {m for t in texts for m in re.findall(r"\b((?:benchmarks|tools)/[\w/]+\.(?:py|toml))", t)}
    named |= {f"benchmarks/{m}.py" for t in texts for m in re.findall(r"-m\s+benchmarks\.(\w+)", t)}
    assert named, "no script named in the docs: the pattern is stale"
    missing = sorted(n for n in named if not (ROOT / n).is_file() and "NAME" not in n)
    assert not missing, f"the docs name scripts that do not exist: {missing}"
