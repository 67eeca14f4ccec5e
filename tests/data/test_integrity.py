"""check_dataset (behind ``python -m pipeline check-data``) on tiny NIfTI data sets: NaN/Inf voxels, 4D images."""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from pipeline.data.datalist import load_datalist
from pipeline.data.integrity import check_dataset, load_label_array, read_voxels
from pipeline.errors import PipelineError

SHAPE = (8, 8, 4)


def _nii(path: Path, data: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.diag([0.8, 0.8, 2.5, 1.0])), str(path))


def _dataset(root: Path, n: int = 3, modality: dict[str, str] | None = None) -> Path:
    """n labelled float32 CT-like cases named case_000.. in an MSD layout with dataset.json."""
    entries = []
    for i in range(n):
        name = f"case_{i:03d}.nii.gz"
        _nii(root / "imagesTr" / name, np.linspace(-1000, 400, np.prod(SHAPE), dtype=np.float32).reshape(SHAPE))
        label = np.zeros(SHAPE, np.uint8)
        label[2:5, 2:5, 1:3] = 1
        _nii(root / "labelsTr" / name, label)
        entries.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    meta = {"name": "Tiny", "labels": {"0": "background", "1": "organ"}, "training": entries}
    if modality is not None:
        meta["modality"] = modality
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def _with(value: float, count: int) -> np.ndarray:
    data = np.zeros(SHAPE, np.float32)
    data.reshape(-1)[:count] = value
    return data


def test_clean_data_set_has_no_problem(tmp_path: Path) -> None:
    assert check_dataset(_dataset(tmp_path / "ds")) == []


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (_with(np.nan, 12), "image holds 12 NaN and 0 Inf voxels"),
        (_with(np.inf, 2), "image holds 0 NaN and 2 Inf voxels"),
        (np.zeros(SHAPE + (3,), np.float32), "image is 4D (shape (8, 8, 4, 3)); expected a 3D image with one channel"),
    ],
    ids=["nan", "inf", "4d"],
)
def test_bad_image_gives_one_line_naming_the_case(tmp_path: Path, data: np.ndarray, problem: str) -> None:
    root = _dataset(tmp_path / "ds")
    _nii(root / "imagesTr/case_001.nii.gz", data)
    assert check_dataset(root) == [f"case case_001 (imagesTr/case_001.nii.gz): {problem}"]
    # load_datalist reads headers only, so its behaviour is unchanged; CheckImaged stops such a case at load time.
    assert len(load_datalist(root, "training", val_fraction=0.0)) == 3


def test_layout_checked_without_full_read_and_modalities(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "ds")
    _nii(root / "imagesTr/case_002.nii.gz", np.zeros(SHAPE + (2,), np.float32))
    _nii(root / "imagesTr/case_000.nii.gz", _with(np.nan, 1))
    assert check_dataset(root, read_images=False) == [
        "case case_002 (imagesTr/case_002.nii.gz): image is 4D (shape (8, 8, 4, 2)); "
        "expected a 3D image with one channel"
    ]
    # dataset.json declaring two modalities: a 4th dim of 2 is right, a 3D image is not.
    root = _dataset(tmp_path / "mr", modality={"0": "T1", "1": "T2"})
    for i in (0, 2):
        _nii(root / f"imagesTr/case_00{i}.nii.gz", np.zeros(SHAPE + (2,), np.float32))
    assert check_dataset(root) == [
        "case case_001 (imagesTr/case_001.nii.gz): image is 3D (shape (8, 8, 4)); "
        "expected a 3D image with 2 channels, one per dataset.json modality"
    ]


def test_full_read_finds_a_bad_crc_the_header_read_misses(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "ds")
    path = root / "imagesTr/case_002.nii.gz"
    _nii(path, np.random.default_rng(0).normal(size=(32, 32, 16)).astype(np.float32))
    label = np.zeros((32, 32, 16), np.uint8)
    _nii(root / "labelsTr/case_002.nii.gz", label)
    assert check_dataset(root) == []
    raw = path.read_bytes()
    path.write_bytes(raw[:-8] + bytes(4) + raw[-4:])  # right length, wrong CRC: voxel data silently corrupt
    assert tuple(read_voxels(path).shape) == (32, 32, 16)  # LoadImage alone does not notice
    (problem,) = check_dataset(root)
    assert problem.startswith("case case_002 (imagesTr/case_002.nii.gz): image data unreadable (BadGzipFile: CRC")


def test_labels_read_with_load_image(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "ds")
    label = root / "labelsTr/case_000.nii.gz"
    assert sorted(np.unique(load_label_array(label))) == [0, 1]
    label.write_bytes(b"not a NIfTI file")
    with pytest.raises(PipelineError, match=r"case_000\.nii\.gz: unreadable label"):
        load_label_array(label)
    with pytest.raises(PipelineError, match=r"case_009\.nii\.gz: label file missing"):
        load_label_array(root / "labelsTr/case_009.nii.gz")
