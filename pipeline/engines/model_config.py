"""What a checkpoint folder holds besides the weights, and how it is read back.

Training writes ``model_config.json`` (the network's class and constructor arguments, the channel and class set,
the split, the axes flip TTA may use) and ``plan.json`` (the preprocessing contract: ``pipeline.planning``) beside
``model.pt``. A checkpoint folder is data, never code: the network class is looked up by name in an allow-list
(``NETWORKS``: the project's networks plus what ``register_network`` adds), never imported from a path in the file.
"""
from __future__ import annotations

import inspect
import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from pipeline.errors import PipelineError
from pipeline.fileio import json_ready, write_text_atomic
from pipeline.data.cases import ITK_EXTENSIONS, NIFTI_EXTENSIONS, PIL_EXTENSIONS
from pipeline.networks import FCN, PRESETS, AttentionUNet, UNet
from pipeline.networks.blocks import UPSAMPLE_MODES
from pipeline.schema import check_schema, int_list, integers, load_json_file, refuse, short

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


def _network_name(target: Any) -> str | None:
    """The ``NETWORKS`` name a ``_target_`` means (``pipeline.networks.X`` as written by older runs), else None."""
    if not isinstance(target, str):
        return None
    name = target.rsplit(".", 1)[-1] if target.startswith("pipeline.networks.") else target
    return name if name in NETWORKS else None


# ---- what a model_config.json may hold (it is data from whoever made the folder: checked before use) ----------

def _layer_spec(names: tuple[str, ...]) -> dict[str, Any]:
    """A norm/activation spec: a known factory name, or [name, {scalar constructor arguments}], or null."""
    scalar = {"anyOf": [{"type": "boolean"}, {"type": "number", "minimum": -1e6, "maximum": 1e6},
                        {"type": "string", "maxLength": 40}, {"type": "null"}]}
    name = {"type": "string", "enum": list(names)}
    return {"anyOf": [{"type": "null"}, name, {
        "type": "array", "minItems": 1, "maxItems": 2, "prefixItems": [
            name, {"type": "object", "maxProperties": 8, "propertyNames": {"pattern": "^[a-z_]{1,30}$"},
                   "additionalProperties": scalar}]}]}


NORM_NAMES = ("instance_cl", "instance", "batch", "group", "layer", "localresponse", "syncbatch")
ACT_NAMES = ("leakyrelu", "relu", "prelu", "elu", "gelu", "selu", "celu", "relu6", "sigmoid", "tanh", "swish",
             "mish", "memswish", "softmax", "logsoftmax")
MAX_WIDTH = 4096
MAX_PARAMETERS = 2 * 10**8  # an estimate of the network's size above which a file is refused before building it
_STRIDE = {"anyOf": [integers(1, 8), int_list(1, 8, 2, 3)]}
_OR_NULL = lambda schema: {"anyOf": [{"type": "null"}, schema]}  # noqa: E731
#: constructor arguments of the project's networks (each class takes a subset: its signature)
NETWORK_ARGS: dict[str, Any] = {
    "spatial_dims": integers(2, 3), "in_channels": integers(1, 64), "out_channels": integers(2, 256),
    "depth": _OR_NULL(integers(1, 6)), "base_width": _OR_NULL(integers(1, 512)),
    "channels": _OR_NULL(int_list(1, MAX_WIDTH, 2, 7)),
    "strides": _OR_NULL({"type": "array", "maxItems": 6, "items": _STRIDE}),
    "preset": _OR_NULL({"type": "string", "enum": list(PRESETS)}),
    "norm": _layer_spec(NORM_NAMES), "act": _layer_spec(ACT_NAMES),
    "upsample": {"type": "string", "enum": list(UPSAMPLE_MODES)},
    "dropout": {"type": "number", "minimum": 0, "maximum": 1},
    "deep_supervision": {"type": "boolean"}, "fuse_side_outputs": {"type": "boolean"},
    "pad_input": {"type": "boolean"}, "num_side_outputs": integers(0, 8), "nested_regions": {"type": "boolean"},
    "attention_levels": _OR_NULL(int_list(0, 6, 0, 7)), "inter_channels": _OR_NULL(int_list(1, MAX_WIDTH, 0, 7)),
}
PRED_EXTENSIONS = NIFTI_EXTENSIONS + PIL_EXTENSIONS + ITK_EXTENSIONS
SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["network", "spatial_dims", "in_channels", "out_channels", "class_names", "pred_ext"],
    "additionalProperties": False,
    "properties": {
        "network": {"type": "object", "required": ["_target_"], "maxProperties": 64,
                    "properties": {"_target_": {"type": "string", "maxLength": 200}}},
        "spatial_dims": integers(2, 3), "in_channels": integers(1, 64), "out_channels": integers(2, 256),
        "class_names": {"type": "array", "maxItems": 255, "items": {"type": "string", "minLength": 1,
                                                                    "maxLength": 100}},
        "pred_ext": {"type": "string", "enum": list(PRED_EXTENSIONS)},
        "split": {"type": "object", "additionalProperties": False, "properties": {
            "val_fraction": {"type": "number", "minimum": 0, "maximum": 1}, "num_folds": integers(0, 100),
            "fold": integers(0, 99), "seed": integers(0, 2**63 - 1)}},
        "mirror_axes": _OR_NULL({"type": "array", "maxItems": 3, "uniqueItems": True, "items": integers(0, 2)}),
    },
}


