"""One rule for ``--device`` across train, eval, restore and the benchmarks.

``auto`` means CUDA when present, else CPU (MPS only when asked for: not every kornia op we use
runs there). A device the machine lacks is a user error, not a traceback from deep inside torch.
"""

from __future__ import annotations

import pathlib
import platform
from typing import Optional

import torch

from .errors import FaceRestoreError


def resolve_device(device: "str | torch.device | None" = "auto", local_rank: Optional[int] = None) -> torch.device:
    """``auto``/``cpu``/``cuda``/``cuda:N``/``mps`` -> :class:`torch.device`.

    ``local_rank`` (distributed training) picks the GPU of this process for a bare ``cuda``."""
    if isinstance(device, torch.device):
        return device
    name = "auto" if device in (None, "", "auto") else str(device)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise FaceRestoreError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise FaceRestoreError(f"--device {name}: no CUDA device is available on this machine; use --device cpu")
        if dev.index is None and local_rank is not None:
            dev = torch.device("cuda", local_rank)
    elif dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise FaceRestoreError(f"--device {name}: MPS is not available on this machine; use --device cpu")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise FaceRestoreError(f"--device {name}: unsupported device type {dev.type!r}; use auto, cpu, cuda or mps")
    return dev


def cpu_has_bf16() -> bool:
    """Whether this CPU runs bf16 convolutions natively: AVX512-BF16 or AMX on x86, and what
    oneDNN reports elsewhere (its check is exact on ARM).

    On x86 not oneDNN's ``_is_mkldnn_bf16_supported()``: that is true on any AVX-512 CPU, where
    bf16 is emulated and a masked_any training step ran 2.8x slower than float32 (6.3 vs 17.9
    img/s). Torch without the CPU-feature helpers falls back to the kernel's CPU flags."""
    if not torch.backends.mkldnn.is_available():
        return False
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if all(check is not None for check in checks):
        return any(check() for check in checks)
    return bool({"avx512_bf16", "amx_bf16"} & _cpu_flags())


def _cpu_flags() -> set[str]:
    """The ``flags`` of /proc/cpuinfo (empty where there is none)."""
    try:
        text = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {f for line in text.splitlines() if line.startswith("flags") for f in line.split(":", 1)[1].split()}
