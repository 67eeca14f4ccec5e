"""FCN baseline: the U-Net's encoder without skip connections, class scores up-sampled to full size (Long et al.)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from torch import nn

from pipeline.networks.blocks import Encoder, Stride, crop_to, normalize_strides, pad_to_multiple, size_multiple
from pipeline.networks.unet import preset_depth, widths


class FCN(nn.Module):
    """Encoder of ``depth`` poolings, 1x1 classifier on the coarsest features, (bi/tri)linear up-sampling to input size.

    Input ``(B, in_channels, *spatial)``; output logits ``(B, out_channels, *spatial)``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        depth: int = 3,
        base_width: int = 32,
        strides: Sequence[Stride] | None = None,
        preset: str | None = None,
        norm: str | tuple = ("instance", {"affine": True}),
        act: str | tuple = ("leakyrelu", {"negative_slope": 0.01, "inplace": True}),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if preset is not None:
            depth = preset_depth(preset)
        self.channels = widths(base_width, depth)
        self.strides = normalize_strides(strides, depth, spatial_dims)
        self.multiple = size_multiple(self.strides)
        self.mode = "bilinear" if spatial_dims == 2 else "trilinear"
        self.encoder = Encoder(spatial_dims, in_channels, self.channels, self.strides, norm, act, dropout)
        self.classifier = Convolution(spatial_dims, self.channels[-1], out_channels, kernel_size=1, conv_only=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial = x.shape[2:]
        x, _ = pad_to_multiple(x, self.multiple)
        scores = self.classifier(self.encoder(x)[-1])
        return crop_to(F.interpolate(scores, size=x.shape[2:], mode=self.mode, align_corners=False), spatial)
