"""Losses MONAI lacks: Dice + boundary-weighted cross-entropy (deep supervision uses MONAI's DeepSupervisionLoss)."""
from pipeline.losses.boundary_weighted import BoundaryWeightedDiceCELoss

__all__ = ["BoundaryWeightedDiceCELoss"]
