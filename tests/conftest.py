"""Suite-wide settings.

Under pytest-xdist (the README's test command runs ``-n auto``) each worker gets an equal share of the cores, so the
workers' torch/OpenMP pools do not oversubscribe the machine; the share goes to the bundle and CLI processes the tests
start, through ``OMP_NUM_THREADS``.
"""
import os

import torch


def pytest_configure(config):
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if workers > 1:
        threads = str(max(1, (os.cpu_count() or 1) // workers))
        os.environ["OMP_NUM_THREADS"] = threads
        torch.set_num_threads(int(threads))
