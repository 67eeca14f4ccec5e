"""The second stage of a coarse-to-fine cascade at inference: each scan is segmented only in a crop around the first
stage's label map (``bundles/attn_unet/cascade_inference.json``).

The first stage is the bundle's ordinary inference; its label maps (``<input>_seg`` or nnU-Net's ``<case>`` naming)
are attached to the cases as ``coarse`` and resampled with the image; the crop follows :func:`coarse_region`. MONAI
has the crop (``CropForegroundd``) and its inversion; what it lacks is the pairing of each scan with a label map
written by an earlier run, and a crop source that ignores stray components.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from pipeline.data.cases import case_id, find_case_file, image_files
from pipeline.errors import PipelineError

__all__ = ["coarse_region", "with_coarse"]


def with_coarse(cases: list[dict[str, Any]], coarse_dir: str | Path | None,
                key: str = "coarse") -> list[dict[str, Any]]:
    """``cases`` with each one's first-stage label map from ``coarse_dir`` under ``key``; a case without one is a
    one-line PipelineError naming the scan and the folder (nothing runs before every case has its map)."""
    if not coarse_dir:
        raise PipelineError("coarse_dir is not set: give the folder of the first stage's label maps (inference.json "
                            "with the first stage's checkpoint writes them)")
    folder = Path(coarse_dir)
    if not folder.is_dir():
        raise PipelineError(f"{folder}: coarse_dir not found (the first stage's label maps)")
    maps = {case_id(p): p for p in image_files(folder).values()}
    out = []
    for case in cases:
        image = case["image"][0] if isinstance(case["image"], (list, tuple)) else case["image"]
        name = case_id(Path(image))
        found = find_case_file(maps, name, of_input=True)
        if found is None:
            raise PipelineError(f"{image}: no first-stage label map {name}_seg.* (or {name}.*) in {folder}")
        out.append({**case, key: str(found)})
    return out


def coarse_region(mask: torch.Tensor) -> torch.Tensor:
    """The crop source of the second stage: the largest connected foreground component of the first stage's label
    map (a stray false positive far from the organ would stretch the box), or the whole scan where it found nothing."""
    from monai.transforms.utils import get_largest_connected_component_mask

    foreground = mask > 0
    if not bool(foreground.any()):
        return torch.ones_like(foreground)
    return get_largest_connected_component_mask(foreground)
