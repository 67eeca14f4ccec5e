"""One run per folder (pipeline.engines.lock), in process: a folder held by a live lock holder is refused in one line
naming it; a lock file nobody holds any more (its process was killed) is taken over with a log line; a normal release
removes the file. A second process holding the lock is simulated by a flock on another open file description, which
the kernel treats like another process's (the slow test in tests/integration/test_preemption.py starts real runs)."""
import fcntl
import json
import logging
import os
import socket

import pytest

from pipeline.engines.lock import LOCK_NAME, FolderLock, lock_folder, pid_alive, release_folder
from pipeline.errors import PipelineError

DEAD_PID = 2**22 + 12345  # above Linux's largest pid_max: never a live process


def _held_by_other(folder, pid, argv=("python", "-m", "monai.bundle", "run")):
    """Hold ``folder``'s lock the way another process would, with its record."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, json.dumps({"pid": pid, "host": socket.gethostname(), "started": "2026-01-02T03:04:05+00:00",
                             "argv": list(argv)}).encode())
    return fd


def test_a_live_holder_is_refused_in_one_line_naming_it(tmp_path):
    fd = _held_by_other(tmp_path / "models", os.getpid())
    try:
        with pytest.raises(PipelineError) as err:
            lock_folder(tmp_path / "models", "training")
        message = str(err.value)
        assert "\n" not in message
        assert f"pid {os.getpid()} on {socket.gethostname()}" in message
        assert "started 2026-01-02T03:04:05+00:00" in message and "python -m monai.bundle run" in message
        assert json.loads((tmp_path / "models" / LOCK_NAME).read_text())["pid"] == os.getpid()  # left alone
    finally:
        os.close(fd)


def test_a_stale_lock_of_a_killed_run_is_taken_over_with_a_line(tmp_path, caplog):
    folder = tmp_path / "models"
    os.close(_held_by_other(folder, DEAD_PID))  # its process died: the kernel dropped the flock
    assert not pid_alive(DEAD_PID)
    with caplog.at_level(logging.WARNING, logger="pipeline.engines.lock"):
        lock = lock_folder(folder, "training")
    try:
        assert any("took over the stale lock" in r.getMessage() and str(DEAD_PID) in r.getMessage()
                   for r in caplog.records)
        record = json.loads((folder / LOCK_NAME).read_text())
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
        assert {"started", "argv"} <= set(record)
    finally:
        lock.release()


def test_release_removes_the_lock_and_a_new_run_takes_it_silently(tmp_path, caplog):
    folder = tmp_path / "pred"
    lock_folder(folder, "inference")
    assert (folder / LOCK_NAME).is_file()
    release_folder(folder)
    assert not (folder / LOCK_NAME).exists()
    assert not folder.exists()  # the lock created the folder and nothing else was written
    with caplog.at_level(logging.WARNING, logger="pipeline.engines.lock"):
        lock = lock_folder(folder, "inference")
    assert not caplog.records
    lock.release()


def test_one_process_may_run_one_workflow_after_another_in_a_folder(tmp_path):
    first = lock_folder(tmp_path, "training")
    second = lock_folder(tmp_path, "training")  # the same process: the previous hold is released first
    assert first.fd is None and second.fd is not None
    second.release()
    assert not (tmp_path / LOCK_NAME).exists()


def test_ranks_other_than_zero_take_no_lock(tmp_path):
    assert lock_folder(tmp_path / "models", enabled=False) is None
    assert not (tmp_path / "models").exists()


def test_pid_alive():
    assert pid_alive(os.getpid())
    assert not pid_alive(DEAD_PID) and not pid_alive(0)


def test_a_lock_held_here_is_not_released_by_another_instance(tmp_path):
    lock = FolderLock(tmp_path).acquire()
    other = FolderLock(tmp_path)
    other.release()  # never acquired: nothing happens
    assert (tmp_path / LOCK_NAME).is_file()
    lock.release()


@pytest.mark.parametrize("name", ["unet", "attn_unet"])
def test_the_bundles_lock_their_output_folder_and_release_it(name):
    """Training locks ckpt_dir (rank 0 only) before anything is written, inference the folder it writes (write_dir:
    pred_dir, or coarse_dir for the first stage of a cascade, whose second stage locks pred_dir)."""
    from tests.bundles_util import REPO

    folder = REPO / "bundles" / name
    for file, target in (("train.json", "@ckpt_dir"), ("multi_gpu_train.json", "@ckpt_dir"),
                         ("inference.json", "@write_dir" if name == "attn_unet" else "@pred_dir")):
        config = json.loads((folder / file).read_text())
        locks = [i for i, step in enumerate(config["initialize"]) if f"lock_folder({target}" in step]
        assert len(locks) == 1, file
        assert not any("prepare.run" in step for step in config["initialize"][: locks[0]]), file
        assert any(f"release_folder({target})" in step for step in config["finalize"]), file
