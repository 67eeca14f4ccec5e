"""One U-Net for 2D and 3D whose depth (number of poolings) and widths are parameters (Ronneberger et al. 2015).

Presets follow the report: ``precision`` = 2 poolings, ``standard`` = 3, ``context`` = 4.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from torch import nn

from pipeline.errors import PipelineError
from pipeline.networks.blocks import (
    Encoder,
    Stride,
    UpBlock,
    crop_to,
    normalize_strides,
    pad_to_multiple,
    size_multiple,
)

PRESETS: dict[str, int] = {"precision": 2, "standard": 3, "context": 4}


def preset_depth(preset: str) -> int:
    """Depth (number of poolings) of a named preset; unknown names raise a one-line PipelineError."""
    if preset not in PRESETS:
        raise PipelineError(f"unknown U-Net preset {preset!r}: choose one of {', '.join(PRESETS)}")
    return PRESETS[preset]


def widths(base_width: int, depth: int) -> list[int]:
    """Feature widths per level, doubling at each pooling: base, 2*base, ..., 2**depth * base."""
    return [base_width * 2**i for i in range(depth + 1)]


class UNet(nn.Module):
    """U-Net: encoder of ``depth`` max-poolings, decoder with skip concatenation, 1x1 conv to ``out_channels``.

    Input ``(B, in_channels, *spatial)``; output ``(B, out_channels, *spatial)`` (logits). Spatial sizes that are not
    a multiple of the product of the strides are zero-padded and cropped back (``pad_input=True``) or refused.
    With ``deep_supervision`` the training-mode output is a list ``[full, side_1, ...]`` where side outputs are
    logits at coarser decoder levels (for ``monai.losses.DeepSupervisionLoss``); eval mode returns the full output.
    ``fuse_side_outputs`` makes the full output a 1x1 conv over the up-sampled side outputs, as in Oktay et al.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        depth: int = 3,
        base_width: int = 32,
        channels: Sequence[int] | None = None,
        strides: Sequence[Stride] | None = None,
        preset: str | None = None,
        norm: str | tuple = ("instance", {"affine": True}),
        act: str | tuple = ("leakyrelu", {"negative_slope": 0.01, "inplace": True}),
        upsample: str = "deconv",
        dropout: float = 0.0,
        deep_supervision: bool = False,
        num_side_outputs: int = 2,
        fuse_side_outputs: bool = False,
        pad_input: bool = True,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise PipelineError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if preset is not None:
            depth = preset_depth(preset)
        if channels is not None:
            depth = len(channels) - 1
        if depth < 1:
            raise PipelineError(f"depth must be at least 1, got {depth}")
        self.spatial_dims = spatial_dims
        self.depth = depth
        self.channels = list(channels) if channels is not None else widths(base_width, depth)
        self.strides = normalize_strides(strides, depth, spatial_dims)
        self.multiple = size_multiple(self.strides)
        self.pad_input = pad_input
        self.deep_supervision = deep_supervision
        self.fuse_side_outputs = fuse_side_outputs

        self.encoder = Encoder(spatial_dims, in_channels, self.channels, self.strides, norm, act, dropout)
        # decoders[i] produces level i from level i + 1; built coarse-to-fine but indexed by level
        self.decoders = nn.ModuleList(
            UpBlock(
                spatial_dims, self.channels[i + 1], self.channels[i], self.channels[i], self.strides[i],
                norm, act, upsample, dropout,
            )
            for i in range(depth)
        )
        self.head = Convolution(spatial_dims, self.channels[0], out_channels, kernel_size=1, conv_only=True)
        n_side = min(num_side_outputs, depth - 1) if (deep_supervision or fuse_side_outputs) else 0
        self.side_levels = list(range(1, n_side + 1))
        self.side_heads = nn.ModuleList(
            Convolution(spatial_dims, self.channels[lvl], out_channels, kernel_size=1, conv_only=True)
            for lvl in self.side_levels
        )
        self.fuse = (
            Convolution(spatial_dims, out_channels * (n_side + 1), out_channels, kernel_size=1, conv_only=True)
            if fuse_side_outputs and n_side
            else None
        )

    def merge_skip(self, level: int, skip: torch.Tensor, gating: torch.Tensor) -> torch.Tensor:
        """The skip features the decoder concatenates at ``level``; the plain U-Net passes them unchanged.

        ``gating`` is the coarser decoder feature map (level + 1) that is about to be up-sampled.
        """
        return skip

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        spatial = x.shape[2:]
        if self.pad_input:
            x, _ = pad_to_multiple(x, self.multiple)
        elif any(n % m for n, m in zip(spatial, self.multiple)):
            raise PipelineError(
                f"input size {tuple(spatial)} is not a multiple of {self.multiple} (depth {self.depth}); "
                "pad it or build the network with pad_input=True"
            )
        feats = self.encoder(x)
        y = feats[-1]
        decoded: dict[int, torch.Tensor] = {}
        for level in reversed(range(self.depth)):
            skip = self.merge_skip(level, feats[level], y)
            y = self.decoders[level](y, skip)
            decoded[level] = y
        out = self.head(y)
        if not self.side_heads:
            return crop_to(out, spatial)
        sides = [head(decoded[lvl]) for lvl, head in zip(self.side_levels, self.side_heads)]
        if self.fuse is not None:
            mode = "bilinear" if self.spatial_dims == 2 else "trilinear"
            ups = [F.interpolate(s, size=out.shape[2:], mode=mode, align_corners=False) for s in sides]
            out = self.fuse(torch.cat([out, *ups], dim=1))
        out = crop_to(out, spatial)
        if self.deep_supervision and self.training:
            return [out, *sides]
        return out
