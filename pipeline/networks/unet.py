"""One U-Net for 2D and 3D whose depth (number of poolings) and widths are parameters (Ronneberger et al. 2015).

Presets follow the report: ``precision`` = 2 poolings, ``standard`` = 3, ``context`` = 4. No
``from __future__ import annotations`` here: TorchScript reads class-level annotations as type objects, not strings.
"""
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
    UpBlock,
    UpBlockInterface,
    constructor_args,
    crop_to,
    normalize_strides,
    pad_to_multiple,
    size_multiple,
)

PRESETS: dict[str, int] = {"precision": 2, "standard": 3, "context": 4}
#: depth and width of level 0 when neither ``preset``/``depth`` nor ``channels`` is given
DEFAULT_DEPTH = 3
DEFAULT_BASE_WIDTH = 32


def preset_depth(preset: str) -> int:
    """Depth (number of poolings) of a named preset; unknown names raise a one-line PipelineError."""
    if preset not in PRESETS:
        raise PipelineError(f"unknown U-Net preset {preset!r}: choose one of {', '.join(PRESETS)}")
    return PRESETS[preset]


def widths(base_width: int, depth: int) -> list[int]:
    """Feature widths per level, doubling at each pooling: base, 2*base, ..., 2**depth * base."""
    return [base_width * 2**i for i in range(depth + 1)]


def resolve_depth(owner: str, depth: int | None, preset: str | None) -> int:
    """The number of poolings that ``preset`` or ``depth`` ask for (``DEFAULT_DEPTH`` when neither is given).

    A preset together with a depth that is not the preset's is refused with a one-line PipelineError that names
    both; ``owner`` (the class name) starts the message.
    """
    if preset is None:
        resolved = DEFAULT_DEPTH if depth is None else int(depth)
    else:
        resolved = preset_depth(preset)
        if depth is not None and int(depth) != resolved:
            raise PipelineError(
                f"{owner}: preset {preset!r} (depth {resolved}) and depth={depth} disagree: give one of them"
            )
    if resolved < 1:
        raise PipelineError(f"{owner}: depth must be at least 1, got {resolved}")
    return resolved


def resolve_channels(
    owner: str,
    depth: int | None,
    preset: str | None,
    channels: Sequence[int] | None,
    base_width: int | None,
) -> list[int]:
    """The width of every level, finest first, from either ``channels`` or ``preset``/``depth`` and ``base_width``.

    ``channels`` fixes the depth and every width by itself, so giving it together with ``preset``, ``depth`` or
    ``base_width`` is refused (one line naming both) instead of one of them being silently ignored.
    """
    if channels is None:
        base = DEFAULT_BASE_WIDTH if base_width is None else int(base_width)
        if base < 1:
            raise PipelineError(f"{owner}: base_width must be at least 1, got {base}")
        return widths(base, resolve_depth(owner, depth, preset))
    chosen = [int(c) for c in channels]
    for name, value in (("preset", preset), ("depth", depth), ("base_width", base_width)):
        if value is not None:
            raise PipelineError(
                f"{owner}: channels={chosen} and {name}={value!r} both given: channels sets the depth and every "
                f"width, so give channels alone or {name} without channels"
            )
    if len(chosen) < 2:
        raise PipelineError(f"{owner}: channels needs at least 2 widths (depth 1), got {chosen}")
    if min(chosen) < 1:
        raise PipelineError(f"{owner}: every width in channels must be at least 1, got {chosen}")
    return chosen


def nested_log_probs(z: torch.Tensor) -> torch.Tensor:
    """Class log-probabilities ``(B, C, *S)`` from the logits ``(B, C - 1, *S)`` of nested regions (region k is
    "label >= k", nnU-Net's region-based training for pancreas + tumour): with ``s_k = sigmoid(z_k)``,
    ``p(0) = 1 - s_1``, ``p(k) = s_1 ... s_k (1 - s_{k+1})``, ``p(C - 1) = s_1 ... s_{C-1}``. They sum to 1, so a
    softmax of them gives them back and every softmax consumer (validation, TTA, ensembles, the maximum tumour
    probability) reads the regions unchanged."""
    zeros = torch.zeros_like(z[:, :1])
    inside = torch.cat([zeros, torch.cumsum(F.logsigmoid(z), dim=1)], dim=1)
    outside = torch.cat([F.logsigmoid(-z), zeros], dim=1)
    return inside + outside


