"""Pure functions of the step: learning-rate factor, current stage, which losses are on.

Everything the schedule decides is recomputed from ``(recipe, step)``, never accumulated, so a
resumed run follows exactly the same schedule as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import math

from ..recipe_config import LossSpec, StageConfig, TrainConfig


def lr_factor(step: int, train: TrainConfig) -> float:
    """Multiplier of the base learning rate at optimisation step ``step`` (0-based).

    Linear warm-up over ``warmup_steps``, then ``constant``, ``cosine`` (to 0 at ``steps``) or
    ``step`` (x0.5 at 50 %, 75 % and 90 % of the run).
    """
    if train.warmup_steps and step < train.warmup_steps:
        return (step + 1) / train.warmup_steps
    if train.scheduler == "constant":
        return 1.0
    span = max(1, train.steps - train.warmup_steps)
    progress = min(1.0, max(0.0, (step - train.warmup_steps) / span))
    if train.scheduler == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 0.5 ** sum(progress >= m for m in (0.5, 0.75, 0.9))


@dataclasses.dataclass(frozen=True)
class Stage:
    name: str
    start: int
    end: int  # exclusive; the last stage runs to the end of training
    train: tuple[str, ...]


def stage_plan(train: TrainConfig) -> list[Stage]:
    """``train.stages`` as step ranges. Without stages: one stage that trains everything."""
    if not train.stages:
        return [Stage("all", 0, math.inf, ("generator",))]  # type: ignore[arg-type]
    plan, start = [], 0
    for i, s in enumerate(train.stages):
        last = i == len(train.stages) - 1
        end = math.inf if last else start + s.steps
        plan.append(Stage(s.name, start, end, tuple(s.train)))  # type: ignore[arg-type]
        start += s.steps
    return plan


def stage_at(plan: list[Stage], step: int) -> Stage:
    for stage in plan:
        if stage.start <= step < stage.end:
            return stage
    return plan[-1]


def loss_active(loss: LossSpec, step: int, stage: Stage, staged: bool) -> bool:
    """A term is on from its ``start`` step, on one step in ``every``, and only in its ``stages``
    when it names any."""
    if step < loss.start or (step - loss.start) % loss.every:
        return False
    if staged and loss.stages and stage.name not in loss.stages:
        return False
    return True


def stage_names(stages: list[StageConfig]) -> list[str]:
    return [s.name for s in stages]
