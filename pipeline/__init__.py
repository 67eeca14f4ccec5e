"""Medical image segmentation pipeline on MONAI: U-Net family, Attention U-Net, synthetic data, bundles.

Importing the package has no side effects; the one-line error hook is installed where a command starts
(``python -m pipeline`` and the bundles' ``initialize`` step).
"""
from pipeline.errors import PipelineError

__version__ = "0.1.0"

__all__ = ["PipelineError", "__version__"]
