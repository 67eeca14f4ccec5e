"""Plan files: atomic JSON writes, checked reads (one-line errors), and the readable block the log shows."""
from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError
from pipeline.fileio import write_text_atomic
from pipeline.planning.plan import PLAN_KEYS

__all__ = ["format_plan", "log_plan", "read_plan", "write_plan"]

logger = logging.getLogger("pipeline.planning")


def write_plan(plan: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``plan`` as JSON to ``path`` atomically (a temporary file in the same folder, then rename)."""
    return write_text_atomic(path, json.dumps(plan, indent=2) + "\n")


def _check(plan: Any, path: Path) -> None:
    """One-line PipelineError naming the first key of a plan that is missing or of the wrong kind."""
    if not isinstance(plan, dict):
        raise PipelineError(f"{path}: top level is a JSON {type(plan).__name__}; expected a plan object")
    for key in PLAN_KEYS:
        if key not in plan:
            raise PipelineError(f"{path}: plan has no {key!r}; delete the file to plan again")
    dims = len(plan["patch_size"]) if isinstance(plan["patch_size"], list) else 0

    def numbers(v: Any, kind: type | tuple[type, ...]) -> bool:
        return isinstance(v, list) and len(v) == dims and all(
            isinstance(x, kind) and not isinstance(x, bool) and x > 0 for x in v
        )

    if dims not in (2, 3) or not numbers(plan["patch_size"], int):
        raise PipelineError(f"{path}: patch_size {plan['patch_size']!r} is not a list of 2 or 3 positive integers")
    if not numbers(plan["target_spacing"], (int, float)):
        raise PipelineError(f"{path}: target_spacing {plan['target_spacing']!r} is not {dims} positive numbers")
    strides = plan["strides"]
    if not isinstance(strides, list) or not all(numbers(s, int) for s in strides):
        raise PipelineError(f"{path}: strides {strides!r} is not a list of per-level lists of {dims} integers")
    for key in ("batch_size", "num_workers"):
        v = plan[key]
        if not isinstance(v, int) or isinstance(v, bool) or v < (1 if key == "batch_size" else 0):
            kind = "positive" if key == "batch_size" else "non-negative"
            raise PipelineError(f"{path}: {key} {v!r} is not a {kind} integer")


def read_plan(path: str | Path) -> dict[str, Any]:
    """Read and check a plan file; a missing, unreadable or malformed file is a one-line PipelineError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PipelineError(f"{path}: plan file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise PipelineError(f"{path}: unreadable plan file ({type(e).__name__})") from None
    try:
        plan = json.loads(text)
    except json.JSONDecodeError as e:
        raise PipelineError(f"{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
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
