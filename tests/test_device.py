"""Device helpers: the bf16 check must match the CPU's own flags, since emulated bf16 is slower."""

import pathlib

import pytest
import torch

from facerestore.device import cpu_has_bf16, resolve_device
from facerestore.errors import FaceRestoreError

CPUINFO = pathlib.Path("/proc/cpuinfo")


@pytest.mark.skipif(not CPUINFO.exists(), reason="needs Linux /proc/cpuinfo to read the CPU flags")
def test_cpu_has_bf16_matches_the_kernels_cpu_flags():
    flags = set()
    for line in CPUINFO.read_text().splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    native = bool({"avx512_bf16", "amx_bf16"} & flags)
    assert cpu_has_bf16() == (native and torch.backends.mkldnn.is_available())


def test_resolve_device_cpu_and_missing_cuda():
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(FaceRestoreError, match="no CUDA device"):
            resolve_device("cuda")
