"""3D CT through both bundles on tiny phantoms: the CT fragment with the unet bundle, and attn_unet train ->
evaluate -> infer with predictions aligned to their inputs."""
import csv
import json
import shutil

import nibabel as nib
import numpy as np
import pytest
import torch

from pipeline.data.phantom import make_pancreas_dataset
from tests.bundles_util import REPO, assert_ok, assert_one_line_error, bundle

pytestmark = pytest.mark.slow

TINY = {"patch_size": "[32,32,16]", "target_spacing": "[4,4,6]", "epochs": 1, "val_interval": 1}
ATTN = ["bundles/attn_unet/train.json"]


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    root = tmp_path_factory.mktemp("ct")
    make_pancreas_dataset(root / "data", n=2, n_test=1, seed=5, scale=4)
    return root


def test_unet_bundle_with_ct_fragment_trains_3d(phantoms):
    out = phantoms / "unet_ct"
    tiny = {k: v for k, v in TINY.items() if k != "target_spacing"}  # the planned spacing (the unet bundle has one too)
    # the CUDA default loading path, forced on the CPU: cached volumes on the training device, augmentation in a
    # ThreadDataLoader, and an epoch of 3 iterations, longer than one pass over the 2 training cases
    proc = bundle("run", ["bundles/unet/train.json", "configs/data/pancreas_ct.json"],
                  dataset_dir=phantoms / "data", bundle_root=out, augment_on="device", epoch_length=3, **tiny)
    assert_ok(proc)
    assert "data wait:" in proc.stdout + proc.stderr
    trainer = torch.load(out / "models" / "checkpoint_epoch=1.pt", weights_only=False)["trainer"]
    assert trainer["epoch_length"] == 3 and trainer["iteration"] == 3  # not the progress bar: tqdm throttles it
    assert (out / "models" / "model.pt").is_file()
    line = next(ln for ln in proc.stdout.splitlines() if "Epoch[1] Metrics" in ln and "val_" in ln)
    assert "val_dice_pancreas" in line and "val_hd95_pancreas" in line  # tumour: only when the case has one
    # the 3D inference.json (attn_unet's) rebuilds the plain U-Net from the checkpoint folder (README)
    image = next((phantoms / "data" / "imagesTs").glob("*.nii.gz"))
    assert_ok(bundle("run", ["bundles/attn_unet/inference.json"], input=image, ckpt_dir=out / "models",
                     output_dir=out / "infer", progress=False))
    pred = nib.load(out / "infer" / "predictions" / image.name.replace(".nii.gz", "_seg.nii.gz"))
    assert pred.shape == nib.load(image).shape


@pytest.fixture(scope="module")
def attn_trained(phantoms):
    """The bundle trained with its cascade's second stage (models_fine/), so the tests below cover both."""
    out = phantoms / "attn"
    proc = bundle("run", ATTN, dataset_dir=phantoms / "data", bundle_root=out, cascade="true", fine_epochs=2,
                  **{**TINY, "fine#val_interval": 2})
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

    # inference.json alone: the test split of the data set, values learnt in training read from the checkpoint
    assert_ok(bundle("run", ["bundles/attn_unet/inference.json"], dataset_dir=phantoms / "data", bundle_root=out))
    image = next((phantoms / "data" / "imagesTs").glob("*.nii.gz"))
    pred = out / "runs" / "predictions" / image.name.replace(".nii.gz", "_seg.nii.gz")
    a, b = nib.load(pred), nib.load(image)
    assert a.shape == b.shape  # back in the input's grid: orientation, spacing and crop undone
    assert np.allclose(a.affine, b.affine, atol=1e-3)
    assert set(np.unique(np.asarray(a.dataobj))) <= {0, 1, 2}


def test_inference_needs_only_the_checkpoint_folder_and_the_input(attn_trained, phantoms, tmp_path):
    """Bug: inference.json evaluated the training data set. Now: train, take the data set away, infer on a folder."""
    out, _ = attn_trained
    ckpt = tmp_path / "ckpt"
    shutil.copytree(out / "models", ckpt)
    assert json.loads((ckpt / "model_config.json").read_text())["mirror_axes"] == []  # the CT recipe never flips
    inputs = tmp_path / "in"
    inputs.mkdir()
    for img in (phantoms / "data" / "imagesTs").glob("*.nii.gz"):
        shutil.copy(img, inputs / img.name)
    proc = bundle("run", ["bundles/attn_unet/inference.json"], input_dir=inputs, ckpt_dir=ckpt,
                  output_dir=tmp_path / "out", dataset_dir=tmp_path / "no_data_here", bundle_root=tmp_path / "b")
    assert_ok(proc)
    assert not (tmp_path / "no_data_here").exists() and not (tmp_path / "b").exists()
    for img in inputs.glob("*.nii.gz"):
        pred = nib.load(tmp_path / "out" / "predictions" / img.name.replace(".nii.gz", "_seg.nii.gz"))
        assert pred.shape == nib.load(img).shape and np.allclose(pred.affine, nib.load(img).affine, atol=1e-3)

    # without an input and without the data set: one line saying what to pass
    proc = bundle("run", ["bundles/attn_unet/inference.json"], ckpt_dir=ckpt, output_dir=tmp_path / "out2",
                  dataset_dir=tmp_path / "no_data_here")
    assert_one_line_error(proc, "--input_dir")
    # a checkpoint folder without model_config.json: one line naming the file
    (ckpt / "model_config.json").unlink()
    proc = bundle("run", ["bundles/attn_unet/inference.json"], input_dir=inputs, ckpt_dir=ckpt,
                  output_dir=tmp_path / "out3")
    assert_one_line_error(proc, "model_config.json", "not found")
    assert not (tmp_path / "out3").exists()


