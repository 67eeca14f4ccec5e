"""Building blocks shared by every network here: conv-norm-act stacks, the encoder, the up-sampling decoder stage.

The layers come from MONAI (``Convolution``, ``UpSample``); what is ours is the wiring that lets depth, widths and
per-level (possibly anisotropic) strides be parameters of one encoder/decoder.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.networks.blocks import ADN, Convolution, UpSample
from monai.networks.layers.factories import Norm, Pool, split_args
from monai.networks.layers.utils import get_norm_layer
from torch import nn

from pipeline.errors import PipelineError

Stride = int | Sequence[int]
#: a MONAI layer spec: a factory name (``"batch"``) or ``(name, {constructor arguments})``
LayerSpec = str | tuple

#: the normalization of every conv-norm-act layer and attention gate unless a network is given another one: affine
#: instance norm (``InstanceNorm{1,2,3}d``; in 3D ``InstanceNormCL3d``, the same layer with a faster inference)
DEFAULT_NORM: LayerSpec = ("instance_cl", {"affine": True})


class InstanceNormCL3d(nn.InstanceNorm3d):
    """``InstanceNorm3d`` whose inference on a channels-last-3d CPU tensor runs torch's group-norm kernel (one channel
    per group: the same function, outputs agree to 2e-6) instead of the instance-norm kernel.

    ``torch.instance_norm`` views its input as one batch of N*C channels, which makes a channels-last-3d tensor
    contiguous and hands a contiguous one to the next convolution: on CPU, where ``memory_format=auto`` runs narrow
    3D networks channels-last, those copies are a large share of a validation's sliding window
    (``benchmarks/ct_step_layout.py`` measures it). Training keeps ``InstanceNorm3d``'s own path, bit for bit (the
    group-norm backward is no faster there, and recorded training runs stay reproducible), as do CUDA, contiguous
    tensors and running statistics. A subclass with the parameters and state dict of ``InstanceNorm3d``: checkpoints
    load either way. MONAI has no such layer; the networks here name it ``"instance_cl"`` in a norm spec (MONAI's own
    ``"instance"`` layer in 1D/2D), resolved by ``norm_layer`` without touching MONAI's global ``Norm`` factory."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if (
            not self.training
            and not self.track_running_stats
            and input.dim() == 5
            and input.device.type == "cpu"
            and input.is_contiguous(memory_format=torch.channels_last_3d)
        ):
            return F.group_norm(input, self.num_features, self.weight, self.bias, self.eps)
        self._check_input_dim(input)
        if input.dim() == 4:  # unbatched (C, D, H, W), which InstanceNorm3d also takes
            return self._apply_instance_norm(input.unsqueeze(0)).squeeze(0)
        return self._apply_instance_norm(input)


#: norm layers of this project by spec name (lower case), as ``spatial_dims -> layer class``. They are resolved
#: here rather than registered in MONAI's ``Norm`` factory, so that importing the package changes nothing global.
PROJECT_NORMS: dict[str, Callable[[int], type[nn.Module]]] = {
    "instance_cl": lambda dims: InstanceNormCL3d if dims == 3 else Norm[Norm.INSTANCE, dims],
}


def _project_norm(norm: LayerSpec | None) -> tuple[str, dict] | None:
    """``(name, arguments)`` when ``norm`` names one of ``PROJECT_NORMS``, else None (a MONAI spec or no norm)."""
    if not norm:
        return None
    name, args = split_args(norm)
    if isinstance(name, str) and name.lower() in PROJECT_NORMS:
        return name.lower(), dict(args)
    return None


def norm_layer(norm: LayerSpec, spatial_dims: int, channels: int) -> nn.Module:
    """A normalization layer from a norm spec: a name of ``PROJECT_NORMS`` or anything MONAI's ``Norm`` factory
    takes (``"batch"``, ``("group", {"num_groups": 4})``)."""
    ours = _project_norm(norm)
    if ours is None:
        return get_norm_layer(norm, spatial_dims=spatial_dims, channels=channels)
    name, args = ours
    layer = PROJECT_NORMS[name](spatial_dims)
    return layer(**{"num_features": channels, **args})


