"""The tissue map being painted, and the primitives the organ painters use on it.

A ``TissueCanvas`` holds the uint8 tissue classes of one case (canonical RAS array order, Fortran layout: axial
slices contiguous) and a mask of reserved voxels: thin fat planes kept around organs painted earlier, which later
painters leave alone. Painting only ever replaces chosen tissues (``onto``), so the painting order decides who
wins an overlap.
"""
from __future__ import annotations

import numpy as np

from pipeline.data.phantom.geometry import F32, Curve, curve_tree, tube_sdf
from pipeline.data.phantom.grid import Grid, Mesh
from pipeline.data.phantom.tables import tissue_lut


class TissueCanvas:
    """Tissue-class volume of one case plus its reserved fat planes."""

    def __init__(self, grid: Grid, w_range: tuple[float, float]):
        self.grid = grid
        self.w_range = w_range
        self.tissue = np.zeros(grid.shape, np.uint8, order="F")
        self.reserved = np.zeros(grid.shape, bool, order="F")

    def paint(self, sl: tuple[slice, slice, slice], mask: np.ndarray, tid: int, onto: tuple[int, ...] | None = None,
              respect_reserved: bool = True) -> None:
        """Set tissue `tid` where mask holds inside box `sl`, only onto the `onto` tissues (None: any) and, with
        respect_reserved, outside the fat planes kept around earlier organs."""
        sub = self.tissue[sl]
        if onto is not None:
            mask = mask & tissue_lut(onto)[sub]
        if respect_reserved:
            mask = mask & ~self.reserved[sl]
        sub[mask] = tid

    def reserve(self, sl: tuple[slice, slice, slice], mask: np.ndarray) -> None:
        """Keep the voxels where mask holds inside box `sl` free of later organs."""
        self.reserved[sl] |= mask

    def box(self, lo, hi) -> tuple[slice, slice, slice] | None:
        """Voxel slices of the patient-coordinate box [lo, hi] clipped to the scanned range; None if it misses."""
        lo = np.maximum(np.asarray(lo, float), [-1e4, -1e4, self.w_range[0] - 1])
        hi = np.minimum(np.asarray(hi, float), [1e4, 1e4, self.w_range[1] + 1])
        if np.any(lo > hi):
            return None
        return self.grid.box(lo, hi)

    def tube_mesh(self, curve: Curve, metric, reach: float,
                  coarse: tuple[float, float, float]) -> tuple[Mesh, np.ndarray, np.ndarray] | None:
        """Coarse mesh over a curve's bounding box with the tube distance field evaluated near the curve only.
        Returns (mesh, distance field capped at `reach`, index of the nearest curve sample), or None."""
        r_max = float(curve.radius.max())
        half_xy = (r_max + reach) / min(metric[0], metric[1]) + 1
        half_z = (r_max + reach) / metric[2] + 1
        pad = np.array([half_xy, half_xy, half_z])
        lo, hi = curve.points.min(axis=0) - pad, curve.points.max(axis=0) + pad
        sl = self.box(lo, hi)
        if sl is None:
            return None
        mesh = self.grid.mesh(sl, coarse)
        near = self.grid.near(mesh, curve.points, (half_xy + max(mesh.h[:2]), half_z + mesh.h[2]))
        f = np.full(mesh.shape, reach, F32)
        idx = np.zeros(mesh.shape, np.int64)
        if near.any():
            f[near], idx[near] = tube_sdf(curve, curve_tree(curve, metric), *mesh.points(near), metric, reach)
        return mesh, f, idx

    def paint_tube(self, curve: Curve, layers: list[tuple[float, int]], onto: tuple[int, ...] | None = None,
                   metric=(1.0, 1.0, 1.0), halo: float = 0.0, respect_reserved: bool = True,
                   coarse: tuple[float, float, float] = (1.5, 1.5, 2.5)) -> None:
        """Paint nested shells of a tube: layers = [(sdf threshold, tissue), ...] from outside in; reserve a fat
        plane of `halo` mm around it."""
        tm = self.tube_mesh(curve, metric, max(halo, 0.0) + 2.0, coarse)
        if tm is None:
            return
        mesh, f, _ = tm
        for sl, (ff,) in self.grid.blocks(mesh, [f], need=f < max(halo, 0.0)):
            for thr, tid in layers:
                self.paint(sl, ff < thr, tid, onto, respect_reserved)
            if halo > 0:
                self.reserve(sl, ff < halo)