def test_inference_refuses_preprocessing_that_differs_from_training(attn_trained, phantoms, tmp_path):
    out, _ = attn_trained
    proc = bundle("run", ["bundles/attn_unet/inference.json"],
                  input_dir=phantoms / "data" / "imagesTs", ckpt_dir=out / "models", output_dir=tmp_path,
                  target_spacing="[2,2,3]")
    assert_one_line_error(proc, "target_spacing", "[4, 4, 6]")


def test_ct_training_chain_gives_one_dtype_per_key_with_worker_processes(phantoms, monkeypatch):
    """Bug: labels left the OneOf augmentation as uint8 or float by branch; a worker's collate then crashed."""
    import torch
    from monai import transforms as mt
    from monai.bundle import ConfigParser
    from monai.data import DataLoader

    def tagging(cls):  # each branch writes its name into the sample (training samples carry no metadata on CPU)
        original = cls.__call__

        def call(self, data, *args, **kwargs):
            out = original(self, data, *args, **kwargs)
            out["aug_branch"] = cls.__name__
            return out

        monkeypatch.setattr(cls, "__call__", call)

    for cls in (mt.Rand3DElasticd, mt.RandAffined, mt.Identityd):
        tagging(cls)
    parser = ConfigParser()
    parser.read_config([str(REPO / "bundles/attn_unet/train.json")])
    one_of = next(i for i, t in enumerate(parser["augmentation"]) if t.get("_target_") == "OneOf")
    parser.update({"dataset_dir": str(phantoms / "data"), "bundle_root": str(phantoms / "chain"),
                   "patch_size": [32, 32, 16], "target_spacing": [4, 4, 6], "num_samples": 4,
                   f"augmentation#{one_of}#weights": [1, 1, 1]})  # every OneOf branch equally likely
    parser.get_parsed_content("prepare").run()  # the initialize step's planning
    dataset = parser.get_parsed_content("train#dataset")
    loader = DataLoader(dataset, batch_size=2, shuffle=True, num_workers=2,
                        generator=torch.Generator().manual_seed(0))
    branches = set()
    for _ in range(4):
        for batch in loader:
            assert batch["image"].dtype == torch.float32 and batch["label"].dtype == torch.uint8
            branches |= set(batch["aug_branch"])
    assert branches == {"Rand3DElasticd", "RandAffined", "Identityd"}


def test_non_finite_loss_stops_training_and_keeps_the_best_checkpoint(phantoms, tmp_path):
    import torch

    root = tmp_path / "b"
    deep_supervision = {"_target_": "DeepSupervisionLoss", "loss": "@segmentation_loss", "weight_mode": "exp"}
    nan_after_epoch_1 = {"_target_": "tests.bundles_util.LossTurningNaN", "loss": deep_supervision, "finite_calls": 1}
    proc = bundle("run", ATTN, dataset_dir=phantoms / "data", bundle_root=root,
                  **{**TINY, "epochs": 3, "loss": json.dumps(nan_after_epoch_1)})
    assert_one_line_error(proc, "epoch 2", "loss became nan", "best checkpoint")
    assert not any("Epoch[2] Metrics -- val_" in ln for ln in proc.stdout.splitlines())  # no validation of NaN weights
    weights = torch.load(root / "models" / "model.pt", weights_only=True)  # the epoch-1 checkpoint, intact
    assert all(torch.isfinite(v).all() for v in weights.values())


def test_cascade_trains_both_stages_in_one_command_and_inference_follows(attn_trained, phantoms, tmp_path):
    """--cascade true: stage 2 trains after stage 1 in the same run (crops of the gland at 2/3 of stage 1's
    spacing, --fine#<id> for stage 2 only), and inference.json finds <ckpt_dir>_fine and runs both stages."""
    out, proc = attn_trained
    stage1 = json.loads((out / "models" / "plan.json").read_text())
    stage2 = json.loads((out / "models_fine" / "plan.json").read_text())
    assert stage1["target_spacing"] == [4, 4, 6] and stage2["target_spacing"] == [2.667, 2.667, 4.0]
    trainer = torch.load(out / "models_fine" / "checkpoint_epoch=2.pt", weights_only=False)["trainer"]
    assert trainer["max_epochs"] == 2  # --fine_epochs
    assert (out / "runs_fine").is_dir() and "stage 'fine' finished" in proc.stdout + proc.stderr
    assert sum("Epoch[1] Metrics -- val_" in ln for ln in proc.stdout.splitlines()) == 1  # stage 2: every 2 epochs

    image = next((phantoms / "data" / "imagesTs").glob("*.nii.gz"))
    name = image.name.replace(".nii.gz", "_seg.nii.gz")
    assert_ok(bundle("run", ["bundles/attn_unet/inference.json"], input=image, ckpt_dir=out / "models",
                     output_dir=tmp_path / "infer", progress=False))
    for folder in ("predictions", "predictions_coarse"):
        pred = nib.load(tmp_path / "infer" / folder / name)
        assert pred.shape == nib.load(image).shape and np.allclose(pred.affine, nib.load(image).affine, atol=1e-3)
