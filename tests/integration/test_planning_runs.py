"""The plan as a user meets it: the ``plan`` command, and a bundle run that plans on its first run, copies the plan
into the checkpoint folder, and evaluates another data set with it."""
import json
import subprocess
import sys

import pytest
import torch

from pipeline.planning import read_plan
from tests.bundles_util import REPO, assert_ok, assert_one_line_error, bundle
from tests.planning.test_planning import aniso  # noqa: F401 - the fixture

pytestmark = pytest.mark.slow


def test_plan_command_writes_and_prints_the_plan(aniso, tmp_path):
    out = tmp_path / "p.json"
    proc = subprocess.run([sys.executable, "-m", "pipeline", "plan", str(aniso), "--out", str(out), "--device", "cpu"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert read_plan(out)["strides"][0] == [2, 2, 1]
    assert "patch_size" in proc.stdout and "because" in proc.stdout
    # default output: plans/<data set folder name>.json under the current directory, not in the data folder
    proc = subprocess.run([sys.executable, "-m", "pipeline", "plan", str(aniso), "--device", "cpu"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "plans" / f"{aniso.name}.json").is_file()
    assert not list(aniso.glob("*plan*"))
    if not torch.cuda.is_available():
        proc = subprocess.run([sys.executable, "-m", "pipeline", "plan", str(aniso), "--device", "cuda"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith("error: ")
        assert "Traceback" not in proc.stderr


def test_bundle_run_follows_the_plan(tmp_path):
    from pipeline.data.phantom import make_pancreas_dataset

    data = make_pancreas_dataset(tmp_path / "data", n=2, n_test=1, seed=5, scale=4)
    root = tmp_path / "bundle"
    proc = bundle("run", ["bundles/attn_unet/train.json"], dataset_dir=data,
                  bundle_root=root, device="cpu", epochs=1, val_interval=1)
    assert_ok(proc)
    plan = read_plan(root / "plan.json")
    log = proc.stdout + proc.stderr
    assert "plan for" in log and "target_spacing" in log and "because" in log
    assert "planning" in log and "plan written to" in log  # the first run says it plans, as a step of its own
    config = json.loads((root / "models" / "model_config.json").read_text())
    trained = read_plan(root / "models" / "plan.json")  # the plan training followed, beside the weights
    assert trained["target_spacing"] == plan["target_spacing"] and trained["patch_size"] == plan["patch_size"]
    assert config["network"]["strides"] == plan["strides"] == trained["strides"]
    # evaluation on another data set prepares it as the checkpoint was trained: no planning for the new data
    other = make_pancreas_dataset(tmp_path / "other", n=1, n_test=1, seed=6, scale=3)
    before = (root / "plan.json").read_bytes()
    proc = bundle("run", ["bundles/attn_unet/train.json", "bundles/attn_unet/evaluate.json"], dataset_dir=other,
                  bundle_root=root, device="cpu", eval_dir=tmp_path / "eval")
    assert_ok(proc)
    assert "fingerprint" not in proc.stdout + proc.stderr and (root / "plan.json").read_bytes() == before
    assert (tmp_path / "eval" / "metrics_summary.csv").is_file()
    (root / "plan.json").write_text('{"patch_size": [64, 64')  # a broken plan stops the next run with one line
    proc = bundle("run", ["bundles/attn_unet/train.json"], dataset_dir=data,
                  bundle_root=root, device="cpu", epochs=1, val_interval=1)
    assert_one_line_error(proc, "plan.json", "invalid JSON")


