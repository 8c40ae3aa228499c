"""Tiny components and recipes for the training tests (also imported by the torchrun script).

Small enough that a training step takes milliseconds, but with the same structure as the real
ones: a two-part generator with stage modules, a discriminator, an adversarial loss, a
degradation that draws from the generator it is given.
"""

from __future__ import annotations

import pathlib
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facerestore.interfaces import (AdversarialLoss, Degradation, DegradationBatch, Discriminator, Generator,
                                    Loss)
from facerestore.recipe import load_recipe
from facerestore.registry import Registry


class TinyGen(Generator):
    """Two-part test generator (denoiser conv + pixel-shuffle upsampler)."""

    def __init__(self, scale: int = 2, width: int = 8):
        super().__init__()
        self.scale = scale
        self.denoiser = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, 4, 3, padding=1))
        self.upsampler = nn.Sequential(nn.Conv2d(3, 3 * scale * scale, 3, padding=1), nn.PixelShuffle(scale))

    def forward(self, lq):
        d = self.denoiser(lq)
        denoised = lq + d[:, :3]
        sr = F.interpolate(denoised, scale_factor=self.scale, mode="nearest") + self.upsampler(denoised)
        return {"sr": sr, "denoised": denoised, "noise_map": torch.sigmoid(d[:, 3:])}

    def stage_modules(self):
        return {"denoiser": self.denoiser, "upsampler": self.upsampler}


class TinyDisc(Discriminator):
    """Test critic: one strided conv, global mean."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(4, 1, 3, padding=1))

    def forward(self, x):
        return self.net(x).mean(dim=(2, 3))


class L1(Loss):
    """Test pixel loss."""

    def forward(self, pred, target, **context: Any):
        return (pred - target).abs().mean()


class Explode(Loss):
    """Test loss that is NaN (to trip the divergence guard)."""

    def forward(self, pred, target, **context: Any):
        return pred.mean() * float("nan")


class Vanilla(AdversarialLoss):
    """Test GAN loss (non-saturating BCE)."""

    def forward(self, pred, target, **context: Any):
        d = context["discriminator"]
        return F.binary_cross_entropy_with_logits(d(pred), torch.ones(pred.shape[0], 1))

    def discriminator_loss(self, discriminator, real, fake):
        r, f = discriminator(real), discriminator(fake)
        return (F.binary_cross_entropy_with_logits(r, torch.ones_like(r))
                + F.binary_cross_entropy_with_logits(f, torch.zeros_like(f)))


class Down(Degradation):
    """Test degradation: average-pool by ``scale`` plus Gaussian noise from the given generator."""

    def __init__(self, scale: int = 2, sigma: float = 0.05):
        self.scale, self.sigma = scale, sigma

    def __call__(self, batch: DegradationBatch, generator: torch.Generator) -> DegradationBatch:
        small = F.avg_pool2d(batch.hq, self.scale)
        noise = torch.randn(small.shape, generator=generator, device=small.device) * self.sigma
        occ = small.new_zeros(small.shape[0], 1, *small.shape[2:])
        return batch.replace(lq=(small + noise).clamp(0, 1), clean=small, occlusion=occ)


def tiny_registry() -> Registry:
    reg = Registry()
    reg.register("generator", "tiny_gen", TinyGen)
    reg.register("discriminator", "tiny_disc", TinyDisc)
    reg.register("loss", "l1", L1)
    reg.register("loss", "explode", Explode)
    reg.register("loss", "vanilla", Vanilla)
    reg.register("degradation", "down", Down)
    return reg


class TensorFaces(torch.utils.data.Dataset):
    """Generated faces in memory (smooth random colour fields), as a dataset would return them."""

    def __init__(self, n: int = 24, size: int = 16, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        coarse = torch.rand(n, 3, 4, 4, generator=g)
        self.images = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"hq": self.images[i]}


def write_images(folder: pathlib.Path, n: int = 24, size: int = 20, seed: int = 0) -> pathlib.Path:
    """PNG files made with numpy/PIL, for the tests that read folders."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        coarse = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        Image.fromarray(coarse).resize((size, size), Image.BILINEAR).save(folder / f"{i:03d}.png")
    return folder


def tiny_recipe(reg: Registry, **train: Any):
    """A 16px x2 recipe: pixel losses from step 0, adversarial from ``adv_start`` (default 3)."""
    adv_start = train.pop("adv_start", 3)
    losses = train.pop("losses", None) or [
        {"type": "l1", "on": "sr"},
        {"type": "l1", "on": "denoised", "weight": 0.5},
        {"type": "vanilla", "on": "sr", "weight": 0.01, "start": adv_start},
    ]
    stages = train.pop("stages", None)
    t = {"steps": 8, "batch_size": 4, "lr": 1e-2, "lr_d": 1e-2, "warmup_steps": 2, "scheduler": "cosine",
         "log_every": 2, "val_every": 3, "ckpt_every": 4, "keep_last": 2, "seed": 3, "ema_decay": 0.9, **train}
    if stages:
        t["stages"] = stages
    data = {"name": "tiny", "scale": 2, "hq_size": 16, "data": {"workers": 0, "val_count": 8},
            "degradation": [{"type": "down", "scale": 2}], "generator": {"type": "tiny_gen", "scale": 2},
            "discriminator": {"type": "tiny_disc"}, "loss": losses, "train": t}
    return load_recipe(data, registry=reg)
