"""Tests of the synthetic pancreas CT phantoms (tiny scale=4 volumes so the file runs in seconds)."""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import scipy.ndimage as ndi

from pipeline.data.phantom import (
    TISSUES,
    PhantomCase,
    case_seed,
    generate_case,
    make_pancreas_dataset,
    nifti_bytes,
)
from pipeline.errors import PipelineError

SCALE = 4.0
SEEDS = range(6)


@pytest.fixture(scope="module")
def cases() -> list[PhantomCase]:
    return [generate_case(case_seed(0, i), SCALE) for i in SEEDS]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_pancreas_dataset(tmp_path_factory.mktemp("phantom") / "Task07", n=2, n_test=1, seed=3, scale=SCALE)


def _core(tissue: np.ndarray, axes: tuple[int, int]) -> np.ndarray:
    """Voxels whose 4 neighbours in the plane of `axes` share their tissue class."""
    core = np.ones(tissue.shape, bool)
    for axis in axes:
        for shift in (1, -1):
            core &= tissue == np.roll(tissue, shift, axis=axis)
    return core


def test_same_seed_same_case_and_different_seed_differs():
    a, b, c = generate_case(7, SCALE), generate_case(7, SCALE), generate_case(8, SCALE)
    for name in ("hu", "label", "tissue", "affine"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.spacing == b.spacing and a.axcodes == b.axcodes
    assert a.hu.shape != c.hu.shape or not np.array_equal(a.hu, c.hu)


def test_dtypes_and_label_values(cases):
    for case in cases:
        assert case.hu.dtype == np.int16 and case.label.dtype == np.uint8 and case.tissue.dtype == np.uint8
        assert set(np.unique(case.label)) <= {0, 1, 2}
        axis_s = case.permutation.index(2)  # the whole pancreas lies inside the volume, with margin
        assert (case.label > 0).sum() > 50
        assert not np.take(case.label, 0, axis=axis_s).any() and not np.take(case.label, -1, axis=axis_s).any()
        assert case.has_tumour == bool((case.label == 2).any())


def test_labels_only_inside_the_body(cases):
    for case in cases:
        body = ndi.binary_fill_holes(case.hu > -500)
        labelled = case.label > 0
        assert not (labelled & ~body).any()
        assert not (labelled & (case.tissue == TISSUES["air"])).any()
        assert case.hu[labelled].min() > -500


def test_labels_match_tissue_map_and_tumour_sits_in_the_pancreas(cases):
    with_tumour = [c for c in cases if c.has_tumour]
    assert with_tumour, "expected at least one tumour among the fixture seeds (about 60 % of cases have one)"
    for case in cases:
        pancreas = np.isin(case.tissue, (TISSUES["pancreas"], TISSUES["pancreatic_duct"]))
        np.testing.assert_array_equal(case.label == 1, pancreas)
        np.testing.assert_array_equal(case.label == 2, case.tissue == TISSUES["tumour"])
    for case in with_tumour:
        tumour = case.label == 2
        components, n = ndi.label(tumour)
        touching = ndi.binary_dilation(tumour, iterations=1) & (case.label == 1)
        for k in range(1, n + 1):  # every tumour blob is embedded in (touches) pancreas tissue
            assert (ndi.binary_dilation(components == k) & touching).any()
        assert tumour.sum() < (case.label == 1).sum()


PUBLISHED_HU = {  # typical portal-venous ranges as specified for this project
    "subcutaneous_fat": (-120, -80),
    "visceral_fat": (-120, -80),
    "muscle": (35, 65),
    "liver": (50, 70),
    "spleen": (45, 60),
    "pancreas": (30, 60),
    "aorta": (150, 300),
    "kidney_cortex": (150, 200),
}


def test_mean_hu_per_tissue_in_published_range(cases):
    for name, (lo, hi) in PUBLISHED_HU.items():
        values = []
        for case in cases:
            axes = tuple(d for d in range(3) if case.permutation[d] != 2)  # the in-plane axes
            values.append(case.hu[(case.tissue == TISSUES[name]) & _core(case.tissue, axes)])
        values = np.concatenate(values)
        assert values.size > 20, name
        assert lo <= values.mean() <= hi, f"{name}: mean {values.mean():.1f} HU outside [{lo}, {hi}]"
    # tumours are hypodense to their gland (interior voxels, away from the fat around the gland)
    tumour, gland = [], []
    for case in cases:
        axes = tuple(d for d in range(3) if case.permutation[d] != 2)
        interior = _core(case.label > 0, axes)
        tumour.append(case.hu[(case.label == 2) & interior])
        gland.append(case.hu[(case.label == 1) & interior])
    tumour, gland = np.concatenate(tumour), np.concatenate(gland)
    assert tumour.size > 5 and tumour.mean() < gland.mean()


def test_affine_records_spacing_permutation_and_flips(cases, tmp_path):
    assert any(c.axcodes != ("R", "A", "S") for c in cases)
    for case in cases:
        assert nib.aff2axcodes(case.affine) == case.axcodes
        expected = tuple(("LPI" if f else "RAS")[p] for p, f in zip(case.permutation, case.flips))
        assert case.axcodes == expected
        np.testing.assert_allclose(np.sqrt((case.affine[:3, :3] ** 2).sum(axis=0)), case.spacing)
        in_plane = [s for s, p in zip(case.spacing, case.permutation) if p != 2]
        assert in_plane[0] == in_plane[1] and 0.7 * SCALE <= in_plane[0] <= 1.0 * SCALE
        assert 1.5 * SCALE <= case.spacing[case.permutation.index(2)] <= 5.0 * SCALE
    case = cases[0]
    path = tmp_path / "image.nii.gz"
    path.write_bytes(nifti_bytes(case.hu, case.affine))
    img = nib.load(path)
    assert img.get_data_dtype() == np.int16
    np.testing.assert_allclose(img.header.get_zooms(), case.spacing, rtol=1e-6)
    assert int(img.header["qform_code"]) == 1 and int(img.header["sform_code"]) == 1
    np.testing.assert_allclose(img.header.get_qform(), case.affine, atol=1e-4)
    np.testing.assert_allclose(img.header.get_sform(), case.affine, atol=1e-4)
    np.testing.assert_array_equal(np.asanyarray(img.dataobj), case.hu)


def test_monai_orientation_and_spacing_land_on_target_grid(tmp_path):
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, Orientationd, Spacingd

    case = next(c for c in (generate_case(case_seed(1, i), SCALE) for i in range(20)) if c.axcodes[0] != "R")
    paths = {}
    for key, array in (("image", case.hu), ("label", case.label), ("tissue", case.tissue)):
        paths[key] = str(tmp_path / f"{key}.nii.gz")
        Path(paths[key]).write_bytes(nifti_bytes(array, case.affine))
    target = (3.0, 3.5, 8.0)
    keys = ["image", "label", "tissue"]
    out = Compose([
        LoadImaged(keys),
        EnsureChannelFirstd(keys),
        Orientationd(keys, axcodes="RAS"),
        Spacingd(keys, pixdim=target, mode=("bilinear", "nearest", "nearest")),
    ])(paths)
    for key in keys:
        np.testing.assert_allclose(out[key].pixdim, target, rtol=1e-5)
        assert nib.aff2axcodes(np.asarray(out[key].affine)) == ("R", "A", "S")
    assert set(np.unique(out["label"].numpy())) <= {0, 1, 2}
    assert (out["label"].numpy() > 0).any()
    tissue = out["tissue"].numpy()[0]

    def centroid(ids) -> np.ndarray:
        idx = np.argwhere(np.isin(tissue, ids)).mean(axis=0)
        return (np.asarray(out["tissue"].affine) @ np.append(idx, 1.0))[:3]  # RAS+ world mm

    body = centroid([t for n, t in TISSUES.items() if n != "air"])
    # RAS+: +x points to the patient's right, +y anterior
    assert centroid([TISSUES["liver"]])[0] > body[0] + 20
    assert centroid([TISSUES["spleen"]])[0] < body[0] - 20
    assert centroid([TISSUES["bone_cancellous"]])[1] < centroid([TISSUES["pancreas"]])[1]
    assert centroid([TISSUES["ivc"]])[0] > centroid([TISSUES["aorta"]])[0]


def test_dataset_layout_and_json_roundtrip(dataset):
    from monai.data import load_decathlon_datalist

    meta = json.loads((dataset / "dataset.json").read_text())
    assert meta["name"] == "Pancreas phantom"
    assert meta["tensorImageSize"] == "3D" and meta["modality"] == {"0": "CT"}
    assert meta["labels"] == {"0": "background", "1": "pancreas", "2": "cancer"}
    assert meta["numTraining"] == 2 and meta["numTest"] == 1
    assert {"description", "reference", "licence"} <= meta.keys()
    assert meta["training"][0] == {"image": "./imagesTr/pancreas_000.nii.gz", "label": "./labelsTr/pancreas_000.nii.gz"}
    assert meta["test"] == ["./imagesTs/pancreas_002.nii.gz"]
    assert (dataset / "labelsTs" / "pancreas_002.nii.gz").is_file()
    training = load_decathlon_datalist(str(dataset / "dataset.json"), data_list_key="training")
    assert len(training) == 2
    for item in training:
        assert Path(item["image"]).is_file() and Path(item["label"]).is_file()
        image, label = nib.load(item["image"]), nib.load(item["label"])
        assert image.get_data_dtype() == np.int16 and label.get_data_dtype() == np.uint8
        np.testing.assert_allclose(image.affine, label.affine)
    test = load_decathlon_datalist(str(dataset / "dataset.json"), data_list_key="test")
    assert [Path(t["image"]).name for t in test] == ["pancreas_002.nii.gz"]
    assert not list(dataset.rglob("*.partial"))


def test_same_seed_gives_byte_identical_files(dataset, tmp_path):
    again = make_pancreas_dataset(tmp_path / "again", n=2, n_test=1, seed=3, scale=SCALE)
    for path in sorted(dataset.rglob("*.nii.gz")) + [dataset / "dataset.json"]:
        assert (again / path.relative_to(dataset)).read_bytes() == path.read_bytes(), path.name


def test_existing_dataset_is_never_overwritten_without_permission(dataset):
    before = {p: p.read_bytes() for p in dataset.rglob("*") if p.is_file()}
    with pytest.raises(PipelineError) as info:
        make_pancreas_dataset(dataset, n=1, n_test=0, seed=99, scale=SCALE)
    message = str(info.value)
    assert str(dataset) in message and "\n" not in message
    after = {p: p.read_bytes() for p in dataset.rglob("*") if p.is_file()}
    assert after == before


def test_overwrite_replaces_the_dataset(tmp_path):
    out = make_pancreas_dataset(tmp_path / "ds", n=1, n_test=0, seed=1, scale=SCALE)
    first = (out / "imagesTr" / "pancreas_000.nii.gz").read_bytes()
    make_pancreas_dataset(out, n=1, n_test=0, seed=2, scale=SCALE, overwrite=True)
    assert (out / "imagesTr" / "pancreas_000.nii.gz").read_bytes() != first
    assert json.loads((out / "dataset.json").read_text())["numTraining"] == 1


def _snapshot(folder: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every file and folder under `folder` with its modification time and contents (folders: None)."""
    return {p.relative_to(folder).as_posix(): (p.stat().st_mtime_ns, None if p.is_dir() else p.read_bytes())
            for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize("bad", [{"scale": 0}, {"scale": -4.0}, {"scale": float("nan")}, {"scale": float("inf")},
                                 {"scale": "big"}, {"n": 0}, {"n": 1.5}, {"n_test": -1}, {"seed": -1}])
def test_invalid_arguments_touch_nothing(tmp_path, bad, overwrite):
    """Regression: an invalid scale used to delete dataset.json and create folders before it was refused."""
    out = tmp_path / "ds"
    out.mkdir()
    (out / "dataset.json").write_text('{"name": "Pancreas phantom", "training": [], "test": []}')
    (out / "my_notes.txt").write_text("not generated")
    before = _snapshot(out)
    with pytest.raises(PipelineError) as info:
        make_pancreas_dataset(out, **{"n": 1, "n_test": 0, "scale": SCALE, **bad}, overwrite=overwrite)
    assert "\n" not in str(info.value)
    assert _snapshot(out) == before
    with pytest.raises(PipelineError):
        make_pancreas_dataset(tmp_path / "new", **{"n": 1, "n_test": 0, "scale": SCALE, **bad})
    assert not (tmp_path / "new").exists()


def test_generate_case_refuses_invalid_scale():
    for scale in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(PipelineError, match="scale"):
            generate_case(1, scale)


def test_overwrite_never_replaces_a_foreign_data_set(tmp_path):
    out = tmp_path / "Task07_Pancreas"
    (out / "imagesTr").mkdir(parents=True)
    (out / "dataset.json").write_text('{"name": "Pancreas", "training": [{"image": "./imagesTr/pancreas_001.nii.gz"}]}')
    (out / "imagesTr" / "pancreas_001.nii.gz").write_bytes(b"real patient data")
    before = _snapshot(out)
    with pytest.raises(PipelineError, match="not a Pancreas phantom data set"):
        make_pancreas_dataset(out, n=2, n_test=0, seed=0, scale=SCALE, overwrite=True)
    assert _snapshot(out) == before


def test_overwrite_removes_stale_cases_and_keeps_foreign_files(tmp_path):
    out = make_pancreas_dataset(tmp_path / "ds", n=2, n_test=1, seed=1, scale=SCALE)
    (out / "imagesTr" / "my_notes.txt").write_text("not generated")
    make_pancreas_dataset(out, n=1, n_test=0, seed=1, scale=SCALE, overwrite=True)
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert files == {"dataset.json", "imagesTr/pancreas_000.nii.gz", "labelsTr/pancreas_000.nii.gz",
                     "imagesTr/my_notes.txt"}
