"""Bad input to a training run stops it with one PipelineError line naming the case and the problem, before anything
is written: the bundles run in this process, as ``monai.bundle run`` does (the printed line and exit status of a
real process: tests/test_errors.py and the integration tests)."""
import shutil

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigWorkflow

from pipeline.data.phantom import make_pancreas_dataset
from pipeline.data.shapes2d import make_shapes
from pipeline.errors import PipelineError, _find_pipeline_error
from tests.bundles_util import REPO

TINY_CT = {"patch_size": [32, 32, 16], "target_spacing": [4, 4, 6], "epochs": 1, "val_interval": 1, "num_workers": 0,
           "device": "cpu"}
SMALL_2D = {"epochs": 1, "val_interval": 1, "num_workers": 0, "device": "cpu", "batch_size": 4}


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    return make_pancreas_dataset(tmp_path_factory.mktemp("ct") / "data", n=2, n_test=1, seed=5, scale=4)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    make_shapes(root / "data", n=16, seed=3, size=32)
    return root / "data"


def bundle_error(bundle: str, **overrides) -> str:
    """Run ``bundles/<bundle>/train.json`` in this process; the one-line PipelineError it stops with."""
    workflow = ConfigWorkflow(config_file=str(REPO / f"bundles/{bundle}/train.json"), workflow_type=None,
                              logging_file=False, **{k: str(v) if hasattr(v, "mkdir") else v
                                                     for k, v in overrides.items()})
    with pytest.raises(Exception) as info:
        workflow.initialize()
        workflow.run()
    workflow.finalize()
    error = _find_pipeline_error(info.value)
    assert isinstance(error, PipelineError), repr(info.value)
    assert "\n" not in str(error)
    return str(error)


def _copy_with(data, tmp_path, folder, edit):
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    path = sorted((copy / folder).glob("*.nii.gz"))[0]
    img = nib.load(path)
    nib.save(nib.Nifti1Image(edit(np.asarray(img.dataobj).copy()), img.affine), path)
    return copy, path


def test_a_device_or_amp_mode_the_machine_cannot_run(phantoms, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("checks the error on a machine without a GPU")
    assert "no CUDA GPU" in bundle_error("attn_unet", dataset_dir=phantoms, bundle_root=tmp_path,
                                          **{**TINY_CT, "device": "cuda"})
    line = bundle_error("attn_unet", dataset_dir=phantoms, bundle_root=tmp_path, amp="float16", **TINY_CT)
    assert "float16" in line and "CUDA" in line


def test_label_outside_the_declared_set(phantoms, tmp_path):
    def relabel(a):
        a[a == 2] = 3
        a.flat[0] = 3
        return a

    data, path = _copy_with(phantoms, tmp_path, "labelsTr", relabel)
    line = bundle_error("attn_unet", dataset_dir=data, bundle_root=tmp_path / "b", **TINY_CT)
    assert path.name in line and "3" in line


def test_nan_voxels(phantoms, tmp_path):
    def nan(a):
        a = a.astype(np.float32)
        a[a.shape[0] // 2, a.shape[1] // 2, :] = np.nan
        return a

    data, path = _copy_with(phantoms, tmp_path, "imagesTr", nan)
    line = bundle_error("attn_unet", dataset_dir=data, bundle_root=tmp_path / "b", **TINY_CT)
    assert path.name in line and "NaN" in line
    assert not (tmp_path / "b" / "models" / "model.pt").exists()


def test_4d_image(phantoms, tmp_path):
    data, path = _copy_with(phantoms, tmp_path, "imagesTr", lambda a: np.stack([a, a], axis=-1).astype(np.float32))
    assert path.name in bundle_error("attn_unet", dataset_dir=data, bundle_root=tmp_path / "b", **TINY_CT)


def test_missing_dataset_dir(tmp_path):
    line = bundle_error("unet", dataset_dir=tmp_path / "nowhere", bundle_root=tmp_path / "b", **SMALL_2D)
    assert "dataset_dir" in line and "nowhere" in line and "does not exist" in line
    assert not (tmp_path / "nowhere").exists() and not (tmp_path / "b" / "models").exists()


def test_unknown_preset(shapes, tmp_path):
    line = bundle_error("unet", dataset_dir=shapes, bundle_root=tmp_path, preset="huge", **SMALL_2D)
    assert "unknown U-Net preset 'huge'" in line


def test_data_list_naming_a_missing_file_deletes_nothing(shapes, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(shapes, data)
    victim = sorted((data / "labelsTr").glob("*.png"))[0]
    victim.unlink()
    before = sorted(p.relative_to(data) for p in data.rglob("*"))
    assert victim.name in bundle_error("unet", dataset_dir=data, bundle_root=tmp_path / "b", **SMALL_2D)
    assert sorted(p.relative_to(data) for p in data.rglob("*")) == before
