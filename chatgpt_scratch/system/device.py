"""Picking the device: --device auto tries cuda, then mps, then cpu."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch

from chatgpt_scratch.errors import ScratchError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ScratchError("--device cuda: no CUDA GPU is visible to PyTorch; use --device cpu or auto")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ScratchError("--device mps: Apple's Metal backend is not available here; use --device cpu or auto")
    if name not in DEVICE_CHOICES and not name.startswith("cuda:"):
        raise ScratchError(f"unknown device {name!r}; choose one of {', '.join(DEVICE_CHOICES)} (or cuda:N)")
    return torch.device(name)


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU does bfloat16 math in hardware (x86 AVX512-BF16 or AMX), as Linux reports it.

    There `--dtype bfloat16` (bf16 autocast) trains about 1.4x faster than float32 (measured on a
    Zen 4), and training says so; on other CPUs bf16 is emulated and slower.
    """
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
