"""BoundaryWeightedDiceCELoss: packed [label, weight] targets, the plain-label fallback, deep supervision, and the
configs/loss/boundary_weighted.json fragment on its own."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from monai.bundle import ConfigParser
from monai.losses import DeepSupervisionLoss, DiceLoss

from pipeline.losses import BoundaryWeightedDiceCELoss
from pipeline.transforms import BoundaryWeightMapd, boundary_weight_map
from tests.bundles_util import REPO

FRAGMENT = REPO / "configs/loss/boundary_weighted.json"


def _two_squares_label() -> torch.Tensor:
    """(1, 1, 24, 24): two squares of class 1 with background columns 9 and 10 between them."""
    label = torch.zeros(1, 1, 24, 24, dtype=torch.uint8)
    label[..., 6:14, 3:9] = 1
    label[..., 6:14, 11:17] = 1
    return label


def _packed(label: torch.Tensor) -> torch.Tensor:
    return torch.stack([BoundaryWeightMapd("label", pack_into_label=True)({"label": t})["label"] for t in label])


def _confident_logits(label: torch.Tensor, num_classes: int = 2) -> torch.Tensor:
    onehot = F.one_hot(label[:, 0].long(), num_classes).movedim(-1, 1).bool()
    return torch.where(onehot, 4.0, -4.0)


def test_an_error_in_the_gap_costs_more_than_one_far_away_by_the_weight_ratio():
    label = _two_squares_label()
    target = _packed(label)
    loss = BoundaryWeightedDiceCELoss(lambda_dice=0.0)
    good = _confident_logits(label)
    gap_err, far_err = good.clone(), good.clone()
    gap_err[0, :, 10, 9] = gap_err[0, :, 10, 9].flip(0)
    far_err[0, :, 22, 22] = far_err[0, :, 22, 22].flip(0)
    base = loss(good, target)
    w_gap, w_far = target[0, 1, 10, 9].item(), target[0, 1, 22, 22].item()
    assert w_gap > 10 * w_far
    # one flipped pixel adds w * (CE(wrong) - CE(right)) / sum(w) to the loss
    ratio = (loss(gap_err, target) - base) / (loss(far_err, target) - base)
    assert ratio.item() == pytest.approx(w_gap / w_far, rel=1e-4)


def test_loss_is_dice_plus_weighted_mean_ce_and_matches_the_fallback_on_plain_labels():
    torch.manual_seed(0)
    label = torch.randint(0, 3, (2, 1, 16, 16))
    weight = torch.rand(2, 16, 16) + 0.1
    logits = torch.randn(2, 3, 16, 16)
    loss = BoundaryWeightedDiceCELoss(lambda_dice=0.5, lambda_ce=2.0)
    packed = torch.cat([label.float(), weight[:, None]], 1)
    ce = F.cross_entropy(logits, label[:, 0], reduction="none")
    dice = DiceLoss(to_onehot_y=True, softmax=True, smooth_nr=1e-5, smooth_dr=1e-5)(logits, label)
    expected = 0.5 * dice + 2.0 * (weight * ce).sum() / weight.sum()
    assert loss(logits, packed).item() == pytest.approx(expected.item(), rel=1e-5)

    maps = torch.stack([torch.as_tensor(boundary_weight_map(t.numpy())) for t in label])
    assert loss(logits, label).item() == pytest.approx(loss(logits, torch.cat([label.float(), maps], 1)).item(),
                                                       rel=1e-6)


@pytest.mark.parametrize("shape", [(2, 3, 24, 24), (1, 3, 16, 16, 8)])
def test_gradients_are_finite_in_2d_and_3d(shape):
    torch.manual_seed(1)
    label = torch.randint(0, 3, (shape[0], 1, *shape[2:]), dtype=torch.uint8)
    target = _packed(label)
    x = torch.randn(*shape, requires_grad=True)
    value = BoundaryWeightedDiceCELoss()(x, target)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_under_deep_supervision_the_two_channel_target_survives_nearest_resizing():
    label = torch.zeros(2, 1, 32, 32, 16, dtype=torch.uint8)
    label[:, :, 4:14, 4:14, 2:10] = 1
    label[:, :, 18:28, 4:14, 2:10] = 2
    target = _packed(label)
    ds = DeepSupervisionLoss(BoundaryWeightedDiceCELoss(), weight_mode="exp")
    outputs = [torch.randn(2, 3, 32 // f, 32 // f, 16 // f, requires_grad=True) for f in (1, 2, 4)]
    value = ds(outputs, target)
    value.backward()
    assert torch.isfinite(value) and all(torch.isfinite(o.grad).all() for o in outputs)

    small = F.interpolate(target, size=(8, 8, 4), mode=ds.interp_mode)
    assert set(small[:, 0].unique().tolist()) <= {0.0, 1.0, 2.0}  # labels stay class indices
    assert set(small[:, 1].unique().tolist()) <= set(target[:, 1].unique().tolist())  # weights are picked, not mixed
    expected = sum(w * BoundaryWeightedDiceCELoss()(o.detach(), F.interpolate(target, size=o.shape[2:],
                                                                              mode="nearest-exact"))
                   for w, o in zip(ds.get_weights(3), outputs))
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)


def test_a_target_with_other_channel_counts_is_refused():
    with pytest.raises(ValueError, match="packed"):
        BoundaryWeightedDiceCELoss()(torch.randn(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))


def test_fragment_sets_the_loss_and_the_label_transforms_with_shared_w0_and_sigma():
    raw = json.loads(FRAGMENT.read_text())
    assert set(raw) - {"_comment"} == {"boundary_w0", "boundary_sigma", "segmentation_loss", "label_transforms"}
    parser = ConfigParser(raw)
    parser["boundary_w0"] = 7.0
    loss, transforms = parser.get_parsed_content("segmentation_loss"), parser.get_parsed_content("label_transforms")
    assert isinstance(loss, BoundaryWeightedDiceCELoss) and (loss.w0, loss.sigma) == (7.0, 5.0)
    (transform,) = transforms
    assert isinstance(transform, BoundaryWeightMapd) and transform.pack_into_label
    assert (transform.w0, transform.sigma, transform.class_balance) == (7.0, 5.0, loss.class_balance)
    out = transform({"label": _two_squares_label()[0]})
    assert out["label"].shape == (2, 24, 24)
    assert np.isfinite(loss(torch.randn(1, 2, 24, 24), out["label"][None]).item())
