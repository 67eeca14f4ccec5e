"""Checkpoint folders as training writes them (``model.pt``, ``model_config.json``, ``plan.json``), made without
training: for tests of evaluation, inference, export and resume."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from pipeline.engines import network_config, save_run_files

SPLIT = {"val_fraction": 0.2, "num_folds": 0, "fold": 0, "seed": 0}
CT_INTENSITY = {"mode": "window", "hu_window": [-175, 250], "zscore": None}
SHAPES_INTENSITY = {"mode": "minmax"}


def run_plan(spatial_dims: int = 3, patch_size: list[int] | None = None, target_spacing: list[float] | None = None,
             strides: list[list[int]] | None = None, intensity: dict[str, Any] | None = None,
             keep_largest_component: bool = False) -> dict[str, Any]:
    """A checkpoint's plan.json: the preprocessing values of the CT or the shapes data fragment."""
    ct = spatial_dims == 3
    return {
        "target_spacing": target_spacing or ([4.0, 4.0, 6.0] if ct else [1.0, 1.0]),
        "patch_size": patch_size or ([32, 32, 16] if ct else [64, 64]),
        "strides": strides or ([[2, 2, 1]] if ct else [[2, 2], [2, 2], [2, 2]]),
        "batch_size": 2, "num_workers": 0,
        "intensity": intensity or (CT_INTENSITY if ct else SHAPES_INTENSITY),
        "postprocessing": {"keep_largest_component": keep_largest_component} if ct else {},
    }


def model_config(net: torch.nn.Module, spatial_dims: int = 3, **extra: Any) -> dict[str, Any]:
    """A checkpoint's model_config.json for ``net``."""
    ct = spatial_dims == 3
    return {"network": network_config(net), "spatial_dims": spatial_dims, "in_channels": 1, "out_channels": 3,
            "class_names": ["pancreas", "tumour"] if ct else ["ellipse", "rectangle"],
            "pred_ext": ".nii.gz" if ct else ".png", "split": SPLIT, **extra}


def write_checkpoint(folder: Path, net: torch.nn.Module, spatial_dims: int = 3, config: dict | None = None,
                     **plan: Any) -> Path:
    """``model.pt`` (state dict), ``model_config.json`` and ``plan.json`` in ``folder``; ``plan`` keys as
    ``run_plan``'s, ``config`` entries replace model_config.json's."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), folder / "model.pt")
    save_run_files(folder, {**model_config(net, spatial_dims), **(config or {})}, run_plan(spatial_dims, **plan))
    return folder
