"""Region-based training (nnU-Net's, for pancreas + tumour and BraTS): Dice + binary cross-entropy per nested region.

Region k is "label >= k" (here: the whole gland with its tumour, then the tumour). The loss takes any class scores:
it log-softmaxes them, so it trains a plain softmax network and a ``nested_regions`` one (whose outputs are
log-probabilities already) alike. The probability of region k is the sum of the class probabilities from k up;
its log and the log of its complement are log-sum-exps of the class log-probabilities, so the cross-entropy stays
finite. MONAI's ``DiceCELoss(sigmoid=True)`` needs one logit per region, which a softmax network does not give, and
its region targets would have to be built by a transform, so this loss is our own.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["NestedRegionDiceBCELoss"]


class NestedRegionDiceBCELoss(nn.Module):
    """Mean over the regions k = 1 .. C-1 of soft Dice loss + binary cross-entropy between the predicted region
    probability and ``target >= k``. ``input``: ``(B, C, *S)`` class scores; ``target``: ``(B, 1, *S)`` labels.
    ``batch``: one Dice over the whole batch (nnU-Net's batch Dice) instead of a mean of per-sample Dice."""

    def __init__(self, batch: bool = False, smooth: float = 1e-5, lambda_dice: float = 1.0,
                 lambda_bce: float = 1.0) -> None:
        super().__init__()
        self.batch, self.smooth = batch, smooth
        self.lambda_dice, self.lambda_bce = lambda_dice, lambda_bce

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logp = F.log_softmax(input.float(), dim=1)
        label = target[:, 0].long() if target.shape[1] == 1 else target.argmax(1)
        reduce = tuple(range(1, input.ndim - 1)) if not self.batch else tuple(range(0, input.ndim - 1))
        total = input.new_zeros(())
        n_regions = input.shape[1] - 1
        for k in range(1, input.shape[1]):
            log_in = torch.logsumexp(logp[:, k:], dim=1)
            log_out = torch.logsumexp(logp[:, :k], dim=1)
            y = (label >= k).float()
            bce = -(y * log_in + (1 - y) * log_out).mean()
            q = log_in.exp()
            inter = (q * y).sum(reduce)
            denom = q.sum(reduce) + y.sum(reduce)
            dice = 1 - (2 * inter + self.smooth) / (denom + self.smooth)
            total = total + self.lambda_dice * dice.mean() + self.lambda_bce * bce
        return total / n_regions
