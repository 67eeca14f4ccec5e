"""Planning: a data set's fingerprint and the machine -> a training plan (spacing, patch, strides, batch, workers).

``python -m pipeline plan DATASET_DIR`` writes a plan; both bundles follow one by default (``configs/plan/auto.json``:
``bundle_plan`` reads it, or computes and writes it on the first run). Rules: ``pipeline.planning.plan``.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pipeline.planning.fingerprint import dataset_fingerprint
from pipeline.planning.io import format_plan, log_plan, read_plan, write_plan
from pipeline.planning.machine import machine_profile
from pipeline.planning.plan import PLAN_KEYS, PLAN_VERSION, make_plan, planned_workers, pooling_strides

__all__ = [
    "PLAN_KEYS",
    "bundle_plan",
    "checkpoint_plan",
    "dataset_fingerprint",
    "format_plan",
    "log_plan",
    "machine_profile",
    "make_plan",
    "plan_dataset",
    "planned_workers",
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

    The file is followed as written (edit it to change a value; delete it to plan again) when it was made for this
    data set folder, this device type and this network depth (``poolings``) by this version of the planner. A file
    made for another one (a run with ``--dataset_dir`` or ``--preset context`` in a folder that trained something
    else, or a plan from before a planning rule changed) is not followed: the data are planned again for this run
    and the file is left as it is, with a warning saying so. A file without a ``version`` (written by hand) counts
    as current.
    """
    path = Path(plan_file)
    if not path.exists():
        plan = plan_dataset(dataset_dir, device, spatial_dims=spatial_dims, num_samples=num_samples, poolings=poolings)
        write_plan(plan, path)
        logger.info("no plan in %s: planned from the data and written there", path)
        log_plan(plan)
        return plan
    plan = read_plan(path)
    here, now = str(Path(dataset_dir).absolute()), machine_profile(device)["device"]
    differs = [
        f"{what} {was} (this run: {this})"
        for what, was, this in (
            ("data set", plan.get("dataset_dir"), here),
            ("device", plan.get("device"), now),
            ("poolings", len(plan["strides"]), poolings),
            ("planner version", plan.get("version"), PLAN_VERSION),
        )
        if was is not None and was != this
    ]
    if differs:
        logger.warning("%s was planned for %s: planned again for this run; the file is left as it is (delete it to "
                       "store the new plan)", path, ", ".join(differs))
        plan = plan_dataset(dataset_dir, device, spatial_dims=spatial_dims, num_samples=num_samples, poolings=poolings)
    else:
        logger.info("following the plan in %s (delete it to plan again)", path)
    log_plan(plan)
    return plan


def checkpoint_plan(ckpt_dir: str | Path, device: str = "auto") -> dict[str, Any]:
    """The planned values a trained model was trained with, from its ``model_config.json`` (evaluation uses these).

    Evaluating on another data set must prepare the data as training did, not plan for the new data: target
    spacing, patch size, strides and the CT intensity window come from the checkpoint folder; num_workers from this
    machine; batch size 1.
    A folder without ``model_config.json`` is a one-line PipelineError.
    """
    from pipeline.engines.model_config import read_model_config

    config = read_model_config(ckpt_dir)
    workers, _ = planned_workers(machine_profile(device))
    data = config.get("data") or {}
    return {
        "target_spacing": data.get("target_spacing"),
        "intensity": {"hu_window": data.get("hu_window")},
        "patch_size": config["patch_size"],
        "strides": config["network"].get("strides"),
        "batch_size": 1,
        "num_workers": workers,
    }
