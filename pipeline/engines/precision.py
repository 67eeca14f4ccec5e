"""Mixed precision in one place: which autocast mode a run uses, and an inferer wrapper that applies it.

MONAI's SupervisedTrainer/SupervisedEvaluator autocast only on CUDA (``amp=True``). CPUs that run bfloat16
natively (AVX512-BF16, AMX) train 3D convolutions several times faster under ``torch.autocast("cpu",
torch.bfloat16)`` (docs/benchmarks.md),
so the autocast here is applied by ``AutocastInferer`` around the network call, on any device; on CUDA with
float16 the trainer's own ``amp=True`` adds the gradient scaler (``Precision.grad_scaling``).
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from monai.data import MetaTensor
from monai.inferers import Inferer
from monai.utils import convert_to_dst_type

from pipeline.errors import PipelineError
from pipeline.planning.machine import cpu_has_native_bf16, resolve_device

logger = logging.getLogger(__name__)

_ALIASES = {
    "auto": "auto", "true": "auto", "on": "auto",
    "float32": "float32", "fp32": "float32", "off": "float32", "false": "float32", "none": "float32",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float16": "float16", "fp16": "float16",
}


@dataclass(frozen=True)
class Precision:
    """The numeric mode of a run: ``float32``, ``bfloat16`` or ``float16`` autocast, on ``device``."""

    mode: str
    device: torch.device

    @property
    def dtype(self) -> torch.dtype:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[self.mode]

    @property
    def grad_scaling(self) -> bool:
        """float16 needs a gradient scaler (MONAI trainer ``amp=True``); bfloat16 keeps float32's range."""
        return self.mode == "float16"

    def autocast(self) -> contextlib.AbstractContextManager:
        """The autocast context for this mode (a no-op for float32)."""
        if self.mode == "float32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def __str__(self) -> str:
        return f"{self.mode} on {self.device}"


def resolve_precision(amp: str | bool = "auto", device: str | torch.device = "auto") -> Precision:
    """Pick the autocast mode: auto -> float16 on CUDA, bfloat16 on a bf16-native CPU, float32 elsewhere.

    Forced modes are checked against the machine; one the machine cannot run is a one-line PipelineError.
    """
    dev = resolve_device(device)
    key = str(amp).strip().lower()
    if key not in _ALIASES:
        raise PipelineError(f"amp {amp!r} is not a precision mode: use auto, float32, bfloat16 or float16")
    mode = _ALIASES[key]
    native = cpu_has_native_bf16()
    if mode == "auto":
        if dev.type == "cuda":
            mode, why = "float16", "CUDA autocast with gradient scaling"
        elif dev.type == "cpu" and native:
            mode, why = "bfloat16", "CPU runs bfloat16 natively (AVX512-BF16/AMX)"
        else:
            mode, why = "float32", f"no native reduced precision on {dev.type}"
    elif mode == "float16" and dev.type != "cuda":
        raise PipelineError(f"amp 'float16' needs a CUDA device, but the device is {dev}; use bfloat16 or float32")
    elif mode == "bfloat16" and dev.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise PipelineError(f"amp 'bfloat16' requested but GPU {torch.cuda.get_device_name(dev)} lacks bfloat16")
    elif mode == "bfloat16" and dev.type == "cpu" and not native:
        why = "forced; this CPU emulates bfloat16, expect it to be slower than float32"
    else:
        why = "forced by the amp setting"
    precision = Precision(mode, dev)
    logger.info("precision: %s (%s)", precision, why)
    return precision


def _to_float32(out: Any) -> Any:
    if isinstance(out, torch.Tensor):
        return out.float() if out.is_floating_point() and out.dtype != torch.float32 else out
    if isinstance(out, (list, tuple)):
        return type(out)(_to_float32(o) for o in out)
    if isinstance(out, dict):
        return {k: _to_float32(v) for k, v in out.items()}
    return out


class AutocastInferer(Inferer):
    """Runs an inner MONAI inferer with the network call under ``precision``'s autocast.

    Each network output is cast back to float32 before the inner inferer uses it (sliding-window stitching and
    losses stay in float32), and MetaTensor bookkeeping is kept off the network's hot path.
    """

    def __init__(self, inferer: Inferer, precision: Precision) -> None:
        super().__init__()
        self.inferer = inferer
        self.precision = precision

    def _wrap(self, network: Callable[..., Any]) -> Callable[..., Any]:
        def run(x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            if isinstance(x, MetaTensor):
                x = x.as_tensor()
            with self.precision.autocast():
                out = network(x, *args, **kwargs)
            return _to_float32(out)

        return run

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        out = self.inferer(inputs, self._wrap(network), *args, **kwargs)
        if isinstance(inputs, MetaTensor) and isinstance(out, torch.Tensor) and not isinstance(out, MetaTensor):
            out = convert_to_dst_type(out, inputs)[0]
        return out
