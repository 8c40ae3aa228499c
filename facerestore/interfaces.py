"""The component interfaces, one per registry kind, and their tensor contracts.

Common contract, unless an interface says otherwise:

* images are ``float32`` tensors ``(B, 3, H, W)``, RGB, values in ``[0, 1]``;
* maps (occlusion, estimated noise) are ``(B, 1, H, W)`` in ``[0, 1]``, 1 = occluded/corrupted;
* landmarks are ``(B, K, 2)`` in pixel units ``(x, y)`` of the image they belong to;
* a component works on whatever device its inputs are on (it never calls ``.cuda()``), and
  modules are moved with ``.to(device)`` by whoever owns them (the trainer, the restorer).

Components never read a recipe: they receive their own typed constructor parameters, which the
registry validates against the constructor's signature. Composition (which denoiser feeds which
upsampler, which loss sees which output) is the recipe's and the trainer's business.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, Callable, ClassVar, Optional

import torch
from torch import Tensor, nn

__all__ = [
    "AdversarialLoss",
    "Attention",
    "DegradationBatch",
    "Degradation",
    "Denoiser",
    "DenoiserOutput",
    "Detection",
    "Discriminator",
    "FaceDetector",
    "Generator",
    "IdentityEncoder",
    "Loss",
    "Upsampler",
    "UpsamplerOutput",
    "INTERFACES",
]


# --------------------------------------------------------------------------------------------
# Degradation
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class DegradationBatch:
    """What a degradation pipeline carries from a clean HQ face to a training pair.

    ``hq``        (B, 3, H, W)  the clean target: no corruption touches it; only a step that changes
                  the face itself (``photometric``: lighting, colour) changes it, lq and clean alike.
    ``lq``        (B, 3, h, w)  the degraded input being built (starts as a copy of ``hq``).
    ``clean``     (B, 3, h, w)  the same geometry/resolution as ``lq`` without the occlusion and
                  without the corruptions (noise, JPEG): the denoising-stage target.
    ``occlusion`` (B, 1, h, w)  where the synthetic mask covers the face, 1 = covered, at the
                  resolution of ``lq``; ``occlusion_hq`` (B, 1, H, W) is kept at HQ size.
    ``landmarks`` (B, K, 2)     landmarks of ``hq`` in HQ pixel units (5 points: eyes, nose,
                  mouth corners; or 68 points), or None when unknown.
    ``extras``    free-form per-batch data a degradation wants to expose (e.g. mask type ids).

    Degradations return a new batch (``dataclasses.replace``); tensors that do not change are
    shared, not copied.
    """

    hq: Tensor
    lq: Tensor
    clean: Tensor
    occlusion: Tensor
    occlusion_hq: Tensor
    landmarks: Optional[Tensor] = None
    extras: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_hq(cls, hq: Tensor, landmarks: Optional[Tensor] = None) -> "DegradationBatch":
        b, _, h, w = hq.shape
        zeros = hq.new_zeros(b, 1, h, w)
        return cls(hq=hq, lq=hq.clone(), clean=hq.clone(), occlusion=zeros, occlusion_hq=zeros.clone(),
                   landmarks=landmarks)

    def replace(self, **changes: Any) -> "DegradationBatch":
        return dataclasses.replace(self, **changes)

    def to(self, device: torch.device | str) -> "DegradationBatch":
        moved = {f.name: (v.to(device) if isinstance(v := getattr(self, f.name), Tensor) else v)
                 for f in dataclasses.fields(self)}
        return DegradationBatch(**moved)


class Degradation(ABC):
    """One step of the on-device degradation pipeline (mask, blur, downscale, noise, JPEG...).

    Batched: no per-image Python loop. Random parameters are drawn per sample from ``generator``
    (a ``torch.Generator`` on the batch's device), so a seed reproduces a batch on one device.
    Parameter ranges come from the recipe as ``[low, high]`` pairs.
    """

    kind: ClassVar[str] = "degradation"

    @abstractmethod
    def __call__(self, batch: DegradationBatch, generator: torch.Generator) -> DegradationBatch:
        ...

    def linear(self, batch: DegradationBatch, generator: torch.Generator) -> Optional["LinearMap"]:
        """A step that is a per-sample separable linear map of ``lq`` and ``clean`` (blur, resize)
        may return it here, drawing exactly what ``__call__`` draws; the pipeline then multiplies
        consecutive maps and filters each image once (blur computed only where the downscale
        reads it). None (the default): the step is applied by ``__call__``."""
        return None


def _drop_tiny(m: Tensor) -> Tensor:
    """``m`` with weights below 1e-12 set to 0 (they change a pixel by < 1e-9 in all). The tails
    of a narrow Gaussian kernel are subnormal or nearly so, their products with pixels are
    subnormal, and x86 CPUs multiply subnormals many times slower: dropping them took the fused
    blur + x4 downscale of a batch of 32 from 7.4 to 4.3 ms (``benchmarks/degradation.py``,
    docs/degradation.md)."""
    return torch.where(m.abs() < 1e-12, torch.zeros_like(m), m)


@dataclasses.dataclass
class LinearMap:
    """``lq`` and ``clean`` (B, C, H, W) -> ``my @ x @ mx^T`` (B, C, H', W'), then ``finish``.

    ``my`` (B, H', H) and ``mx`` (B, W', W) per sample; ``clamp``: clip the result to [0, 1];
    ``finish(batch) -> batch`` updates everything else (occlusion at the new size, extras) on the
    batch whose ``lq``/``clean`` are already mapped."""

    my: Tensor
    mx: Tensor
    clamp: bool
    finish: Callable[[DegradationBatch], DegradationBatch]

    def then(self, other: "LinearMap") -> "LinearMap":
        """This map followed by ``other``: one map, one filtering pass."""
        return LinearMap(other.my @ self.my, other.mx @ self.mx, self.clamp or other.clamp,
                         lambda b: other.finish(self.finish(b)))

    def apply(self, batch: DegradationBatch) -> DegradationBatch:
        both = torch.cat([batch.lq, batch.clean], 1)
        my, mx = _drop_tiny(self.my.to(both.dtype)), _drop_tiny(self.mx.to(both.dtype))
        out = torch.matmul(my.unsqueeze(1), torch.matmul(both, mx.transpose(1, 2).unsqueeze(1)))
        if self.clamp:
            out = out.clamp(0, 1)
        c = batch.lq.shape[1]
        return self.finish(batch.replace(lq=out[:, :c].contiguous(), clean=out[:, c:].contiguous()))


# --------------------------------------------------------------------------------------------
# Generator parts
# --------------------------------------------------------------------------------------------
class Attention(nn.Module, ABC):
    """Feature re-weighting inside a network: ``(B, C, H, W) -> (B, C, H, W)``, same dtype/device.

    Constructed with ``channels`` by the host network (plus its own recipe parameters), so a recipe
    can swap the attention used everywhere in a network by changing one ``type``.
    """

    kind: ClassVar[str] = "attention"

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels

    @abstractmethod
    def forward(self, x: Tensor) -> Tensor:
        ...


@dataclasses.dataclass
class DenoiserOutput:
    """``image`` (B, 3, h, w) in [0, 1], same size as the input; ``noise_map`` (B, 1, h, w) in
    [0, 1], the estimated occlusion/noise level (CBDNet's sigma map), or None."""

    image: Tensor
    noise_map: Optional[Tensor] = None


class Denoiser(nn.Module, ABC):
    """Removes occlusion and noise at low resolution: ``lq (B, 3, h, w) -> DenoiserOutput``."""

    kind: ClassVar[str] = "denoiser"

    @abstractmethod
    def forward(self, lq: Tensor) -> DenoiserOutput:
        ...


@dataclasses.dataclass
class UpsamplerOutput:
    """``image`` (B, 3, h*scale, w*scale) in [0, 1]; ``heatmaps`` (B, K, H, W) landmark heatmaps
    at output resolution from a face-prior branch, or None."""

    image: Tensor
    heatmaps: Optional[Tensor] = None


class Upsampler(nn.Module, ABC):
    """Face super-resolution: ``x (B, 3, h, w) -> UpsamplerOutput`` with ``scale`` times the size.

    ``identity`` is an optional ``(B, D)`` embedding of the face (from an :class:`IdentityEncoder`)
    that identity-aware upsamplers use to modulate their features; others ignore it.
    """

    kind: ClassVar[str] = "upsampler"
    scale: int = 1
    #: Dimension of the identity embedding this upsampler consumes (0 = none).
    identity_dim: int = 0

    @abstractmethod
    def forward(self, x: Tensor, identity: Optional[Tensor] = None) -> UpsamplerOutput:
        ...


class Generator(nn.Module, ABC):
    """The whole restoration network: ``lq (B, 3, h, w) -> dict`` of named outputs.

    Keys: ``"sr"`` (B, 3, h*scale, w*scale), always present, the restored face; optional
    ``"denoised"`` (B, 3, h, w), ``"noise_map"`` (B, 1, h, w), ``"heatmaps"`` (B, K, H, W); the
    any-scale generator adds ``"coarse"`` (B, 3, H, W) and ``"keep"`` (B, 1, H, W).
    Losses refer to these names in the recipe. ``stage_modules`` names the sub-modules that a
    staged schedule can train separately (e.g. ``{"denoiser": ..., "upsampler": ...}``).
    """

    kind: ClassVar[str] = "generator"
    scale: int = 1

    @abstractmethod
    def forward(self, lq: Tensor) -> dict[str, Tensor]:
        ...

    def stage_modules(self) -> dict[str, nn.Module]:
        return {"generator": self}

    def adapt_tensors(self, tensors: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """A warm start's tensors (``train.init``) translated to this generator's layout, where a
        release changes the shape of a layer it keeps (e.g. a decoder rebuilt); by default as given."""
        return dict(tensors)


class Discriminator(nn.Module, ABC):
    """Real/fake critic: ``x (B, 3, H, W) in [0, 1] -> logits``, either ``(B, 1)`` (global) or
    ``(B, 1, h', w')`` (patch). Raw logits, no sigmoid: the adversarial loss decides."""

    kind: ClassVar[str] = "discriminator"

    @abstractmethod
    def forward(self, x: Tensor) -> Tensor:
        ...


class Loss(nn.Module, ABC):
    """A training objective: ``(pred, target, **context) -> scalar tensor`` (unweighted).

    ``pred``/``target`` are the generator output and batch tensor the recipe names (see
    ``facerestore.recipe_config.LossSpec``). ``context`` may carry ``occlusion`` (B, 1, h, w),
    ``landmarks``, ``lq`` (the generator's input) and, for adversarial losses,
    ``discriminator``. The weight is applied by the trainer, not the loss. A loss is zero (or
    minimal) when ``pred == target``.
    """

    kind: ClassVar[str] = "loss"

    @abstractmethod
    def forward(self, pred: Tensor, target: Tensor, **context: Any) -> Tensor:
        ...


class AdversarialLoss(Loss):
    """A GAN objective, registered as a ``loss``. ``forward(pred=fake, target=real,
    discriminator=D)`` is the generator's term; :meth:`discriminator_loss` is the critic's. The
    trainer calls both; the discriminator is passed in, never owned."""

    @abstractmethod
    def discriminator_loss(self, discriminator: "Discriminator", real: Tensor, fake: Tensor) -> Tensor:
        ...


# --------------------------------------------------------------------------------------------
# Face helpers
# --------------------------------------------------------------------------------------------
class IdentityEncoder(nn.Module, ABC):
    """Face identity embedding: aligned faces ``(B, 3, H, W)`` in [0, 1] -> ``(B, dim)``,
    L2-normalised. Differentiable. Resizes internally to ``input_size`` if needed."""

    kind: ClassVar[str] = "identity"
    dim: int = 128
    input_size: int = 150

    @abstractmethod
    def forward(self, faces: Tensor) -> Tensor:
        ...


@dataclasses.dataclass
class Detection:
    """Faces found in one image: ``boxes`` (N, 4) x1, y1, x2, y2 in pixels; ``scores`` (N,);
    ``landmarks`` (N, K, 2) in pixels (K = 5: left eye, right eye, nose, left/right mouth)."""

    boxes: Tensor
    scores: Tensor
    landmarks: Tensor


class FaceDetector(ABC):
    """Finds faces and landmarks in whole photos. ``images`` are ``(3, H, W)`` tensors in [0, 1]
    (any size, any device); one :class:`Detection` per image, on the CPU."""

    kind: ClassVar[str] = "detector"

    @abstractmethod
    def detect(self, images: list[Tensor]) -> list[Detection]:
        ...


#: Registry kind name -> interface class. Third-party kinds are not allowed: a plugin adds
#: components to these kinds; new interfaces are a core change.
INTERFACES: dict[str, type] = {
    cls.kind: cls
    for cls in (Degradation, Denoiser, Upsampler, Attention, Loss, Discriminator, Generator,
                IdentityEncoder, FaceDetector)
}
