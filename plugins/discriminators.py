"""Built-in discriminators: PatchGAN and a per-pixel U-Net critic with spectral norm, and a global
critic on a timm backbone.

Both return raw logits (no sigmoid): the adversarial loss decides how to read them.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm as _sn

from facerestore.interfaces import Discriminator


class PatchDiscriminator(Discriminator):
    """PatchGAN (pix2pix) with spectral norm: one real/fake logit per overlapping image patch.

    ``layers`` stride-2 4x4 convs starting at ``channels`` (doubling, capped at 8x), then two
    stride-1 convs; with 3 layers each logit sees a 70x70 patch. Spectral norm instead of batch
    norm keeps the critic Lipschitz and independent of the batch composition.
    """

    def __init__(self, channels: int = 64, layers: int = 3, spectral_norm: bool = True, in_channels: int = 3):
        super().__init__()
        if channels < 1 or layers < 1:
            raise ValueError("channels and layers must be >= 1")
        sn = _sn if spectral_norm else (lambda m: m)
        mods: list[nn.Module] = [sn(nn.Conv2d(in_channels, channels, 4, 2, 1)), nn.LeakyReLU(0.2, inplace=True)]
        c = channels
        for i in range(1, layers):
            out = channels * min(2 ** i, 8)
            mods += [sn(nn.Conv2d(c, out, 4, 2, 1)), nn.LeakyReLU(0.2, inplace=True)]
            c = out
        out = channels * min(2 ** layers, 8)
        mods += [sn(nn.Conv2d(c, out, 4, 1, 1)), nn.LeakyReLU(0.2, inplace=True), sn(nn.Conv2d(out, 1, 4, 1, 1))]
        self.net = nn.Sequential(*mods)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x * 2 - 1)


class UNetDiscriminator(Discriminator):
    """U-Net critic with spectral norm (Real-ESRGAN, Schonfeld et al. 2020): one logit per pixel at
    the input's resolution, (B, 1, H, W), so the adversarial term can judge the occluded region
    where it is, at full resolution, with the whole face as context (the encoder's 8x-downsampled
    bottom sees about 100 px).

    ``channels`` at full resolution, doubling at each of the three stride-2 levels; the decoder
    upsamples bilinearly and adds the encoder's maps (skip connections). H and W divisible by 8.
    """

    def __init__(self, channels: int = 32, spectral_norm: bool = True, in_channels: int = 3):
        super().__init__()
        if channels < 1:
            raise ValueError("channels must be >= 1")
        sn = _sn if spectral_norm else (lambda m: m)
        c = channels
        self.conv0 = nn.Conv2d(in_channels, c, 3, 1, 1)
        self.down = nn.ModuleList([sn(nn.Conv2d(c * 2 ** i, c * 2 ** (i + 1), 4, 2, 1, bias=False)) for i in range(3)])
        self.up = nn.ModuleList([sn(nn.Conv2d(c * 2 ** (i + 1), c * 2 ** i, 3, 1, 1, bias=False)) for i in reversed(range(3))])
        self.head = nn.Sequential(sn(nn.Conv2d(c, c, 3, 1, 1, bias=False)), nn.LeakyReLU(0.2, inplace=True),
                                  sn(nn.Conv2d(c, c, 3, 1, 1, bias=False)), nn.LeakyReLU(0.2, inplace=True),
                                  nn.Conv2d(c, 1, 3, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] % 8 or x.shape[-2] % 8:
            raise ValueError(f"the U-Net critic needs H and W divisible by 8, got {tuple(x.shape[-2:])}")
        act = nn.functional.leaky_relu
        skips = [act(self.conv0(x * 2 - 1), 0.2)]
        for conv in self.down:
            skips.append(act(conv(skips[-1]), 0.2))
        y = skips.pop()
        for conv in self.up:
            y = nn.functional.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False)
            y = act(conv(y), 0.2) + skips.pop()
        return self.head(y)


class TimmDiscriminator(Discriminator):
    """Global real/fake critic on a timm backbone trained from scratch (pretrained=False): (B, 1) logits.

    ``backbone`` is any timm model that supports ``features_only``; the deepest feature map is
    average- and max-pooled and a linear head gives one logit per image. No weights are
    downloaded: the backbone starts from random initialisation.
    """

    def __init__(self, backbone: str = "resnet18", spectral_norm_head: bool = True):
        super().__init__()
        import timm  # heavy: only when this discriminator is used

        try:
            self.body = timm.create_model(backbone, pretrained=False, features_only=True)
        except RuntimeError as exc:  # unknown model name, or no features_only support
            raise ValueError(f"timm backbone {backbone!r}: {exc}") from None
        channels = self.body.feature_info.channels()[-1]
        head = nn.Linear(2 * channels, 1)
        self.head = _sn(head) if spectral_norm_head else head
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        f = self.body((x - self.mean) / self.std)[-1]
        pooled = torch.cat([f.mean((2, 3)), f.amax((2, 3))], 1)
        return self.head(pooled)


def register(registry) -> None:
    registry.register("discriminator", "patch", PatchDiscriminator)
    registry.register("discriminator", "timm", TimmDiscriminator)
    registry.register("discriminator", "unet", UNetDiscriminator)
