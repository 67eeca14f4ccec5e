"""Dice + the U-Net paper's weighted cross-entropy; MONAI's DiceCELoss takes only per-class CE weights, not a
per-voxel weight map, and its trainers pass the loss nothing but ``(pred, label)``."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss
from monai.utils import convert_to_tensor
from torch.nn.modules.loss import _Loss

from pipeline.transforms.boundary import boundary_weight_map


class BoundaryWeightedDiceCELoss(_Loss):
    """``lambda_dice * Dice(softmax, one-hot label) + lambda_ce * sum(w CE) / sum(w)`` over the whole batch.

    input: logits ``(B, C, *spatial)``. target: ``(B, 2, *spatial)`` = ``[label, weight]`` as packed by
    ``BoundaryWeightMapd(..., pack_into_label=True)``, or a plain label ``(B, 1, *spatial)`` whose Ronneberger map
    (``w0``, ``sigma``, ``class_balance``, ``spacing``) is then computed here, on the CPU. Works per output inside
    MONAI's ``DeepSupervisionLoss``: its nearest-neighbour resizing keeps both channels meaningful."""

    def __init__(
        self, w0: float = 10.0, sigma: float = 5.0, class_balance: bool = True, spacing: Sequence[float] | None = None,
        lambda_dice: float = 1.0, lambda_ce: float = 1.0, include_background: bool = True,
        smooth_nr: float = 1e-5, smooth_dr: float = 1e-5,
    ) -> None:
        super().__init__()
        if lambda_dice < 0 or lambda_ce < 0:
            raise ValueError(f"lambda_dice and lambda_ce must be >= 0, got {lambda_dice}, {lambda_ce}")
        self.w0, self.sigma, self.class_balance, self.spacing = float(w0), float(sigma), class_balance, spacing
        self.lambda_dice, self.lambda_ce = lambda_dice, lambda_ce
        self.dice = DiceLoss(include_background=include_background, to_onehot_y=True, softmax=True,
                             smooth_nr=smooth_nr, smooth_dr=smooth_dr)

    def split_target(self, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(label (B, 1, *spatial), weight (B, *spatial))`` from a packed or a plain target."""
        target = convert_to_tensor(target, track_meta=False)
        if target.shape[1] == 2:
            return target[:, :1], target[:, 1].float()
        if target.shape[1] != 1:
            raise ValueError(f"target must be (B, 1, *spatial) or packed [label, weight] (B, 2, *spatial), "
                             f"got {tuple(target.shape)}")
        cpu = target.detach().cpu()
        maps = [boundary_weight_map(t, self.w0, self.sigma, self.class_balance, self.spacing) for t in cpu]
        return target, torch.stack(maps)[:, 0].to(target.device)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        label, weight = self.split_target(target)
        if input.shape[2:] != label.shape[2:] or input.shape[0] != label.shape[0]:
            raise ValueError(f"input {tuple(input.shape)} and target {tuple(target.shape)} differ in batch or space")
        ce = F.cross_entropy(input.float(), label[:, 0].long(), reduction="none")
        weighted_ce = (weight * ce).sum() / weight.sum().clamp_min(torch.finfo(weight.dtype).tiny)
        return self.lambda_dice * self.dice(input, label) + self.lambda_ce * weighted_ce