class UNet(nn.Module):
    """U-Net for 2D and 3D images with a configurable number of poolings, widths and (anisotropic) strides.

    Encoder: at every level two 3x3(x3) convolution-norm-activation layers, then a max-pool by that level's stride.
    Decoder: up-sampling by the same stride (MONAI ``UpSample``), concatenation with the encoder features of the
    level (the skip connection), two convolution-norm-activation layers. A 1x1 convolution gives the logits.
    Based on Ronneberger et al., "U-Net: Convolutional Networks for Biomedical Image Segmentation", MICCAI 2015.

    Input ``(B, in_channels, *S)`` with ``S`` of length ``spatial_dims``; output the logits
    ``(B, out_channels, *S)``. The poolings need every axis of ``S`` to be a multiple of the product of the strides
    along that axis (``net.multiple``): with ``strides=[(2, 2, 1)]`` and depth 3 that is ``(8, 8, 4)``. With
    ``pad_input=True`` other sizes are zero-padded at the far end of each axis and the output is cropped back to
    ``S``; with ``pad_input=False`` they raise a PipelineError. ``torch.jit.script(net)`` gives the same outputs for
    any input size (what ``python -m monai.bundle ckpt_export`` writes).

    Args:
        spatial_dims: number of spatial dimensions, 2 or 3.
        in_channels: number of input channels (image modalities).
        out_channels: number of output channels (classes, background included).
        depth: number of poolings. Defaults to 3 (or the preset's depth). Must agree with ``preset`` when both are
            given; must not be given with ``channels``.
        base_width: width of the finest level; level ``l`` has ``base_width * 2**l`` channels. Defaults to 32.
            Must not be given with ``channels``.
        channels: the width of every level, finest first, instead of ``preset``/``depth``/``base_width``: its
            length is ``depth + 1``. Giving it together with any of those three is an error.
        strides: pooling factor per pooling, finest first; each an int or one int per axis. Shorter lists are
            completed with 2, so ``[(2, 2, 1)]`` means "no pooling along the last axis at the first level".
            Defaults to 2 everywhere.
        preset: ``"precision"`` (depth 2), ``"standard"`` (depth 3) or ``"context"`` (depth 4).
        norm: normalization after each convolution, a MONAI norm spec. Defaults to ``DEFAULT_NORM``
            (instance norm with affine parameters).
        act: activation after each normalization, a MONAI activation spec. Defaults to ``DEFAULT_ACT``
            (leaky ReLU, slope 0.01).
        upsample: ``"deconv"`` (transposed convolution, kernel = stride) or ``"interp"`` ((bi/tri)linear
            interpolation followed by a 1x1 convolution). Defaults to ``"deconv"``.
        dropout: dropout probability after every activation. Defaults to 0 (no dropout).
        deep_supervision: in training mode return ``[full, side_1, ..., side_n]`` instead of ``full``: ``side_l``
            are logits ``(B, out_channels, *P / prod(strides[:l]))`` from 1x1 convolutions on the decoder output
            of level ``l`` (``P``: the padded input size, ``S`` rounded up to ``net.multiple``), as
            ``monai.losses.DeepSupervisionLoss`` expects. Eval mode returns ``full`` only. Defaults to False.
        num_side_outputs: number of side outputs ``n`` (levels 1..n), at most ``depth - 1``; larger values are
            capped. Used with ``deep_supervision`` or ``fuse_side_outputs``. Defaults to 2.
        fuse_side_outputs: make the full-size output a 1x1 convolution over the full-size logits and the side
            logits interpolated to full size, as in Oktay et al. 2018. Defaults to False.
        pad_input: pad inputs whose size is not a multiple of ``net.multiple`` (True) or refuse them (False).
            Defaults to True.
        nested_regions: the heads predict one sigmoid per nested region (label >= 1, label >= 2, ...) and the
            network returns the class log-probabilities they imply (``nested_log_probs``). Defaults to False.

    Raises:
        PipelineError: unknown preset; ``channels`` together with ``preset``, ``depth`` or ``base_width``;
            ``preset`` with a different ``depth``; depth below 1; strides that do not fit ``spatial_dims`` or
            outnumber the poolings; an unknown ``upsample`` mode.

    Examples::

        >>> import torch
        >>> net = UNet(spatial_dims=3, in_channels=1, out_channels=3, preset="standard", base_width=4,
        ...            strides=[(2, 2, 1)], deep_supervision=True)
        >>> net.channels, net.multiple
        ([4, 8, 16, 32], (8, 8, 4))
        >>> [tuple(y.shape) for y in net.train()(torch.zeros(1, 1, 32, 32, 12))]
        [(1, 3, 32, 32, 12), (1, 3, 16, 16, 12), (1, 3, 8, 8, 6)]
        >>> net.eval()(torch.zeros(1, 1, 30, 27, 10)).shape  # padded to (32, 32, 12), cropped back
        torch.Size([1, 3, 30, 27, 10])
        >>> UNet(2, 1, 2, channels=[8, 16, 32]).depth
        2
    """

    side_levels: list[int]  # declared for TorchScript, which cannot type an empty list by itself

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        depth: int | None = None,
        base_width: int | None = None,
        channels: Sequence[int] | None = None,
        strides: Sequence[Stride] | None = None,
        preset: str | None = None,
        norm: LayerSpec = DEFAULT_NORM,
        act: LayerSpec = DEFAULT_ACT,
        upsample: str = "deconv",
        dropout: float = 0.0,
        deep_supervision: bool = False,
        num_side_outputs: int = 2,
        fuse_side_outputs: bool = False,
        pad_input: bool = True,
        nested_regions: bool = False,
    ) -> None:
        super().__init__()
        self.init_args = constructor_args(locals())
        if spatial_dims not in (2, 3):
            raise PipelineError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        self.channels = resolve_channels(type(self).__name__, depth, preset, channels, base_width)
        depth = len(self.channels) - 1
        self.spatial_dims = spatial_dims
        self.depth = depth
        self.strides = normalize_strides(strides, depth, spatial_dims)
        self.multiple = size_multiple(self.strides)
        self.pad_input = pad_input
        self.deep_supervision = deep_supervision
        self.fuse_side_outputs = fuse_side_outputs
        self.nested_regions = nested_regions
        # nested regions: one logit per region (label >= 1, ..., label >= C - 1), turned into C log-probabilities
        heads = out_channels - 1 if nested_regions else out_channels
        if nested_regions and heads < 1:
            raise PipelineError("nested_regions needs out_channels >= 2")

        self.encoder = Encoder(spatial_dims, in_channels, self.channels, self.strides, norm, act, dropout)
        # decoders[i] produces level i from level i + 1; built coarse-to-fine but indexed by level
        self.decoders = nn.ModuleList(
            UpBlock(
                spatial_dims, self.channels[i + 1], self.channels[i], self.channels[i], self.strides[i],
                norm, act, upsample, dropout,
            )
            for i in range(depth)
        )
        self.head = Convolution(spatial_dims, self.channels[0], heads, kernel_size=1, conv_only=True)
        n_side = min(num_side_outputs, depth - 1) if (deep_supervision or fuse_side_outputs) else 0
        self.side_levels = list(range(1, n_side + 1))
        self.side_heads = nn.ModuleList(
            Convolution(spatial_dims, self.channels[lvl], heads, kernel_size=1, conv_only=True)
            for lvl in self.side_levels
        )
        self.fuse = (
            Convolution(spatial_dims, out_channels * (n_side + 1), out_channels, kernel_size=1, conv_only=True)
            if fuse_side_outputs and n_side
            else None
        )

    def regions(self, z: torch.Tensor) -> torch.Tensor:
        """A head's output as the network returns it: logits, or with ``nested_regions`` the log-probabilities of
        the classes from the region logits (``nested_log_probs``)."""
        return nested_log_probs(z) if self.nested_regions else z

    def merge_skip(self, level: int, skip: torch.Tensor, gating: torch.Tensor) -> torch.Tensor:
        """The skip features the decoder concatenates at ``level``; the plain U-Net passes them unchanged.

        ``gating`` is the coarser decoder feature map (level + 1) that is about to be up-sampled.
        """
        return skip

    def decode(self, level: int, coarse: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """Decoder stage ``level``: up-sample ``coarse`` (level + 1) and join ``skip``; scriptable for any level."""
        if torch.jit.is_scripting():
            # TorchScript indexes a ModuleList at a run-time position only through an interface type
            stage: UpBlockInterface = self.decoders[level]
            return stage.forward(coarse, skip)
        return self.decoders[level](coarse, skip)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        return self.segment(x)

    def segment(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """The forward pass (``forward`` calls it; subclasses wrap it, since TorchScript has no ``super()``)."""
        spatial = x.shape[2:]
        multiple = list(self.multiple)
        if self.pad_input:
            x, _ = pad_to_multiple(x, multiple)
        else:
            for n, m in zip(spatial, multiple):
                if n % m != 0:
                    raise PipelineError(
                        f"input size {list(spatial)} is not a multiple of {self.multiple} (depth {self.depth}); "
                        "pad it or build the network with pad_input=True"
                    )
        feats = self.encoder(x)
        y = feats[-1]
        decoded: dict[int, torch.Tensor] = {}
        for level in range(self.depth - 1, -1, -1):
            skip = self.merge_skip(level, feats[level], y)
            y = self.decode(level, y, skip)
            decoded[level] = y
        out = self.regions(self.head(y))
        if len(self.side_levels) == 0:
            return crop_to(out, spatial)
        sides: list[torch.Tensor] = []
        for i, head in enumerate(self.side_heads):
            sides.append(self.regions(head(decoded[self.side_levels[i]])))
        if self.fuse is not None:
            mode = "bilinear" if self.spatial_dims == 2 else "trilinear"
            ups = [F.interpolate(s, size=out.shape[2:], mode=mode, align_corners=False) for s in sides]
            out = self.fuse(torch.cat([out] + ups, dim=1))
        out = crop_to(out, spatial)
        if self.deep_supervision and self.training:
            return [out] + sides
        return out
