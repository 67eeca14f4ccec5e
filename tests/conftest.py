"""Suite-wide settings.

Under pytest-xdist (the README's test command runs ``-n auto``) each worker gets an equal share of the cores, so the
workers' torch/OpenMP pools do not oversubscribe the machine; the share goes to the bundle and CLI processes the tests
start, through ``OMP_NUM_THREADS``.

Tests write only under their tmp_path: a run that leaves new files in the checkout (a generated data set under
``data/``, a ``plan.json`` or ``models/`` in a bundle folder) fails the session, listing them. A bundle test that
forgets to override a default path would otherwise generate the default data set where a user keeps theirs, and cost
the suite a minute each time.

``slow`` means exactly "starts a process" (a subprocess, or a multiprocessing worker such as a DataLoader's): a test
without the mark that starts one (in its fixtures or its body) fails, so that ``pytest -m "not slow"`` stays the
in-process quick loop.
"""
import multiprocessing.process
import os
import platform
import subprocess
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
NOISE = ("__pycache__", ".pytest_cache", ".egg-info")


def _untracked() -> set[str] | None:
    """Untracked and ignored paths of the checkout (git's collapsed listing), or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--ignored", "--untracked-files=normal"], cwd=REPO,
                             capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    paths = {line[3:] for line in out.splitlines() if line[:2] in ("??", "!!")}
    return {p for p in paths if not any(n in p for n in NOISE)}


def pytest_configure(config):
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if workers > 1:
        threads = str(max(1, (os.cpu_count() or 1) // workers))
        os.environ["OMP_NUM_THREADS"] = threads
        torch.set_num_threads(int(threads))
    _count_started_processes()
    if not hasattr(config, "workerinput"):  # the controller (or a run without xdist) sees every worker's writes
        config._checkout_before = _untracked()


def pytest_sessionfinish(session, exitstatus):
    before = getattr(session.config, "_checkout_before", None)
    after = _untracked() if before is not None else None
    new = sorted(after - before) if after is not None else []
    if new:
        message = f"error: the tests left {len(new)} new path(s) in the checkout {REPO}: {', '.join(new)}"
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        reporter.write_line(message, red=True) if reporter else print(message)
        session.exitstatus = 1


STARTED: list[object] = []  # every process the tests of this (xdist worker) process start


def _count_started_processes() -> None:
    """Wrap subprocess.Popen and multiprocessing's Process.start so that every process a test starts is counted."""
    popen_init, process_start = subprocess.Popen.__init__, multiprocessing.process.BaseProcess.start

    def counting_popen(self, *args, **kwargs):
        STARTED.append(args[0] if args else kwargs.get("args"))
        popen_init(self, *args, **kwargs)

    def counting_start(self):
        STARTED.append(type(self).__name__)
        process_start(self)

    platform.uname().processor  # cached once here: libraries ask for it at import time, by running `uname -p`
    subprocess.Popen.__init__ = counting_popen
    multiprocessing.process.BaseProcess.start = counting_start


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    item.started_before = len(STARTED)
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    yield
    new = STARTED[getattr(item, "started_before", len(STARTED)):]
    if new and item.get_closest_marker("slow") is None:
        pytest.fail(f"started a process ({new[0]!r}) without the slow mark: mark it @pytest.mark.slow (an "
                    "end-to-end run of a command belongs under tests/integration)", pytrace=False)