def conv_norm_act(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    *,
    norm: LayerSpec | None,
    **kwargs: Any,
) -> Convolution:
    """MONAI's ``Convolution`` (convolution, then norm, dropout, activation) with ``norm`` resolved by ``norm_layer``.

    A project norm is put where MONAI's would be (``adn.N``, first of the ``"NDA"`` ordering), so the module tree
    and the state-dict keys are those of a ``Convolution`` built with a MONAI norm. ``kwargs`` go to ``Convolution``
    (the ordering must stay MONAI's default).
    """
    if _project_norm(norm) is None:
        return Convolution(spatial_dims, in_channels, out_channels, norm=norm, **kwargs)
    block = Convolution(spatial_dims, in_channels, out_channels, norm=None, **kwargs)
    if not hasattr(block, "adn"):  # MONAI adds no ADN when norm, act and dropout are all None
        block.add_module("adn", ADN(act=None))
    adn = block.adn
    rest = list(adn.named_children())
    for key, _ in rest:
        delattr(adn, key)
    adn.add_module("N", norm_layer(norm, spatial_dims, out_channels))
    for key, module in rest:
        adn.add_module(key, module)
    return block


#: the activation of every conv-norm-act layer unless a network is given another one
DEFAULT_ACT: LayerSpec = ("leakyrelu", {"negative_slope": 0.01, "inplace": True})
#: ``UpBlock``'s up-sampling modes: learned (transposed convolution) or (bi/tri)linear interpolation + 1x1 conv
UPSAMPLE_MODES = ("deconv", "interp")



def constructor_args(frame_locals: dict) -> dict:
    """The arguments a network was built with (``locals()`` at the top of its ``__init__``), kept as ``init_args``
    so that a checkpoint folder can rebuild it (``pipeline.engines.network_config``)."""
    return {k: v for k, v in frame_locals.items() if k not in ("self", "__class__")}

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


def pad_to_multiple(x: torch.Tensor, multiple: list[int]) -> tuple[torch.Tensor, list[int]]:
    """Zero-pad the spatial axes of ``x`` (at the far end) up to ``multiple``; return the padded tensor and pads."""
    pads = [(-n) % m for n, m in zip(x.shape[2:], multiple)]
    if max(pads) > 0:
        # F.pad takes (last_lo, last_hi, ..., first_lo, first_hi)
        flat: list[int] = []
        for p in pads[::-1]:
            flat += [0, p]
        x = F.pad(x, flat)
    return x, pads


def crop_to(x: torch.Tensor, spatial: list[int]) -> torch.Tensor:
    """Crop the spatial axes of ``x`` back to ``spatial`` (undoes ``pad_to_multiple``); a view, no copy."""
    for axis, n in enumerate(spatial):
        if x.shape[axis + 2] != n:
            x = x.narrow(axis + 2, 0, n)
    return x


