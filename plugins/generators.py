"""Built-in generators: JDSR-GAN (denoiser -> identity -> face SR) and the SR-only baseline.

Identity features in ``jdsr``: at inference the only face available is the masked 32 px input,
so the embedding that modulates the SR module is computed from the *denoised* LQ face. By
default it is a small trainable conv encoder (``identity_channels``) trained end to end; the
identity *loss* (a frozen face-recognition network comparing the SR output with the HQ face)
is what teaches it. A frozen :class:`IdentityEncoder` can be used instead (``identity = {type =
"dlib_resnet"}``): it then runs on the bicubic-upsampled denoised face, followed by a trainable
projection. The learned branch costs ~0.03 GFLOPs per face at 32 px; a ResNet face encoder at
150 px costs two orders of magnitude more, which alone would use most of the CPU budget.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facerestore.interfaces import Denoiser, Generator, IdentityEncoder, Upsampler
from facerestore.components import resolve
from facerestore.same_bits import spatial_mean

from .denoisers import ResBlock, clamp01, conv3x3, scale_init_


class LearnedIdentity(nn.Module):
    """Tiny conv encoder: denoised LQ face -> (B, dim) L2-normalised identity embedding."""

    def __init__(self, dim: int, channels: int = 32):
        super().__init__()
        c = channels
        self.features = nn.Sequential(
            conv3x3(3, c), nn.ReLU(inplace=True),
            conv3x3(c, 2 * c, stride=2), nn.ReLU(inplace=True),
            conv3x3(2 * c, 4 * c, stride=2), nn.ReLU(inplace=True),
            conv3x3(4 * c, 4 * c, stride=2), nn.ReLU(inplace=True),
        )
        self.proj = nn.Linear(4 * c, dim)

    def forward(self, face: Tensor) -> Tensor:
        return F.normalize(self.proj(spatial_mean(self.features(face)).flatten(1)), dim=1)


class EncoderIdentity(nn.Module):
    """A frozen IdentityEncoder on the bicubic-upsampled face + a trainable projection to ``dim``."""

    def __init__(self, encoder: IdentityEncoder, dim: int):
        super().__init__()
        self.encoder = encoder.eval().requires_grad_(False)
        self.proj = nn.Linear(encoder.dim, dim)

    def train(self, mode: bool = True) -> "EncoderIdentity":
        super().train(mode)
        self.encoder.eval()  # frozen: keep its normalisation statistics fixed
        return self

    def forward(self, face: Tensor) -> Tensor:
        size = self.encoder.input_size
        up = F.interpolate(face, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
        return F.normalize(self.proj(self.encoder(up)), dim=1)


class StageGroup(nn.Module):
    """The trainable modules a stage of a staged schedule optimises together."""

    def __init__(self, **modules: Optional[nn.Module]):
        super().__init__()
        for name, mod in modules.items():
            if mod is not None:
                self.add_module(name, mod)

    def forward(self, *args, **kwargs):  # pragma: no cover - a grouping, not a network
        raise RuntimeError("StageGroup only groups parameters")


class JDSRGenerator(Generator):
    """JDSR-GAN: CBDNet-style denoiser at LQ size, identity embedding of the denoised face, face SR.

    Outputs ``sr``, ``denoised``, ``noise_map`` and (when the upsampler has a face-prior branch)
    ``heatmaps``. ``detach = true`` stops gradients between denoiser and SR module: the separate
    two-stage pipeline. The identity branch is used when ``upsampler.identity_dim > 0``: a learned
    encoder of width ``identity_channels``, or a frozen ``identity`` encoder when one is given.
    Stages: ``denoiser`` and ``upsampler`` (the identity branch trains with the upsampler).
    """

    def __init__(self, denoiser: Denoiser = "jdsr_denoiser", upsampler: Upsampler = "jdsr_sr",
                 identity: IdentityEncoder | None = None, identity_channels: int = 32, detach: bool = False):
        super().__init__()
        denoiser, upsampler = resolve(denoiser, "denoiser"), resolve(upsampler, "upsampler")
        identity = resolve(identity, "identity") if identity is not None else None
        self.denoiser = denoiser
        self.upsampler = upsampler
        self.scale = upsampler.scale
        self.detach = detach
        dim = int(getattr(upsampler, "identity_dim", 0))
        if dim > 0:
            self.identity_branch = EncoderIdentity(identity, dim) if identity is not None else LearnedIdentity(dim, identity_channels)
        else:
            if identity is not None:
                raise ValueError("an identity encoder was given but the upsampler takes no identity "
                                 "(set upsampler.identity_dim > 0)")
            self.identity_branch = None
        sr_group = StageGroup(upsampler=upsampler, identity=self._trainable_identity())
        object.__setattr__(self, "_stages", {"denoiser": denoiser, "upsampler": sr_group})

    def _trainable_identity(self) -> Optional[nn.Module]:
        b = self.identity_branch
        return b.proj if isinstance(b, EncoderIdentity) else b

    def stage_modules(self) -> dict[str, nn.Module]:
        return dict(self._stages)

    def forward(self, lq: Tensor) -> dict[str, Tensor]:
        d = self.denoiser(lq)
        x = d.image.detach() if self.detach else d.image
        emb = self.identity_branch(x) if self.identity_branch is not None else None
        u = self.upsampler(x, emb)
        out = {"sr": u.image, "denoised": d.image}
        if d.noise_map is not None:
            out["noise_map"] = d.noise_map
        if u.heatmaps is not None:
            out["heatmaps"] = u.heatmaps
        return out


class SROnly(Generator):
    """SR without a denoising stage (the SR-only baseline; with the ``bicubic`` upsampler, bicubic)."""

    def __init__(self, upsampler: Upsampler = "jdsr_sr"):
        super().__init__()
        self.upsampler = upsampler = resolve(upsampler, "upsampler")
        self.scale = upsampler.scale

    def stage_modules(self) -> dict[str, nn.Module]:
        return {"upsampler": self.upsampler}

    def forward(self, lq: Tensor) -> dict[str, Tensor]:
        u = self.upsampler(lq)
        out = {"sr": u.image}
        if u.heatmaps is not None:
            out["heatmaps"] = u.heatmaps
        return out


class JDSRAnyScale(Generator):
    """JDSR-GAN for faces of any scale: an aligned face at the working size in, the same size out.

    ``x`` (B, 3, S, S), S divisible by ``fold`` (128 with fold 4). Two paths:

    * the JDSR core (denoiser -> identity -> SR module with ``upsampler.scale == fold``) runs on the
      face area-downsampled by ``fold`` (32x32 for S = 128), where masks are removed and a face is
      hallucinated at today's cost; its output ``coarse`` is at S;
    * a fusion net sees the full-resolution input folded into channels (space-to-depth), the coarse
      face and the occlusion map, all at S / fold, and predicts per pixel how much of the input to
      keep (``alpha``) plus a residual: ``sr = alpha * x + (1 - alpha) * coarse + residual``. Sharp,
      visible parts pass through; masked or degraded parts come from the core.

    ``refine_channels`` > 0 adds two 3x3 convs at full resolution that correct the folded
    prediction (alpha logit and residual) from the input, the coarse face and that prediction: the
    space-to-depth output alone paints a 4-px dotted texture on large faces. Zero-initialised, so
    weights trained without it load (``train.init``) and start from the same output.

    ``half_blocks`` > 0 adds a stage at half the working size (64x64 for S = 128): the input, the
    coarse face and the folded prediction, space-to-depth by 2, through ``half_channels`` wide
    residual blocks, adding a correction to that prediction before ``refine``. Capacity where the
    core (S / fold) cannot draw detail and full resolution is 4x the cost; its last conv starts at
    zero, so a model trained without the stage loads and gives the same output at step 0.

    Outputs ``sr``, ``coarse``, ``keep`` (alpha, (B, 1, S, S)), ``noise_map`` (the occlusion
    estimate, upsampled to S), ``denoised`` (S / fold) and ``heatmaps`` when the SR module has a
    face prior.
    """

    def __init__(self, denoiser: Denoiser = "jdsr_denoiser", upsampler: Upsampler = "jdsr_sr",
                 identity_channels: int = 32, fusion_channels: int = 48, fusion_blocks: int = 3,
                 refine_channels: int = 0, half_channels: int = 32, half_blocks: int = 0):
        super().__init__()
        self.core = JDSRGenerator(denoiser, upsampler, identity_channels=identity_channels)
        self.fold = fold = self.core.scale
        self.scale = 1
        if fusion_channels < 1 or fusion_blocks < 0 or refine_channels < 0 or half_blocks < 0 or half_channels < 1:
            raise ValueError("fusion_channels >= 1, fusion_blocks >= 0, refine_channels >= 0, "
                             "half_channels >= 1, half_blocks >= 0")
        cin = 2 * 3 * fold * fold + 1
        c = fusion_channels
        self.fusion = nn.Sequential(conv3x3(cin, c), nn.ReLU(inplace=True),
                                    *(ResBlock(c) for _ in range(fusion_blocks)),
                                    conv3x3(c, 4 * fold * fold), nn.PixelShuffle(fold))
        scale_init_(self.fusion[-2], 0.1)  # start as the mean of input and coarse face, no residual
        self.refine: nn.Module | None = None
        if refine_channels:
            self.refine = nn.Sequential(conv3x3(10, refine_channels), nn.ReLU(inplace=True),
                                        conv3x3(refine_channels, 4))
            scale_init_(self.refine[-1], 0.0)
        self.half_res: nn.Module | None = None
        if half_blocks:
            hc = half_channels
            self.half_res = nn.Sequential(conv3x3(4 * 10, hc), nn.ReLU(inplace=True),
                                      *(ResBlock(hc) for _ in range(half_blocks)),
                                      conv3x3(hc, 4 * 4), nn.PixelShuffle(2))
            scale_init_(self.half_res[-2], 0.0)

    def stage_modules(self) -> dict[str, nn.Module]:
        fusion = self.fusion
        if self.refine is not None or self.half_res is not None:
            fusion = StageGroup(fold=self.fusion, half_res=self.half_res, refine=self.refine)
        return {**self.core.stage_modules(), "fusion": fusion}

    def forward(self, lq: Tensor) -> dict[str, Tensor]:
        h, w = lq.shape[-2:]
        if h % self.fold or w % self.fold:
            raise ValueError(f"input size {h}x{w} must be divisible by {self.fold}")
        out = self.core(F.avg_pool2d(lq, self.fold))
        coarse, occ_small = out["sr"], out["noise_map"]
        feats = torch.cat([F.pixel_unshuffle(lq, self.fold), F.pixel_unshuffle(coarse, self.fold), occ_small], 1)
        y = self.fusion(feats)
        if self.half_res is not None:
            y = y + self.half_res(F.pixel_unshuffle(torch.cat([lq, coarse, y], 1), 2))
        if self.refine is not None:
            y = y + self.refine(torch.cat([lq, coarse, y], 1))
        alpha = torch.sigmoid(y[:, 3:])
        sr = clamp01(alpha * lq + (1 - alpha) * coarse + y[:, :3])
        res = {"sr": sr, "coarse": coarse, "denoised": out["denoised"], "keep": alpha,
               "noise_map": F.interpolate(occ_small, size=(h, w), mode="bilinear", align_corners=False)}
        if "heatmaps" in out:
            res["heatmaps"] = out["heatmaps"]
        return res


def register(registry) -> None:
    registry.register("generator", "jdsr", JDSRGenerator)
    registry.register("generator", "sr_only", SROnly)
    registry.register("generator", "jdsr_any", JDSRAnyScale)
