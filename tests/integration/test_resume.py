"""Kill a training run with SIGKILL in its second epoch, resume it with --resume true, and compare with the same
run left alone (--deterministic true, CPU); the uninterrupted run is tracked with --tracking mlflow into a local
store. Bad input: a truncated checkpoint stops the resume with one line and changes nothing (a missing one:
tests/engines/test_resume.py)."""
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from pipeline.data.shapes2d import make_shapes
from tests.bundles_util import REPO, assert_ok, assert_one_line_error, bundle

pytestmark = pytest.mark.slow

TRAIN = ["bundles/unet/train.json"]
RUN = {"epochs": 3, "val_interval": 1, "batch_size": 4, "preset": "precision", "base_width": 8, "num_workers": 0,
       "deterministic": "true"}


def _val_lines(log: str) -> dict[int, str]:
    """The validation metric line of each epoch, as logged."""
    out = {}
    for m in re.finditer(r"Epoch\[(\d+)\] Metrics -- (val_.*)", log):
        out[int(m.group(1))] = m.group(2).strip()
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    make_shapes(root / "data", n=16, seed=3, size=32)
    whole = bundle("run", TRAIN, dataset_dir=root / "data", bundle_root=root / "whole", tracking="mlflow", **RUN)
    assert_ok(whole)

    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", repr(TRAIN), "--dataset_dir",
           str(root / "data"), "--bundle_root", str(root / "cut")]
    for key, value in RUN.items():
        cmd += [f"--{key}", str(value)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    first = root / "cut" / "models" / "checkpoint_epoch=1.pt"
    deadline = time.monotonic() + 240
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # epoch 1 is on disk, so the run is in epoch 2
    killed_log = proc.communicate(timeout=60)[0]
    assert proc.returncode == -signal.SIGKILL, killed_log[-3000:]
    killed_files = sorted(p.name for p in (root / "cut" / "models").iterdir())

    resumed = bundle("run", TRAIN, dataset_dir=root / "data", bundle_root=root / "cut", resume="true", **RUN)
    assert_ok(resumed)
    return root, whole, killed_log, killed_files, resumed


def test_killed_in_epoch_two_and_resumed_ends_where_an_uninterrupted_run_ends(runs):
    root, whole, killed_log, killed_files, resumed = runs
    assert "checkpoint_epoch=1.pt" in killed_files and "checkpoint_epoch=2.pt" not in killed_files
    assert "resuming from" in resumed.stdout + resumed.stderr and "(epoch 1 of 3)" in resumed.stdout + resumed.stderr
    done = _val_lines(resumed.stdout)
    assert sorted(done) == [2, 3]  # continued from the last completed epoch to the configured count
    reference = _val_lines(whole.stdout)
    assert done[3] == reference[3] and done[2] == reference[2]
    a = torch.load(root / "whole" / "models" / "checkpoint_epoch=3.pt", weights_only=True)
    b = torch.load(root / "cut" / "models" / "checkpoint_epoch=3.pt", weights_only=True)
    assert all(torch.equal(a["network"][k], b["network"][k]) for k in a["network"])
    assert a["best_metric"]["val_best_metric"] == b["best_metric"]["val_best_metric"]
    assert a["trainer"] == b["trainer"]


def test_same_seed_same_metrics(runs):
    _, whole, killed_log, _, _ = runs
    assert _val_lines(killed_log)[1] == _val_lines(whole.stdout)[1]  # two processes, deterministic, same epoch 1


def test_every_checkpoint_loads_with_weights_only(runs):
    root = runs[0]
    files = sorted((root / "whole" / "models").glob("*.pt")) + sorted((root / "cut" / "models").glob("*.pt"))
    assert len(files) == 4
    for path in files:
        torch.load(path, weights_only=True)


def test_tracking_mlflow_logs_params_metrics_and_the_best_checkpoint_locally(runs):
    import mlflow

    root, whole = runs[0], runs[1]
    store = root / "whole" / "runs" / "mlruns.db"
    assert store.is_file()
    client = mlflow.MlflowClient(f"sqlite:///{store}")
    experiments = [e for e in client.search_experiments() if e.name == "whole"]
    assert experiments
    (run,) = client.search_runs([experiments[0].experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["epochs"] == "3" and run.data.params["learning_rate"] == "0.002"
    assert run.data.params["deterministic"] == "True" and run.data.params["network"] == "UNet"
    history = client.get_metric_history(run.info.run_id, "val_mean_dice")
    assert [m.step for m in history] == [1, 2, 3]
    logged = float(re.search(r"val_mean_dice: ([0-9.]+)", _val_lines(whole.stdout)[3]).group(1))
    assert history[-1].value == pytest.approx(logged, abs=6e-5)
    assert {"model.pt", "model_config.json", "plan.json"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
    artifact = next((root / "whole" / "runs" / "mlruns").rglob("model.pt"))
    assert artifact.read_bytes() == (root / "whole" / "models" / "model.pt").read_bytes()


def test_resume_from_a_truncated_checkpoint_is_one_line_and_changes_nothing(runs, tmp_path):
    root = runs[0]
    work = tmp_path / "b"
    shutil.copytree(root / "cut", work)
    ckpt = work / "models" / "checkpoint_epoch=3.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:4096])
    before = {p.name: p.read_bytes() for p in (work / "models").iterdir()}
    proc = bundle("run", TRAIN, dataset_dir=root / "data", bundle_root=work, resume="true", **RUN)
    assert_one_line_error(proc, "checkpoint_epoch=3.pt", "not a readable checkpoint, perhaps truncated")
    assert {p.name: p.read_bytes() for p in (work / "models").iterdir()} == before

