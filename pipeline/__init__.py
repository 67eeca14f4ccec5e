"""Medical image segmentation pipeline on MONAI: U-Net family, Attention U-Net, synthetic data, bundles.

The library is ``networks``, ``transforms``, ``losses``, ``data``, ``planning``, ``engines``, ``handlers``,
``inference`` and ``evaluation``; the applications on top of it (the ``python -m pipeline`` command line, the
study, the figures) are in ``pipeline.apps``, which nothing here loads. Importing the package has no side effects
(MONAI's layer factories included); the one-line error hook is installed where a command starts
(``python -m pipeline`` and the bundles' ``initialize`` step).
"""
from pipeline.errors import PipelineError

__version__ = "0.1.0"

__all__ = ["PipelineError", "__version__"]
