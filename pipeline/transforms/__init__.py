"""Transforms MONAI lacks: CT intensity normalisation with stored data-set statistics, boundary weight maps,
a fast channel argmax, and data checks (image layout, NaN/Inf voxels, label values) that stop a run on a bad case."""
from pipeline.transforms.boundary import BoundaryWeightMapd, boundary_weight_map
from pipeline.transforms.checks import CheckImaged, CheckLabelValuesd, allowed_label_values
from pipeline.transforms.ct import CTIntensityd, IntensityToHU
from pipeline.transforms.discrete import ChannelArgmaxd, ChannelMaxd, RemoveSmallComponentsd, channel_argmax

__all__ = [
    "BoundaryWeightMapd",
    "CTIntensityd",
    "IntensityToHU",
    "ChannelArgmaxd",
    "ChannelMaxd",
    "CheckImaged",
    "CheckLabelValuesd",
    "RemoveSmallComponentsd",
    "allowed_label_values",
    "boundary_weight_map",
    "channel_argmax",
]
