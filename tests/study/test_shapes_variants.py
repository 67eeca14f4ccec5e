"""The study's data variants: the report's shapes unchanged, context data whose interiors are background, precision
data with small, thin and touching objects that stay separate objects."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from pipeline.data.shapes2d import make_shapes, random_shapes, render_shapes
from pipeline.data.shapes_variants import VARIANTS, make_shape_variant, variant_case
from pipeline.errors import PipelineError
from pipeline.apps.study.metrics import gap_mask

EIGHT = np.ones((3, 3), bool)


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_shapes_variant_is_make_shapes_byte_for_byte(tmp_path):
    make_shapes(tmp_path / "a", n=6, seed=3, size=32)
    make_shape_variant(tmp_path / "b", "shapes", n=6, seed=3, size=32)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    case = variant_case("shapes", 3, 4, 32)
    rng = np.random.default_rng([3, 4])
    image, label = render_shapes(random_shapes(rng, size=32), size=32, rng=rng)
    assert np.array_equal(case.image, image) and np.array_equal(case.label, label)
    # the masks are the generator's shapes: where exactly one covers a pixel, the label is that shape's class
    assert case.masks.shape[1:] == (32, 32) and (case.coverage > 0).sum() >= (label > 0).sum()


@pytest.mark.parametrize("variant", VARIANTS)
def test_same_seed_same_case_other_seed_differs(variant):
    a, b, c = variant_case(variant, 0, 5, 64), variant_case(variant, 0, 5, 64), variant_case(variant, 1, 5, 64)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.label, b.label)
    assert not np.array_equal(a.image, c.image)
    assert a.image.dtype == np.uint8 and a.label.dtype == np.uint8 and set(np.unique(a.label)) <= {0, 1, 2}


def test_context_interiors_look_like_the_background_and_only_outlines_are_bright():
    for index in range(6):
        case = variant_case("context", 0, index, 96)
        assert case.label.any()
        image = case.image.astype(float)
        fg = case.label > 0
        interior = ndimage.binary_erosion(fg, iterations=4)  # away from the 2-px outline
        near = ndimage.binary_dilation(fg, iterations=8) & ~ndimage.binary_dilation(fg, iterations=3)
        outline = fg & ~ndimage.binary_erosion(fg, iterations=2)
        # the interior is the background texture: its mean matches the background just outside the shape ...
        assert abs(image[interior].mean() - np.median(image[near])) < 12
        # ... while the outline stands out by 35-80 grey levels
        assert image[outline].mean() - image[interior].mean() > 25
        # the whole shape lies inside the image: its outline is closed
        assert not (fg[0].any() or fg[-1].any() or fg[:, 0].any() or fg[:, -1].any())


def test_precision_objects_are_small_thin_or_touching_yet_separate():
    areas, gaps = [], 0
    for index in range(12):
        case = variant_case("precision", 0, index, 64)
        # no shapes overlap, and every generated shape is its own connected component of its class: touching
        # objects of the same class keep a background gap
        assert case.coverage.max() <= 1
        n_components = sum(ndimage.label(case.label == c, EIGHT)[1] for c in (1, 2))
        assert n_components == len(case.masks)
        areas += [int(m.sum()) for m in case.masks]
        gaps += int(gap_mask(case.label).sum())
    assert max(areas) < 300 and np.median(areas) < 60  # small objects
    assert gaps > 20  # 1-2 px gaps between objects occur


def test_bad_variant_and_sizes_are_one_line_errors(tmp_path):
    with pytest.raises(PipelineError, match="unknown shapes variant 'huge'"):
        make_shape_variant(tmp_path / "x", "huge", n=4)
    with pytest.raises(PipelineError, match="size=16"):
        make_shape_variant(tmp_path / "x", "context", n=4, size=16)
    assert not (tmp_path / "x").exists()


def test_variant_data_set_refuses_to_overwrite_another_variant(tmp_path):
    make_shape_variant(tmp_path / "d", "precision", n=5, size=32)
    with pytest.raises(PipelineError, match="not a Shapes2D context data set"):
        make_shape_variant(tmp_path / "d", "context", n=5, size=32, overwrite=True)
