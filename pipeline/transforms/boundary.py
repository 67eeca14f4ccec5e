"""Ronneberger et al. 2015 (U-Net, eq. 2) weight maps: ``w(x) = w_c(x) + w0 exp(-(d1(x) + d2(x))^2 / (2 sigma^2))``.

MONAI has distance transforms and connected components but no such weight map, and no way to hand a per-voxel
weight to a loss through ``SupervisedTrainer`` (which calls ``loss(pred, label)``): ``BoundaryWeightMapd`` computes
the map on the CPU at the end of the training chain and can pack it into the label as a second channel.

Choices (the paper leaves them open):

* objects: the connected components (full 8-/26-connectivity) of each foreground class separately, so touching
  objects of different classes are different objects;
* ``d1``, ``d2``: Euclidean distances (voxels, or the units of ``spacing``) from a voxel to the nearest voxel of
  the nearest and of the second-nearest object; the exp term is added on background voxels (label 0) only, the
  voxels that separate objects. With fewer than two objects ``d2`` is infinite and the term is 0 everywhere;
* ``w_c``: "balanced" class weights ``N / (K n_c)`` (``N`` voxels, ``K`` classes present in this label, ``n_c``
  voxels of class ``c``): every present class carries the same total weight ``N / K`` and the mean of ``w_c`` is 1,
  so ``w0`` is measured in units of the mean class weight. ``class_balance=False`` makes ``w_c`` 1.
"""
from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.config.type_definitions import NdarrayOrTensor
from monai.transforms import MapTransform
from monai.utils import TransformBackends, convert_data_type, convert_to_dst_type, ensure_tuple_rep
from scipy import ndimage

__all__ = ["BoundaryWeightMapd", "boundary_weight_map", "class_balance_weights", "two_nearest_object_distances"]


def class_balance_weights(label: np.ndarray) -> np.ndarray:
    """``w_c = N / (K n_c)`` per voxel of a non-negative integer ``label`` (any shape): equal total weight per
    present class, mean 1."""
    counts = np.bincount(label.ravel()).astype(np.float64)
    present = counts > 0
    per_class = np.zeros_like(counts)
    per_class[present] = label.size / (present.sum() * counts[present])
    return per_class.astype(np.float32)[label]


def two_nearest_object_distances(
    label: np.ndarray, spacing: Sequence[float] | None = None
) -> tuple[np.ndarray, np.ndarray, int]:
    """``(d1, d2, number of objects)`` for an integer ``label`` (spatial axes only; inf where no such object).

    One exact EDT of each object's complement; the two smallest distances are kept by a running partial sort, so
    memory stays at two maps whatever the number of objects."""
    structure = ndimage.generate_binary_structure(label.ndim, label.ndim)
    d1 = np.full(label.shape, np.inf, dtype=np.float32)
    d2 = np.full(label.shape, np.inf, dtype=np.float32)
    n_objects = 0
    for c in np.flatnonzero(np.bincount(label.ravel())):
        if c == 0:
            continue
        components, n = ndimage.label(label == c, structure=structure)
        for k in range(1, n + 1):
            d = ndimage.distance_transform_edt(components != k, sampling=spacing).astype(np.float32)
            np.minimum(d2, np.maximum(d1, d), out=d2)
            np.minimum(d1, d, out=d1)
        n_objects += n
    return d1, d2, n_objects


def boundary_weight_map(
    label: NdarrayOrTensor, w0: float = 10.0, sigma: float = 5.0, class_balance: bool = True,
    spacing: Sequence[float] | None = None,
) -> NdarrayOrTensor:
    """Ronneberger's ``w = w_c + w0 exp(-(d1 + d2)^2 / (2 sigma^2))`` (on background) of a channel-first integer
    label ``(1, *spatial)``, 2D or 3D; float32, same shape and type as ``label``. ``sigma`` in units of ``spacing``."""
    lab = convert_data_type(label, np.ndarray)[0]
    if lab.ndim not in (3, 4) or lab.shape[0] != 1:
        raise ValueError(f"boundary_weight_map needs a channel-first label (1, *spatial) in 2D or 3D, got {lab.shape}")
    lab = np.rint(lab[0]).astype(np.int64)
    if lab.size and lab.min() < 0:
        raise ValueError(f"boundary_weight_map needs non-negative class indices, got {lab.min()}")
    weight = class_balance_weights(lab) if class_balance else np.ones(lab.shape, dtype=np.float32)
    d1, d2, n_objects = two_nearest_object_distances(lab, spacing)
    if n_objects >= 2:
        background = lab == 0
        gap = d1[background] + d2[background]  # inf where a voxel sees only one object: exp(-inf) = 0
        weight[background] += (w0 * np.exp(-(gap.astype(np.float64) ** 2) / (2.0 * sigma**2))).astype(np.float32)
    dtype = torch.float32 if isinstance(label, torch.Tensor) else np.float32
    return convert_to_dst_type(weight[None], label, dtype=dtype)[0]


class BoundaryWeightMapd(MapTransform):
    """Adds Ronneberger's weight map (``boundary_weight_map``) of each ``keys`` label, on the CPU.

    ``pack_into_label=False``: the map ``(1, *spatial)`` goes to ``weight_key``. ``pack_into_label=True``: the label
    becomes a float32 ``(2, *spatial)`` = ``[label, weight]`` (meta kept) and ``weight_key`` is not written, so
    ``SupervisedTrainer`` hands the map to ``BoundaryWeightedDiceCELoss`` through ``loss(pred, label)``. Place it
    after every spatial transform of the training chain; validation labels must stay unpacked."""

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self, keys: KeysCollection, weight_key: str | Sequence[str] = "weight", w0: float = 10.0, sigma: float = 5.0,
        class_balance: bool = True, spacing: Sequence[float] | None = None, pack_into_label: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if sigma <= 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        self.weight_keys = ensure_tuple_rep(weight_key, len(self.keys))
        self.w0, self.sigma, self.class_balance = float(w0), float(sigma), class_balance
        self.spacing = None if spacing is None else tuple(float(s) for s in spacing)
        self.pack_into_label = pack_into_label

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key, weight_key in self.key_iterator(d, self.weight_keys):
            label = d[key]
            weight = boundary_weight_map(label, self.w0, self.sigma, self.class_balance, self.spacing)
            if not self.pack_into_label:
                d[weight_key] = weight
            elif isinstance(label, torch.Tensor):
                d[key] = torch.cat([label.to(torch.float32), weight], dim=0)
            else:
                d[key] = np.concatenate([label.astype(np.float32), weight], axis=0)
        return d
