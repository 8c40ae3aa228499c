"""Built-in losses: pixel, TV, CBDNet's asymmetric map loss, occluded mean, lattice (pixel-shuffle
grid), face prior, identity, teacher distillation, adversarial.

Each returns an unweighted scalar (the trainer applies the recipe's ``weight``) and is zero, or
minimal, when ``pred == target``. ``perceptual`` and ``style`` (VGG16) live in
``plugins/perceptual.py``.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from facerestore.interfaces import AdversarialLoss, Discriminator, IdentityEncoder, Loss
from facerestore.metrics import lattice_pattern


def _match(t: Tensor, like: Tensor) -> Tensor:
    """``t`` resized (area) to the spatial size of ``like`` when they differ."""
    if t.shape[-2:] == like.shape[-2:]:
        return t
    return F.interpolate(t, size=like.shape[-2:], mode="area")


def _occlusion_like(context: dict[str, Any], like: Tensor) -> Tensor | None:
    for key in ("occlusion", "occlusion_hq"):
        occ = context.get(key)
        if isinstance(occ, Tensor) and occ.shape[-2:] == like.shape[-2:]:
            return occ
    occ = context.get("occlusion")
    return _match(occ, like) if isinstance(occ, Tensor) else None


class PixelLoss(Loss):
    """Per-pixel L1, L2 or Charbonnier distance, optionally weighted up inside the occlusion mask.

    ``occluded_weight`` w > 0 weighs each pixel by ``1 + w * occlusion`` (the occlusion map from
    the batch), so the masked region, where restoration is hardest, is not drowned by the easy
    visible pixels.
    """

    def __init__(self, mode: Literal["l1", "l2", "charbonnier"] = "l1", eps: float = 1e-3,
                 occluded_weight: float = 0.0):
        super().__init__()
        if eps <= 0 or occluded_weight < 0:
            raise ValueError("eps must be > 0 and occluded_weight >= 0")
        self.mode, self.eps, self.occluded_weight = mode, eps, occluded_weight

    def forward(self, pred: Tensor, target: Tensor, **context: Any) -> Tensor:
        d = pred - target
        if self.mode == "l1":
            err = d.abs()
        elif self.mode == "l2":
            err = d * d
        else:  # Charbonnier, shifted so that identical inputs give exactly 0
            err = torch.sqrt(d * d + self.eps ** 2) - self.eps
        if self.occluded_weight > 0:
            occ = _occlusion_like(context, pred)
            if occ is not None:
                w = 1 + self.occluded_weight * occ
                return (err * w).sum() / (w.sum() * pred.shape[1])
        return err.mean()


class TVLoss(Loss):
    """Total variation of the prediction (smoothness prior; ``target`` is not used)."""

    def __init__(self, mode: Literal["l1", "l2"] = "l1"):
        super().__init__()
        self.mode = mode

    def forward(self, pred: Tensor, target: Tensor | None = None, **context: Any) -> Tensor:
        dh = pred[..., 1:, :] - pred[..., :-1, :]
        dw = pred[..., :, 1:] - pred[..., :, :-1]
        if self.mode == "l1":
            return dh.abs().mean() + dw.abs().mean()
        return (dh * dh).mean() + (dw * dw).mean()


class AsymmetricLoss(Loss):
    """CBDNet's asymmetric loss on the estimated map: under-estimating occlusion costs more.

    ``|alpha - 1[pred - target < 0]| * (pred - target)^2`` with ``0 < alpha < 0.5`` (CBDNet:
    0.3): a missed occluded pixel (pred < target) is weighted ``1 - alpha``, a false alarm
    ``alpha``, because a denoiser told "clean" leaves the occlusion in place.
    """

    def __init__(self, alpha: float = 0.3):
        super().__init__()
        if not 0 <= alpha <= 1:
            raise ValueError("alpha must be in [0, 1]")
        self.alpha = alpha

    def forward(self, pred: Tensor, target: Tensor, **context: Any) -> Tensor:
        d = pred - _match(target, pred)
        w = (self.alpha - (d < 0).to(d.dtype)).abs()
        return (w * d * d).mean()


class OccludedMeanLoss(Loss):
    """Mean of a map inside the true occlusion: drives a quantity that must vanish under a mask
    to 0 there, e.g. ``keep``, the any-scale generator's input-keep weight. Where the occlusion
    estimate misses part of a mask, the pixel loss alone can settle for a faded copy of the mask
    (stripes of a pleated mask on large faces); this term says "never keep a masked pixel".

    ``pred`` (B, C, H, W) >= 0; ``target`` the occlusion map (B, 1, h, w) in [0, 1], resized to
    ``pred``. 0 when nothing is occluded.
    """

    def forward(self, pred: Tensor, target: Tensor, **context: Any) -> Tensor:
        occ = _match(target, pred)
        return (pred * occ).sum() / (occ.sum() * pred.shape[1]).clamp_min(1e-6)


class LatticeLoss(Loss):
    """The error's part locked to a ``period``-pixel lattice (:func:`facerestore.metrics.lattice_pattern`
    of ``pred - target``, pooled over the batch), as L1 or L2.

    The any-scale generator predicts its 128 px correction by pixel shuffle from 32x32 features.
    Where the input says nothing (under a mask) each of the 16 sub-pixel positions settles on its
    own small offset: a faint 4-px grid of ~1-2 grey levels, which a pixel loss barely sees (its
    share of the MSE is ~1e-5) but the eye does on a smooth, restored chin. This term sees only
    that grid. ``region`` "occluded" weighs by the occlusion map (where the grid lives), "all"
    counts every pixel. 0 when ``pred == target``.
    """

    def __init__(self, period: int = 4, mode: Literal["l1", "l2"] = "l2",
                 region: Literal["all", "occluded"] = "occluded"):
        super().__init__()
        if period < 2 or mode not in ("l1", "l2") or region not in ("all", "occluded"):
            raise ValueError("period >= 2, mode 'l1' or 'l2', region 'all' or 'occluded'")
        self.period, self.mode, self.region = period, mode, region

    def forward(self, pred: Tensor, target: Tensor, **context: Any) -> Tensor:
        weight = _occlusion_like(context, pred) if self.region == "occluded" else None
        if self.region == "occluded" and weight is None:
            return pred.new_zeros(())
        pattern = lattice_pattern(pred.float() - target.float(), self.period, weight)
        return pattern.abs().mean() if self.mode == "l1" else pattern.pow(2).mean()


class FacePriorLoss(Loss):
    """Landmark-heatmap MSE for the face-prior branch, optionally weighted towards the peaks.

    ``foreground_weight`` w weighs each pixel by ``1 + w * target``: heatmaps are almost all
    background, and plain MSE is otherwise minimised by predicting zeros everywhere.
    """

    def __init__(self, foreground_weight: float = 0.0):
        super().__init__()
        if foreground_weight < 0:
            raise ValueError("foreground_weight must be >= 0")
        self.foreground_weight = foreground_weight

    def forward(self, pred: Tensor, target: Tensor, **context: Any) -> Tensor:
        if pred.shape[1] != target.shape[1]:
            raise ValueError(f"face_prior: the network predicts {pred.shape[1]} heatmaps but the batch has "
                             f"{target.shape[1]} landmarks (set upsampler.landmarks to match)")
        target = _match(target, pred)
        err = (pred - target) ** 2
        if self.foreground_weight > 0:
            err = err * (1 + self.foreground_weight * target)
        return err.mean()


class IdentityLoss(Loss):
    """Identity distance: 1 - cosine similarity of face embeddings of pred and target (frozen encoder)."""

    def __init__(self, encoder: IdentityEncoder = "dlib_resnet"):
        super().__init__()
        from facerestore.components import resolve

        encoder = resolve(encoder, "identity")
        self.encoder = encoder.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> "IdentityLoss":
        super().train(mode)
        self.encoder.eval()
        return self

    def forward(self, pred: Tensor, target: Tensor, **context: Any) -> Tensor:
        with torch.no_grad():
            t = F.normalize(self.encoder(target), dim=1)
        p = F.normalize(self.encoder(pred), dim=1)
        return (1 - (p * t).sum(1)).mean()


class DistillLoss(Loss):
    """Mean squared distance to a frozen teacher's restoration of the same input (``lq`` from the
    context), by default its mirrored self-ensemble (``restore --tta``): the average of two
    passes is a better, less noisy target than one model's guess where the input leaves the
    answer open, so a student of the same size can learn part of what the ensemble adds.

    ``teacher`` is a model name or checkpoint, run the way ``restore`` runs it (its own input
    size, float32 whatever the trainer's autocast, output clamped to [0, 1]); loaded on the CPU
    when the loss is built (a wrong path fails then), moved to ``lq``'s device on first use.
    ``pred`` is an RGB output ``(B, 3, H, W)``; ``target`` is unused. Costs one teacher pass per
    step (two with ``mirror``), without gradients.
    """

    def __init__(self, teacher: str = "masked-any", mirror: bool = True):
        super().__init__()
        from facerestore.models import load

        with torch.random.fork_rng(devices=[]):  # building it must not move the run's RNG stream
            # in a list, so the teacher is not a submodule: no state_dict, not trained, not moved
            self._teacher = [load(teacher, "cpu")]
        self.teacher, self.mirror = teacher, mirror

    def _teach(self, lq: Tensor) -> Tensor:
        from facerestore.models import fit_input, run_faces

        m = self._teacher[0]
        gen = m.generator.to(lq.device)
        with torch.no_grad(), torch.autocast(lq.device.type, enabled=False):
            return run_faces(gen, fit_input(lq.detach().float(), m.lq_size), tta=self.mirror)[0].clone()

    def forward(self, pred: Tensor, target: Tensor | None = None, *, lq: Tensor | None = None,
                **context: Any) -> Tensor:
        if lq is None:
            raise ValueError("the distill loss needs the generator's input as lq=... (the trainer passes it)")
        if pred.dim() != 4 or pred.shape[1] != 3:
            raise ValueError(f"the distill loss compares RGB faces (B, 3, H, W), got {tuple(pred.shape)} "
                             "(is `on` an image output such as sr?)")
        teacher = _match(self._teach(lq), pred)
        return F.mse_loss(pred, teacher.to(pred.dtype))


class GANLoss(AdversarialLoss):
    """Adversarial loss: vanilla (BCE), LSGAN, hinge or relativistic average (RaGAN, ESRGAN).

    ``occluded_weight`` k: with a per-pixel critic (logits at the image's size, e.g. ``unet``) the
    generator's term counts a pixel inside the true occlusion 1 + k times, so realism is asked for
    where the face was masked rather than spread over what is merely kept. ``r1`` gamma: the
    critic's gradient penalty on real faces, gamma / 2 * E|grad D(real)|^2 (Mescheder et al. 2018),
    D(real) being a face's mean logit for a per-pixel or patch critic,
    which keeps a per-pixel critic from sharpening into noise; ``r1_every`` k computes it on every
    k-th critic step only, k times as strong (StyleGAN2's lazy regularisation: a double backward
    doubles a critic step's cost).
    """

    def __init__(self, mode: Literal["vanilla", "lsgan", "hinge", "relativistic"] = "relativistic",
                 occluded_weight: float = 0.0, r1: float = 0.0, r1_every: int = 1):
        super().__init__()
        if occluded_weight < 0 or r1 < 0 or r1_every < 1:
            raise ValueError("occluded_weight and r1 must be >= 0, r1_every >= 1")
        self.r1_every = int(r1_every)
        self._critic_steps = 0
        self.mode = mode
        self.occluded_weight = float(occluded_weight)
        self.r1 = float(r1)

    @staticmethod
    def _bce(logits: Tensor, real: bool, weight: Tensor | None = None) -> Tensor:
        return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, 1.0 if real else 0.0), weight=weight)

    def _pixel_weight(self, logits: Tensor, context: dict[str, Any]) -> Tensor | None:
        """1 + k * occlusion at the logits' size, normalised to mean 1 (None: no weighting)."""
        if not self.occluded_weight or logits.dim() != 4:
            return None
        occ = _occlusion_like(context, logits)
        if occ is None:
            return None
        w = 1.0 + self.occluded_weight * occ.to(logits.dtype)
        return w / w.mean()

    def forward(self, pred: Tensor, target: Tensor | None = None, *, discriminator: Discriminator | None = None,
                **context: Any) -> Tensor:
        if discriminator is None:
            raise ValueError("the adversarial loss needs discriminator=... (does the recipe have a [discriminator]?)")
        fake = discriminator(pred)
        weight = self._pixel_weight(fake, context)
        if self.mode == "vanilla":
            return self._bce(fake, True, weight)
        if weight is None:
            weight = torch.ones_like(fake)
        if self.mode == "lsgan":
            return (weight * (fake - 1) ** 2).mean()
        if self.mode == "hinge":
            return -(weight * fake).mean()
        if target is None:
            raise ValueError("the relativistic adversarial loss needs the real images as target")
        real = discriminator(target).detach()
        return 0.5 * (self._bce(real - fake.mean(), False, weight) + self._bce(fake - real.mean(), True, weight))

    def discriminator_loss(self, discriminator: Discriminator, real: Tensor, fake: Tensor) -> Tensor:
        fake = fake.detach()
        penalise = self.r1 > 0 and self._critic_steps % self.r1_every == 0
        self._critic_steps += 1
        if penalise:
            real = real.detach().requires_grad_(True)
        r, f = discriminator(real), discriminator(fake)
        if self.mode == "vanilla":
            loss = self._bce(r, True) + self._bce(f, False)
        elif self.mode == "lsgan":
            loss = 0.5 * (((r - 1) ** 2).mean() + (f ** 2).mean())
        elif self.mode == "hinge":
            loss = F.relu(1 - r).mean() + F.relu(1 + f).mean()
        else:
            loss = 0.5 * (self._bce(r - f.mean(), True) + self._bce(f - r.mean(), False))
        if penalise:  # on each face's mean logit: summing a per-pixel critic's 16,384 logits would
            # make the penalty 16,384^2 times larger and flatten the critic (it did: chance level)
            (grad,) = torch.autograd.grad(r.float().flatten(1).mean(1).sum(), real, create_graph=True)
            loss = loss + 0.5 * self.r1 * self.r1_every * grad.float().pow(2).flatten(1).sum(1).mean()
        return loss


def register(registry) -> None:
    registry.register("loss", "pixel", PixelLoss)
    registry.register("loss", "tv", TVLoss)
    registry.register("loss", "asymmetric", AsymmetricLoss)
    registry.register("loss", "occluded_mean", OccludedMeanLoss)
    registry.register("loss", "face_prior", FacePriorLoss)
    registry.register("loss", "lattice", LatticeLoss)
    registry.register("loss", "identity", IdentityLoss)
    registry.register("loss", "distill", DistillLoss)
    registry.register("loss", "adversarial", GANLoss)
