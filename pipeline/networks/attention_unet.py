"""Attention U-Net (Oktay et al. 2018): the custom U-Net with grid attention gates on its skip connections.

No ``from __future__ import annotations`` here: TorchScript reads the class-level annotation of ``attention_maps``
as a type object, not as a string.
"""
from collections.abc import Sequence

import torch
from torch import nn

from pipeline.errors import PipelineError
from pipeline.networks.attention import GateInterface, GridAttentionGate
from pipeline.networks.blocks import (
    DEFAULT_ACT,
    DEFAULT_NORM,
    LayerSpec,
    Stride,
    constructor_args,
    crop_to,
    size_multiple,
)
from pipeline.networks.unet import UNet


class AttentionUNet(UNet):
    """``UNet`` whose skip features at ``attention_levels`` pass a ``GridAttentionGate`` before concatenation.

    Levels count from 0 (finest, full size) to ``depth - 1``. The gate of level ``l`` is driven by the decoder
    features of level ``l + 1`` (the bottleneck for ``l = depth - 1``), the map that is about to be up-sampled
    and joined with the skip; its ``theta`` sub-samples the skip by ``strides[l]``, the factor between the two
    grids. Oktay et al., "Attention U-Net: Learning Where to Look for the Pancreas", MIDL 2018.

    Input ``(B, in_channels, *S)``; output logits ``(B, out_channels, *S)``, or in training mode with
    ``deep_supervision`` the list ``[full, side_1, ..., side_n]`` (eval mode: ``full`` only), exactly as for
    ``UNet``, including the input size rule (a multiple of the product of the strides per axis, ``net.multiple``,
    unless ``pad_input``). After every forward pass ``attention_maps`` is a dict from each gated level ``l`` to its
    coefficients ``alpha``: detached tensors ``(B, 1, *ceil(S / prod(strides[:l])))`` with values in [0, 1],
    cropped to the part of the level's grid that covers the (unpadded) input. A scripted network
    (``torch.jit.script``) sets and exposes ``attention_maps`` the same way.

    Args:
        spatial_dims: number of spatial dimensions, 2 or 3.
        in_channels: number of input channels.
        out_channels: number of output channels (classes, background included).
        depth: number of poolings. Defaults to 3 (or the preset's depth); must agree with ``preset``; must not be
            given with ``channels``.
        base_width: width of the finest level; level ``l`` has ``base_width * 2**l`` channels. Defaults to 32.
            Must not be given with ``channels``.
        channels: the width of every level, finest first (length ``depth + 1``), instead of
            ``preset``/``depth``/``base_width``.
        strides: pooling factor per pooling, finest first, each an int or one int per axis; shorter lists are
            completed with 2. Defaults to 2 everywhere.
        preset: ``"precision"`` (depth 2), ``"standard"`` (depth 3) or ``"context"`` (depth 4).
        norm: normalization of the convolution blocks and of each gate's output convolution ``W``, a MONAI norm
            spec. Defaults to ``DEFAULT_NORM``.
        act: activation of the convolution blocks, a MONAI activation spec. Defaults to ``DEFAULT_ACT``.
        upsample: ``"deconv"`` or ``"interp"``, as for ``UNet``. Defaults to ``"deconv"``.
        dropout: dropout probability after every activation. Defaults to 0.
        deep_supervision: return the side outputs too in training mode, as for ``UNet``. Defaults to False.
        num_side_outputs: number of side outputs (levels 1..n), at most ``depth - 1``. Defaults to 2.
        fuse_side_outputs: fuse the side outputs into the full-size output, as for ``UNet``. Defaults to False.
        pad_input: pad inputs of other sizes than multiples of ``net.multiple`` (True) or refuse them (False).
            Defaults to True.
        attention_levels: the levels whose skip is gated, each in ``0..depth - 1``. Defaults to every level but
            the finest, ``1..depth - 1``.
        inter_channels: the gates' intermediate widths, one per gated level in increasing level order. Defaults to
            half the skip width of each level.

    Raises:
        PipelineError: everything ``UNet`` refuses; an attention level outside ``0..depth - 1``; an
            ``inter_channels`` whose length differs from the number of gated levels.

    Examples::

        >>> import torch
        >>> net = AttentionUNet(spatial_dims=3, in_channels=1, out_channels=3, preset="standard", base_width=4,
        ...                     strides=[(2, 2, 1)], deep_supervision=True, num_side_outputs=2)
        >>> net.attention_levels
        [1, 2]
        >>> outs = net.train()(torch.zeros(1, 1, 32, 32, 8))
        >>> [tuple(y.shape) for y in outs]
        [(1, 3, 32, 32, 8), (1, 3, 16, 16, 8), (1, 3, 8, 8, 4)]
        >>> {level: tuple(alpha.shape) for level, alpha in sorted(net.attention_maps.items())}
        {1: (1, 1, 16, 16, 8), 2: (1, 1, 8, 8, 4)}
        >>> net.eval()(torch.zeros(1, 1, 30, 30, 8)).shape
        torch.Size([1, 3, 30, 30, 8])
    """

    # declared for TorchScript, which cannot type an empty dict or list by itself (it reads only this class's
    # annotations, hence UNet's side_levels again)
    attention_maps: dict[int, torch.Tensor]
    attention_levels: list[int]
    side_levels: list[int]

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
        attention_levels: Sequence[int] | None = None,
        inter_channels: Sequence[int] | None = None,
    ) -> None:
        init_args = constructor_args(locals())
        super().__init__(
            spatial_dims,
            in_channels,
            out_channels,
            depth=depth,
            base_width=base_width,
            channels=channels,
            strides=strides,
            preset=preset,
            norm=norm,
            act=act,
            upsample=upsample,
            dropout=dropout,
            deep_supervision=deep_supervision,
            num_side_outputs=num_side_outputs,
            fuse_side_outputs=fuse_side_outputs,
            pad_input=pad_input,
            nested_regions=nested_regions,
        )
        self.init_args = init_args
        levels = list(range(1, self.depth)) if attention_levels is None else sorted(set(attention_levels))
        bad = [lvl for lvl in levels if not 0 <= lvl < self.depth]
        if bad:
            raise PipelineError(f"attention_levels {bad} outside 0..{self.depth - 1} for depth {self.depth}")
        if inter_channels is not None and len(inter_channels) != len(levels):
            raise PipelineError(
                f"inter_channels has {len(inter_channels)} entries but {len(levels)} levels are gated "
                f"(attention_levels {levels}): give one width per gated level"
            )
        self.attention_levels = levels
        self.gates = nn.ModuleDict(
            {
                str(lvl): GridAttentionGate(
                    spatial_dims,
                    in_channels=self.channels[lvl],
                    gating_channels=self.channels[lvl + 1],
                    inter_channels=inter_channels[i] if inter_channels is not None else None,
                    sub_sample=self.strides[lvl],
                    norm=norm,
                )
                for i, lvl in enumerate(levels)
            }
        )
        self.attention_maps = {}
        # per level, the factor between the input grid and that level's grid (cropping the maps needs it)
        self.level_factors = [list(size_multiple(self.strides[:lvl])) if lvl else [1] * spatial_dims
                              for lvl in range(self.depth)]

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        self.attention_maps = torch.jit.annotate(dict[int, torch.Tensor], {})
        out = self.segment(x)
        # maps were computed on the padded grid: crop them to the part that covers the input
        cropped = torch.jit.annotate(dict[int, torch.Tensor], {})
        for level, alpha in self.attention_maps.items():
            size = [-(-n // f) for n, f in zip(x.shape[2:], self.level_factors[level])]
            cropped[level] = crop_to(alpha, size)
        self.attention_maps = cropped
        return out

    def merge_skip(self, level: int, skip: torch.Tensor, gating: torch.Tensor) -> torch.Tensor:
        """The skip of ``level`` multiplied by its gate's coefficients (and ``W``), or unchanged if not gated."""
        if level not in self.attention_levels:
            return skip
        if torch.jit.is_scripting():
            # TorchScript indexes a ModuleDict with a run-time key only through an interface type
            gate: GateInterface = self.gates[str(level)]
            gated, alpha = gate.forward(skip, gating)
        else:
            gated, alpha = self.gates[str(level)](skip, gating)
        self.attention_maps[level] = alpha.detach()
        return gated
