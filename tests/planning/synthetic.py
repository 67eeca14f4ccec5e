"""Tiny synthetic CT data sets for the planner's tests: an elliptic body in air, a labelled organ, MSD layout."""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np


def write_ct_dataset(
    out: Path, spacing: Sequence[float], shape: Sequence[int], n: int = 3, seed: int = 0,
    stored_axes: Sequence[int] = (0, 1, 2), flip: Sequence[bool] = (False, False, False),
) -> Path:
    """``n`` cases of ``shape`` voxels at ``spacing`` mm (RAS order), stored with axes ``stored_axes`` (a
    permutation of RAS axes) and flips; body 40 HU in -1000 HU air, organ (label 1) 100 HU, lesion (label 2) 60 HU."""
    rng = np.random.default_rng(seed)
    out = Path(out)
    (out / "imagesTr").mkdir(parents=True, exist_ok=True)
    (out / "labelsTr").mkdir(parents=True, exist_ok=True)
    training = []
    for i in range(n):
        grid = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
        body = (grid[0] / 0.85) ** 2 + (grid[1] / 0.65) ** 2 <= 1
        centre = rng.uniform(-0.2, 0.2, 3)
        organ = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, (0.25, 0.2, 0.4))) <= 1
        lesion = sum(((g - c) / 0.08) ** 2 for g, c in zip(grid, centre)) <= 1
        hu = np.where(body, 40.0, -1000.0) + rng.normal(0, 10, shape)
        hu[organ] = 100 + rng.normal(0, 10, int(organ.sum()))
        hu[lesion] = 60.0
        label = organ.astype(np.uint8) + lesion.astype(np.uint8)
        affine = np.diag([*spacing, 1.0])
        for a in range(3):
            if flip[a]:
                affine[:3, 3] += affine[:3, a] * (shape[a] - 1)
                affine[:3, a] *= -1
        affine[:3, :3] = affine[:3, list(stored_axes)]

        def stored(arr: np.ndarray) -> np.ndarray:
            arr = np.flip(arr, axis=[a for a in range(3) if flip[a]]) if any(flip) else arr
            return np.ascontiguousarray(np.transpose(arr, stored_axes))

        name = f"case_{i:03d}.nii.gz"
        nib.save(nib.Nifti1Image(stored(hu).astype(np.int16), affine), out / "imagesTr" / name)
        nib.save(nib.Nifti1Image(stored(label), affine), out / "labelsTr" / name)
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    meta = {"name": "synthetic CT", "modality": {"0": "CT"}, "labels": {"0": "background", "1": "organ", "2": "lesion"},
            "numTraining": n, "training": training}
    (out / "dataset.json").write_text(json.dumps(meta, indent=2))
    return out
