"""Inference on new scans: input discovery (image file, folder, DICOM series), checkpoint loading and ensembling
with flip test-time augmentation, and the outputs (label map, probabilities, attention maps) in the scan's space."""
from pipeline.inference.models import (
    EnsembleNetwork,
    check_data_fragment,
    checkpoint_dirs,
    ensemble_model_config,
    flip_sets,
    load_network,
    load_networks,
)
from pipeline.inference.outputs import CaseLog, ProbabilitiesToLabeld, with_progress
from pipeline.inference.sources import (
    LoadScand,
    SimpleITKReader,
    check_layout,
    dicom_series,
    inference_inputs,
    select_series,
    sitk_affine,
)

__all__ = [
    "CaseLog",
    "EnsembleNetwork",
    "LoadScand",
    "ProbabilitiesToLabeld",
    "SimpleITKReader",
    "check_data_fragment",
    "check_layout",
    "checkpoint_dirs",
    "dicom_series",
    "ensemble_model_config",
    "flip_sets",
    "inference_inputs",
    "load_network",
    "load_networks",
    "select_series",
    "sitk_affine",
    "with_progress",
]
