"""Inference on new scans: input discovery (image file, folder, DICOM series), checkpoint loading and ensembling
with flip test-time augmentation, and the outputs (label map, probabilities, attention maps) in the scan's space.

Names are imported on first use, so ``python -m pipeline predict`` (which only starts the bundle) does not pay for
importing torch and MONAI twice.
"""
from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "EnsembleNetwork": "models",
    "MirroringInferer": "models",
    "check_data_fragment": "models",
    "checkpoint_dirs": "models",
    "ensemble_model_config": "models",
    "ensemble_plan": "models",
    "fine_checkpoints": "models",
    "inference_datalist": "sources",
    "flip_sets": "models",
    "trained_mirror_axes": "models",
    "tta_flips": "models",
    "tta_inferer": "models",
    "load_network": "models",
    "load_networks": "models",
    "network_def": "models",
    "AtomicSaveImaged": "writing",
    "atomic_writer": "writing",
    "PRED_NAMINGS": "writing",
    "check_pred_naming": "writing",
    "nnunet_name": "writing",
    "nnunet_name_formatter": "writing",
    "pred_name_formatter": "writing",
    "pred_postfix": "writing",
    "coarse_region": "cascade",
    "with_coarse": "cascade",
    "CaseLog": "outputs",
    "ProbabilitiesToLabeld": "outputs",
    "check_outputs": "outputs",
    "with_progress": "outputs",
    "LoadScand": "sources",
    "SimpleITKReader": "sources",
    "check_layout": "sources",
    "dicom_series": "sources",
    "inference_inputs": "sources",
    "select_series": "sources",
    "sitk_affine": "sources",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'pipeline.inference' has no attribute {name!r}")
    return getattr(importlib.import_module(f"pipeline.inference.{_WHERE[name]}"), name)


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_WHERE))
