"""The class map of a network output: the argmax over the channel axis, computed as ``torch.max(...).indices``.

MONAI's ``AsDiscreted(argmax=True)`` calls ``torch.argmax(x, dim=0)``, which on CPU reduces over the outer axis of a
contiguous volume through a slow generic path (pytorch/pytorch#140000); ``torch.max(x, dim=0).indices`` returns the
same indices (the first maximum on ties) through a fast one, which matters on the grid of a whole CT scan
(``benchmarks/ct_step_layout.py`` measures both). Only the argmax is ours: the one-hot and threshold steps stay
MONAI's ``AsDiscreted``.
"""
from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import torch
from monai.transforms import MapTransform

__all__ = ["ChannelArgmaxd", "ChannelMaxd", "RemoveSmallComponentsd", "channel_argmax"]


def channel_argmax(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Index of the largest channel along ``dim`` (kept, size 1): ``torch.argmax(x, dim, keepdim=True)``, faster."""
    return torch.max(x, dim=dim, keepdim=True).indices


class ChannelArgmaxd(MapTransform):
    """``AsDiscreted(keys, argmax=True)`` for channel-first ``(C, *spatial)`` items: the class map ``(1, *spatial)``
    in the input's float dtype (as ``AsDiscreted`` gives it), metadata kept."""

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            x = d[key]
            d[key] = channel_argmax(x).to(x.dtype if x.is_floating_point() else torch.float32)
        return d


class ChannelMaxd(MapTransform):
    """The largest value of one channel of ``keys`` (a ``(C, *spatial)`` probability map) stored as a float under
    ``output_key``: the case-level lesion score (the maximum tumour probability) taken before the argmax."""

    def __init__(self, keys: Any, channel: int | None, output_key: str = "max_prob",
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.channel = channel
        self.output_key = output_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if self.channel is None:
            return d
        for key in self.key_iterator(d):
            d[self.output_key] = float(torch.as_tensor(d[key])[self.channel].max())
        return d


class RemoveSmallComponentsd(MapTransform):
    """Connected components of class ``label`` in a class map ``(1, *spatial)`` smaller than ``min_ml`` millilitres
    (voxel volume from the MetaTensor's spacing) are relabelled ``replace_with`` (the organ around a spurious small
    tumour). MONAI's ``RemoveSmallObjectsd`` treats each label value of an integer map as one object, so a
    component-wise filter of one class is ours. ``min_ml`` <= 0 or ``label`` None: unchanged."""

    def __init__(self, keys: Any, label: int | None, min_ml: float, replace_with: int = 1,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.label, self.min_ml, self.replace_with = label, float(min_ml), int(replace_with)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        import numpy as np
        from scipy import ndimage

        d = dict(data)
        if self.label is None or self.min_ml <= 0:
            return d
        for key in self.key_iterator(d):
            x = d[key]
            spatial = x.ndim - 1
            pixdim = getattr(x, "pixdim", None)
            mm = [float(v) for v in (pixdim.tolist() if pixdim is not None else [1.0] * spatial)][:spatial]
            mask = (x[0] == self.label).cpu().numpy()
            comps, n = ndimage.label(mask, structure=ndimage.generate_binary_structure(spatial, spatial))
            if not n:
                continue
            voxel_ml = float(np.prod(mm)) / 1000.0
            small = np.nonzero(np.bincount(comps.ravel())[1:] * voxel_ml < self.min_ml)[0] + 1
            if small.size:
                drop = torch.as_tensor(np.isin(comps, small), device=x.device)
                x = x.clone()
                x[0][drop] = self.replace_with
                d[key] = x
        return d
