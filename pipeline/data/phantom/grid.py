"""The voxel grid of one case and coarse meshes over parts of it.

A ``Grid`` is the case's voxel lattice in canonical RAS array order (x right, y anterior, z superior) together
with the patient frame (u, v, w) the anatomy is described in: the body centre, the patient's yaw in the table
plane and the height of w = 0. Shapes are evaluated on a ``Mesh``, a coarse lattice whose nodes sit on every k-th
voxel of a box, and trilinearly upsampled onto the voxels block by block.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.data.phantom.geometry import F32


class Grid:
    """Voxel grid of one case in canonical RAS array order, plus the patient frame."""

    def __init__(self, origin, spacing, shape, body_centre, z_ref: float, yaw: float,
                 coarse: tuple[float, float, float]):
        self.origin = np.asarray(origin, float)
        self.spacing = np.asarray(spacing, float)
        self.shape = tuple(int(n) for n in shape)
        self.axes = [self.origin[a] + self.spacing[a] * np.arange(self.shape[a]) for a in range(3)]
        self.bcx, self.bcy = body_centre
        self.z_ref = z_ref
        self.cos, self.sin = np.cos(yaw), np.sin(yaw)
        self.coarse = coarse

    def world_xy(self, u, v) -> tuple[np.ndarray, np.ndarray]:
        """World x, y (mm) of patient coordinates u, v."""
        return self.bcx + self.cos * u - self.sin * v, self.bcy + self.sin * u + self.cos * v

    def box(self, lo, hi) -> tuple[slice, slice, slice] | None:
        """Voxel slices covering the patient-coordinate box [lo, hi]; None when it misses the grid."""
        us, vs = np.array([lo[0], hi[0], lo[0], hi[0]]), np.array([lo[1], lo[1], hi[1], hi[1]])
        xs, ys = self.world_xy(us, vs)
        world_lo = (xs.min(), ys.min(), self.z_ref + lo[2])
        world_hi = (xs.max(), ys.max(), self.z_ref + hi[2])
        slices = []
        for a in range(3):
            i0 = max(0, int(np.ceil((world_lo[a] - self.origin[a]) / self.spacing[a] - 1e-6)))
            i1 = min(self.shape[a] - 1, int(np.floor((world_hi[a] - self.origin[a]) / self.spacing[a] + 1e-6)))
            if i0 > i1:
                return None
            slices.append(slice(i0, i1 + 1))
        return tuple(slices)

    def mesh(self, sl: tuple[slice, slice, slice], coarse: tuple[float, float, float] | None = None) -> "Mesh":
        """Coarse grid over box `sl` whose nodes sit on every k-th voxel (k ~ coarse / spacing per axis), so any
        run of nodes upsamples exactly onto voxels; the last node may lie just past the box."""
        coarse = coarse or self.coarse
        cs, hs, ks = [], [], []
        for a in range(3):
            n = sl[a].stop - sl[a].start
            k = max(1, int(round(coarse[a] / self.spacing[a]))) if n > 2 else 1
            m = -(-(n - 1) // k) + 1
            cs.append(self.origin[a] + self.spacing[a] * (sl[a].start + k * np.arange(m)))
            hs.append(self.spacing[a] * k)
            ks.append(k)
        dx = (cs[0] - self.bcx)[:, None, None]
        dy = (cs[1] - self.bcy)[None, :, None]
        u = (self.cos * dx + self.sin * dy).astype(F32)
        v = (-self.sin * dx + self.cos * dy).astype(F32)
        w = (cs[2] - self.z_ref)[None, None, :].astype(F32)
        return Mesh(u, v, w, tuple(hs), tuple(ks), sl)

    def fine_patient(self, sl: tuple[slice, slice, slice],
                     mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Patient coordinates of the voxels selected by `mask` inside box `sl`."""
        i, j, k = np.nonzero(mask)
        x = self.axes[0][sl[0]][i] - self.bcx
        y = self.axes[1][sl[1]][j] - self.bcy
        u = (self.cos * x + self.sin * y).astype(F32)
        v = (-self.sin * x + self.cos * y).astype(F32)
        w = (self.axes[2][sl[2]][k] - self.z_ref).astype(F32)
        return u, v, w

    def near(self, mesh: "Mesh", points: np.ndarray, half_mm) -> np.ndarray:
        """Mask of the mesh nodes inside boxes of half-size `half_mm` (in-plane, cranio-caudal) around the
        patient-coordinate points (the points should be about a node step apart or closer)."""
        x, y = self.world_xy(points[:, 0], points[:, 1])
        z = self.z_ref + points[:, 2]
        pos = [np.rint(((c - self.origin[a]) / self.spacing[a] - mesh.sl[a].start) / mesh.k[a]).astype(int)
               for a, c in enumerate((x, y, z))]
        half = [int(np.ceil(half_mm[0] / mesh.h[0])), int(np.ceil(half_mm[0] / mesh.h[1])),
                int(np.ceil(half_mm[1] / mesh.h[2]))]
        mask = np.zeros(mesh.shape, bool)
        previous = None
        for p in zip(*pos):
            if p == previous:
                continue
            previous = p
            box = tuple(slice(max(0, c - h), max(0, c + h + 1)) for c, h in zip(p, half))
            mask[box] = True
        return mask

    @staticmethod
    def block_plan(mesh: "Mesh", need: np.ndarray | None = None, block: int | None = 20) -> Iterator[tuple]:
        """Blocks of coarse nodes covering the mesh (sharing their boundary nodes), skipping blocks without a node
        where `need` holds; block=None gives one block. Yields (node crop, voxel slices, upsampled size, keep),
        where keep crops the upsampled block to its own voxels."""
        shape = mesh.shape
        if need is not None:
            need = np.broadcast_to(need, shape)
        step = [max(m, 2) if block is None else block for m in shape]
        starts = [range(0, max(m - 1, 1), st) for m, st in zip(shape, step)]
        for c0 in starts[0]:
            for c1 in starts[1]:
                for c2 in starts[2]:
                    lo = (c0, c1, c2)
                    hi = tuple(min(lo[a] + step[a], shape[a] - 1) for a in range(3))
                    crop = tuple(slice(lo[a], hi[a] + 1) for a in range(3))
                    if need is not None and not need[crop].any():
                        continue
                    size = tuple(mesh.k[a] * (hi[a] - lo[a]) + 1 for a in range(3))
                    fine, keep = [], []
                    for a in range(3):
                        start = mesh.sl[a].start + mesh.k[a] * lo[a]
                        # the node row shared with the next block belongs to the next block
                        count = size[a] if hi[a] == shape[a] - 1 else size[a] - 1
                        stop = min(mesh.sl[a].stop, start + count)
                        fine.append(slice(start, stop))
                        keep.append(slice(0, stop - start))
                    if all(s.stop > s.start for s in fine):
                        yield crop, tuple(fine), size, tuple(keep)

    @staticmethod
    def upsample(fields: list[np.ndarray], size, keep, fortran: bool = False) -> list[np.ndarray]:
        """Trilinear upsampling of coarse field crops (nodes on every k-th voxel) to `size` voxels, cropped by
        `keep`; `fortran` returns Fortran-ordered arrays (like the volume arrays) at no extra cost."""
        stack = np.stack(fields).astype(F32, copy=False)
        if fortran:
            stack = stack.transpose(0, 3, 2, 1)
        if tuple(size) != stack.shape[1:][:: -1 if fortran else 1]:
            t = torch.from_numpy(np.ascontiguousarray(stack))[None]
            out_size = tuple(size[::-1]) if fortran else tuple(size)
            stack = F.interpolate(t, size=out_size, mode="trilinear", align_corners=True)[0].numpy()
        if fortran:
            stack = stack.transpose(0, 3, 2, 1)
        return [f[keep] for f in stack]

    def blocks(self, mesh: "Mesh", fields: list[np.ndarray], need: np.ndarray | None = None, block: int = 20,
               fortran: bool = False) -> Iterator[tuple[tuple[slice, slice, slice], list[np.ndarray]]]:
        """Trilinear upsampling of coarse fields onto the voxels of the mesh's box, block by block, skipping
        blocks without a node where `need` holds (need=None: the whole box at once). Yields (voxel slices,
        fine arrays)."""
        fields = [np.broadcast_to(f, mesh.shape) for f in fields]
        for crop, fine, size, keep in self.block_plan(mesh, need, block if need is not None else None):
            yield fine, self.upsample([f[crop] for f in fields], size, keep, fortran)


@dataclass
class Mesh:
    """Coarse nodes over a voxel box: patient coordinates of the nodes, node spacing and voxels per node step."""

    u: np.ndarray  # (mx, my, 1) patient u of the coarse nodes
    v: np.ndarray  # (mx, my, 1)
    w: np.ndarray  # (1, 1, mz)
    h: tuple[float, float, float]  # node spacing, mm
    k: tuple[int, int, int]  # voxels per node step
    sl: tuple[slice, slice, slice]  # voxel box

    @property
    def shape(self) -> tuple[int, int, int]:
        """Number of nodes per axis."""
        return self.u.shape[0], self.u.shape[1], self.w.shape[2]

    def points(self, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Patient coordinates (1-D arrays) of the nodes where mask holds."""
        i, j, k = np.nonzero(mask)
        return self.u[i, j, 0], self.v[i, j, 0], self.w[0, 0, k]
