"""Lesion-level detection metrics: the matching rule, contrast, false positives and the case-level scores."""
import math

import numpy as np
import pytest
import torch
from ignite.engine import Engine

from pipeline.evaluation.lesions import (
    average_precision,
    case_auroc,
    case_lesions,
    lesion_contrast,
    lesion_summary,
    write_lesion_tables,
)
from pipeline.handlers import LesionMetricsHandler
from pipeline.transforms import ChannelMaxd, IntensityToHU


def _ball(shape, centre, r):
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    return (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= r**2


def _case():
    """A gland (label 1) with two tumours (label 2): a big one at (10, 10, 10), a small one at (10, 10, 30)."""
    shape = (24, 24, 40)
    label = np.zeros(shape, np.int16)
    label[2:22, 2:22, 2:38] = 1
    label[_ball(shape, (10, 10, 10), 4)] = 2
    label[_ball(shape, (10, 10, 30), 2)] = 2
    return label


def test_detection_rule_counts_hits_misses_and_false_positives():
    label = _case()
    pred = np.where(label == 2, 1, label)  # both tumours missed...
    pred[_ball(label.shape, (10, 10, 10), 3)] = 2  # ...then the big one found (IoU 123/257 > 0.1)
    pred[0:2, 0:2, 0:2] = 2  # one false-positive component far away
    rows, case = case_lesions(pred, label, 2, (2.0, 2.0, 2.0), max_prob=0.9, case="c")
    assert [r["detected"] for r in rows] == [True, False]
    assert case == {"case": "c", "lesions": 2, "detected": 1, "fp_components": 1, "max_prob": 0.9}
    # a 2 mm voxel is 0.008 ml
    assert rows[0]["volume_ml"] == pytest.approx((label[:, :, :20] == 2).sum() * 0.008)
    assert 0.1 < rows[0]["iou"] < 1.0 and rows[1]["iou"] == 0.0


def test_a_tiny_overlap_is_not_a_detection_and_counts_as_false_positive():
    label = _case()
    pred = np.where(label == 2, 1, label)
    pred[8:14, 8:14, 14:22] = 2  # touches the big tumour in one corner only
    pred[10, 10, 14] = 2
    rows, case = case_lesions(pred, label, 2, (1.0, 1.0, 1.0))
    assert rows[0]["iou"] < 0.1 and not rows[0]["detected"]
    assert case["fp_components"] == 1


def test_contrast_is_gland_minus_lesion_within_the_shell():
    label = _case()
    image = np.full(label.shape, -100.0)
    image[label == 1] = 100.0
    image[label == 2] = 60.0
    tumour = np.zeros(label.shape, bool)
    tumour[_ball(label.shape, (10, 10, 10), 4)] = True
    gland = label == 1
    assert lesion_contrast(image, tumour, gland, (1.0, 1.0, 1.0)) == pytest.approx(40.0)
    # far from any gland: undefined
    assert math.isnan(lesion_contrast(image, tumour, np.zeros_like(gland), (1.0, 1.0, 1.0)))
    rows, _ = case_lesions(label, label, 2, (1.0, 1.0, 1.0), image=image)
    assert [r["contrast_hu"] for r in rows] == pytest.approx([40.0, 40.0])


def test_case_scores_match_their_definitions():
    scores, positive = [0.9, 0.8, 0.7, 0.1], [True, False, True, False]
    assert case_auroc(scores, positive) == pytest.approx(0.75)
    # precision at the two positives: 1/1 and 2/3
    assert average_precision(scores, positive) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert average_precision([0.5, 0.5], [True, False]) == pytest.approx(0.5)  # one threshold for the tie
    assert math.isnan(case_auroc([0.2, 0.3], [True, True]))


def test_summary_bins_and_goal_bin(tmp_path):
    lesions = [{"case": "a", "lesion": 1, "volume_ml": 0.5, "contrast_hu": 30.0, "detected": False, "iou": 0.0},
               {"case": "b", "lesion": 1, "volume_ml": 2.0, "contrast_hu": 15.0, "detected": True, "iou": 0.5},
               {"case": "c", "lesion": 1, "volume_ml": 8.0, "contrast_hu": 2.0, "detected": False, "iou": 0.0}]
    cases = [{"case": c, "lesions": 1, "detected": int(c == "b"), "fp_components": 0, "max_prob": p}
             for c, p in (("a", 0.3), ("b", 0.9), ("c", 0.2))]
    cases.append({"case": "d", "lesions": 0, "detected": 0, "fp_components": 2, "max_prob": 0.4})
    s = lesion_summary(lesions, cases)
    assert s["sensitivity"]["sensitivity"] == pytest.approx(1 / 3)
    assert s["by_volume"]["<1 ml"]["lesions"] == 1 and s["by_volume"]["1-5 ml"]["detected"] == 1
    assert s["by_contrast"]["<10 HU"]["lesions"] == 1 and s["by_contrast"][">=20 HU"]["lesions"] == 1
    assert (s["goal_bin"]["detected"], s["goal_bin"]["lesions"]) == (1, 1)
    assert s["fp_components_per_case"] == pytest.approx(0.5)
    assert s["case_auroc"] == pytest.approx(1 / 3)
    paths = write_lesion_tables(lesions, cases, s, tmp_path)
    assert [p.name for p in paths] == ["lesions.csv", "lesion_cases.csv", "lesion_summary.json", "lesion_summary.md"]
    assert "0.333 (1/3)" in (tmp_path / "lesion_summary.md").read_text()


def test_handler_reads_an_evaluator_output(tmp_path):
    label = _case()
    onehot = torch.nn.functional.one_hot(torch.as_tensor(label).long(), 3).permute(3, 0, 1, 2).float()
    probs = onehot * 0.8 + 0.1
    item = ChannelMaxd("pred", channel=2)({"pred": probs})
    assert item["max_prob"] == pytest.approx(0.9)
    image = torch.as_tensor(np.where(label == 2, 0.5, 0.6))[None].float()  # 0..1 window of [-100, 100] HU
    item.update(label=onehot, image=image, pred=onehot)
    engine = Engine(lambda e, b: [item])
    handler = LesionMetricsHandler(2, to_hu=IntensityToHU("window", (-100, 100)), output_dir=str(tmp_path))
    handler.attach(engine)
    engine.run([0], max_epochs=1)
    assert engine.state.metrics["lesion_sensitivity"] == 1.0
    assert engine.state.metrics["lesion_fp_per_case"] == 0.0
    assert [r["contrast_hu"] for r in handler.lesions] == pytest.approx([20.0, 20.0])
    assert (tmp_path / "lesion_summary.json").is_file()


def test_disabled_without_a_lesion_class():
    engine = Engine(lambda e, b: None)
    LesionMetricsHandler(None).attach(engine)
    engine.run([0], max_epochs=1)
    assert "lesion_sensitivity" not in engine.state.metrics


def test_parts_closer_than_the_merge_distance_are_one_lesion():
    from pipeline.evaluation.lesions import components

    mask = np.zeros((10, 10, 30), bool)
    mask[3:7, 3:7, 2:8] = True
    mask[3:7, 3:7, 10:14] = True  # 2 voxels (2 mm) from the first part
    mask[3:7, 3:7, 22:26] = True  # 8 mm from the second
    assert components(mask)[1] == 3
    labels, n = components(mask, (1.0, 1.0, 1.0), merge_mm=4.0)
    assert n == 2 and labels[5, 5, 4] == labels[5, 5, 12] != labels[5, 5, 24]
    assert set(np.unique(labels[~mask])) == {0}
    assert components(mask, (1.0, 1.0, 3.0), merge_mm=4.0)[1] == 3  # 6 mm apart along a 3 mm axis
