"""One phantom case: sample anatomy and scan, paint tissues, render HU, store in the drawn orientation.

The volume is built in canonical RAS array order and then flipped / permuted into the case's own stored axis
order, which the NIfTI affine records (world coordinates are RAS+: +x patient right, +y anterior, +z superior).
``generate_case(seed, scale)`` is deterministic: the same arguments always give identical arrays and affine.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.data.phantom.sampling import CONTRAST_STREAM, TUMOUR_CONTRASTS, draw_tumour_contrast, sample_anatomy
from pipeline.data.phantom.painting import paint_tissues
from pipeline.data.phantom.rendering import render_hu
from pipeline.data.phantom.scan import Scan, sample_scan
from pipeline.data.phantom.tables import label_lut
from pipeline.errors import PipelineError


@dataclass
class PhantomCase:
    """One generated volume; arrays are stored in the case's own (usually non-RAS) axis order given by `affine`."""

    hu: np.ndarray  # int16 Hounsfield units
    label: np.ndarray  # uint8: 0 background, 1 pancreas, 2 tumour
    tissue: np.ndarray  # uint8 tissue classes, ids in TISSUES
    affine: np.ndarray  # 4x4 voxel index -> RAS+ world mm
    spacing: tuple[float, float, float]  # mm along the stored array axes
    permutation: tuple[int, int, int]  # stored axis d holds world axis permutation[d] (0=x, 1=y, 2=z)
    flips: tuple[bool, bool, bool]  # stored axis d runs towards L / P / I instead of R / A / S
    axcodes: tuple[str, str, str]  # nibabel.aff2axcodes(affine)
    has_tumour: bool  # label 2 present
    seed: int


def check_scale(scale: float) -> None:
    """Raise a one-line PipelineError unless `scale` is a finite number > 0."""
    try:
        ok = float(scale) > 0 and math.isfinite(float(scale))
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise PipelineError(f"phantom scale must be a finite number > 0, got {scale!r}")


def check_tumour_contrast(tumour_contrast: str) -> None:
    """Raise a one-line PipelineError unless `tumour_contrast` names a distribution of `TUMOUR_CONTRASTS`."""
    if tumour_contrast not in TUMOUR_CONTRASTS:
        raise PipelineError(f"tumour_contrast {tumour_contrast!r} is not one of {', '.join(TUMOUR_CONTRASTS)}")


def generate_case(seed: int, scale: float = 1.0, tumour_contrast: str = "published") -> PhantomCase:
    """Generate one phantom; the same (seed, scale, tumour_contrast) always gives identical arrays and affine.

    `scale` multiplies the voxel spacing (and divides the in-plane matrix), so scale=4 gives tiny volumes.
    `tumour_contrast`: "published" (the tumour-pancreas contrast of portal-venous CT series) or "v1" (the drop as
    drawn before 2026-12-07); the anatomy is the same for both.
    """
    check_scale(scale)
    check_tumour_contrast(tumour_contrast)
    with single_torch_thread():
        return build_case(seed, scale, tumour_contrast)


def build_case(seed: int, scale: float, tumour_contrast: str = "published") -> PhantomCase:
    """Build one case in the calling thread (no argument checks; `generate_case` is the checked entry point)."""
    seed = int(seed)
    rng = np.random.default_rng(seed)
    anatomy = sample_anatomy(rng)
    if tumour_contrast == "published" and anatomy.pancreas.tumour is not None:
        # its own stream: every other draw, so the anatomy, is the same as under "v1"
        anatomy.pancreas.tumour.contrast = draw_tumour_contrast(np.random.default_rng([seed, CONTRAST_STREAM]))
    scan = sample_scan(rng, anatomy, float(scale))
    tissues = paint_tissues(anatomy, scan, rng)
    hu = render_hu(tissues, anatomy.pancreas, scan, rng)
    return stored_case(hu, tissues.tissue, scan, seed)


def case_seed(seed: int, index: int) -> int:
    """Seed of case `index` of a data set generated with `seed` (independent of the data set size)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


@contextmanager
def single_torch_thread() -> Iterator[None]:
    """Many small upsampling calls: torch's intra-op thread pool only adds overhead (and stalls on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def stored_case(hu: np.ndarray, tissue: np.ndarray, scan: Scan, seed: int) -> PhantomCase:
    """Label the tissue map and reorient HU, label and tissue from canonical RAS order into the stored order."""
    g = scan.grid
    label = label_lut()[tissue]
    flips, perm = scan.flips, scan.permutation
    affine = np.eye(4)
    affine[:3, :3] = np.diag(g.spacing)
    affine[:3, 3] = g.origin
    for a in range(3):
        if flips[a]:
            affine[:3, 3] += affine[:3, a] * (g.shape[a] - 1)
            affine[:3, a] *= -1
    affine[:3, :3] = affine[:3, list(perm)]

    def orient(arr: np.ndarray, copy: bool = True) -> np.ndarray:
        arr = np.flip(arr, axis=[a for a in range(3) if flips[a]]) if any(flips) else arr
        arr = np.transpose(arr, perm)
        return fortran_copy(arr) if copy else arr

    codes = tuple(("LPI"[p] if flips[p] else "RAS"[p]) for p in perm)
    # the tissue map is not written to disk: a view is enough
    return PhantomCase(hu=orient(hu), label=orient(label), tissue=orient(tissue, copy=False), affine=affine,
                       spacing=tuple(float(g.spacing[p]) for p in perm), permutation=tuple(perm),
                       flips=tuple(bool(flips[p]) for p in perm), axcodes=codes,
                       has_tumour=bool((label == 2).any()), seed=seed)


def fortran_copy(view: np.ndarray, block: int = 32) -> np.ndarray:
    """Fortran-ordered copy of a permuted/flipped view (the layout NIfTI writes), in cache-sized blocks when
    the permutation scatters memory accesses (numpy's one-pass copy is several times slower then)."""
    strides = [abs(s) for s in view.strides]
    if strides[0] == min(strides):  # the innermost output axis is contiguous in memory: numpy's copy is fast
        return np.asfortranarray(view)
    out = np.empty(view.shape, view.dtype, order="F")
    n0, n1, n2 = view.shape
    for i in range(0, n0, block):
        for j in range(0, n1, block):
            for k in range(0, n2, block):
                out[i:i + block, j:j + block, k:k + block] = view[i:i + block, j:j + block, k:k + block]
    return out
