"""Issue 17, item 6: Ronneberger's weight map (w0 = 10, sigma = 5 px, class-balanced w_c) on two touching objects:
the maximum lies in the 1-px gap between them with the hand-computed value, and every class carries the same total
class weight. tests/transforms/test_boundary.py covers a 2-px gap, 3D and packing; this adds the touching case (one
background pixel between the objects, as between the U-Net paper's cells) and the study's own touching pairs."""
from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.data.shapes_variants import variant_case
from pipeline.apps.study.metrics import gap_mask
from pipeline.transforms import boundary_weight_map

W0, SIGMA = 10.0, 5.0


def _touching() -> np.ndarray:
    """16 x 16: a 6 x 5 square (class 1) at rows 5-10, cols 2-6 and another at cols 8-12; column 7 is the gap."""
    label = np.zeros((1, 16, 16), np.uint8)
    label[0, 5:11, 2:7] = 1
    label[0, 5:11, 8:13] = 1
    return label


def test_maximum_in_the_gap_between_two_touching_objects_by_hand():
    w = boundary_weight_map(_touching(), W0, SIGMA)[0]
    n, n_fg = 256, 60
    wc_bg, wc_fg = n / (2 * (n - n_fg)), n / (2 * n_fg)  # 0.6531 and 2.1333: two classes present
    in_gap = wc_bg + W0 * math.exp(-((1 + 1) ** 2) / (2 * SIGMA**2))  # d1 = d2 = 1: 0.6531 + 9.2312
    assert w[5:11, 7] == pytest.approx(np.full(6, in_gap), rel=1e-5)
    assert w.max() == pytest.approx(in_gap, rel=1e-5)
    assert set(zip(*np.nonzero(np.isclose(w, w.max(), rtol=1e-6)))) == {(r, 7) for r in range(5, 11)}
    # the ends of the gap: sqrt(2) to both squares' corners
    assert w[4, 7] == pytest.approx(wc_bg + W0 * math.exp(-((2 * math.sqrt(2)) ** 2) / (2 * SIGMA**2)), rel=1e-5)
    # inside the objects only the class weight
    assert w[7, 4] == pytest.approx(wc_fg, rel=1e-6) and w[7, 10] == pytest.approx(wc_fg, rel=1e-6)


def test_class_weights_balance_the_classes_on_the_touching_image():
    label = _touching()
    balanced = boundary_weight_map(label, 0.0, SIGMA)[0]  # w0 = 0 leaves w_c alone
    fg = label[0] > 0
    assert balanced[fg].sum() == pytest.approx(balanced[~fg].sum(), rel=1e-5)  # the same total weight per class
    assert balanced.mean() == pytest.approx(1.0, rel=1e-6)
    plain = boundary_weight_map(label, W0, SIGMA, class_balance=False)[0]
    assert plain[7, 4] == 1.0 and plain[5, 7] == pytest.approx(1 + W0 * math.exp(-4 / 50), rel=1e-5)


def test_on_the_precision_data_the_background_weight_peaks_in_the_gaps_between_touching_objects():
    # over the whole image the peak may be inside a rare class: w_c = N / (K n_c) of a few thin rectangles can
    # exceed w0; over the background it is in a gap of 1-2 px
    hits = 0
    for index in range(10):
        label = variant_case("precision", 0, index, 64).label
        gaps = gap_mask(label)
        if not gaps.any():
            continue
        w = np.where(label == 0, boundary_weight_map(label[None], W0, SIGMA)[0], -np.inf)
        assert gaps[np.unravel_index(np.argmax(w), w.shape)]
        assert w[gaps].min() > np.median(w[label == 0]) + 0.5 * W0 * math.exp(-9 / 50)
        hits += 1
    assert hits >= 5
