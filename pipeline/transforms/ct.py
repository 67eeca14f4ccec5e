"""CT intensity handling: a HU window scaled to [0, 1] (default) or nnU-Net's CT normalisation.

nnU-Net's scheme clips to the 0.5 / 99.5 percentiles of the foreground (labelled) voxels of the training cases
and z-scores with their mean and standard deviation. MONAI has the clip and the z-score (``ScaleIntensityRange``,
``NormalizeIntensity``) but not the data-set statistics: the planner computes them from the fingerprint
(``pipeline.planning``, the plan's ``intensity.zscore``), and the checkpoint's plan.json carries them to evaluation
and inference.
"""
from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, NormalizeIntensity, ScaleIntensityRange

from pipeline.errors import PipelineError

logger = logging.getLogger(__name__)

MODES = ("window", "zscore")


class CTIntensityd(MapTransform):
    """``mode="window"``: clip HU to ``window`` and scale to [0, 1]; ``mode="zscore"``: clip to the stored
    foreground percentiles, subtract the mean, divide by the std (``stats``: the plan's ``intensity.zscore``)."""

    def __init__(
        self,
        keys: KeysCollection,
        mode: str = "window",
        window: Sequence[float] = (-175.0, 250.0),
        stats: Mapping[str, float] | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if mode not in MODES:
            raise PipelineError(f"intensity_mode {mode!r} is not one of {', '.join(MODES)}")
        if mode == "window":
            lo, hi = float(window[0]), float(window[1])
            if not hi > lo:
                raise PipelineError(f"hu_window {list(window)} must be [low, high] with high > low")
            self.ops = [ScaleIntensityRange(a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=True)]
        else:
            if not stats:
                raise PipelineError("intensity_mode 'zscore' needs the foreground statistics of the training cases")
            lo, hi = stats["p00_5"], stats["p99_5"]
            self.ops = [
                ScaleIntensityRange(a_min=lo, a_max=hi, b_min=lo, b_max=hi, clip=True),
                NormalizeIntensity(subtrahend=stats["mean"], divisor=max(stats["std"], 1e-6)),
            ]

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            for op in self.ops:
                d[key] = op(d[key])
        return d


class IntensityToHU:
    """The inverse of ``CTIntensityd``'s scaling inside its clip range: network input back to HU (the lesion table's
    contrast is in HU). Values that the window clipped stay at the window's edge."""

    def __init__(self, mode: str = "window", window: Sequence[float] = (-175.0, 250.0),
                 stats: Mapping[str, float] | None = None) -> None:
        if mode == "window":
            self.offset, self.scale = float(window[0]), float(window[1]) - float(window[0])
        elif mode == "zscore" and stats:
            self.offset, self.scale = float(stats["mean"]), max(float(stats["std"]), 1e-6)
        else:
            raise PipelineError(f"intensity_mode {mode!r} cannot be mapped back to HU")

    def __call__(self, x):
        return x * self.scale + self.offset
