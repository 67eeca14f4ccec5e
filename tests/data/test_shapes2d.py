"""Synthetic 2D shapes: determinism, label/shape-kind agreement, overlap rule, MSD layout, overwrite refusal."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.data.shapes2d import ShapeSpec, make_shapes, random_shapes, render_shapes
from pipeline.errors import PipelineError


def _snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {
        p.relative_to(folder).as_posix(): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _render(seed: int, size: int = 48, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return render_shapes(random_shapes(rng, size=size, **kwargs), size=size, rng=rng)


def test_same_seed_same_arrays_different_seed_differs() -> None:
    a_img, a_lbl = _render(7)
    b_img, b_lbl = _render(7)
    c_img, _ = _render(8)
    assert a_img.dtype == np.uint8 and a_lbl.dtype == np.uint8 and a_img.shape == (48, 48)
    assert np.array_equal(a_img, b_img) and np.array_equal(a_lbl, b_lbl)
    assert not np.array_equal(a_img, c_img)


def test_make_shapes_byte_identical_by_seed(tmp_path: Path) -> None:
    make_shapes(tmp_path / "a", n=6, seed=3, size=32)
    make_shapes(tmp_path / "b", n=6, seed=3, size=32)
    make_shapes(tmp_path / "c", n=6, seed=4, size=32)
    a, b, c = (_snapshot(tmp_path / x) for x in "abc")
    assert {k: v[1] for k, v in a.items()} == {k: v[1] for k, v in b.items()}
    assert any(a[k][1] != c.get(k, (0, b""))[1] for k in a if k.endswith(".png"))


@pytest.mark.parametrize("kind, expected", [("rectangle", {0, 2}), ("ellipse", {0, 1})])
def test_single_kind_gives_only_its_label(kind: str, expected: set[int]) -> None:
    for seed in range(5):
        _, label = _render(seed, kinds=(kind,), n_shapes=4)
        assert set(np.unique(label).tolist()) == expected


def test_random_shapes_counts_and_intensity_separation() -> None:
    rng = np.random.default_rng(0)
    counts = set()
    for _ in range(30):
        specs = random_shapes(rng, size=64)
        counts.add(len(specs))
        ints = sorted(s.intensity for s in specs)
        assert all(b - a >= 20 for a, b in zip(ints, ints[1:]))
    assert counts <= set(range(2, 7)) and len(counts) > 1
    with pytest.raises(PipelineError, match="kinds"):
        random_shapes(rng, kinds=("triangle",))


@pytest.mark.parametrize("order", ["ellipse_then_rectangle", "rectangle_then_ellipse"])
def test_later_shape_covers_earlier(order: str) -> None:
    ellipse = ShapeSpec("ellipse", (16.0, 16.0), (10.0, 10.0), 0.0, 100.0)
    rectangle = ShapeSpec("rectangle", (16.0, 20.0), (5.0, 5.0), math.pi / 6, 200.0)
    specs = [ellipse, rectangle] if order == "ellipse_then_rectangle" else [rectangle, ellipse]
    image, label = render_shapes(specs, size=32)  # no rng: background 0, no noise
    overlap = ellipse.mask(32) & rectangle.mask(32)
    assert overlap.sum() > 10
    later = specs[-1]
    assert np.all(label[overlap] == (2 if later.kind == "rectangle" else 1))
    assert np.all(image[overlap] == round(later.intensity))
    only_earlier = specs[0].mask(32) & ~later.mask(32)
    assert np.all(image[only_earlier] == round(specs[0].intensity))
    assert np.all(label[~(ellipse.mask(32) | rectangle.mask(32))] == 0)


def test_shapes_brighter_than_their_background() -> None:
    for seed in range(10):
        rng = np.random.default_rng(seed)
        specs = random_shapes(rng, size=48)
        image, label = render_shapes(specs, size=48, rng=rng)
        # Noise sigma <= 15: compare means rather than single pixels.
        assert image[label == 0].mean() + 20 < min(s.intensity for s in specs)


def test_make_shapes_layout_splits_and_monai_loading(tmp_path: Path) -> None:
    from monai.transforms import LoadImaged

    out = tmp_path / "shapes"
    path = make_shapes(out, n=20, seed=1, size=32, val_fraction=0.2, test_fraction=0.1)
    assert path == out / "dataset.json"
    meta = json.loads(path.read_text())
    assert meta["name"] == "Shapes2D" and meta["tensorImageSize"] == "2D"
    assert meta["modality"] == {"0": "synthetic"}
    assert meta["labels"] == {"0": "background", "1": "ellipse", "2": "rectangle"}
    train, val, test = meta["training"], meta["validation"], meta["test"]
    assert (len(train), len(val), len(test)) == (14, 4, 2)
    assert meta["numTraining"] == 18 and meta["numTest"] == 2
    names = [Path(e["image"]).name for e in train + val + test]
    assert len(set(names)) == 20 and set(names) == {f"shape_{i:04d}.png" for i in range(20)}
    for e in train + val:
        assert e["image"].startswith("./imagesTr/") and e["label"] == e["image"].replace("images", "labels")
    for e in test:
        assert e["image"].startswith("./imagesTs/") and e["label"].startswith("./labelsTs/")
    # Split depends on the seed only.
    other = json.loads(make_shapes(tmp_path / "again", n=20, seed=1, size=32, val_fraction=0.2,
                                   test_fraction=0.1).read_text())
    assert other["validation"] == val and other["test"] == test

    loader = LoadImaged(keys=["image", "label"], image_only=True)
    for e in (train[0], test[0]):
        item = loader({k: str(out / e[k]) for k in ("image", "label")})
        label_png = np.asarray(Image.open(out / e["label"]))
        assert tuple(item["image"].shape) == (32, 32)
        # MONAI's PILReader returns (W, H): the transpose of PIL's (rows, cols).
        assert np.array_equal(item["label"].numpy().astype(np.uint8), label_png.T)
        assert set(np.unique(item["label"].numpy()).tolist()) <= {0, 1, 2}
        assert np.array_equal(item["image"].numpy().astype(np.uint8), np.asarray(Image.open(out / e["image"])).T)


def test_overwrite_refused_without_flag(tmp_path: Path) -> None:
    out = tmp_path / "shapes"
    make_shapes(out, n=5, seed=0, size=16, val_fraction=0.2, test_fraction=0.2)
    before = _snapshot(out)
    with pytest.raises(PipelineError, match="dataset.json: already exists"):
        make_shapes(out, n=5, seed=1, size=16)
    assert _snapshot(out) == before
    # A folder holding someone else's dataset.json is never replaced, even with overwrite=True.
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "dataset.json").write_text('{"name": "Task01_BrainTumour", "training": []}')
    before_foreign = _snapshot(foreign)
    with pytest.raises(PipelineError, match="not a Shapes2D data set"):
        make_shapes(foreign, n=3, size=16, overwrite=True)
    assert _snapshot(foreign) == before_foreign


def test_overwrite_replaces_shapes_data_set(tmp_path: Path) -> None:
    out = tmp_path / "shapes"
    make_shapes(out, n=6, seed=0, size=16, val_fraction=0.0, test_fraction=0.5)
    make_shapes(out, n=4, seed=0, size=16, val_fraction=0.0, test_fraction=0.0, overwrite=True)
    meta = json.loads((out / "dataset.json").read_text())
    listed = {e[k].lstrip("./") for e in meta["training"] for k in ("image", "label")}
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*.png")}
    assert on_disk == listed  # files of the old data set that the new one does not list are gone
    assert meta["test"] == [] and len(meta["training"]) == 4


BAD_ARGUMENTS = ({"n": 0}, {"seed": -1}, {"size": 4}, {"val_fraction": 1.2},
                 {"n": 2, "val_fraction": 0.5, "test_fraction": 0.5})


def test_make_shapes_bad_arguments(tmp_path: Path) -> None:
    for kwargs in BAD_ARGUMENTS:
        with pytest.raises(PipelineError):
            make_shapes(tmp_path / "x", **{"size": 16, **kwargs})
    assert not (tmp_path / "x").exists()  # refused before any folder is created


@pytest.mark.parametrize("overwrite", [False, True])
def test_bad_arguments_leave_an_existing_data_set_alone(tmp_path: Path, overwrite: bool) -> None:
    out = tmp_path / "shapes"
    make_shapes(out, n=4, seed=0, size=16, val_fraction=0.0, test_fraction=0.25)
    (out / "imagesTr" / "my_notes.txt").write_text("not generated")
    before = _snapshot(out)
    for kwargs in BAD_ARGUMENTS:
        with pytest.raises(PipelineError):
            make_shapes(out, **{"size": 16, **kwargs}, overwrite=overwrite)
    assert _snapshot(out) == before
