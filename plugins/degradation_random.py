"""Per-sample random parameters of degradations and masks: ``[low, high]`` recipe ranges and
probabilities checked, draws from the batch's ``torch.Generator``, per-sample selection, and the
drawn values recorded in ``batch.extras`` (``"<name>.<param>"``, NaN where a step was skipped).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from facerestore.errors import RecipeError
from facerestore.interfaces import DegradationBatch

Range = tuple[float, float]


def check_range(name: str, value: Range, lo: float = -math.inf, hi: float = math.inf) -> tuple[float, float]:
    """Validate a ``[low, high]`` recipe range (reported with the parameter's name)."""
    a, b = float(value[0]), float(value[1])
    if not a <= b:
        raise RecipeError(name, f"expected [low, high] with low <= high, got [{a}, {b}]")
    if a < lo or b > hi:
        raise RecipeError(name, f"values must lie in [{lo}, {hi}], got [{a}, {b}]")
    return a, b


def check_prob(name: str, p: float) -> float:
    if not 0.0 <= p <= 1.0:
        raise RecipeError(name, f"a probability must be in [0, 1], got {p}")
    return float(p)


def uniform(generator: torch.Generator, n: int, rng: Range, device: torch.device) -> Tensor:
    """``n`` samples of U(low, high) as float32 on ``device``, from ``generator``."""
    u = torch.rand(n, generator=generator, device=device)
    return rng[0] + (rng[1] - rng[0]) * u


def bernoulli(generator: torch.Generator, n: int, p: float, device: torch.device) -> Tensor:
    """``n`` booleans, each True with probability ``p`` (always draws, so the stream stays aligned)."""
    return torch.rand(n, generator=generator, device=device) < p


def select(mask: Tensor, new: Tensor, old: Tensor) -> Tensor:
    """Per-sample choice between two batches: ``new`` where ``mask`` (B,) is True."""
    if bool(mask.all()):
        return new
    return torch.where(mask.view(-1, *([1] * (new.dim() - 1))), new, old)


def record(batch: DegradationBatch, name: str, applied: Tensor, **values: Tensor) -> dict:
    extras = dict(batch.extras)
    for key, v in values.items():
        extras[f"{name}.{key}"] = torch.where(applied, v.float(), torch.full_like(v.float(), math.nan))
    return extras