class ConvBlock(nn.Sequential):
    """Two 3x3(x3) convolution-norm-activation layers: the unit every level of every network is made of.

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels of the input ``(B, in_channels, *S)``.
        out_channels: channels of both layers' outputs; the block maps ``(B, in_channels, *S)`` to
            ``(B, out_channels, *S)`` (padding keeps the spatial size).
        norm: normalization after each convolution, a MONAI norm spec. The convolutions have no bias when a norm
            follows them.
        act: activation after each normalization, a MONAI activation spec.
        dropout: dropout probability after each activation; 0 adds no dropout layer.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        norm: LayerSpec = DEFAULT_NORM,
        act: LayerSpec = DEFAULT_ACT,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        for i, (cin, cout) in enumerate(((in_channels, out_channels), (out_channels, out_channels))):
            self.add_module(
                f"conv{i}",
                # no bias: the norm right after it removes any per-channel offset
                conv_norm_act(
                    spatial_dims, cin, cout, kernel_size=3, norm=norm, act=act, dropout=dropout or None,
                    bias=not norm,
                ),
            )


class Encoder(nn.Module):
    """Contracting path: ConvBlock at full size, then (max-pool by the level's stride, ConvBlock) per level.

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels of the input image.
        channels: width of every level, finest first; ``len(channels) - 1`` poolings.
        strides: one pooling factor per pooling (``len(channels) - 1`` tuples of length ``spatial_dims``), as
            returned by ``normalize_strides``.
        norm: MONAI norm spec of every ConvBlock.
        act: MONAI activation spec of every ConvBlock.
        dropout: dropout probability of every ConvBlock.

    ``forward`` maps ``(B, in_channels, *S)`` to the feature maps of every level, finest first: level ``l`` has shape
    ``(B, channels[l], *S / prod(strides[:l]))``. ``S`` must be divisible by the product of the strides per axis.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        channels: Sequence[int],
        strides: Sequence[tuple[int, ...]],
        norm: LayerSpec = DEFAULT_NORM,
        act: LayerSpec = DEFAULT_ACT,
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


@torch.jit.interface
class UpBlockInterface(nn.Module):
    """What TorchScript needs to call an ``UpBlock`` picked from a ModuleList by a run-time index."""

    def forward(self, coarse: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        pass


class UpBlock(nn.Module):
    """One decoder level: up-sample the coarser features, concatenate the (possibly gated) skip, ConvBlock.

    The up-sampling is MONAI's ``UpSample``: ``"deconv"`` learns it (transposed convolution, kernel = stride; the
    layer is ``up.deconv``), ``"interp"`` interpolates (bi/tri)linearly (``align_corners=False``) and then mixes
    channels with a 1x1 convolution (``up.postconv``).

    Args:
        spatial_dims: 2 or 3.
        coarse_channels: channels ``C_c`` of the coarser input ``(B, C_c, *S / stride)``.
        skip_channels: channels ``C_s`` of the skip input ``(B, C_s, *S)``.
        out_channels: channels of the up-sampled features and of the output ``(B, out_channels, *S)``.
        stride: the pooling factor between the two levels, one int per spatial axis.
        norm: MONAI norm spec of the ConvBlock.
        act: MONAI activation spec of the ConvBlock.
        upsample: ``"deconv"`` or ``"interp"``.
        dropout: dropout probability of the ConvBlock.
    """

    def __init__(
        self,
        spatial_dims: int,
        coarse_channels: int,
        skip_channels: int,
        out_channels: int,
        stride: tuple[int, ...],
        norm: LayerSpec = DEFAULT_NORM,
        act: LayerSpec = DEFAULT_ACT,
        upsample: str = "deconv",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if upsample not in UPSAMPLE_MODES:
            raise PipelineError(f"upsample must be 'deconv' or 'interp', got {upsample!r}")
        scale = tuple(int(s) for s in stride)
        if upsample == "deconv":
            self.up = UpSample(spatial_dims, coarse_channels, out_channels, scale_factor=scale, mode="deconv")
        else:
            # the channels are mixed by a 1x1 convolution after the interpolation, not by MONAI's default pre_conv
            # before it: the recorded results were trained so, and the order changes the numerics
            mix = Convolution(spatial_dims, coarse_channels, out_channels, kernel_size=1, conv_only=True)
            self.up = UpSample(
                spatial_dims, coarse_channels, coarse_channels, scale_factor=scale, mode="nontrainable",
                pre_conv=None, post_conv=mix, interp_mode="linear", align_corners=False,
            )
        self.conv = ConvBlock(spatial_dims, out_channels + skip_channels, out_channels, norm, act, dropout)

    def forward(self, coarse: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = self.up(coarse)
        if up.shape[2:] != skip.shape[2:]:
            up = crop_to(up, skip.shape[2:])
        return self.conv(torch.cat([skip, up], dim=1))
