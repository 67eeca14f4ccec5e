"""What the planner needs to know about the machine: CPU cores, native bfloat16, and the GPU if one is used."""
from __future__ import annotations

import os
from typing import Any

import torch

from pipeline.errors import PipelineError

__all__ = ["cpu_has_native_bf16", "machine_profile", "resolve_device"]


def cpu_has_native_bf16() -> bool:
    """Whether this CPU runs bfloat16 natively (oneDNN's check for AVX512-BF16 / AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> cuda when available, else cpu; a CUDA device without a GPU is a one-line PipelineError."""
    if isinstance(device, torch.device):
        name = str(device)
    else:
        name = str(device).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise PipelineError(f"device {device!r} is not a valid torch device ({e})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise PipelineError(f"device {device!r} requested but no CUDA GPU is available here; use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise PipelineError(f"device {device!r} requested but only {torch.cuda.device_count()} GPU(s) exist")
    return dev


def cpu_count() -> int:
    """CPU cores this process may run on (its affinity mask, which containers and taskset narrow), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def machine_profile(device: str = "auto") -> dict[str, Any]:
    """CPU count, native bf16, and the CUDA device (name, memory in GiB) when ``device`` resolves to one.

    ``device`` is the bundles' key: ``auto`` (cuda when available), ``cpu`` or ``cuda[:i]``; a CUDA device
    without a GPU is a one-line PipelineError.
    """
    dev = resolve_device(device)
    profile: dict[str, Any] = {
        "device": dev.type,
        "cpu_count": cpu_count(),
        "cpu_bf16": cpu_has_native_bf16(),
        "gpu_name": None,
        "gpu_memory_gib": None,
    }
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev.index or 0)
        profile["gpu_name"] = props.name
        profile["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
    return profile
