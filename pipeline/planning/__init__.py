"""Planning: a data set's fingerprint and the machine -> a training plan (spacing, patch, strides, batch, workers).

``python -m pipeline plan DATASET_DIR`` writes a plan; ``configs/plan/auto.json`` makes a bundle follow one
(``bundle_plan`` reads it, or computes and writes it on the first run). Rules: ``pipeline.planning.plan``.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pipeline.planning.fingerprint import dataset_fingerprint
from pipeline.planning.io import format_plan, log_plan, read_plan, write_plan
from pipeline.planning.machine import machine_profile
from pipeline.planning.plan import PLAN_KEYS, make_plan, pooling_strides

__all__ = [
    "PLAN_KEYS",
    "bundle_plan",
    "dataset_fingerprint",
    "format_plan",
    "log_plan",
    "machine_profile",
    "make_plan",
    "plan_dataset",
    "pooling_strides",
    "read_plan",
    "write_plan",
]

logger = logging.getLogger("pipeline.planning")


def plan_dataset(
    dataset_dir: str | Path, device: str = "auto", spatial_dims: int = 3, num_samples: int = 2,
    max_cases: int | None = None, poolings: int = 3,
) -> dict[str, Any]:
    """Fingerprint ``dataset_dir`` (all training cases, or ``max_cases``), profile this machine, return the plan."""
    machine = machine_profile(device)  # first: a CUDA request without a GPU fails before the data is read
    fingerprint = dataset_fingerprint(dataset_dir, max_cases=max_cases)
    logger.info("fingerprint of %d training cases took %.1f s", fingerprint["n_analysed"], fingerprint["seconds"])
    return make_plan(fingerprint, machine, spatial_dims=spatial_dims, num_samples=num_samples, poolings=poolings)


def bundle_plan(
    dataset_dir: str | Path, plan_file: str | Path, device: str = "auto", spatial_dims: int = 3, num_samples: int = 2,
    poolings: int = 3,
) -> dict[str, Any]:
    """The plan a bundle follows: ``plan_file`` if it exists, else planned from the data and written there; logged.

    A plan made for another data set folder or device is still used (it may have been copied on purpose), with
    a warning in the log. A plan whose strides are for another network depth (``poolings``, e.g. a run with
    ``--preset context`` after a ``standard`` one in the same folder) is planned again for this depth and used
    without touching the file.
    """
    path = Path(plan_file)
    if path.exists() and len(read_plan(path)["strides"]) != poolings:
        logger.warning("%s has strides for %d poolings and this network has %d: planned again for this run (the file"
                       " is left as it is)", path, len(read_plan(path)["strides"]), poolings)
        plan = plan_dataset(dataset_dir, device, spatial_dims=spatial_dims, num_samples=num_samples, poolings=poolings)
    elif path.exists():
        plan = read_plan(path)
        logger.info("following the plan in %s (delete it to plan again)", path)
        here = str(Path(dataset_dir).absolute())
        if plan.get("dataset_dir") not in (None, here):
            logger.warning("%s was planned for %s, not %s", path, plan.get("dataset_dir"), here)
        planned, now = plan.get("device"), machine_profile(device)["device"]
        if planned not in (None, now):
            logger.warning("%s was planned for device %s; this run uses %s", path, planned, now)
    else:
        plan = plan_dataset(dataset_dir, device, spatial_dims=spatial_dims, num_samples=num_samples, poolings=poolings)
        write_plan(plan, path)
        logger.info("no plan in %s: planned from the data and written there", path)
    log_plan(plan)
    return plan
