"""Grid attention gate of Oktay et al. 2018, "Attention U-Net: learning where to look for the pancreas".

MONAI's ``AttentionUnet`` gates with a gating signal already up-sampled to the skip grid; this gate follows the
paper: theta is a strided convolution that brings the skip features onto the coarser gating grid, and the
attention coefficients are resampled back to the skip grid by linear interpolation.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.layers.factories import Conv
from torch import nn

from pipeline.networks.blocks import DEFAULT_NORM, LayerSpec, conv_norm_act


@torch.jit.interface
class GateInterface(nn.Module):
    """What TorchScript needs to call a ``GridAttentionGate`` picked from a ModuleDict by a run-time key."""

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pass


class GridAttentionGate(nn.Module):
    """Additive grid attention gate: ``out = W(alpha * x)``, ``alpha = sigmoid(psi(relu(theta(x) + phi(g))))``.

    ``x`` are the skip features of one level, ``g`` the gating signal: the decoder features of the next coarser
    level, whose grid is ``sub_sample`` times coarser. ``theta`` (a convolution with kernel and stride
    ``sub_sample``, no bias) brings ``x`` onto the gating grid, ``phi`` (1x1) maps ``g`` to the same
    ``inter_channels``; ``psi`` (1x1) reduces their rectified sum to one channel whose sigmoid is resampled to the
    skip grid by (bi/tri)linear interpolation (``align_corners=False``). ``W`` is a 1x1 convolution followed by
    ``norm``. Oktay et al., "Attention U-Net: Learning Where to Look for the Pancreas", MIDL 2018.

    Shapes: ``x`` ``(B, in_channels, *S)``, ``g`` ``(B, gating_channels, *S / sub_sample)``; a ``g`` on another
    grid is interpolated onto the grid of ``theta(x)``, ``S // sub_sample``. ``forward(x, g)`` returns
    ``(out, alpha)`` with ``out`` ``(B, in_channels, *S)`` and ``alpha`` ``(B, 1, *S)``, values in [0, 1].

    Args:
        spatial_dims: number of spatial dimensions, 2 or 3.
        in_channels: channels of the skip features ``x`` (and of ``out``).
        gating_channels: channels of the gating signal ``g``.
        inter_channels: channels of ``theta(x)`` and ``phi(g)``. Defaults to ``in_channels // 2`` (at least 1).
        sub_sample: the stride between the skip grid and the gating grid, an int or one int per axis: the
            kernel size and stride of ``theta``. Defaults to 2.
        norm: normalization after ``W``, a MONAI norm spec. Defaults to ``DEFAULT_NORM``.

    Examples::

        >>> import torch
        >>> gate = GridAttentionGate(spatial_dims=3, in_channels=8, gating_channels=16, sub_sample=(2, 2, 1))
        >>> out, alpha = gate(torch.randn(2, 8, 16, 16, 6), torch.randn(2, 16, 8, 8, 6))
        >>> tuple(out.shape), tuple(alpha.shape)
        ((2, 8, 16, 16, 6), (2, 1, 16, 16, 6))
        >>> bool(alpha.min() >= 0 and alpha.max() <= 1)
        True
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        gating_channels: int,
        inter_channels: int | None = None,
        sub_sample: int | Sequence[int] = 2,
        norm: LayerSpec = DEFAULT_NORM,
    ) -> None:
        super().__init__()
        conv = Conv[Conv.CONV, spatial_dims]
        inter = inter_channels or max(in_channels // 2, 1)
        self.mode = "bilinear" if spatial_dims == 2 else "trilinear"
        self.theta = conv(in_channels, inter, kernel_size=sub_sample, stride=sub_sample, bias=False)
        self.phi = conv(gating_channels, inter, kernel_size=1, bias=True)
        self.psi = conv(inter, 1, kernel_size=1, bias=True)
        self.W = conv_norm_act(spatial_dims, in_channels, in_channels, kernel_size=1, norm=norm, act=None)

    def coefficients(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Attention coefficients alpha on x's grid, shape ``(B, 1, *x.shape[2:])``."""
        theta_x = self.theta(x)
        phi_g = self.phi(g)
        if phi_g.shape[2:] != theta_x.shape[2:]:
            phi_g = F.interpolate(phi_g, size=theta_x.shape[2:], mode=self.mode, align_corners=False)
        q = self.psi(F.relu(theta_x + phi_g))
        alpha = torch.sigmoid(q)
        return F.interpolate(alpha, size=x.shape[2:], mode=self.mode, align_corners=False)

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        alpha = self.coefficients(x, g)
        return self.W(alpha * x), alpha
