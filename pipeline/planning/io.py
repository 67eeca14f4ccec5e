"""Plan files: atomic JSON writes, checked reads (one-line errors), and the readable block the log shows."""
from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError
from pipeline.fileio import write_text_atomic
from pipeline.planning.plan import PLAN_KEYS
from pipeline.schema import check_schema, int_list, integers, load_json_file, refuse

__all__ = ["format_plan", "log_plan", "read_plan", "write_plan"]

logger = logging.getLogger("pipeline.planning")


def write_plan(plan: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``plan`` as JSON to ``path`` atomically (a temporary file in the same folder, then rename)."""
    return write_text_atomic(path, json.dumps(plan, indent=2) + "\n")


#: intensity normalisations a plan may name (``pipeline.transforms.CTIntensityd`` and the shapes' min-max scaling)
INTENSITY_MODES = ("window", "zscore", "per_image_zscore", "minmax")
MAX_PATCH_VOXELS = 2**27  # a sliding window beyond this (e.g. 512^3) does not fit any machine's memory
_HU = {"type": "number", "minimum": -1e5, "maximum": 1e5}
_STATS = {"anyOf": [{"type": "null"}, _HU]}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": list(PLAN_KEYS),
    "additionalProperties": False,
    "properties": {
        "target_spacing": {"type": "array", "minItems": 2, "maxItems": 3,
                           "items": {"type": "number", "exclusiveMinimum": 0, "maximum": 100}},
        "patch_size": int_list(1, 2048, 2, 3),
        "strides": {"type": "array", "maxItems": 6, "items": int_list(1, 8, 2, 3)},
        "batch_size": integers(1, 1024),
        "num_workers": integers(0, 256),
        "intensity": {"type": "object", "required": ["mode"], "additionalProperties": False, "properties": {
            "mode": {"type": "string", "enum": list(INTENSITY_MODES)},
            "hu_window": {"anyOf": [{"type": "null"}, {"type": "array", "minItems": 2, "maxItems": 2, "items": _HU}]},
            "zscore": {"anyOf": [{"type": "null"}, {
                "type": "object", "additionalProperties": False,
                "properties": {"p00_5": _STATS, "p99_5": _STATS, "mean": _STATS, "std": _STATS}}]},
        }},
        "postprocessing": {"type": "object", "additionalProperties": False,
                           "properties": {"keep_largest_component": {"type": "boolean"},
                                          "min_lesion_ml": {"type": "number", "minimum": 0, "maximum": 1e4}}},
        # written by the planner (pipeline.planning.make_plan) and training (trained_plan); not read for values
        "version": integers(0, 10**6), "dataset_dir": {"type": ["string", "null"], "maxLength": 4096},
        "device": {"type": ["string", "null"], "maxLength": 40}, "spatial_dims": integers(2, 3),
        "why": {"type": "object"}, "machine": {"type": "object"}, "fingerprint": {"type": "object"},
        "overridden": {"type": "array", "maxItems": 20, "items": {"type": "string", "maxLength": 40}},
    },
}


def _check(plan: Any, path: Path) -> None:
    """One-line PipelineError ``<path>: <field>: <problem>`` for the first value of a plan that is missing, of the
    wrong kind, out of range or inconsistent (dims, window order, z-score statistics)."""
    if not isinstance(plan, dict):
        raise PipelineError(f"{path}: top level is a JSON {type(plan).__name__}; expected a plan object")
    check_schema(plan, SCHEMA, path)
    dims = len(plan["patch_size"])
    if len(plan["target_spacing"]) != dims:
        raise refuse(path, "target_spacing", f"{len(plan['target_spacing'])} values for {dims} patch axes")
    bad = next((i for i, s in enumerate(plan["strides"]) if len(s) != dims), None)
    if bad is not None:
        raise refuse(path, f"strides[{bad}]", f"{len(plan['strides'][bad])} values for {dims} patch axes")
    if plan.get("spatial_dims", dims) != dims:
        raise refuse(path, "spatial_dims", f"{plan['spatial_dims']} but patch_size has {dims} axes")
    if math.prod(plan["patch_size"]) > MAX_PATCH_VOXELS:
        raise refuse(path, "patch_size", f"{plan['patch_size']} is more than {MAX_PATCH_VOXELS:,} voxels")
    intensity = plan.get("intensity") or {}
    window = intensity.get("hu_window")
    if window is not None and not window[0] < window[1]:
        raise refuse(path, "intensity.hu_window", f"{window}: expected [low, high] with low < high")
    stats = intensity.get("zscore")
    if intensity.get("mode") == "zscore":
        missing = [k for k in ("p00_5", "p99_5", "mean", "std") if (stats or {}).get(k) is None]
        if missing:
            raise refuse(path, f"intensity.zscore.{missing[0]}", "missing: mode 'zscore' needs the statistics")
    if stats and stats.get("std") is not None and intensity.get("mode") == "zscore" and not stats["std"] > 0:
        raise refuse(path, "intensity.zscore.std", f"{stats['std']} is not positive")
    if stats and None not in (stats.get("p00_5"), stats.get("p99_5")) and stats["p00_5"] > stats["p99_5"]:
        raise refuse(path, "intensity.zscore", "p00_5 is above p99_5")


def read_plan(path: str | Path) -> dict[str, Any]:
    """Read and check a plan file (``SCHEMA`` and the consistency of its values); a missing, unreadable, oversized
    or malformed file is a one-line PipelineError ``<path>: <field>: <problem>``."""
    path = Path(path)
    plan = load_json_file(path, "plan file", max_bytes=16 * 2**20)
    _check(plan, path)
    return plan


def format_plan(plan: Mapping[str, Any]) -> str:
    """The plan as a readable block: one line per value with the reason it was chosen."""
    m = plan.get("machine") or {}
    fp = plan.get("fingerprint") or {}
    where = f"{m.get('device', plan.get('device', '?'))}, {m.get('cpu_count', '?')} cores"
    if m.get("gpu_name") or m.get("gpu_memory_gib"):
        where += f", {m.get('gpu_name') or 'GPU'} {m.get('gpu_memory_gib')} GiB"
    elif "cpu_bf16" in m:
        where += f", native bf16 {'yes' if m['cpu_bf16'] else 'no'}"
    head = f"plan for {plan.get('dataset_dir', '?')} ({where}"
    if fp:
        head += f"; fingerprint of {fp.get('n_analysed')} of {fp.get('n_training_cases')} training cases"
    lines = [head + "):"]
    why = plan.get("why") or {}
    intensity = plan.get("intensity") or {}
    values = {key: plan.get(key) for key in PLAN_KEYS}
    if intensity:
        values["intensity"] = intensity.get("mode") + (
            f" {intensity['hu_window']} HU" if intensity.get("hu_window") else "")
    for key, value in values.items():
        lines.append(f"  {key:<15} {json.dumps(value) if not isinstance(value, str) else value}")
        if why.get(key):
            lines.append(f"  {'':<15}   because {why[key]}")
    return "\n".join(lines)


def log_plan(plan: Mapping[str, Any]) -> None:
    """Write ``format_plan(plan)`` to the log (INFO, logger ``pipeline.planning``)."""
    logger.info("%s", format_plan(plan))
