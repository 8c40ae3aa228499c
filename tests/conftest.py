"""Shared test setup: offline, deterministic, CPU-friendly."""

from __future__ import annotations

import os
import pathlib

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TORCH_HOME", str(pathlib.Path(__file__).parent / ".no-torch-home"))

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def repo() -> pathlib.Path:
    return REPO


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    if not SHARED.is_dir():
        pytest.skip(f"needs the shared data folder {SHARED} (absent on this machine)")
    return SHARED


@pytest.fixture(scope="session")
def _astronaut() -> torch.Tensor:
    data = pytest.importorskip("skimage.data")
    return torch.from_numpy(data.astronaut().copy()).permute(2, 0, 1).float() / 255.0


@pytest.fixture
def astronaut(_astronaut) -> torch.Tensor:
    """A real face an installed package ships: skimage's astronaut, (3, H, W) float in [0, 1].
    A fresh copy per test, so no test can change what the next one sees."""
    return _astronaut.clone()


@pytest.fixture
def without_default_weights(monkeypatch):
    """An install without the default model's file (it is shipped, so its name points elsewhere)."""
    import dataclasses

    from facerestore import models
    from facerestore.defaults import DEFAULT_MODEL

    facts = models.bundled()[DEFAULT_MODEL]
    monkeypatch.setitem(models.bundled(), DEFAULT_MODEL, dataclasses.replace(facts, file="no-such-file.safetensors"))