def _network_args_schema(name: str) -> dict[str, Any] | None:
    """Schema of the arguments of a project network (None for a class a user registered: its own business)."""
    cls = NETWORKS[name]
    if cls not in (UNet, FCN, AttentionUNet):
        return None
    params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    return {"type": "object", "additionalProperties": False,
            "properties": {"_target_": {"type": "string"}, **{p: NETWORK_ARGS[p] for p in params}}}


def _estimated_parameters(args: Mapping[str, Any]) -> int:
    """Rough parameter count of a U-Net-like network from its widths (two k^d convolutions per level, both ways)."""
    if args.get("channels"):
        widths = list(args["channels"])
    else:
        depth = args.get("depth") or PRESETS.get(args.get("preset") or "", 0) or 3
        base = args.get("base_width") or 32
        widths = [base * 2**i for i in range(depth + 1)]
    k = 3 ** int(args.get("spatial_dims") or 3)
    return sum(2 * k * (a * b + b * b) for a, b in zip([int(args.get("in_channels") or 1), *widths], widths))


def validate_model_config(config: Any, path: str | Path) -> dict[str, Any]:
    """Check a model_config.json's content (types, ranges, known keys, the network by name from ``NETWORKS`` and
    its arguments); the first problem as one line ``<path>: <field>: <problem>``. Builds and imports nothing."""
    check_schema(config, SCHEMA, path)
    n_classes = config["out_channels"] - 1
    if len(config["class_names"]) != n_classes:
        raise refuse(path, "class_names", f"{len(config['class_names'])} names for out_channels "
                     f"{config['out_channels']}; expected {n_classes} (one per foreground class)")
    bad_axes = [a for a in config.get("mirror_axes") or [] if a >= config["spatial_dims"]]
    if bad_axes:
        raise refuse(path, "mirror_axes", f"axis {bad_axes[0]} does not exist in {config['spatial_dims']}D")
    network = config["network"]
    name = _network_name(network.get("_target_"))
    if name is None:
        raise refuse(path, "network._target_", f"{short(network.get('_target_'))} is not one of "
                     f"{', '.join(sorted(NETWORKS))} (others must be registered with pipeline.engines.register_network)")
    schema = _network_args_schema(name)
    if schema is None:
        return config
    check_schema(config, {**SCHEMA, "properties": {**SCHEMA["properties"], "network": schema}}, path)
    for key in ("spatial_dims", "in_channels", "out_channels"):
        if key in network and network[key] != config[key]:
            raise refuse(path, f"network.{key}", f"{network[key]} differs from {key} {config[key]}")
    if _estimated_parameters(network) > MAX_PARAMETERS:
        raise refuse(path, "network", f"widths {short(network.get('channels') or network.get('base_width'))} make "
                     f"a network of more than {MAX_PARAMETERS:,} parameters")
    return config


def network_from_config(model_config: Mapping[str, Any], source: str | Path = FILENAME) -> torch.nn.Module:
    """Build the network described by ``model_config["network"]`` (as written by ``network_config``): the class
    by name from ``NETWORKS`` (never an import path), with the file's arguments; a bad entry is a one-line
    PipelineError naming ``source``."""
    spec = dict(model_config.get("network") or {})
    target = spec.pop("_target_", None)
    name = _network_name(target)
    if name is None:
        raise PipelineError(
            f"{source}: network {target!r} is not one of {', '.join(sorted(NETWORKS))} (others must be registered "
            "with pipeline.engines.register_network)"
        )
    schema = _network_args_schema(name)
    if schema is not None:
        check_schema({"network": dict(model_config["network"])}, {"type": "object", "properties": {"network": schema}},
                     source)
        if _estimated_parameters(spec) > MAX_PARAMETERS:
            raise refuse(source, "network", f"more than {MAX_PARAMETERS:,} parameters")
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
    config = load_json_file(path, "model_config.json", max_bytes=2**20)
    if not isinstance(config, dict):
        raise PipelineError(f"{path}: top level is a JSON {type(config).__name__}; expected an object")
    return validate_model_config(config, path)


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
    "validate_model_config",
]
