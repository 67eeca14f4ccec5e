"""The context-vs-precision study (issue 17): FCN, U-Net presets and Attention U-Net trained at an equal budget on
2D shapes variants, ablations of the boundary-weighted loss and of elastic deformation, and the 3D Attention U-Net
against the plain U-Net on CT phantoms. ``python -m pipeline study --out DIR [--quick]``; see ``docs/study.md``."""
from pipeline.apps.study.design import ABLATIONS, FULL, MODELS_2D, MODELS_3D, QUICK, Budget, RunSpec, plan_runs
from pipeline.apps.study.runner import run_study

__all__ = ["ABLATIONS", "FULL", "MODELS_2D", "MODELS_3D", "QUICK", "Budget", "RunSpec", "plan_runs", "run_study"]
