"""The unet bundle on tiny generated shapes: train -> evaluate -> infer, metadata, and bad input."""
import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from pipeline.data.shapes2d import make_shapes
from tests.bundles_util import REPO, assert_ok, bundle

pytestmark = pytest.mark.slow

TRAIN = ["bundles/unet/train.json"]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    make_shapes(root / "data", n=16, seed=3, size=32)
    return root


@pytest.fixture(scope="module")
def trained(shapes):
    out = shapes / "bundle"
    proc = bundle("run", TRAIN, dataset_dir=shapes / "data", bundle_root=out, epochs=1, val_interval=1, batch_size=4)
    assert_ok(proc)
    return out, proc


def test_train_writes_checkpoint_tensorboard_and_logs_an_epoch_line(trained):
    out, proc = trained
    assert (out / "models" / "model.pt").is_file()
    assert list((out / "runs").glob("events.out.tfevents.*"))
    assert (out / "runs" / "val_panel.png").is_file()
    assert "precision:" in proc.stdout + proc.stderr
    assert "data wait:" in proc.stdout  # share of iteration time spent fetching batches
    epoch_lines = [ln for ln in proc.stdout.splitlines() if "Epoch[1] Metrics" in ln and "val_mean_iou" in ln]
    assert epoch_lines and "val_dice_ellipse" in epoch_lines[0]


def test_tensorboard_has_scalars_and_panels(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, _ = trained
    tags = {"scalars": set(), "images": set()}
    for f in (out / "runs").glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(f))
        acc.Reload()
        for k in tags:
            tags[k] |= set(acc.Tags()[k])
    assert {"train_loss", "val_mean_dice", "val_mean_iou", "val_dice_rectangle"} <= tags["scalars"]
    assert "val/panel" in tags["images"]


def test_evaluate_writes_per_case_table_and_summary(trained, shapes):
    out, _ = trained
    assert_ok(bundle("run", TRAIN + ["bundles/unet/evaluate.json"], dataset_dir=shapes / "data", bundle_root=out))
    with (out / "runs" / "eval" / "metrics_per_case.csv").open() as f:
        rows = list(csv.DictReader(f))
    n_test = len(list((shapes / "data" / "imagesTs").glob("*.png")))
    assert len(rows) == n_test
    assert {"case", "dice_ellipse", "iou_ellipse", "dice_rectangle", "iou_rectangle"} <= set(rows[0])
    summary = (out / "runs" / "eval" / "metrics_summary.csv").read_text()
    assert "iou_rectangle" in summary


def test_inference_writes_one_label_map_per_image(trained, shapes):
    out, _ = trained
    assert_ok(bundle("run", ["bundles/unet/inference.json"], dataset_dir=shapes / "data", bundle_root=out))
    images = sorted((shapes / "data" / "imagesTs").glob("*.png"))
    preds = sorted((out / "runs" / "predictions").glob("*_seg.png"))
    assert len(preds) == len(images)
    pred = np.array(Image.open(preds[0]))
    assert pred.shape == np.array(Image.open(images[0])).shape
    assert set(np.unique(pred)) <= {0, 1, 2}


def test_attn_unet_bundle_runs_on_the_2d_shapes_fragment(shapes, tmp_path):
    proc = bundle("run", ["bundles/attn_unet/train.json", "configs/data/shapes2d.json"], dataset_dir=shapes / "data",
                  bundle_root=tmp_path, epochs=1, val_interval=1, batch_size=4)
    assert_ok(proc)
    assert (tmp_path / "models" / "model.pt").is_file()
    assert any("val_dice_ellipse" in ln for ln in proc.stdout.splitlines())


@pytest.mark.parametrize("fragment, network, preset", [("unet_context", "UNet", "context"), ("fcn", "FCN", "standard")])
def test_network_fragments_choose_the_network_and_inference_follows(fragment, network, preset, shapes, tmp_path):
    proc = bundle("run", TRAIN + [f"configs/net/{fragment}.json"], dataset_dir=shapes / "data", bundle_root=tmp_path,
                  epochs=1, val_interval=1, batch_size=4)
    assert_ok(proc)
    saved = json.loads((tmp_path / "models" / "model_config.json").read_text())
    assert saved["network"]["_target_"].endswith(network) and saved["network"]["preset"] == preset
    assert saved["mirror_axes"] == [0, 1]  # the shapes recipe flips both axes: flip TTA uses both
    # inference rebuilds the same network from the checkpoint folder: no fragment needed
    assert_ok(bundle("run", ["bundles/unet/inference.json"], dataset_dir=shapes / "data", bundle_root=tmp_path))
    assert len(list((tmp_path / "runs" / "predictions").glob("*_seg.png"))) == len(
        list((shapes / "data" / "imagesTs").glob("*.png")))


def test_torchscript_export_from_the_inference_config(trained, tmp_path):
    out, _ = trained
    ts = tmp_path / "model.ts"
    proc = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "ckpt_export", "network_def", "--filepath", str(ts),
         "--ckpt_file", str(out / "models" / "model.pt"), "--config_file", "bundles/unet/inference.json",
         "--meta_file", "bundles/unet/metadata.json", "--bundle_root", str(out),
         "--use_trace", "True", "--input_shape", "[1,1,32,32]"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    import torch

    from pipeline.engines import network_from_config, read_model_config

    eager = network_from_config(read_model_config(out / "models")).eval()
    eager.load_state_dict(torch.load(out / "models" / "model.pt", weights_only=True))
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(torch.jit.load(str(ts))(x), eager(x), atol=1e-5)
