"""What a model-zoo user types: nested ids on the command line train exactly the asked number of epochs with the
asked settings, and a bundle folder copied elsewhere runs from its own folder."""
import re
import shutil
import subprocess
import sys

import pytest
import torch

from pipeline.data.shapes2d import make_shapes
from tests.bundles_util import REPO, assert_ok, bundle

pytestmark = pytest.mark.slow

SMALL = {"device": "cpu", "num_workers": 0, "preset": "precision", "batch_size": 4}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    make_shapes(root / "data", n=12, seed=3, size=32)
    return root / "data"


def _epochs(log: str) -> list[int]:
    return [int(e) for e in re.findall(r"SupervisedTrainer - INFO - Epoch\[(\d+)\] Complete", log)]


def test_nested_ids_on_the_command_line_reach_the_trainer_data_network_and_optimizer(shapes, tmp_path):
    out = tmp_path / "b"
    proc = bundle("run", ["bundles/unet/train.json"], dataset_dir=shapes, bundle_root=out, epochs=4, val_interval=1,
                  **SMALL, **{"train#trainer#max_epochs": 1, "validate#dataset#cache_rate": 0,
                              "network_def#base_width": 4, "optimizer#lr": 0.001})
    assert_ok(proc)
    log = proc.stdout + proc.stderr
    assert _epochs(log) == [1]  # the trainer's own max_epochs, not --epochs
    assert "validate#dataset#cache_rate: 0" in log
    state = torch.load(out / "models" / "checkpoint_epoch=1.pt", weights_only=True)
    assert state["network"]["encoder.stem.conv0.conv.weight"].shape[0] == 4  # base width 4
    assert state["optimizer"]["param_groups"][0]["initial_lr"] == 0.001


def test_a_copied_bundle_runs_from_its_own_folder(shapes, tmp_path):
    copy = tmp_path / "elsewhere" / "my_bundle"
    shutil.copytree(REPO / "bundles" / "attn_unet", copy, ignore=shutil.ignore_patterns("models", "runs", "plan.json"))
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", "['train.json','frag.json']",
           "--bundle_root", ".", "--dataset_dir", str(shapes), "--epochs", "1", "--val_interval", "1"]
    (copy / "frag.json").write_text((REPO / "configs/data/shapes2d.json").read_text())  # 2D: quick on a CPU
    for key, value in SMALL.items():
        cmd += [f"--{key}", str(value)]
    proc = subprocess.run(cmd, cwd=copy, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert {"model.pt", "model_config.json", "plan.json"} <= {p.name for p in (copy / "models").iterdir()}
    assert (copy / "plan.json").is_file() and any((copy / "runs").glob("events.out.tfevents.*"))
    assert not (REPO / "bundles" / "attn_unet" / "frag.json").exists()
