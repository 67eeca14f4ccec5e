"""Losses MONAI lacks: Dice + boundary-weighted cross-entropy, Dice + BCE over nested regions (deep supervision uses
MONAI's DeepSupervisionLoss)."""
from pipeline.losses.boundary_weighted import BoundaryWeightedDiceCELoss
from pipeline.losses.regions import NestedRegionDiceBCELoss

__all__ = ["BoundaryWeightedDiceCELoss", "NestedRegionDiceBCELoss"]
