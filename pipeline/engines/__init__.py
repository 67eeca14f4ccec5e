"""Engine glue: precision selection (bf16 autocast on CPU, AMP on CUDA) around MONAI's trainers and inferers."""
from pipeline.engines.precision import (
    AutocastInferer,
    Precision,
    cpu_has_native_bf16,
    resolve_device,
    resolve_precision,
)

__all__ = ["AutocastInferer", "Precision", "cpu_has_native_bf16", "resolve_device", "resolve_precision"]
