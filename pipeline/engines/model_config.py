"""What a checkpoint needs to be used without its training data: ``model_config.json`` beside ``model.pt``.

Training writes the network's class and constructor arguments, the channel and class set, the patch size, the
data split and the data fragment's learnt preprocessing state (target spacing, HU window, z-score statistics, ...)
into the checkpoint folder. ``inference.json`` rebuilds the network and the preprocessing from that file, and
evaluation/inference refuse to run a checkpoint under a configuration that would feed it differently prepared
data. MONAI bundles keep such facts in ``metadata.json`` by hand; here the run itself writes them.
"""
from __future__ import annotations

import importlib
import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from pipeline.errors import PipelineError
from pipeline.fileio import write_text_atomic

logger = logging.getLogger(__name__)

FILENAME = "model_config.json"
# what must match between the checkpoint's training run and a run that uses it (patch size, split and class
# names may differ); data-state keys that only choose post-processing may differ too: that is the user's choice
COMPARED_KEYS = ("network", "spatial_dims", "in_channels", "out_channels", "data")
POSTPROCESSING_KEYS = ("keep_largest_component",)


def _plain(value: Any) -> Any:
    """``value`` as JSON-able Python (tuples -> lists, tensors/numpy -> lists or numbers)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, torch.Tensor):
        return _plain(value.tolist())
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return _plain(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def network_config(network: torch.nn.Module) -> dict[str, Any]:
    """``{"_target_": "module.Class", **constructor arguments}`` of one of our networks (they record ``init_args``)."""
    args = getattr(network, "init_args", None)
    if not isinstance(args, Mapping):
        raise PipelineError(
            f"network {type(network).__name__} does not record its constructor arguments (init_args): "
            "only pipeline.networks classes can be saved with model_config.json"
        )
    cls = type(network)
    return {"_target_": f"{cls.__module__}.{cls.__qualname__}", **_plain(dict(args))}


def network_from_config(model_config: Mapping[str, Any]) -> torch.nn.Module:
    """Build the network described by ``model_config["network"]`` (as written by ``network_config``)."""
    spec = dict(model_config.get("network") or {})
    target = spec.pop("_target_", None)
    if not isinstance(target, str) or "." not in target:
        raise PipelineError(f"{FILENAME}: 'network' has no '_target_' class path")
    module_name, _, name = target.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as e:
        raise PipelineError(f"{FILENAME}: network class {target!r} cannot be imported ({e})") from None
    return cls(**spec)


def save_model_config(ckpt_dir: str | Path, model_config: Mapping[str, Any], trainer: Any = None) -> Path:
    """Write ``model_config`` to ``<ckpt_dir>/model_config.json`` (atomically) and log where it went.

    ``trainer`` is unused here: a config passes ``@train#trainer`` first so that the data sets are built and
    checked before anything is written into the checkpoint folder.
    """
    path = Path(ckpt_dir) / FILENAME
    write_text_atomic(path, json.dumps(_plain(model_config), indent=2) + "\n")
    logger.info("model configuration (network, preprocessing state) written to %s", path)
    return path


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
    missing = [k for k in ("network", "spatial_dims", "out_channels", "data") if k not in config]
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


def check_model_config(ckpt_dir: str | Path, current: Mapping[str, Any]) -> None:
    """Refuse (one line) a run whose network or data preprocessing differs from the checkpoint's training run.

    ``current`` holds the same keys as model_config.json (any subset); post-processing options may differ.
    """
    saved = read_model_config(ckpt_dir)
    plain = {k: v for k, v in _plain(current).items() if k in COMPARED_KEYS}
    if isinstance(plain.get("data"), Mapping):
        plain["data"] = {k: v for k, v in plain["data"].items() if k not in POSTPROCESSING_KEYS}
    diffs = [d for d in _differences(saved, plain, "") if d]
    if diffs:
        key = diffs[0]
        value = saved
        for part in key.split("."):
            value = value[part]
        flag = key.split(".")[-1]
        raise PipelineError(
            f"{Path(ckpt_dir) / FILENAME}: the checkpoint was trained with {key} = {json.dumps(value)} but this run "
            f"uses something else" + (f" (and {len(diffs) - 1} more difference(s))" if len(diffs) > 1 else "")
            + f"; run with --{flag} '{json.dumps(value)}' or point --ckpt_dir at a matching checkpoint"
        )


def inference_datalist(
    input_dir: str | Path | None,
    dataset_dir: str | Path,
    split: str = "test",
    val_fraction: float = 0.2,
    num_folds: int = 0,
    fold: int = 0,
    seed: int = 0,
    spatial_dims: int | None = None,
    in_channels: int = 1,
    series_uid: str | None = None,
) -> list[dict[str, Any]]:
    """The images to segment: ``input_dir`` (an image file, a folder of images or a DICOM series folder) when
    given, else one split of ``dataset_dir``. With ``spatial_dims``, every image's header is checked against the
    network (dims, channels) first, so that a bad input stops the run before anything is written."""
    from pipeline.data.datalist import load_datalist
    from pipeline.data.prepare import image_list
    from pipeline.inference.sources import check_layout, inference_inputs

    if input_dir:
        if spatial_dims is None:
            return image_list(input_dir)
        return inference_inputs(input_dir, spatial_dims, in_channels, series_uid)
    if not Path(dataset_dir).is_dir():
        raise PipelineError(
            f"no input: set --input to an image file, a folder of images or a DICOM folder (dataset_dir "
            f"{str(dataset_dir)!r}, used for the {split!r} split otherwise, does not exist; "
            "--input_dir is the same key)"
        )
    cases = load_datalist(dataset_dir, split, val_fraction=val_fraction, num_folds=num_folds, fold=fold, seed=seed)
    if spatial_dims is not None:
        for case in cases:
            images = case["image"] if isinstance(case["image"], list) else [case["image"]]
            for image in images:  # several files: one channel each
                check_layout(image, spatial_dims, in_channels if len(images) == 1 else 1)
    return cases


__all__: Sequence[str] = [
    "check_model_config",
    "inference_datalist",
    "network_config",
    "network_from_config",
    "read_model_config",
    "save_model_config",
]
