"""Medical image segmentation pipeline on MONAI: U-Net family, Attention U-Net, synthetic data, bundles."""
from pipeline.errors import PipelineError, install_excepthook

__version__ = "0.1.0"

install_excepthook()

__all__ = ["PipelineError", "__version__"]
