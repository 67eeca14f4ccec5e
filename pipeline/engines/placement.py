"""Where a network's weights live: its device and, for 3D networks on a CPU, its memory format.

PyTorch's CPU convolution leaves oneDNN for a slow fallback when a contiguous (NCDHW) 3D convolution with few
channels is differentiated, in bfloat16 and float32 alike; in channels-last-3d (NDHWC) memory it stays in oneDNN.
From 16 channels on, contiguous is as fast or faster. ``memory_format="auto"`` therefore picks channels-last-3d on a CPU for a 3D network
with a spatial convolution narrower than 16 channels, and the contiguous format everywhere else; the weights'
format carries the activations along (oneDNN answers a channels-last weight with channels-last outputs).
``python -m benchmarks run ct_step_layout`` measures both formats for both widths (docs/benchmarks.md).
"""
from __future__ import annotations

import logging

import torch
from torch import nn

from pipeline.errors import PipelineError

__all__ = ["MEMORY_FORMATS", "NARROW_CHANNELS", "place", "resolve_memory_format"]

logger = logging.getLogger(__name__)

MEMORY_FORMATS = ("auto", "contiguous", "channels_last")
NARROW_CHANNELS = 16  # below this, contiguous 3D convolution backward leaves oneDNN on CPU (module docstring)


def _narrowest_3d_conv(network: nn.Module) -> int | None:
    """Fewest channels (in or out) of the network's spatial (kernel > 1) 3D convolutions; None without any."""
    widths = [min(m.in_channels, m.out_channels) if m.in_channels > 1 else m.out_channels
              for m in network.modules()
              if isinstance(m, nn.Conv3d) and any(k > 1 for k in m.kernel_size)]
    return min(widths) if widths else None


def resolve_memory_format(network: nn.Module, device: str | torch.device,
                          memory_format: str = "auto") -> tuple[torch.memory_format, str]:
    """The memory format for ``network`` on ``device`` and the reason (module docstring)."""
    key = str(memory_format).strip().lower()
    if key not in MEMORY_FORMATS:
        raise PipelineError(f"memory_format {memory_format!r}: use one of {', '.join(MEMORY_FORMATS)}")
    narrowest = _narrowest_3d_conv(network)
    if key == "channels_last":
        if narrowest is None:
            raise PipelineError("memory_format 'channels_last' applies to 3D networks (channels-last-3d); this "
                                "network has no 3D convolution")
        return torch.channels_last_3d, "forced by the memory_format setting"
    if key == "contiguous":
        return torch.contiguous_format, "forced by the memory_format setting"
    if torch.device(device).type == "cpu" and narrowest is not None and narrowest < NARROW_CHANNELS:
        return torch.channels_last_3d, (f"3D convolutions of {narrowest} channels on CPU: their contiguous backward "
                                        "pass leaves oneDNN")
    return torch.contiguous_format, "the default layout"


def place(network: nn.Module, device: str | torch.device, memory_format: str = "auto") -> nn.Module:
    """``network`` on ``device`` in the memory format that ``resolve_memory_format`` picks (logged). On CUDA it also
    switches cuDNN autotuning on unless deterministic algorithms were asked for (training and inference both run
    fixed patch sizes)."""
    fmt, why = resolve_memory_format(network, device, memory_format)
    if torch.device(device).type == "cuda" and not torch.are_deterministic_algorithms_enabled():
        torch.backends.cudnn.benchmark = True  # fixed patch sizes: let cuDNN pick its fastest kernels once
    network = network.to(device)
    if fmt is not torch.contiguous_format:
        network = network.to(memory_format=fmt)
    logger.info("network memory format: %s (%s)", "channels-last-3d" if fmt is torch.channels_last_3d
                else "contiguous", why)
    return network
