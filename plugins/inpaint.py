"""The generative inpainting stage for masked faces (issue 35): fast Fourier convolutions at 64x64.

``jdsr_any`` fills a mask from its 32x32 core and upsamples: the lower face comes back as a smooth
blob. :class:`InpaintAnyScale` keeps that network whole (same parameter names, so the shipped
``masked-any`` weights load into it unchanged) and adds a branch at half the working size (64x64
for 128 px faces) built from LaMa's fast Fourier convolutions (Suvorov et al., WACV 2022): half of
each layer's channels pass through a 1x1 convolution in the 2-D Fourier domain, so every layer
sees the whole face from the first block, which is what filling a mouth and chin from the eyes,
nose and skin colour needs. The branch returns a residual on the faithful output and a correction
of the occlusion map at full resolution (the compositing region of ``restore``); its last layers
start at zero, so at step 0 the model is exactly ``masked-any``.

Tensor contract: ``lq`` (B, 3, S, S) in [0, 1], S divisible by 4. Outputs those of ``jdsr_any``
(``sr`` replaced by the generative face) plus ``faithful`` (the ``jdsr_any`` face) and ``delta``
(the branch's residual, (B, 3, S, S)); ``noise_map`` is the refined occlusion map (B, 1, S, S).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facerestore.interfaces import Denoiser, Upsampler

from .denoisers import ResBlock, clamp01, conv3x3, scale_init_
from .generators import JDSRAnyScale


def _dft_matrices(n: int, m: int, device: torch.device) -> tuple[Tensor, ...]:
    """cos and sin of 2 pi k j / n (n x n), of 2 pi l j / m for the rfft bins (m x (m // 2 + 1)),
    and the inverse rfft's bin weights (1 for DC and Nyquist, 2 between), float32."""
    k = torch.arange(n, dtype=torch.float64)
    j = torch.arange(m, dtype=torch.float64)
    bins = torch.arange(m // 2 + 1, dtype=torch.float64)
    ah = 2 * torch.pi * torch.outer(k, k) / n
    aw = 2 * torch.pi * torch.outer(j, bins) / m
    weight = torch.full((m // 2 + 1,), 2.0, dtype=torch.float64)
    weight[0] = 1.0
    if m % 2 == 0:
        weight[-1] = 1.0
    mats = (ah.cos(), ah.sin(), aw.cos(), aw.sin(), weight)
    return tuple(t.to(device=device, dtype=torch.float32) for t in mats)


class FourierUnit(nn.Module):
    """A 1x1 convolution on the real and imaginary parts of the 2-D real FFT (orthonormal), back
    by the inverse: a global receptive field at the cost of a pointwise layer.

    The transforms are matrix products with the DFT's cos/sin matrices (``torch.fft.rfft2`` and
    ``irfft2`` to float precision: tests compare them), which export to ONNX (the TorchScript
    exporter has no FFT) and cost little at the 32x32 this runs at. Float32 under autocast.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(2 * channels, 2 * channels, 1)
        self._mats: dict[tuple, tuple[Tensor, ...]] = {}

    def _matrices(self, h: int, w: int, device: torch.device) -> tuple[Tensor, ...]:
        key = (h, w, str(device))
        if key not in self._mats:
            self._mats[key] = _dft_matrices(h, w, device)
        return self._mats[key]

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        ch, sh, cw, sw, weight = self._matrices(h, w, x.device)
        scale = (h * w) ** -0.5
        with torch.autocast(x.device.type, enabled=False):
            xf = x.float()
            ar, ai = xf @ cw, -(xf @ sw)                                # along W: (B, C, H, W//2+1)
            fr, fi = (ch @ ar + sh @ ai) * scale, (ch @ ai - sh @ ar) * scale  # along H
            re, im = F.relu(self.conv(torch.cat([fr, fi], 1))).chunk(2, 1)
            br, bi = ch @ re - sh @ im, ch @ im + sh @ re              # inverse along H
            y = ((br * weight) @ cw.T - (bi * weight) @ sw.T) * scale  # inverse real along W
        return y.to(x.dtype)


class SpectralTransform(nn.Module):
    """LaMa's global path: 1x1 down to half width, Fourier unit with a residual, 1x1 back up."""

    def __init__(self, channels: int):
        super().__init__()
        half = max(1, channels // 2)
        self.reduce = nn.Sequential(nn.Conv2d(channels, half, 1), nn.ReLU(inplace=True))
        self.fourier = FourierUnit(half)
        self.expand = nn.Conv2d(half, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.reduce(x)
        return self.expand(x + self.fourier(x))


class FFC(nn.Module):
    """One fast Fourier convolution on a (local, global) channel split: local 3x3 convs between and
    within the halves, the spectral transform within the global half."""

    def __init__(self, channels: int):
        super().__init__()
        self.g = channels // 2
        lc = channels - self.g
        self.l2l, self.g2l = conv3x3(lc, lc), conv3x3(self.g, lc)
        self.l2g, self.g2g = conv3x3(lc, self.g), SpectralTransform(self.g)

    def forward(self, x: Tensor) -> Tensor:
        xl, xg = x[:, : x.shape[1] - self.g], x[:, x.shape[1] - self.g:]
        return torch.cat([self.l2l(xl) + self.g2l(xg), self.l2g(xl) + self.g2g(xg)], 1)


class FFCResBlock(nn.Module):
    """Two FFCs with ReLU and a residual add (LaMa's generator block, without batch norm: faces are
    restored one at a time as often as in batches)."""

    def __init__(self, channels: int):
        super().__init__()
        self.a, self.b = FFC(channels), FFC(channels)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.b(F.relu(self.a(x)))


class InpaintBranch(nn.Module):
    """(lq, faithful face, occlusion) -> (RGB residual, occlusion-logit correction), (B, 4, S, S).

    LaMa's shape at face size: the inputs folded to S/2, a stride-2 conv to S/4, ``blocks`` FFC
    residual blocks of ``channels`` at S/4 (32x32 for 128 px: every layer sees the whole face), then
    a decoder that synthesises at S/2 (a residual block with the S/2 skip) and a full-resolution
    refinement of width ``refine``. The last layers start at zero: the branch is silent at step 0.

    ``decoder``: ``"shuffle"`` doubles the size twice by pixel shuffle (versions 1-3); two of them
    give every output pixel one of 16 phase-specific filters, which an adversarial or identity term
    turns into a 4-px dot grid. ``"resize"`` convolves, then doubles by bilinear interpolation (the
    same filter at every phase; Odena et al., "Deconvolution and checkerboard artifacts", 2016).
    :meth:`adapt_tensors` turns a shuffle decoder's weights into a resize decoder's.
    """

    IN = 3 + 3 + 1  # lq, faithful face, occlusion map
    DECODERS = ("shuffle", "resize")
    #: the decoder's convolutions that feed a 2x pixel shuffle in the ``"shuffle"`` layout
    SHUFFLED = ("up.0", "tail.0")

    def __init__(self, channels: int, blocks: int, refine: int, half: int = 32, decoder: str = "shuffle"):
        super().__init__()
        if decoder not in self.DECODERS:
            raise ValueError(f"decoder must be one of {self.DECODERS}, got {decoder!r}")
        c, k = channels, 4 if decoder == "shuffle" else 1
        self.decoder = decoder
        double = nn.PixelShuffle(2) if k == 4 else nn.Upsample(scale_factor=2, mode="bilinear")
        self.head = nn.Sequential(conv3x3(4 * self.IN, half), nn.ReLU(inplace=True))
        self.down = nn.Sequential(conv3x3(half, c, stride=2), nn.ReLU(inplace=True))
        self.body = nn.Sequential(*(FFCResBlock(c) for _ in range(blocks)))
        self.up = nn.Sequential(conv3x3(c, k * half), double, nn.ReLU(inplace=True))
        self.mid = ResBlock(half)
        self.tail = nn.Sequential(conv3x3(half, k * 4), copy.deepcopy(double))
        self.refine = nn.Sequential(conv3x3(self.IN + 4, refine), nn.ReLU(inplace=True), conv3x3(refine, 4))
        scale_init_(self.tail[0], 0.1)
        scale_init_(self.refine[-1], 0.0)

    def adapt_tensors(self, tensors: Mapping[str, Tensor], prefix: str = "") -> dict[str, Tensor]:
        """A shuffle decoder's tensors for this branch: with ``decoder="resize"``, each conv that fed
        a pixel shuffle becomes the mean of its four sub-pixel filters (channel ``4 c + i``, PyTorch's
        shuffle order), the smooth part of what the shuffle decoder drew. Other tensors pass as they are."""
        out = dict(tensors)
        if self.decoder != "resize":
            return out
        for name in self.SHUFFLED:
            for kind in ("weight", "bias"):
                key, own = f"{prefix}{name}.{kind}", self.get_parameter(f"{name}.{kind}")
                t = out.get(key)
                if t is not None and t.shape[0] == 4 * own.shape[0] and t.shape[1:] == own.shape[1:]:
                    out[key] = t.reshape(own.shape[0], 4, *t.shape[1:]).mean(1)
        return out

    def forward(self, lq: Tensor, faithful: Tensor, occ: Tensor) -> Tensor:
        x = torch.cat([lq, faithful, occ], 1)
        h = self.head(F.pixel_unshuffle(x, 2))
        y = self.tail(self.mid(h + self.up(self.body(self.down(h)))))
        return self.refine(torch.cat([x, y], 1))


class InpaintAnyScale(JDSRAnyScale):
    """``jdsr_any`` plus a generative FFC inpainting branch (module docstring).

    ``inpaint_channels`` / ``inpaint_blocks``: width and depth of the 64x64 FFC trunk;
    ``inpaint_refine``: width of its full-resolution refinement. ``freeze_base``: the ``jdsr_any``
    part is not trained (and runs without autograd): a release that continues from ``masked-any``
    trains only the new branch. ``fidelity`` (0 realistic .. 1 faithful) scales the branch's
    residual at inference; the refined occlusion map does not depend on it. ``gate``: the residual
    applies only where the refined occlusion map says the face is hidden, so the visible face stays
    the faithful one (its identity) and the synthesis is confined to the mask. ``decoder``: how the
    branch doubles its size (:class:`InpaintBranch`).
    """

    def __init__(self, denoiser: Denoiser = "jdsr_denoiser", upsampler: Upsampler = "jdsr_sr",
                 identity_channels: int = 32, fusion_channels: int = 48, fusion_blocks: int = 3,
                 refine_channels: int = 0, half_channels: int = 32, half_blocks: int = 0,
                 inpaint_channels: int = 64, inpaint_blocks: int = 6, inpaint_refine: int = 32,
                 freeze_base: bool = False, gate: bool = False, decoder: str = "shuffle"):
        super().__init__(denoiser, upsampler, identity_channels, fusion_channels, fusion_blocks,
                         refine_channels, half_channels, half_blocks)
        if inpaint_channels < 2 or inpaint_blocks < 0 or inpaint_refine < 1:
            raise ValueError("inpaint_channels >= 2, inpaint_blocks >= 0, inpaint_refine >= 1")
        self.freeze_base, self.gate = bool(freeze_base), bool(gate)
        base = list(self.parameters())
        self.inpaint = InpaintBranch(inpaint_channels, inpaint_blocks, inpaint_refine, decoder=decoder)
        if self.freeze_base:
            for p in base:
                p.requires_grad_(False)
        self.fidelity = 0.0

    def train(self, mode: bool = True) -> "InpaintAnyScale":
        super().train(mode)
        if self.freeze_base:  # frozen parts stay in inference mode
            for name, m in self.named_children():
                if name != "inpaint":
                    m.eval()
        return self

    def adapt_tensors(self, tensors: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Warm start from another decoder layout (:meth:`InpaintBranch.adapt_tensors`)."""
        return self.inpaint.adapt_tensors(tensors, prefix="inpaint.")

    def stage_modules(self) -> dict[str, nn.Module]:
        return {**super().stage_modules(), "inpaint": self.inpaint}

    def forward(self, lq: Tensor, fidelity: float | None = None) -> dict[str, Tensor]:
        w = self.fidelity if fidelity is None else float(fidelity)
        if not 0.0 <= w <= 1.0:
            raise ValueError(f"fidelity must be in [0, 1], got {w}")
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_base):
            out = super().forward(lq)
        faithful, occ = out["sr"], out["noise_map"]
        y = self.inpaint(lq, faithful, occ)
        delta = y[:, :3]
        occ_logit = torch.logit(occ.float().clamp(1e-4, 1 - 1e-4)).to(y.dtype)
        out["noise_map"] = torch.sigmoid(occ_logit + y[:, 3:])
        out["faithful"], out["delta"] = faithful, delta
        where = out["noise_map"].to(delta.dtype) if self.gate else 1.0
        out["sr"] = clamp01(faithful + (1.0 - w) * where * delta)
        return out


def register(registry) -> None:
    registry.register("generator", "jdsr_inpaint", InpaintAnyScale)
