"""Engine glue: precision selection (bf16 autocast on CPU, AMP on CUDA) around MONAI's trainers and inferers, and
the model_config.json that lets a checkpoint be used without its training data."""
from pipeline.engines.model_config import (
    check_model_config,
    inference_datalist,
    network_config,
    network_from_config,
    read_model_config,
    save_model_config,
)
from pipeline.engines.precision import (
    AutocastInferer,
    Precision,
    cpu_has_native_bf16,
    resolve_device,
    resolve_precision,
)

__all__ = [
    "AutocastInferer",
    "Precision",
    "check_model_config",
    "cpu_has_native_bf16",
    "inference_datalist",
    "network_config",
    "network_from_config",
    "read_model_config",
    "resolve_device",
    "resolve_precision",
    "save_model_config",
]
