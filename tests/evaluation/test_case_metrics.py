import json
import math

import pytest
import torch
from monai.data import MetaTensor

from pipeline.evaluation.case_metrics import case_metrics, spacing_of, summarise, write_tables


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


def _slab(shape, lo, hi):
    t = torch.zeros(shape)
    t[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = 1
    return t


def test_extended_metrics_against_hand_computed_values():
    y = _slab((20, 30, 10), (5, 5, 2), (15, 15, 8))  # 10 x 10 x 6 = 600 voxels
    p = _slab((20, 30, 10), (5, 7, 2), (15, 17, 8))  # the same box shifted by 2 voxels along axis 1
    m = case_metrics(_onehot(p, 2), _onehot(y, 2), ["organ"], spacing=(1, 1, 1), extended=True, nsd_tolerance=1.0)
    # overlap 10 x 8 x 6 = 480 voxels: precision = recall = 480 / 600, Dice 0.8, IoU 480 / 720
    assert m["precision_organ"] == pytest.approx(0.8) and m["recall_organ"] == pytest.approx(0.8)
    assert m["dice_organ"] == pytest.approx(0.8) and m["iou_organ"] == pytest.approx(2 / 3)
    # a shift by 2 voxels: every surface point of either box is 0 or 2 voxels from the other surface, so the
    # symmetric mean lies strictly between; with a tolerance of 1 voxel, NSD counts only the points at 0
    assert 0 < m["assd_organ"] < 2 and 0 < m["nsd_organ"] < 1
    mm = case_metrics(_onehot(p, 2), _onehot(y, 2), ["organ"], spacing=(1, 2.5, 1), extended=True, nsd_tolerance=1.0)
    assert mm["assd_organ"] > m["assd_organ"] and mm["nsd_organ"] < m["nsd_organ"]  # 2 voxels = 5 mm along axis 1
    same = case_metrics(_onehot(y, 2), _onehot(y, 2), ["organ"], spacing=(1, 1, 1), extended=True)
    assert same["assd_organ"] == 0.0 and same["nsd_organ"] == 1.0 and same["precision_organ"] == 1.0


def test_empty_prediction_and_empty_label_follow_the_documented_table():
    y = _slab((20, 20, 10), (5, 5, 2), (15, 15, 8))
    empty = torch.zeros_like(y)
    missed = case_metrics(_onehot(empty, 2), _onehot(y, 2), ["organ"], spacing=(1, 1, 1), extended=True)
    assert missed["dice_organ"] == 0.0 and missed["iou_organ"] == 0.0 and missed["recall_organ"] == 0.0
    assert missed["nsd_organ"] == 0.0
    assert all(math.isnan(missed[k]) for k in ("precision_organ", "hd95_organ", "assd_organ"))
    spurious = case_metrics(_onehot(y, 2), _onehot(empty, 2), ["organ"], spacing=(1, 1, 1), extended=True)
    assert spurious["precision_organ"] == 0.0 and spurious["nsd_organ"] == 0.0
    assert all(math.isnan(spurious[k]) for k in ("dice_organ", "iou_organ", "recall_organ", "hd95_organ",
                                                 "assd_organ"))
    nothing = case_metrics(_onehot(empty, 2), _onehot(empty, 2), ["organ"], spacing=(1, 1, 1), extended=True)
    assert all(math.isnan(v) for v in nothing.values())


def test_summary_json_is_written_with_null_for_no_cases(tmp_path):
    rows = [{"case": "a", "dice_t": 0.5}, {"case": "b", "dice_t": 1.0}]
    summary = summarise(rows, ["dice_t", "hd95_t"])
    paths = write_tables(rows, summary, tmp_path)
    data = json.loads((tmp_path / "metrics_summary.json").read_text())
    assert data["dice_t"] == {"mean": 0.75, "std": 0.25, "median": 0.75, "n": 2}
    assert data["hd95_t"]["mean"] is None and data["hd95_t"]["n"] == 0
    assert {p.name for p in paths} == {"metrics_per_case.csv", "metrics_summary.csv", "metrics_summary.json",
                                       "metrics_summary.md"}
