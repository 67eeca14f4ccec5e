"""Boundary weight maps in the spirit of Ronneberger et al. 2015: voxels near a class border weigh more.

The U-Net paper weights by the distances to the two nearest objects, ``w = 1 + w0 exp(-d^2 / 2 sigma^2)``. Here
``d`` is the distance to the nearest label border, obtained by Gaussian blurring of the border indicator: torch
only, so it runs inside the loss on CPU or GPU for every batch. MONAI has no such weight map.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from monai.networks.layers import GaussianFilter


def label_borders(target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Border indicator ``(B, 1, *spatial)`` of an integer label ``(B, 1, *spatial)``: 1 where a 3^d
    neighbourhood holds more than one class."""
    spatial_dims = target.ndim - 2
    onehot = F.one_hot(target[:, 0].long(), num_classes).movedim(-1, 1).float()
    pool = F.max_pool2d if spatial_dims == 2 else F.max_pool3d
    dilated = pool(onehot, 3, stride=1, padding=1)
    eroded = -pool(-onehot, 3, stride=1, padding=1)
    return ((dilated - eroded).sum(1, keepdim=True) > 0).float()


def boundary_weight_map(target: torch.Tensor, num_classes: int, w0: float = 5.0, sigma: float = 2.0) -> torch.Tensor:
    """Weights ``1 + w0 * exp(-d^2 / (2 sigma^2))`` (d: voxels to the nearest border), shape of ``target``."""
    spatial_dims = target.ndim - 2
    borders = label_borders(target, num_classes)
    blur = GaussianFilter(spatial_dims, sigma=sigma).to(target.device)
    # a blurred border plane peaks at 1 / (sqrt(2 pi) sigma): rescale so the border itself gets ~w0
    near = (blur(borders) * math.sqrt(2 * math.pi) * sigma).clamp(max=1.0)
    return 1.0 + w0 * near
