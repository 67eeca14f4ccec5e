"""Dice + boundary-weighted cross-entropy: the U-Net paper's weighted CE next to MONAI's Dice loss."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss
from torch import nn

from pipeline.transforms.boundary import boundary_weight_map


class BoundaryWeightedDiceCELoss(nn.Module):
    """``lambda_dice * Dice + lambda_ce * weighted CE``, CE weights from ``boundary_weight_map`` of the target.

    input: logits ``(B, C, *spatial)``; target: integer labels ``(B, 1, *spatial)``.
    """

    def __init__(
        self, w0: float = 5.0, sigma: float = 2.0, lambda_dice: float = 1.0, lambda_ce: float = 1.0,
        include_background: bool = True,
    ) -> None:
        super().__init__()
        self.w0, self.sigma = w0, sigma
        self.lambda_dice, self.lambda_ce = lambda_dice, lambda_ce
        self.dice = DiceLoss(include_background=include_background, to_onehot_y=True, softmax=True)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        num_classes = input.shape[1]
        with torch.no_grad():
            weights = boundary_weight_map(target, num_classes, self.w0, self.sigma)[:, 0]
        ce = F.cross_entropy(input, target[:, 0].long(), reduction="none")
        weighted_ce = (ce * weights).sum() / weights.sum()
        return self.lambda_dice * self.dice(input, target) + self.lambda_ce * weighted_ce
