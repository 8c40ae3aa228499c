"""Device helpers: the bf16 check must match the CPU's own flags, since emulated bf16 is slower."""

import pathlib
import platform

import pytest
import torch

from facerestore import device
from facerestore.device import cpu_has_bf16, resolve_device
from facerestore.errors import FaceRestoreError

NATIVE_BF16 = {"avx512_bf16", "amx_bf16"}
x86_linux = pytest.mark.skipif(not pathlib.Path("/proc/cpuinfo").exists() or platform.machine() != "x86_64",
                               reason="needs an x86_64 Linux CPU (/proc/cpuinfo flags)")


@x86_linux
def test_cpu_has_bf16_matches_the_kernels_cpu_flags():
    flags = device._cpu_flags()
    assert "sse2" in flags  # the flags were read
    assert cpu_has_bf16() == (bool(NATIVE_BF16 & flags) and torch.backends.mkldnn.is_available())


@x86_linux
def test_cpu_has_bf16_falls_back_to_the_flags_without_torchs_helpers(monkeypatch):
    expected = cpu_has_bf16()
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    monkeypatch.setattr(device, "_cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    assert cpu_has_bf16() is torch.backends.mkldnn.is_available()
    monkeypatch.setattr(device, "_cpu_flags", lambda: {"avx512f"})
    assert cpu_has_bf16() is False
    monkeypatch.undo()
    assert cpu_has_bf16() == expected


def test_cpu_has_bf16_asks_onednn_off_x86(monkeypatch):
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    for answer in (True, False):
        monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda a=answer: a)
        assert cpu_has_bf16() is (answer and torch.backends.mkldnn.is_available())


def test_resolve_device_cpu_and_missing_cuda():
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(FaceRestoreError, match="no CUDA device"):
            resolve_device("cuda")
