"""The study's metrics on hand-checkable masks: boundary F1 at a tolerance, gap pixels, object IoU, pooling."""
from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.apps.study.metrics import boundary_f1, gap_mask, object_ious, pool_scores, score_case, size_bin


def _line(col: int, rows: range, size: int = 24) -> np.ndarray:
    m = np.zeros((size, size), bool)
    m[rows.start:rows.stop, col] = True
    return m


def test_boundary_f1_by_hand():
    truth = _line(10, range(5, 15))  # a 1-px line: all 10 pixels are boundary
    assert boundary_f1(truth, truth) == 1.0
    shifted = _line(13, range(5, 15))  # 3 px away: nothing within 2 px, everything within 3 px
    assert boundary_f1(shifted, truth, tolerance=2.0) == 0.0
    assert boundary_f1(shifted, truth, tolerance=3.0) == 1.0
    longer = _line(10, range(5, 20))  # 5 extra pixels, 1-5 px past the truth's end: 12 of 15 within 2 px
    precision, recall = 12 / 15, 1.0
    assert boundary_f1(longer, truth, 2.0) == pytest.approx(2 * precision * recall / (precision + recall))


def test_boundary_f1_empty_masks():
    empty = np.zeros((8, 8), bool)
    some = empty.copy()
    some[2:5, 2:5] = True
    assert math.isnan(boundary_f1(empty, empty))
    assert boundary_f1(some, empty) == 0.0 and boundary_f1(empty, some) == 0.0


def _two_squares(gap: int = 1) -> np.ndarray:
    label = np.zeros((12, 16), np.uint8)
    label[2:6, 2:6] = 1
    label[2:6, 6 + gap:10 + gap] = 1
    return label


def test_gap_mask_by_hand():
    # 1-px gap in column 6: its 4 pixels (d1 = d2 = 1) and the two diagonal neighbours at its ends (d1 = d2 = sqrt 2)
    expected = np.zeros((12, 16), bool)
    expected[1:7, 6] = True
    assert np.array_equal(gap_mask(_two_squares()), expected)
    one_object = np.zeros((12, 16), np.uint8)
    one_object[2:6, 2:6] = 1
    assert not gap_mask(one_object).any()


def test_object_iou_penalises_two_objects_predicted_as_one_blob():
    label = _two_squares()
    merged = label.copy()
    merged[2:6, 6] = 1  # the gap filled: one 36-px blob
    assert object_ious(merged, label, [1]) == [(1, 16, 16 / 36), (1, 16, 16 / 36)]
    assert object_ious(label, label, [1]) == [(1, 16, 1.0), (1, 16, 1.0)]
    missed = label.copy()
    missed[2:6, 7:11] = 0
    assert object_ious(missed, label, [1]) == [(1, 16, 1.0), (1, 16, 0.0)]
    assert [size_bin(a) for a in (1, 99, 100, 999, 1000)] == ["small", "small", "medium", "medium", "large"]


def test_pooled_scores_overlap_and_gaps():
    label = _two_squares()
    overlap = np.zeros(label.shape, bool)
    overlap[2:6, 4:8] = True  # 16 px across the gap: two columns of each square and the gap column
    pred = label.copy()
    pred[2:6, 6] = 1  # the gap predicted as class 1
    case = score_case(pred, label, n_classes=2, overlap=overlap)
    # inside the region: label class 1 on cols 4, 5, 7 (12 px), predicted on cols 4-7 (16 px)
    assert case.overlap[1] == (12, 16)
    assert case.gap == (2, 6)  # the two diagonal gap pixels stay background, the 4 in the gap do not
    scores = pool_scores([case, score_case(label, label, 2, overlap)], n_classes=2)
    assert scores["overlap_iou"] == pytest.approx(24 / 28)
    assert scores["gap_accuracy"] == pytest.approx(8 / 12)
    assert scores["objects_small"] == 4 and math.isnan(scores["iou_large"]) and scores["objects_large"] == 0
    assert scores["iou_small"] == pytest.approx((16 / 36 * 2 + 2) / 4)
    with pytest.raises(ValueError, match="differ in shape"):
        score_case(pred[:5], label, 2)
