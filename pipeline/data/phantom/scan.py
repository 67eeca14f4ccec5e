"""Sampling the acquisition of one case: voxel grid, field of view, noise, blur and stored axis order.

The field of view is fitted to the body, the slice thickness is drawn from values common in clinical abdominal
CT, and the cranio-caudal extent always holds the whole pancreas with a margin. ``scale`` multiplies the voxel
spacing (and divides the in-plane matrix), so scale=4 gives tiny volumes for tests.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.data.phantom.anatomy import Anatomy
from pipeline.data.phantom.geometry import uniform as _u
from pipeline.data.phantom.grid import Grid

MATRIX = 512  # in-plane matrix of real CT at scale 1


@dataclass
class Scan:
    """How one case is imaged: grid (canonical RAS array order), reconstruction circle, noise, blur, orientation."""

    grid: Grid
    fov: float  # diameter of the reconstruction circle, mm
    fov_centre: np.ndarray  # world x, y of its centre
    w_range: tuple[float, float]  # patient w of the first and last slice
    noise_sd: float  # HU
    blur_sigma_vox: float  # in-plane Gaussian blur (voxels); slices are thick enough to skip z
    permutation: tuple[int, int, int]  # stored axis d holds world axis permutation[d]
    flips: tuple[bool, bool, bool]  # per world axis (x, y, z): stored towards L / P / I


def sample_scan(rng: np.random.Generator, anatomy: Anatomy, scale: float) -> Scan:
    """Draw the grid, noise, blur and storage orientation of a case of `anatomy` (scale > 0 multiplies spacing)."""
    r = rng
    body = anatomy.body
    s_xy = float(np.clip((body.width + _u(r, 40, 130)) / MATRIX, 0.7, 1.0))  # field of view fitted to the body
    s_z = float(r.choice([1.5, 2.0, 2.5, 3.0, 4.0, 5.0], p=[0.1, 0.15, 0.35, 0.15, 0.1, 0.15]))
    n_xy = max(16, int(round(MATRIX / scale)))
    spacing = np.array([s_xy * scale, s_xy * scale, s_z * scale])
    fov = n_xy * spacing[0]
    fov_c = r.normal(0, 8, 2)
    slack = max(0.0, fov / 2 - max(body.a, body.b_ant, body.b_post) - 15)
    body_c = fov_c + np.clip(r.normal([0, -8], [6, 8]), -slack, slack)
    lo, hi = anatomy.pancreas.w_extent
    span = hi - lo
    margin = max(12.0, 1.5 * spacing[2])  # the whole pancreas plus at least 1.5 slices each side
    extent = max(_u(r, 120, 200), span + 2 * margin + 6)
    below = _u(r, margin, extent - span - margin)
    w_lo = lo - below
    n_z = max(4, int(np.ceil(extent / spacing[2])) + 1)  # slice centres span at least `extent`
    z_ref = _u(r, -450, -100)
    origin = (fov_c[0] - (n_xy - 1) / 2 * spacing[0], fov_c[1] - (n_xy - 1) / 2 * spacing[1], z_ref + w_lo)
    coarse = (2.0, 2.0, 3.0)
    grid = Grid(origin, spacing, (n_xy, n_xy, n_z), body_c, z_ref, body.yaw, coarse)
    w_range = (w_lo, w_lo + (n_z - 1) * spacing[2])
    noise_sd = float(np.clip(10 + 10 * (body.width - 250) / 130 + r.normal(0, 2), 10, 20))
    blur_sigma_vox = _u(r, 0.5, 0.9)
    perm = tuple(int(i) for i in r.permutation(3))
    if r.random() < 0.4:  # DICOM-derived LPS arrays with slices last are the most common on disk
        perm, flips = (0, 1, 2), (True, True, bool(r.random() < 0.5))
    else:
        flips = tuple(bool(f) for f in r.random(3) < 0.5)
    return Scan(grid=grid, fov=fov, fov_centre=fov_c, w_range=w_range, noise_sd=noise_sd,
                blur_sigma_vox=blur_sigma_vox, permutation=perm, flips=flips)
