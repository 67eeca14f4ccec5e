"""Grid attention gate of Oktay et al. 2018, "Attention U-Net: learning where to look for the pancreas".

MONAI's ``AttentionUnet`` gates with a gating signal already up-sampled to the skip grid; this gate follows the
paper: theta is a strided convolution that brings the skip features onto the coarser gating grid, and the
attention coefficients are resampled back to the skip grid by linear interpolation.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Conv
from torch import nn


class GridAttentionGate(nn.Module):
    """``out = W(alpha * x)``, ``alpha = sigmoid(psi(relu(theta(x) + phi(g))))`` resampled to x's grid.

    x: skip features ``(B, in_channels, *S)``; g: gating signal ``(B, gating_channels, *S / sub_sample)`` from the
    next coarser level. ``forward`` returns ``(out, alpha)`` with alpha ``(B, 1, *S)`` in [0, 1].
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        gating_channels: int,
        inter_channels: int | None = None,
        sub_sample: int | Sequence[int] = 2,
        norm: str | tuple = ("instance", {"affine": True}),
    ) -> None:
        super().__init__()
        conv = Conv[Conv.CONV, spatial_dims]
        inter = inter_channels or max(in_channels // 2, 1)
        self.mode = "bilinear" if spatial_dims == 2 else "trilinear"
        self.theta = conv(in_channels, inter, kernel_size=sub_sample, stride=sub_sample, bias=False)
        self.phi = conv(gating_channels, inter, kernel_size=1, bias=True)
        self.psi = conv(inter, 1, kernel_size=1, bias=True)
        self.W = Convolution(spatial_dims, in_channels, in_channels, kernel_size=1, norm=norm, act=None)

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
