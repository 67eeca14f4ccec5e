"""Building blocks shared by every network here: conv-norm-act stacks, the encoder, the up-sampling decoder stage.

The convolutions, norms and activations come from MONAI's ``Convolution`` block; what is ours is the wiring that
lets depth, widths and per-level (possibly anisotropic) strides be parameters of one encoder/decoder.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Pool
from torch import nn

from pipeline.errors import PipelineError

Stride = int | Sequence[int]


def normalize_strides(strides: Sequence[Stride] | None, depth: int, spatial_dims: int) -> list[tuple[int, ...]]:
    """Per-level pooling factors as tuples of length ``spatial_dims``, finest level first.

    None means 2 everywhere; a list shorter than ``depth`` is completed with 2s, so a data set can say
    "no pooling along z at the first level" (``[[2, 2, 1]]``) whatever the depth of the network.
    """
    strides = list(strides or [])
    if len(strides) > depth:
        raise PipelineError(f"strides has {len(strides)} entries but the network has depth {depth}")
    strides += [2] * (depth - len(strides))
    out = []
    for s in strides:
        t = (int(s),) * spatial_dims if isinstance(s, int) else tuple(int(v) for v in s)
        if len(t) != spatial_dims or min(t) < 1:
            raise PipelineError(f"stride {s!r} does not fit spatial_dims={spatial_dims}")
        out.append(t)
    return out


def size_multiple(strides: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
    """The input size multiple per axis that the pooling factors need (product of strides per axis)."""
    mult = [1] * len(strides[0])
    for s in strides:
        mult = [m * v for m, v in zip(mult, s)]
    return tuple(mult)


def pad_to_multiple(x: torch.Tensor, multiple: Sequence[int]) -> tuple[torch.Tensor, list[int]]:
    """Zero-pad the spatial axes of ``x`` (at the far end) up to ``multiple``; return the padded tensor and pads."""
    spatial = x.shape[2:]
    pads = [(-n) % m for n, m in zip(spatial, multiple)]
    if any(pads):
        # F.pad takes (last_lo, last_hi, ..., first_lo, first_hi)
        flat = []
        for p in reversed(pads):
            flat += [0, p]
        x = F.pad(x, flat)
    return x, pads


def crop_to(x: torch.Tensor, spatial: Sequence[int]) -> torch.Tensor:
    """Crop the spatial axes of ``x`` back to ``spatial`` (undoes ``pad_to_multiple``)."""
    if tuple(x.shape[2:]) == tuple(spatial):
        return x
    return x[(slice(None), slice(None)) + tuple(slice(0, n) for n in spatial)]


class ConvBlock(nn.Sequential):
    """Two 3x3(x3) convolution-norm-activation layers: the unit every level of every network is made of."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        norm: str | tuple = ("instance", {"affine": True}),
        act: str | tuple = ("leakyrelu", {"negative_slope": 0.01, "inplace": True}),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        for i, (cin, cout) in enumerate(((in_channels, out_channels), (out_channels, out_channels))):
            self.add_module(
                f"conv{i}",
                # no bias: the norm right after it removes any per-channel offset
                Convolution(
                    spatial_dims, cin, cout, kernel_size=3, norm=norm, act=act, dropout=dropout or None,
                    bias=not norm,
                ),
            )


class Encoder(nn.Module):
    """Contracting path: ConvBlock at full size, then (max-pool by the level's stride, ConvBlock) per level.

    ``forward`` returns the feature map of every level, finest first: ``len(channels)`` tensors.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        channels: Sequence[int],
        strides: Sequence[tuple[int, ...]],
        norm: str | tuple,
        act: str | tuple,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if len(strides) != len(channels) - 1:
            raise PipelineError(f"{len(channels)} widths need {len(channels) - 1} strides, got {len(strides)}")
        pool = Pool[Pool.MAX, spatial_dims]
        self.stem = ConvBlock(spatial_dims, in_channels, channels[0], norm, act, dropout)
        self.downs = nn.ModuleList(
            nn.Sequential(pool(kernel_size=s, stride=s), ConvBlock(spatial_dims, cin, cout, norm, act, dropout))
            for s, cin, cout in zip(strides, channels[:-1], channels[1:])
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = [self.stem(x)]
        for down in self.downs:
            feats.append(down(feats[-1]))
        return feats


class UpBlock(nn.Module):
    """One decoder level: up-sample the coarser features, concatenate the (possibly gated) skip, ConvBlock.

    ``upsample="deconv"`` learns the up-sampling (transposed convolution, kernel = stride); ``"interp"`` uses
    (bi/tri)linear interpolation followed by a 1x1 convolution.
    """

    def __init__(
        self,
        spatial_dims: int,
        coarse_channels: int,
        skip_channels: int,
        out_channels: int,
        stride: tuple[int, ...],
        norm: str | tuple,
        act: str | tuple,
        upsample: str = "deconv",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if upsample == "deconv":
            self.up = Convolution(
                spatial_dims, coarse_channels, out_channels, strides=stride, kernel_size=stride,
                padding=0, output_padding=0, conv_only=True, is_transposed=True,
            )
        elif upsample == "interp":
            mode = "bilinear" if spatial_dims == 2 else "trilinear"
            self.up = nn.Sequential(
                nn.Upsample(scale_factor=tuple(float(s) for s in stride), mode=mode, align_corners=False),
                Convolution(spatial_dims, coarse_channels, out_channels, kernel_size=1, conv_only=True),
            )
        else:
            raise PipelineError(f"upsample must be 'deconv' or 'interp', got {upsample!r}")
        self.conv = ConvBlock(spatial_dims, out_channels + skip_channels, out_channels, norm, act, dropout)

    def forward(self, coarse: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = self.up(coarse)
        if up.shape[2:] != skip.shape[2:]:
            up = crop_to(up, skip.shape[2:])
        return self.conv(torch.cat([skip, up], dim=1))
