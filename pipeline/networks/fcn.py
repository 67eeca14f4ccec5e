"""FCN baseline: the U-Net's encoder without skip connections, class scores up-sampled to full size (Long et al.)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from torch import nn

from pipeline.errors import PipelineError
from pipeline.networks.blocks import (
    DEFAULT_ACT,
    DEFAULT_NORM,
    Encoder,
    LayerSpec,
    Stride,
    constructor_args,
    crop_to,
    normalize_strides,
    pad_to_multiple,
    size_multiple,
)
from pipeline.networks.unet import resolve_channels


class FCN(nn.Module):
    """Fully convolutional baseline: the U-Net's encoder, a 1x1 classifier on its coarsest features, no skips.

    The class scores are computed on the coarsest grid only and (bi/tri)linearly interpolated
    (``align_corners=False``) to the input size, so the output cannot carry detail finer than that grid: this is
    the single-stream FCN of Long et al., "Fully Convolutional Networks for Semantic Segmentation", CVPR 2015, with
    the encoder, presets and strides of ``UNet`` so the two compare like for like.

    Input ``(B, in_channels, *S)``; output logits ``(B, out_channels, *S)``. The classifier sees
    ``(B, base_width * 2**depth, *P / prod(strides))`` where ``P`` is ``S`` rounded up to ``net.multiple`` (the
    product of the strides per axis): inputs of other sizes are zero-padded at the far end and the output is
    cropped back to ``S``. Scriptable with ``torch.jit.script``.

    Args:
        spatial_dims: number of spatial dimensions, 2 or 3.
        in_channels: number of input channels.
        out_channels: number of output channels (classes, background included).
        depth: number of poolings. Defaults to 3 (or the preset's depth); must agree with ``preset`` when both
            are given.
        base_width: width of the finest encoder level; level ``l`` has ``base_width * 2**l`` channels.
            Defaults to 32.
        strides: pooling factor per pooling, finest first, each an int or one int per axis; shorter lists are
            completed with 2. Defaults to 2 everywhere.
        preset: ``"precision"`` (depth 2), ``"standard"`` (depth 3) or ``"context"`` (depth 4).
        norm: normalization after each convolution, a MONAI norm spec. Defaults to ``DEFAULT_NORM``.
        act: activation after each normalization, a MONAI activation spec. Defaults to ``DEFAULT_ACT``.
        dropout: dropout probability after every activation. Defaults to 0.

    Raises:
        PipelineError: unknown preset; ``preset`` with a different ``depth``; depth below 1; strides that do not
            fit ``spatial_dims`` or outnumber the poolings.

    Examples::

        >>> import torch
        >>> net = FCN(spatial_dims=2, in_channels=1, out_channels=2, preset="precision", base_width=4)
        >>> net.channels, net.multiple
        ([4, 8, 16], (4, 4))
        >>> net(torch.zeros(1, 1, 30, 33)).shape
        torch.Size([1, 2, 30, 33])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        depth: int | None = None,
        base_width: int | None = None,
        strides: Sequence[Stride] | None = None,
        preset: str | None = None,
        norm: LayerSpec = DEFAULT_NORM,
        act: LayerSpec = DEFAULT_ACT,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.init_args = constructor_args(locals())
        if spatial_dims not in (2, 3):
            raise PipelineError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        self.channels = resolve_channels(type(self).__name__, depth, preset, None, base_width)
        self.depth = len(self.channels) - 1
        self.strides = normalize_strides(strides, self.depth, spatial_dims)
        self.multiple = size_multiple(self.strides)
        self.mode = "bilinear" if spatial_dims == 2 else "trilinear"
        self.encoder = Encoder(spatial_dims, in_channels, self.channels, self.strides, norm, act, dropout)
        self.classifier = Convolution(spatial_dims, self.channels[-1], out_channels, kernel_size=1, conv_only=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial = x.shape[2:]
        x, _ = pad_to_multiple(x, list(self.multiple))
        scores = self.classifier(self.encoder(x)[-1])
        return crop_to(F.interpolate(scores, size=x.shape[2:], mode=self.mode, align_corners=False), spatial)
