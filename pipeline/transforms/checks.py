"""Voxel-level data checks as transforms: put them right after ``LoadImaged`` so a bad case stops the run.

MONAI has no such checks: NaN/Inf voxels otherwise train silently to ``loss=nan``, a 4D or multi-channel
image reaches the network as the wrong number of channels or dims (a traceback deep in a convolution),
and a stray label value such as 3 or 255 surfaces much later as a CUDA assert or a silently wrong one-hot.
Each check raises a one-line ``PipelineError`` naming the source file; the problem texts are shared with
``pipeline.data.integrity.check_dataset`` so ``python -m pipeline check-data`` reports the same lines.
"""
from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform
from monai.utils import convert_to_numpy

from pipeline.errors import PipelineError

__all__ = [
    "AllowedSpec",
    "CheckImaged",
    "CheckLabelValuesd",
    "allowed_label_values",
    "label_value_problem",
    "nonfinite_problem",
    "source_name",
]

AllowedSpec = int | Sequence[float] | Mapping[str, Any]
_MAX_LISTED = 10


def allowed_label_values(allowed: AllowedSpec) -> tuple[float, ...]:
    """Allowed label values from a number of classes (n -> 0..n-1), a sequence of values, or a
    dataset.json "labels" dict (MSD {"0": "background", ...} or nnU-Net v2 {"background": 0, ...})."""
    if isinstance(allowed, bool):
        raise PipelineError(f"allowed label values {allowed!r}: expected a class count, values or a labels dict")
    if isinstance(allowed, (int, np.integer)):
        allowed = int(allowed)
        if allowed < 1:
            raise PipelineError(f"number of classes {allowed}: must be >= 1")
        return tuple(float(v) for v in range(allowed))
    if isinstance(allowed, Mapping):
        keys = [str(k).strip() for k in allowed]
        if keys and all(k.lstrip("-").isdigit() for k in keys):
            return tuple(sorted(float(k) for k in keys))
        values: list[float] = []
        for name, v in allowed.items():
            for item in v if isinstance(v, (list, tuple)) else [v]:  # nnU-Net regions list several labels
                if isinstance(item, bool) or not isinstance(item, (int, float)):
                    raise PipelineError(f"labels entry {name!r}: {v!r} is not a label value")
                values.append(float(item))
        if not values:
            raise PipelineError("labels dict is empty")
        return tuple(sorted(set(values)))
    if isinstance(allowed, (str, bytes)) or not isinstance(allowed, Iterable):
        raise PipelineError(f"allowed label values {allowed!r}: expected a class count, values or a labels dict")
    values = []
    for v in allowed:
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise PipelineError(f"allowed label values {allowed!r}: {v!r} is not a number")
        values.append(float(v))
    if not values:
        raise PipelineError("allowed label values: empty")
    return tuple(sorted(set(values)))


def _format_values(values: Iterable[float]) -> str:
    return ", ".join(str(int(v)) if float(v).is_integer() else repr(float(v)) for v in values)


def label_value_problem(array: Any, allowed: tuple[float, ...] | None) -> str | None:
    """'label has unexpected values [...] (allowed ...)' or None. Without ``allowed``: non-negative integers."""
    arr = np.asarray(convert_to_numpy(array))
    if allowed is None:
        if arr.dtype.kind in "ub":
            return None
        ok = np.isfinite(arr) & (arr >= 0) & (np.mod(arr, 1) == 0) if arr.dtype.kind == "f" else arr >= 0
        wanted = "non-negative integers"
    else:
        ok = np.isin(arr, np.asarray(allowed))
        wanted = _format_values(allowed)
    if bool(np.all(ok)):
        return None
    bad = np.unique(arr[~ok])  # only the offending voxels: cheap when the label is mostly fine
    listed = _format_values(bad[:_MAX_LISTED]) + (f", ... ({len(bad)} in all)" if len(bad) > _MAX_LISTED else "")
    return f"label has unexpected values [{listed}] (allowed {wanted})"


