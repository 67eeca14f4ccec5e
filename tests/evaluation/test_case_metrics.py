import math

import torch
from monai.data import MetaTensor

from pipeline.evaluation.case_metrics import case_metrics, spacing_of, summarise


def _onehot(label: torch.Tensor, n: int = 3) -> torch.Tensor:
    return torch.nn.functional.one_hot(label.long(), n).movedim(-1, 0).float()


def test_perfect_and_half_overlap():
    y = torch.zeros(20, 20, 10)
    y[5:15, 5:15, 2:8] = 1
    m = case_metrics(_onehot(y), _onehot(y), ["organ", "tumour"], spacing=(1, 1, 1))
    assert m["dice_organ"] == 1.0 and m["iou_organ"] == 1.0 and m["hd95_organ"] == 0.0
    assert math.isnan(m["dice_tumour"])  # absent from the label: not scored, not counted as 0 or 1
    p = torch.zeros_like(y)
    p[5:15, 10:20, 2:8] = 1  # half of it shifted by 5 voxels along axis 1
    m = case_metrics(_onehot(p), _onehot(y), ["organ", "tumour"], spacing=(1, 1, 1))
    assert abs(m["dice_organ"] - 0.5) < 1e-6 and abs(m["iou_organ"] - 1 / 3) < 1e-6


def test_hd95_is_in_millimetres():
    y = torch.zeros(30, 30, 10)
    y[10:20, 10:20, 3:7] = 1
    p = torch.zeros_like(y)
    p[10:20, 13:23, 3:7] = 1  # shifted by 3 voxels along axis 1
    iso = case_metrics(_onehot(p, 2), _onehot(y, 2), ["organ"], spacing=(1, 1, 1))["hd95_organ"]
    aniso = case_metrics(_onehot(p, 2), _onehot(y, 2), ["organ"], spacing=(1, 2.5, 1))["hd95_organ"]
    assert iso == 3.0 and aniso == 7.5


def test_spacing_read_from_metatensor_affine():
    t = MetaTensor(torch.zeros(1, 4, 4, 4), affine=torch.diag(torch.tensor([0.8, 0.8, 2.5, 1.0])))
    assert spacing_of(t, 3) == (0.8, 0.8, 2.5)
    assert spacing_of(torch.zeros(1, 4, 4), 2) == (1.0, 1.0)


def test_summary_ignores_nan_cases():
    s = summarise([{"dice_t": 0.5}, {"dice_t": float("nan")}, {"dice_t": 1.0}], ["dice_t"])
    assert s["dice_t"]["mean"] == 0.75 and s["dice_t"]["n"] == 2
