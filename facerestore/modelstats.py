"""Parameter counts and FLOPs of a recipe's generator (for ``recipe show`` and benchmarks)."""

from __future__ import annotations

import torch
from torch import nn


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def flops_per_face(module: nn.Module, lq_size: int) -> float:
    """FLOPs (multiply-add = 2) of one forward pass on a single ``3 x lq x lq`` face."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.rand(1, 3, lq_size, lq_size)
    was_training = module.training
    module.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(x)
    module.train(was_training)
    return float(counter.get_total_flops())


def generator_stats(recipe) -> list[str]:
    from .components import build_generator

    gen = build_generator(recipe)
    lines = [f"generator: {type(gen).__name__}, {count_parameters(gen) / 1e6:.2f} M parameters"]
    parts = gen.stage_modules() if hasattr(gen, "stage_modules") else {}
    for name, mod in parts.items():
        if mod is not gen:
            lines.append(f"  {name}: {type(mod).__name__}, {count_parameters(mod) / 1e6:.2f} M parameters")
    flops = flops_per_face(gen, recipe.lq_size)
    lines.append(f"compute: {flops / 1e9:.2f} GFLOPs per face ({recipe.lq_size}px -> {recipe.hq_size}px)")
    if recipe.discriminator is not None:
        from .components import default_registry

        disc = default_registry().build("discriminator", recipe.discriminator, "discriminator")
        lines.append(f"discriminator: {type(disc).__name__}, {count_parameters(disc) / 1e6:.2f} M parameters")
    return lines
