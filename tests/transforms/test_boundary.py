"""Ronneberger's weight map on hand-checkable labels: two objects with a gap, touching classes, 3D, packing."""
import math

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, RandSpatialCropSamplesd

from pipeline.transforms import BoundaryWeightMapd, boundary_weight_map
from pipeline.transforms.boundary import class_balance_weights, two_nearest_object_distances

W0, SIGMA = 10.0, 5.0


def _term(d1: float, d2: float) -> float:
    return W0 * math.exp(-((d1 + d2) ** 2) / (2 * SIGMA**2))


def _two_squares(size: int = 20, classes: tuple[int, int] = (1, 1), gap: int = 2) -> np.ndarray:
    """Two 8x6 squares side by side in rows 6-13, ``gap`` background columns between them (cols 3-8 | ...)."""
    label = np.zeros((1, size, size), dtype=np.uint8)
    label[0, 6:14, 3:9] = classes[0]
    label[0, 6:14, 9 + gap:15 + gap] = classes[1]
    return label


def test_two_squares_two_pixels_apart_peak_in_the_gap_with_the_hand_computed_value():
    label = _two_squares()
    w = boundary_weight_map(label, W0, SIGMA)[0]
    assert w.shape == (20, 20) and w.dtype == np.float32
    n, n_fg = 400, 2 * 8 * 6
    wc_bg, wc_fg = n / (2 * (n - n_fg)), n / (2 * n_fg)  # two classes present
    # gap columns 9 and 10: 1 px to one square, 2 px to the other
    expected_gap = wc_bg + _term(1.0, 2.0)
    assert w[6:14, 9:11] == pytest.approx(np.full((8, 2), expected_gap), rel=1e-5)
    peak = np.unravel_index(np.argmax(w), w.shape)
    assert 6 <= peak[0] < 14 and peak[1] in (9, 10)
    assert w.max() == pytest.approx(expected_gap, rel=1e-5)
    # just above the gap: sqrt(2) to the left square's corner (6, 8), sqrt(5) to the right one's (6, 11)
    assert w[5, 9] == pytest.approx(wc_bg + _term(math.sqrt(2), math.sqrt(5)), rel=1e-5)
    # inside the objects the exp term is not added
    assert w[10, 5] == pytest.approx(wc_fg, rel=1e-6) and w[10, 14] == pytest.approx(wc_fg, rel=1e-6)
    # the bottom-left corner: nearest pixels (13, 3) and (13, 11) of the two squares
    assert w[19, 0] == pytest.approx(wc_bg + _term(math.hypot(6, 3), math.hypot(6, 11)), rel=1e-6)


def test_far_from_the_objects_the_weight_is_the_background_class_weight():
    label = np.zeros((1, 64, 64), dtype=np.uint8)
    label[0, 2:8, 2:8] = 1
    label[0, 2:8, 10:16] = 2
    w = boundary_weight_map(label, W0, SIGMA)[0]
    wc_bg = 64 * 64 / (3 * (64 * 64 - 72))
    assert w[63, 63] == pytest.approx(wc_bg, rel=1e-6)
    assert w[40:, 40:] == pytest.approx(np.full((24, 24), wc_bg), rel=1e-6)
    unbalanced = boundary_weight_map(label, W0, SIGMA, class_balance=False)[0]
    assert unbalanced[63, 63] == pytest.approx(1.0) and unbalanced[4, 4] == 1.0


def test_class_weights_give_every_present_class_the_same_total_and_mean_one():
    label = np.zeros((30, 40), dtype=np.int64)
    label[2:5, 3:7] = 1  # 12 px
    label[10:20, 10:30] = 2  # 200 px; class 3 absent
    wc = class_balance_weights(label)
    totals = [wc[label == c].sum() for c in (0, 1, 2)]
    assert totals == pytest.approx([1200 / 3] * 3, rel=1e-5)
    assert wc.mean() == pytest.approx(1.0, rel=1e-6)
    assert wc[label == 1] == pytest.approx(np.full(12, 1200 / (3 * 12)), rel=1e-6)
    assert np.all(class_balance_weights(np.zeros((5, 5), dtype=np.int64)) == 1.0)


