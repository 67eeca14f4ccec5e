"""3D CT through both bundles on tiny phantoms: the CT fragment with the unet bundle, and attn_unet train ->
evaluate -> infer with predictions aligned to their inputs."""
import csv

import nibabel as nib
import numpy as np
import pytest

from pipeline.data.pancreas_phantom import make_pancreas_dataset
from tests.bundles_util import assert_ok, assert_one_line_error, bundle

TINY = {"patch_size": "[32,32,16]", "target_spacing": "[4,4,6]", "epochs": 1, "val_interval": 1}
ATTN = ["bundles/attn_unet/train.json"]


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    root = tmp_path_factory.mktemp("ct")
    make_pancreas_dataset(root / "data", n=2, n_test=1, seed=5, scale=4)
    return root


def test_unet_bundle_with_ct_fragment_trains_3d(phantoms):
    out = phantoms / "unet_ct"
    proc = bundle("run", ["bundles/unet/train.json", "configs/data/pancreas_ct.json"],
                  dataset_dir=phantoms / "data", bundle_root=out, **TINY)
    assert_ok(proc)
    assert (out / "models" / "model.pt").is_file()
    line = next(ln for ln in proc.stdout.splitlines() if "Epoch[1] Metrics" in ln and "val_" in ln)
    assert "val_dice_pancreas" in line and "val_hd95_pancreas" in line  # tumour: only when the case has one


@pytest.fixture(scope="module")
def attn_trained(phantoms):
    out = phantoms / "attn"
    proc = bundle("run", ATTN, dataset_dir=phantoms / "data", bundle_root=out, **TINY)
    assert_ok(proc)
    return out, proc


def test_attn_unet_trains_with_attention_panels(attn_trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, proc = attn_trained
    assert (out / "models" / "model.pt").is_file()
    assert "precision:" in proc.stdout + proc.stderr
    scalars, images = set(), set()
    for f in (out / "runs").glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(f))
        acc.Reload()
        scalars |= set(acc.Tags()["scalars"])
        images |= set(acc.Tags()["images"])
    assert {"train_loss", "val_dice_pancreas", "val_hd95_pancreas", "val_mean_dice"} <= scalars
    assert "val/panel" in images


def test_attn_unet_evaluate_and_infer(attn_trained, phantoms):
    out, _ = attn_trained
    assert_ok(bundle("run", ATTN + ["bundles/attn_unet/evaluate.json"], dataset_dir=phantoms / "data",
                     bundle_root=out, patch_size=TINY["patch_size"], target_spacing=TINY["target_spacing"]))
    with (out / "runs" / "eval" / "metrics_per_case.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and {"dice_pancreas", "hd95_pancreas", "iou_tumour"} <= set(rows[0])

    assert_ok(bundle("run", ATTN + ["bundles/attn_unet/inference.json"], dataset_dir=phantoms / "data",
                     bundle_root=out, patch_size=TINY["patch_size"], target_spacing=TINY["target_spacing"]))
    image = next((phantoms / "data" / "imagesTs").glob("*.nii.gz"))
    pred = out / "runs" / "predictions" / image.name.replace(".nii.gz", "_seg.nii.gz")
    a, b = nib.load(pred), nib.load(image)
    assert a.shape == b.shape  # back in the input's grid: orientation, spacing and crop undone
    assert np.allclose(a.affine, b.affine, atol=1e-3)
    assert set(np.unique(np.asarray(a.dataobj))) <= {0, 1, 2}


def test_amp_mode_the_machine_cannot_run_is_one_line(phantoms, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("checks the error on a machine without a GPU")
    proc = bundle("run", ATTN, dataset_dir=phantoms / "data", bundle_root=tmp_path, device="cuda", **TINY)
    assert_one_line_error(proc, "no CUDA GPU")
    proc = bundle("run", ATTN, dataset_dir=phantoms / "data", bundle_root=tmp_path, amp="float16", **TINY)
    assert_one_line_error(proc, "float16", "CUDA")


def test_label_outside_the_declared_set_stops_training(phantoms, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(phantoms / "data", data)
    lab = sorted((data / "labelsTr").glob("*.nii.gz"))[0]
    img = nib.load(lab)
    arr = np.asarray(img.dataobj).copy()
    arr[arr == 2] = 3
    arr.flat[0] = 3
    nib.save(nib.Nifti1Image(arr, img.affine, img.header), lab)
    proc = bundle("run", ATTN, dataset_dir=data, bundle_root=tmp_path / "b", **TINY)
    assert_one_line_error(proc, lab.name, "3")
