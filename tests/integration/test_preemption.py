"""Conditions of shared clusters, with real training runs (tiny unet on generated shapes, CPU, --deterministic true):

- SIGTERM after the first epoch checkpoint: the run stops with one line saying how to resume, exit code 143, within
  the handler's bound; ``--resume true`` then ends with the same weights as a run never interrupted.
- A second run into the same checkpoint folder while the first is alive is refused in one line naming it; after
  ``kill -9`` of the first, a new run takes the stale lock over and says so.
- A nearly full file system (a small tmpfs, where this machine lets the tests mount one): the checkpoint that does not
  fit stops the run with one line, and the previous one stays loadable.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from pipeline.data.shapes2d import make_shapes
from pipeline.engines.lock import LOCK_NAME
from tests.bundles_util import REPO, assert_ok, assert_one_line_error, bundle

pytestmark = pytest.mark.slow

TRAIN = ["bundles/unet/train.json"]
RUN = {"epochs": 3, "val_interval": 1, "batch_size": 4, "preset": "precision", "base_width": 8, "num_workers": 0,
       "deterministic": "true"}
GRACE_S = 20  # the bundles' train#preemption#grace_s
STOPPED = re.compile(r"training stopped by SIGTERM (at epoch (\d+) iteration \d+ of \d+|at the end of epoch (\d+)) "
                     r"\([\d.]+ s after the signal\); (\S+) \(epoch (\d+), the last complete one\) is kept; resume "
                     r"with the same command and --resume true")


def _command(data, root, **extra):
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", repr(TRAIN), "--dataset_dir", str(data),
           "--bundle_root", str(root)]
    for key, value in {**RUN, **extra}.items():
        cmd += [f"--{key}", str(value)]
    return cmd


def _wait_for(path, proc, seconds=240):
    deadline = time.monotonic() + seconds
    while not path.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert path.exists(), proc.communicate(timeout=60)[0][-3000:]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("preempt")
    make_shapes(root / "data", n=64, seed=3, size=32)
    return root


@pytest.fixture(scope="module")
def whole(data):
    proc = bundle("run", TRAIN, dataset_dir=data / "data", bundle_root=data / "whole", **RUN)
    assert_ok(proc)
    return data / "whole" / "models"


def test_sigterm_stops_in_bounded_time_with_one_line_and_resume_matches(data, whole):
    cut = data / "cut"
    proc = subprocess.Popen(_command(data / "data", cut), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    _wait_for(cut / "models" / "checkpoint_epoch=1.pt", proc)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    took = time.monotonic() - sent
    assert proc.returncode == 143, err[-3000:]
    assert took < GRACE_S, took
    assert "Traceback" not in err, err[-3000:]
    lines = [ln for ln in err.splitlines() if ln.startswith("training stopped by")]
    assert len(lines) == 1, err[-3000:]
    m = STOPPED.fullmatch(lines[0])
    assert m, lines[0]
    kept = int(m.group(5))
    assert m.group(4) == str(cut / "models" / f"checkpoint_epoch={kept}.pt")
    names = sorted(p.name for p in (cut / "models").iterdir())
    assert f"checkpoint_epoch={kept}.pt" in names and LOCK_NAME not in names
    assert not [n for n in names if n.startswith(".tmp-")]

    resumed = bundle("run", TRAIN, dataset_dir=data / "data", bundle_root=cut, resume="true", **RUN)
    assert_ok(resumed)
    assert f"(epoch {kept} of 3)" in resumed.stdout + resumed.stderr
    a = torch.load(whole / "checkpoint_epoch=3.pt", weights_only=True)
    b = torch.load(cut / "models" / "checkpoint_epoch=3.pt", weights_only=True)
    assert all(torch.equal(a["network"][k], b["network"][k]) for k in a["network"])
    assert a["trainer"] == b["trainer"]


def test_a_second_run_is_refused_and_a_killed_runs_lock_is_taken_over(data):
    root = data / "twice"
    # its first epoch never ends, so no checkpoint gets in the way of the lock's refusal
    first = subprocess.Popen(_command(data / "data", root, epochs=200, epoch_length=100000), cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(root / "models" / LOCK_NAME, first)
        second = bundle("run", TRAIN, dataset_dir=data / "data", bundle_root=root,
                        **{**RUN, "epochs": 200, "epoch_length": 100000})
        line = assert_one_line_error(second, f"{root / 'models'}: another run is writing here", f"pid {first.pid}",
                                     "monai.bundle")
        assert first.poll() is None, line
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
    assert json.loads((root / "models" / LOCK_NAME).read_text())["pid"] == first.pid  # left behind by kill -9
    for path in (root / "models").glob("checkpoint_epoch=*.pt"):
        path.unlink()  # a run started afresh (no --resume) would be refused while they can be resumed
    third = bundle("run", TRAIN, dataset_dir=data / "data", bundle_root=root, **{**RUN, "epochs": 1})
    assert_ok(third)
    taken = "took over the stale lock of a run that is no longer running"
    assert f"{taken} (pid {first.pid}" in third.stdout + third.stderr
    assert not (root / "models" / LOCK_NAME).exists()


def test_a_full_disk_keeps_the_previous_checkpoint(data, whole, tmp_path):
    epoch_ckpt = (whole / "checkpoint_epoch=3.pt").stat().st_size
    best = (whole / "model.pt").stat().st_size
    disk = tmp_path / "disk"
    disk.mkdir()
    size_kb = (best + epoch_ckpt + epoch_ckpt // 2) // 1024 + 32  # room for one epoch checkpoint, not two
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        proc = bundle("run", TRAIN, dataset_dir=data / "data", bundle_root=tmp_path / "full",
                      ckpt_dir=disk / "models", **RUN)
        line = assert_one_line_error(proc, "could not write (", "No space left on device", "the previous file is kept")
        assert re.search(r"(checkpoint_epoch=\d+\.pt|model\.pt): could not write", line), line
        names = sorted(p.name for p in (disk / "models").iterdir())
        assert not [n for n in names if n.startswith(".tmp-")], names
        (latest,) = [n for n in names if n.startswith("checkpoint_epoch=")]
        torch.load(disk / "models" / latest, weights_only=True)
        torch.load(disk / "models" / "model.pt", weights_only=True)
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def _worker_of_rank(agent_pid: int, rank: int) -> int | None:
    """The pid of torchrun's worker process with global rank ``rank`` (a child of the agent)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = open(f"/proc/{entry}/stat").read()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            env = open(f"/proc/{entry}/environ", "rb").read().split(b"\0")
        except OSError:
            continue
        if ppid == agent_pid and f"RANK={rank}".encode() in env:
            return int(entry)
    return None


def test_under_torchrun_a_signal_to_one_rank_stops_every_rank_at_the_same_iteration(data):
    """SIGTERM to rank 1 alone: rank 0, which got none, stops at the same iteration (it would otherwise wait in the
    next gradient all-reduce until the watchdog), prints the one line, and both end with 143."""
    root = data / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "monai.bundle",
           "run", "--config_file", repr([*TRAIN, "bundles/unet/multi_gpu_train.json"]), "--dataset_dir",
           str(data / "data"), "--bundle_root", str(root)]
    for key, value in {**RUN, "amp": "float32"}.items():
        cmd += [f"--{key}", str(value)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _wait_for(root / "models" / "checkpoint_epoch=1.pt", proc, seconds=400)
        worker = _worker_of_rank(proc.pid, 1)
        assert worker is not None
        sent = time.monotonic()
        os.kill(worker, signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0
    assert took < GRACE_S, took
    lines = [ln for ln in (out + err).splitlines() if "training stopped by SIGTERM" in ln]
    assert len(lines) == 1 and STOPPED.search(lines[0]), (out + err)[-4000:]
    assert "did not stop within" not in out + err
    assert re.search(r"exitcode\s*:\s*143", out + err), (out + err)[-4000:]
