"""Planning: a data set's fingerprint and the machine -> a training plan (spacing, patch, strides, batch, workers).

One preprocessing contract, as nnU-Net's ``plans.json``: a bundle's ``initialize`` step plans (``Preparation``:
generate the default data set if needed, then read ``plan_file`` or plan and write it); training copies the plan it
followed into the checkpoint folder (``write_checkpoint_plan``), and evaluation and inference read it from there
(``checkpoint_plan``). Resolving a config id never plans or writes. Rules: ``pipeline.planning.plan``.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.planning.fingerprint import dataset_fingerprint
from pipeline.planning.io import format_plan, log_plan, read_plan, write_plan
from pipeline.planning.machine import machine_profile
from pipeline.errors import PipelineError
from pipeline.fileio import json_ready
from pipeline.planning.plan import PLAN_KEYS, make_plan, planned_workers, pooling_strides
from pipeline.planning.prepare import Preparation, plan_dataset

__all__ = [
    "PLAN_KEYS",
    "CHECKPOINT_PLAN",
    "Preparation",
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
    "trained_plan",
    "write_checkpoint_plan",
    "write_plan",
]

logger = logging.getLogger("pipeline.planning")

CHECKPOINT_PLAN = "plan.json"  # beside model.pt and model_config.json


def checkpoint_plan(ckpt_dir: str | Path, device: str = "auto") -> dict[str, Any]:
    """The plan a trained model was trained with, ``<ckpt_dir>/plan.json`` as training copied it there, for
    evaluation and inference on this machine: every preprocessing value as trained, ``num_workers`` from this
    machine, batch size 1. A missing or malformed file is a one-line PipelineError."""
    path = Path(ckpt_dir) / CHECKPOINT_PLAN
    if not path.is_file():
        raise PipelineError(
            f"{path} not found: the checkpoint folder needs the plan.json that training writes beside model.pt "
            "(train the bundle first, or set --ckpt_dir)"
        )
    plan = read_plan(path)
    workers, _ = planned_workers(machine_profile(device))
    return {**plan, "batch_size": 1, "num_workers": workers}


def trained_plan(plan: Mapping[str, Any], **used: Any) -> dict[str, Any]:
    """The plan as this run follows it: ``plan`` with the values the run actually uses (``target_spacing``,
    ``patch_size``, ``strides``, ``batch_size``, ``num_workers``, ``intensity``, ``postprocessing``: a command-line
    override wins over the planned value). Training writes it into the checkpoint folder (``write_checkpoint_plan``)."""
    out = {k: v for k, v in plan.items() if k not in used}
    for key, value in used.items():
        out[key] = json_ready(value)
    overridden = [k for k in PLAN_KEYS if k in used and k in plan and json_ready(plan[k]) != out[k]]
    if overridden:
        out["overridden"] = overridden
    return out


def write_checkpoint_plan(ckpt_dir: str | Path, plan: Mapping[str, Any]) -> Path:
    """Write the plan a training follows into its checkpoint folder (atomically), where evaluation and inference
    read it (``checkpoint_plan``)."""
    path = write_plan(plan, Path(ckpt_dir) / CHECKPOINT_PLAN)
    logger.info("plan written to %s (evaluation and inference read it there)", path)
    return path
