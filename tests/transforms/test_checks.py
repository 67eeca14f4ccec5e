"""CheckImaged and CheckLabelValuesd on tiny NIfTI files loaded as the bundles load them (LoadImaged)."""
from __future__ import annotations

import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.transforms import Compose, LoadImaged

from pipeline.errors import PipelineError
from pipeline.transforms import CheckImaged, CheckLabelValuesd
from pipeline.transforms.checks import nonfinite_problem

SHAPE = (8, 8, 4)


def _load(path: Path, data: np.ndarray) -> dict:
    """Write ``data`` as NIfTI and load it as the bundles do: channel first, MetaTensor with the file name."""
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    return LoadImaged(keys="image", ensure_channel_first=True, image_only=True)({"image": str(path)})


def _image(dtype: type = np.float32) -> np.ndarray:
    return np.arange(np.prod(SHAPE)).reshape(SHAPE).astype(dtype)


def _raises(check: CheckImaged, item: dict, message: str) -> None:
    with pytest.raises(PipelineError, match=f"^{re.escape(message)}$") as info:
        check(item)
    assert "\n" not in str(info.value)


def _passes_unchanged(check: CheckImaged, item: dict) -> None:
    """The check hands back the same keys, the same image object and the same voxels (NaN/Inf included)."""
    before = item["image"].clone()
    out = check(item)
    assert out.keys() == item.keys() and out["image"] is item["image"]
    torch.testing.assert_close(out["image"].as_tensor(), before.as_tensor(), rtol=0, atol=0, equal_nan=True)
    assert out["image"].meta["filename_or_obj"] == before.meta["filename_or_obj"]


def test_clean_image_passes_unchanged(tmp_path: Path) -> None:
    _passes_unchanged(CheckImaged("image", spatial_dims=3), _load(tmp_path / "ok.nii.gz", _image()))
    _passes_unchanged(CheckImaged("image", spatial_dims=3), _load(tmp_path / "int.nii.gz", _image(np.int16)))


def test_nan_and_inf_voxels_name_the_file(tmp_path: Path) -> None:
    check = CheckImaged("image", spatial_dims=3)
    data = _image()
    data[0, 0, :3] = np.nan
    path = tmp_path / "case_003.nii.gz"
    _raises(check, _load(path, data), f"{path}: image holds 3 NaN and 0 Inf voxels")
    data = _image()
    data[1, 2, 3], data[4, 4, 0] = np.inf, -np.inf
    path = tmp_path / "case_004.nii"
    _raises(check, _load(path, data), f"{path}: image holds 0 NaN and 2 Inf voxels")
    # finite=False lets them through (e.g. a check placed after a transform that fills NaN).
    _passes_unchanged(CheckImaged("image", spatial_dims=3, finite=False), _load(path, data))


def test_4d_image_refused_for_a_3d_single_channel_bundle(tmp_path: Path) -> None:
    path = tmp_path / "x.nii.gz"
    item = _load(path, np.zeros(SHAPE + (3,), np.float32))
    assert tuple(item["image"].shape) == (3,) + SHAPE  # LoadImaged moves the 4th dim to channels
    expected = (
        f"{path}: image has shape (3, 8, 8, 4) after loading; "
        "expected 1 channel and 3 spatial dims (a 4D or multi-channel image?)"
    )
    _raises(CheckImaged("image", spatial_dims=3), item, expected)
    _raises(CheckImaged("image", spatial_dims=None), item, expected.replace(" and 3 spatial dims", ""))
    # A declared multi-channel input (in_channels=3) accepts it.
    _passes_unchanged(CheckImaged("image", spatial_dims=3, channels=3), item)
    # A 5D file (x, y, z, 1, c) keeps a spatial dim too many after loading.
    five = _load(tmp_path / "five.nii.gz", np.zeros(SHAPE + (1, 2), np.float32))
    expected = r"shape \(2, 8, 8, 4, 1\) after loading; expected 2 channels and 3 spatial dims \(a 4D"
    with pytest.raises(PipelineError, match=expected):
        CheckImaged("image", spatial_dims=3, channels=2)(five)


def test_too_few_dims_and_arguments(tmp_path: Path) -> None:
    path = tmp_path / "flat.nii.gz"
    item = _load(path, np.zeros((8, 8), np.float32))
    expected = f"{path}: image has shape (1, 8, 8) after loading; expected 1 channel and 3 spatial dims"
    _raises(CheckImaged("image", spatial_dims=3), item, expected)
    _passes_unchanged(CheckImaged("image", spatial_dims=2), item)
    for bad in ({"spatial_dims": 0}, {"channels": -1}, {"channels": True}):
        with pytest.raises(PipelineError, match="CheckImaged"):
            CheckImaged("image", **bad)


def test_errors_survive_compose_and_plain_tensors_name_the_key() -> None:
    item = {"image": torch.full((1, 4, 4), float("nan"))}  # no meta: the key stands in for the file
    with pytest.raises(Exception) as info:
        Compose([CheckImaged("image", spatial_dims=2)])(item)
    chain, exc = [], info.value
    while exc is not None:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    found = [e for e in chain if isinstance(e, PipelineError)]
    assert found and str(found[0]) == "'image': image holds 16 NaN and 0 Inf voxels"


def test_nonfinite_problem_numpy_and_torch() -> None:
    arr = np.array([1.0, np.nan, np.inf, -np.inf], dtype=">f4")  # big-endian, as some NIfTI files store it
    assert nonfinite_problem(arr) == "image holds 1 NaN and 2 Inf voxels"
    assert nonfinite_problem(torch.tensor([0.0, float("nan")]), "img") == "img holds 1 NaN and 0 Inf voxels"
    assert nonfinite_problem(np.arange(4)) is None and nonfinite_problem(torch.ones(3)) is None


def test_check_label_values_from_pipeline_transforms(tmp_path: Path) -> None:
    path = tmp_path / "label.nii.gz"
    nib.save(nib.Nifti1Image(np.full(SHAPE, 3, np.uint8), np.eye(4)), str(path))
    item = LoadImaged(keys="label", ensure_channel_first=True, image_only=True)({"label": str(path)})
    assert CheckLabelValuesd("label", allowed=4)(item)["label"] is item["label"]
    expected = f"{path}: label has unexpected values [3] (allowed 0, 1, 2)"
    with pytest.raises(PipelineError, match=f"^{re.escape(expected)}$"):
        CheckLabelValuesd("label", allowed=3)(item)
