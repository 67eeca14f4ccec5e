"""Transforms MONAI lacks: CT intensity normalisation with stored data-set statistics, boundary weight maps."""
from pipeline.transforms.boundary import boundary_weight_map, label_borders
from pipeline.transforms.ct import CTIntensityd, foreground_statistics

__all__ = ["CTIntensityd", "boundary_weight_map", "foreground_statistics", "label_borders"]
