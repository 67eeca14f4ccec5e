"""Attention U-Net (Oktay et al. 2018): the custom U-Net with grid attention gates on its skip connections."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pipeline.errors import PipelineError
from pipeline.networks.attention import GridAttentionGate
from pipeline.networks.blocks import crop_to
from pipeline.networks.unet import UNet


class AttentionUNet(UNet):
    """``UNet`` whose skip features at ``attention_levels`` pass a grid attention gate before concatenation.

    Levels count from 0 (finest, full size) to depth - 1; the default gates every skip but the finest. The gate at
    level l is driven by the decoder features of level l + 1 and sub-samples the skip by that level's stride.
    Same arguments as ``UNet`` otherwise. After a forward pass, ``attention_maps[l]`` holds the coefficients
    ``(B, 1, *skip_size)`` of level l (detached), cropped to the part of the grid that covers the input.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        attention_levels: Sequence[int] | None = None,
        inter_channels: Sequence[int] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(spatial_dims, in_channels, out_channels, **kwargs)
        levels = list(range(1, self.depth)) if attention_levels is None else sorted(set(attention_levels))
        bad = [lvl for lvl in levels if not 0 <= lvl < self.depth]
        if bad:
            raise PipelineError(f"attention_levels {bad} outside 0..{self.depth - 1} for depth {self.depth}")
        norm = kwargs.get("norm", ("instance", {"affine": True}))
        self.attention_levels = levels
        self.gates = nn.ModuleDict(
            {
                str(lvl): GridAttentionGate(
                    spatial_dims,
                    in_channels=self.channels[lvl],
                    gating_channels=self.channels[lvl + 1],
                    inter_channels=inter_channels[i] if inter_channels else None,
                    sub_sample=self.strides[lvl],
                    norm=norm,
                )
                for i, lvl in enumerate(levels)
            }
        )
        self.attention_maps: dict[int, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        self.attention_maps = {}
        out = super().forward(x)
        # maps were computed on the padded grid: crop them to the part that covers the input
        for level, alpha in self.attention_maps.items():
            factor = [1] * self.spatial_dims
            for s in self.strides[:level]:
                factor = [f * v for f, v in zip(factor, s)]
            size = [-(-n // f) for n, f in zip(x.shape[2:], factor)]
            self.attention_maps[level] = crop_to(alpha, size)
        return out

    def merge_skip(self, level: int, skip: torch.Tensor, gating: torch.Tensor) -> torch.Tensor:
        gate = self.gates[str(level)] if str(level) in self.gates else None
        if gate is None:
            return skip
        gated, alpha = gate(skip, gating)
        self.attention_maps[level] = alpha.detach()
        return gated
