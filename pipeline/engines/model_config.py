"""What a checkpoint folder holds besides the weights, and how it is read back.

Training writes ``model_config.json`` (the network's class and constructor arguments, the channel and class set,
the split, the axes flip TTA may use) and ``plan.json`` (the preprocessing contract: ``pipeline.planning``) beside
``model.pt``. A checkpoint folder is data, never code: the network class is looked up by name in an allow-list
(``NETWORKS``: the project's networks plus what ``register_network`` adds), never imported from a path in the file.
"""
from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from pipeline.errors import PipelineError
from pipeline.fileio import json_ready, write_text_atomic
from pipeline.networks import FCN, AttentionUNet, UNet

logger = logging.getLogger(__name__)

FILENAME = "model_config.json"
# what must match between the checkpoint's training run and a run that uses it (patch size, split and class
# names may differ)
COMPARED_KEYS = ("network", "spatial_dims", "in_channels", "out_channels")
# preprocessing values of the plan that must match; the patch size may differ (sliding windows of another size)
PLAN_COMPARED_KEYS = ("target_spacing", "strides", "intensity")

#: network classes a model_config.json may name: the project's own, plus what ``register_network`` adds
NETWORKS: dict[str, type[torch.nn.Module]] = {"UNet": UNet, "FCN": FCN, "AttentionUNet": AttentionUNet}


def register_network(cls: type[torch.nn.Module], name: str | None = None) -> type[torch.nn.Module]:
    """Allow checkpoint folders to name ``cls`` (by ``name``, default its class name); usable as a decorator.
    The class must record its constructor arguments as ``init_args`` (as the project's networks do)."""
    NETWORKS[name or cls.__name__] = cls
    return cls


def network_config(network: torch.nn.Module) -> dict[str, Any]:
    """``{"_target_": "module.Class", **constructor arguments}`` of one of our networks (they record ``init_args``)."""
    args = getattr(network, "init_args", None)
    if not isinstance(args, Mapping):
        raise PipelineError(
            f"network {type(network).__name__} does not record its constructor arguments (init_args): "
            "only pipeline.networks classes can be saved with model_config.json"
        )
    name = next((k for k, v in NETWORKS.items() if v is type(network)), None)
    if name is None:
        raise PipelineError(f"network {type(network).__name__} is not registered: pipeline.engines.register_network")
    return {"_target_": name, **json_ready(dict(args))}


def network_from_config(model_config: Mapping[str, Any], source: str | Path = FILENAME) -> torch.nn.Module:
    """Build the network described by ``model_config["network"]`` (as written by ``network_config``): the class
    by name from ``NETWORKS`` (never an import path), with the file's arguments; a bad entry is a one-line
    PipelineError naming ``source``."""
    spec = dict(model_config.get("network") or {})
    target = spec.pop("_target_", None)
    name = target.rsplit(".", 1)[-1] if isinstance(target, str) and target.startswith("pipeline.networks.") else target
    if not isinstance(name, str) or name not in NETWORKS:
        raise PipelineError(
            f"{source}: network {target!r} is not one of {', '.join(sorted(NETWORKS))} (others must be registered "
            "with pipeline.engines.register_network)"
        )
    try:
        return NETWORKS[name](**spec)
    except (TypeError, ValueError) as e:
        raise PipelineError(f"{source}: network arguments do not fit {name} ({e})") from None


def save_run_files(ckpt_dir: str | Path, model_config: Mapping[str, Any], plan: Mapping[str, Any],
                   trainer: Any = None) -> None:
    """Write ``model_config.json`` and ``plan.json`` into the checkpoint folder (atomically) and log where.

    ``trainer`` is unused here: a config passes ``@train#trainer`` first so that the data sets are built and
    checked before anything is written into the checkpoint folder.
    """
    from pipeline.planning import write_checkpoint_plan

    path = Path(ckpt_dir) / FILENAME
    write_text_atomic(path, json.dumps(json_ready(model_config), indent=2) + "\n")
    logger.info("model configuration (network, classes, split) written to %s", path)
    write_checkpoint_plan(ckpt_dir, plan)


def read_model_config(ckpt_dir: str | Path) -> dict[str, Any]:
    """The ``model_config.json`` of a checkpoint folder; a one-line PipelineError if it is missing or unreadable."""
    path = Path(ckpt_dir) / FILENAME
    if not path.is_file():
        raise PipelineError(
            f"{path} not found: the checkpoint folder needs the model_config.json that training writes beside "
            "model.pt (train the bundle first, or set --ckpt_dir)"
        )
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PipelineError(f"{path}: unreadable ({type(e).__name__}: {e})") from None
    if not isinstance(config, dict):
        raise PipelineError(f"{path}: top level is a JSON {type(config).__name__}; expected an object")
    missing = [k for k in ("network", "spatial_dims", "out_channels") if k not in config]
    if missing:
        raise PipelineError(f"{path}: missing {', '.join(missing)}")
    return config


def _differences(saved: Any, current: Any, where: str) -> list[str]:
    if isinstance(saved, Mapping) and isinstance(current, Mapping):
        out = []
        for key in saved:
            if key in current:
                out += _differences(saved[key], current[key], f"{where}{key}" if not where else f"{where}.{key}")
        return out
    if isinstance(saved, float) or isinstance(current, float):
        try:
            if math.isclose(float(saved), float(current), rel_tol=1e-6, abs_tol=1e-9):
                return []
        except (TypeError, ValueError):
            pass
    return [] if saved == current else [where]


def _refuse(path: Path, key: str, saved: Any, diffs: list[str]) -> None:
    raise PipelineError(
        f"{path}: the checkpoint was trained with {key} = {json.dumps(saved)} but this run uses something else"
        + (f" (and {len(diffs) - 1} more difference(s))" if len(diffs) > 1 else "")
        + f"; run with --{key.split('.')[0]} '{json.dumps(saved)}' or point --ckpt_dir at a matching checkpoint"
    )


def _lookup(tree: Any, key: str) -> Any:
    for part in key.split("."):
        tree = tree[part]
    return tree


def check_model_config(ckpt_dir: str | Path, current: Mapping[str, Any], plan: Mapping[str, Any] | None = None) -> None:
    """Refuse (one line) a run whose network, or (with ``plan``) whose preprocessing, differs from the one the
    checkpoint in ``ckpt_dir`` was trained with (``model_config.json`` and ``plan.json``)."""
    saved = read_model_config(ckpt_dir)
    plain = {k: v for k, v in json_ready(current).items() if k in COMPARED_KEYS}
    diffs = _differences(saved, plain, "")
    if diffs:
        _refuse(Path(ckpt_dir) / FILENAME, diffs[0], _lookup(saved, diffs[0]), diffs)
    if plan is None:
        return
    from pipeline.planning import CHECKPOINT_PLAN, read_plan

    saved_plan = read_plan(Path(ckpt_dir) / CHECKPOINT_PLAN)
    saved_plan = {k: saved_plan.get(k) for k in PLAN_COMPARED_KEYS}
    diffs = _differences(saved_plan, {k: v for k, v in json_ready(plan).items() if k in PLAN_COMPARED_KEYS}, "")
    if diffs:
        _refuse(Path(ckpt_dir) / CHECKPOINT_PLAN, diffs[0], _lookup(saved_plan, diffs[0]), diffs)


__all__: Sequence[str] = [
    "NETWORKS",
    "check_model_config",
    "network_config",
    "network_from_config",
    "read_model_config",
    "register_network",
    "save_run_files",
]