def nonfinite_problem(array: Any, what: str = "image") -> str | None:
    """'image holds N NaN and M Inf voxels' when ``array`` (tensor or array) has any, else None.

    One ``isfinite(...).all()`` pass on good data; the voxels are counted only when something is wrong.
    """
    if isinstance(array, torch.Tensor):
        t = array.as_tensor() if hasattr(array, "as_tensor") else array  # plain tensor: no MetaTensor bookkeeping
        if not (t.is_floating_point() or t.is_complex()) or bool(torch.isfinite(t).all()):
            return None
        nan, inf = int(torch.isnan(t).sum()), int(torch.isinf(t).sum())
    else:
        arr = np.asarray(array)
        if arr.dtype.kind not in "fc" or bool(np.isfinite(arr).all()):
            return None
        nan, inf = int(np.isnan(arr).sum()), int(np.isinf(arr).sum())
    return f"{what} holds {nan} NaN and {inf} Inf voxels"


def source_name(data: Mapping[Hashable, Any], key: Hashable) -> str:
    """The file ``data[key]`` was loaded from (MetaTensor meta or ``<key>_meta_dict``), else the key itself."""
    meta = getattr(data[key], "meta", None) or data.get(f"{key}_meta_dict") or {}
    name = meta.get("filename_or_obj") if isinstance(meta, Mapping) else None
    if isinstance(name, (list, tuple)) and name:  # batched meta
        name = name[0]
    return str(name) if name else f"{key!r}"


class CheckLabelValuesd(MapTransform):
    """Raise PipelineError naming the source file when a label holds values outside ``allowed``; else a no-op.

    ``allowed``: values, a number of classes, or a dataset.json "labels" dict. Place right after LoadImaged.
    """

    def __init__(
        self,
        keys: KeysCollection = "label",
        allowed: AllowedSpec = (0, 1, 2),
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.allowed = allowed_label_values(allowed)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            problem = label_value_problem(d[key], self.allowed)
            if problem:
                raise PipelineError(f"{source_name(d, key)}: {problem}")
        return d


class CheckImaged(MapTransform):
    """Raise PipelineError naming the source file for an image of the wrong layout or with NaN/Inf voxels.

    Expects channel-first data (``LoadImaged(ensure_channel_first=True)``): exactly ``channels`` channels
    and ``spatial_dims`` spatial dims (None: not checked). A 4D NIfTI (x, y, z, t) loads as (t, x, y, z),
    so it is caught as a multi-channel image. ``finite``: refuse NaN/Inf voxels. A no-op on good data.
    """

    def __init__(
        self,
        keys: KeysCollection = "image",
        spatial_dims: int | None = None,
        channels: int | None = 1,
        finite: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        for name, value in (("spatial_dims", spatial_dims), ("channels", channels)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise PipelineError(f"CheckImaged {name}={value!r}: expected a positive integer or None")
        self.spatial_dims = spatial_dims
        self.channels = channels
        self.finite = finite

    def _layout_problem(self, key: Hashable, shape: tuple[int, ...]) -> str | None:
        """'image has shape (...) after loading; expected ...' or None."""
        dims_ok = self.spatial_dims is None or len(shape) - 1 == self.spatial_dims
        channels_ok = self.channels is None or (len(shape) > 0 and shape[0] == self.channels)
        if dims_ok and channels_ok:
            return None
        wanted = []
        if self.channels is not None:
            wanted.append(f"{self.channels} channel" + ("s" if self.channels != 1 else ""))
        if self.spatial_dims is not None:
            wanted.append(f"{self.spatial_dims} spatial dims")
        too_many = (self.spatial_dims is not None and len(shape) - 1 > self.spatial_dims) or (
            self.channels is not None and len(shape) > 0 and shape[0] > self.channels
        )
        hint = " (a 4D or multi-channel image?)" if too_many else ""
        return f"{key} has shape {shape} after loading; expected {' and '.join(wanted)}{hint}"

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            value = d[key]
            problem = self._layout_problem(key, tuple(int(s) for s in np.shape(value)))
            if problem is None and self.finite:
                problem = nonfinite_problem(value, str(key))
            if problem:
                raise PipelineError(f"{source_name(d, key)}: {problem}")
        return d
