import pytest
import torch

from pipeline.losses import BoundaryWeightedDiceCELoss
from pipeline.transforms import boundary_weight_map


def _square_label(size=32, lo=8, hi=20):
    t = torch.zeros(1, 1, size, size, dtype=torch.long)
    t[..., lo:hi, lo:hi] = 1
    return t


def test_boundary_weights_peak_at_borders_and_fade_to_one():
    w = boundary_weight_map(_square_label(), num_classes=2, w0=5.0, sigma=2.0)[0, 0]
    assert w.shape == (32, 32)
    assert w[14, 8] == pytest.approx(6.0, abs=0.05)  # on the border
    assert w[0, 0] == pytest.approx(1.0, abs=1e-3)  # far outside
    assert w[14, 14] < 3.0  # the square's centre is 6 px from the border
    assert w[14, 8] > w[14, 11] > w[14, 14]


def test_boundary_weighted_loss_weights_border_errors_more():
    target = _square_label()
    loss = BoundaryWeightedDiceCELoss(w0=10.0, lambda_dice=0.0)
    good = torch.where(torch.nn.functional.one_hot(target[:, 0], 2).movedim(-1, 1).bool(), 4.0, -4.0)
    border_err, far_err = good.clone(), good.clone()
    border_err[0, :, 14, 8] = border_err[0, :, 14, 8].flip(0)  # one wrong pixel on the border
    far_err[0, :, 1, 1] = far_err[0, :, 1, 1].flip(0)  # one wrong pixel far away
    assert loss(border_err, target) > 3 * loss(far_err, target)
    x = torch.randn(1, 2, 32, 32, requires_grad=True)
    BoundaryWeightedDiceCELoss()(x, target).backward()
    assert torch.isfinite(x.grad).all()