def test_touching_objects_of_different_classes_are_separate_objects():
    w_two = boundary_weight_map(_two_squares(classes=(1, 2), gap=0), W0, SIGMA)[0]
    w_one = boundary_weight_map(_two_squares(classes=(1, 1), gap=0), W0, SIGMA)[0]
    # background pixel (5, 8) above the contact: 1 px to class 1 at (6, 8), sqrt(2) px to class 2 at (6, 9)
    n, n_fg = 400, 96
    assert w_two[5, 8] == pytest.approx(n / (3 * (n - n_fg)) + _term(1.0, math.sqrt(2)), rel=1e-5)
    # the same shape as one class is a single object: no exp term anywhere (fewer than two objects)
    np.testing.assert_allclose(w_one, class_balance_weights(_two_squares(classes=(1, 1), gap=0)[0].astype(np.int64)))


def test_single_object_or_empty_label_has_no_boundary_term():
    label = np.zeros((1, 16, 16), dtype=np.uint8)
    assert np.all(boundary_weight_map(label, W0, SIGMA) == 1.0)
    label[0, 4:8, 4:8] = 2
    d1, d2, n_objects = two_nearest_object_distances(label[0].astype(np.int64))
    assert n_objects == 1 and np.isinf(d2).all() and d1[4, 9] == 2.0
    np.testing.assert_allclose(boundary_weight_map(label, W0, SIGMA)[0], class_balance_weights(label[0].astype(int)))


def test_diagonally_touching_pixels_are_one_object():
    label = np.zeros((1, 12, 12), dtype=np.uint8)
    label[0, 3, 3] = label[0, 4, 4] = label[0, 5, 5] = 1
    assert two_nearest_object_distances(label[0].astype(np.int64))[2] == 1


def test_3d_gap_between_two_cubes_and_spacing_in_mm():
    label = torch.zeros(1, 16, 16, 16, dtype=torch.uint8)
    label[0, 4:10, 4:10, 2:6] = 1
    label[0, 4:10, 4:10, 8:12] = 1  # z = 6, 7 are the gap
    w = boundary_weight_map(label, W0, SIGMA)
    assert isinstance(w, torch.Tensor) and w.shape == (1, 16, 16, 16) and w.dtype == torch.float32
    n, n_fg = 16**3, 2 * 6 * 6 * 4
    wc_bg = n / (2 * (n - n_fg))
    assert w[0, 6, 6, 6].item() == pytest.approx(wc_bg + _term(1.0, 2.0), rel=1e-5)
    assert w.max().item() == pytest.approx(wc_bg + _term(1.0, 2.0), rel=1e-5)
    # 2 mm along z: the gap voxel is 2 mm from one cube and 4 mm from the other; sigma is in mm as well
    w_mm = boundary_weight_map(label, W0, SIGMA, spacing=(1.0, 1.0, 2.0))
    assert w_mm[0, 6, 6, 6].item() == pytest.approx(wc_bg + _term(2.0, 4.0), rel=1e-5)


def test_bad_label_shapes_are_refused():
    with pytest.raises(ValueError, match="channel-first"):
        boundary_weight_map(np.zeros((2, 8, 8)))
    with pytest.raises(ValueError, match="channel-first"):
        boundary_weight_map(np.zeros((8, 8)))


def test_transform_packs_label_and_weight_into_a_float_label_and_keeps_meta():
    affine = torch.diag(torch.tensor([2.0, 3.0, 1.0, 1.0]))
    label = MetaTensor(torch.as_tensor(_two_squares()), affine=affine)
    out = BoundaryWeightMapd("label", w0=W0, sigma=SIGMA, pack_into_label=True)({"label": label, "image": label})
    packed = out["label"]
    assert isinstance(packed, MetaTensor) and packed.dtype == torch.float32 and packed.shape == (2, 20, 20)
    assert torch.equal(packed[0], label[0].float())
    np.testing.assert_allclose(packed[1].numpy(), boundary_weight_map(_two_squares(), W0, SIGMA)[0])
    assert torch.equal(packed.affine, affine)
    assert "weight" not in out and out["image"] is label

    unpacked = BoundaryWeightMapd("label", weight_key="w", w0=W0, sigma=SIGMA)({"label": label})
    assert unpacked["label"] is label and unpacked["w"].shape == (1, 20, 20)


def test_transform_after_a_multi_sample_crop_handles_every_sample():
    chain = Compose([
        RandSpatialCropSamplesd(["image", "label"], roi_size=(12, 12), num_samples=3, random_size=False),
        BoundaryWeightMapd("label", pack_into_label=True),
    ])
    chain.set_random_state(0)
    data = {"image": torch.rand(1, 20, 20), "label": torch.as_tensor(_two_squares())}
    samples = chain(data)
    assert len(samples) == 3
    for s in samples:
        assert s["label"].shape == (2, 12, 12) and torch.all(s["label"][1] > 0)
