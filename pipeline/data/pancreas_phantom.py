"""Synthetic abdominal CT phantoms with pancreas / pancreatic-tumour labels in the MSD Task07_Pancreas layout.

Each case is an abdomen at the level of the pancreas, built in patient millimetre coordinates
(u towards the patient's right, v anterior, w superior; w = 0 at the portal confluence) from implicit
shapes (approximate signed distances, tubes around spline centre lines, randomly deformed). Shapes are
evaluated on a coarse grid inside their bounding box and trilinearly upsampled to the voxel grid of the
case, whose spacing, field of view, axis order and axis directions are drawn per case and recorded in the
NIfTI affine (world coordinates are RAS+: +x = patient right, +y = anterior, +z = superior).
"""
from __future__ import annotations

import gzip
import json
import os
from collections import deque
from contextlib import contextmanager
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np
import scipy.ndimage as ndi
import torch
import torch.nn.functional as F
from scipy.interpolate import CubicSpline
from scipy.spatial import cKDTree

from pipeline.errors import PipelineError

TISSUES: dict[str, int] = {
    "air": 0,
    "skin": 1,
    "subcutaneous_fat": 2,
    "muscle": 3,
    "visceral_fat": 4,
    "lung": 5,
    "bone_cortical": 6,
    "bone_cancellous": 7,
    "intervertebral_disc": 8,
    "spinal_canal": 9,
    "aorta": 10,
    "artery": 11,
    "ivc": 12,
    "vein": 13,
    "calcification": 14,
    "liver": 15,
    "hepatic_vessel": 16,
    "gallbladder": 17,
    "spleen": 18,
    "kidney_cortex": 19,
    "kidney_medulla": 20,
    "renal_sinus_fat": 21,
    "bowel_wall": 22,
    "bowel_fluid": 23,
    "oral_contrast": 24,
    "bowel_gas": 25,
    "stool": 26,
    "pancreas": 27,
    "pancreatic_duct": 28,
    "tumour": 29,
}
_T = TISSUES

# Per-case mean HU drawn uniformly from these ranges (portal-venous phase as specified for this project),
# and the amplitude (HU) of the smooth within-organ inhomogeneity.
_HU_MEAN_RANGE: dict[str, tuple[float, float]] = {
    "air": (-1000.0, -1000.0),
    "skin": (20.0, 50.0),
    "subcutaneous_fat": (-115.0, -90.0),
    "muscle": (40.0, 60.0),
    "visceral_fat": (-110.0, -88.0),
    "lung": (-870.0, -790.0),
    "bone_cortical": (950.0, 1300.0),
    "bone_cancellous": (200.0, 300.0),
    "intervertebral_disc": (70.0, 100.0),
    "spinal_canal": (10.0, 35.0),
    "aorta": (150.0, 260.0),
    "artery": (150.0, 260.0),
    "ivc": (120.0, 180.0),
    "vein": (130.0, 190.0),
    "calcification": (450.0, 900.0),
    "liver": (50.0, 70.0),
    "hepatic_vessel": (120.0, 170.0),
    "gallbladder": (0.0, 20.0),
    "spleen": (45.0, 60.0),
    "kidney_cortex": (150.0, 200.0),
    "kidney_medulla": (80.0, 120.0),
    "renal_sinus_fat": (-100.0, -60.0),
    "bowel_wall": (40.0, 80.0),
    "bowel_fluid": (0.0, 20.0),
    "oral_contrast": (150.0, 350.0),
    "bowel_gas": (-1000.0, -985.0),
    "stool": (-60.0, 40.0),
    "pancreas": (36.0, 60.0),
    "pancreatic_duct": (5.0, 20.0),
    "tumour": (36.0, 60.0),  # replaced by the pancreas mean; the hypodensity is applied per voxel
}
_HU_TEXTURE: dict[str, float] = {
    "skin": 4, "subcutaneous_fat": 6, "muscle": 5, "visceral_fat": 8, "lung": 35, "bone_cortical": 60,
    "bone_cancellous": 30, "intervertebral_disc": 6, "spinal_canal": 4, "aorta": 6, "artery": 8, "ivc": 12,
    "vein": 8, "calcification": 60, "liver": 4, "hepatic_vessel": 10, "gallbladder": 3, "spleen": 4,
    "kidney_cortex": 8, "kidney_medulla": 8, "renal_sinus_fat": 12, "bowel_wall": 8, "bowel_fluid": 5,
    "oral_contrast": 40, "bowel_gas": 4, "stool": 45, "pancreas": 6, "pancreatic_duct": 3, "tumour": 9,
}
_PANCREAS_TISSUES = (_T["pancreas"], _T["pancreatic_duct"])
_MATRIX = 512  # in-plane matrix of real CT at scale 1
_F32 = np.float32


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


@lru_cache(maxsize=64)
def _onto_lut(ids: tuple[int, ...]) -> np.ndarray:
    lut = np.zeros(256, bool)
    lut[list(ids)] = True
    return lut


# ----------------------------------------------------------------------------------------------- shapes
def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


class _Fourier:
    """Smooth random field (unit variance) as a sum of random plane waves; evaluable anywhere, so
    pieces of one shape evaluated in different boxes stay continuous."""

    def __init__(self, rng: np.random.Generator, sigma_mm: float, n_modes: int = 24):
        self.k = (rng.standard_normal((n_modes, 3)) / sigma_mm).astype(_F32)
        self.phase = rng.uniform(0.0, 2 * np.pi, n_modes).astype(_F32)
        self.amp = _F32(np.sqrt(2.0 / n_modes))

    def __call__(self, u, v, w) -> np.ndarray:
        shape = np.broadcast_shapes(np.shape(u), np.shape(v), np.shape(w))
        out = np.zeros(shape, _F32)
        for (kx, ky, kz), ph in zip(self.k, self.phase):
            out += np.cos(kx * u + ky * v + (kz * w + ph))
        out *= self.amp
        return out


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], spacing: tuple[float, ...],
                  sigma_mm: float) -> np.ndarray:
    """Gaussian-filtered white noise on a grid, normalised to unit standard deviation."""
    field = rng.standard_normal(shape, dtype=_F32)
    ndi.gaussian_filter(field, [sigma_mm / s for s in spacing], output=field, mode="reflect", truncate=3.0)
    std = float(field.std())
    return field / _F32(std if std > 0 else 1.0)


def _ellipsoid_sdf(d0, d1, d2, radii) -> np.ndarray:
    """Approximate signed distance (mm) to an axis-aligned ellipsoid, coordinates relative to its centre."""
    r0, r1, r2 = radii
    k0 = np.sqrt((d0 / r0) ** 2 + (d1 / r1) ** 2 + (d2 / r2) ** 2)
    k1 = np.sqrt((d0 / r0**2) ** 2 + (d1 / r1**2) ** 2 + (d2 / r2**2) ** 2)
    return (k0 * (k0 - 1.0) / np.maximum(k1, 1e-6)).astype(_F32, copy=False)


def _ellipse_sdf(du, dv, rx: float, ry: float) -> np.ndarray:
    k0 = np.sqrt((du / rx) ** 2 + (dv / ry) ** 2)
    k1 = np.sqrt((du / rx**2) ** 2 + (dv / ry**2) ** 2)
    return (k0 * (k0 - 1.0) / np.maximum(k1, 1e-6)).astype(_F32, copy=False)


def _box_sdf(d0, d1, d2, half) -> np.ndarray:
    q0, q1, q2 = np.abs(d0) - half[0], np.abs(d1) - half[1], np.abs(d2) - half[2]
    outside = np.sqrt(np.maximum(q0, 0) ** 2 + np.maximum(q1, 0) ** 2 + np.maximum(q2, 0) ** 2)
    return (outside + np.minimum(np.maximum(np.maximum(q0, q1), q2), 0)).astype(_F32, copy=False)


def _smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Smooth union of two distance fields (blend width k mm)."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return (b * (1 - h) + a * h - k * h * (1 - h)).astype(_F32, copy=False)


def _rotation(yaw: float, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """Rotation matrix (columns = local axes in patient coordinates): yaw about w, pitch about u, roll about v."""
    cz, sz = np.cos(yaw), np.sin(yaw)
    cx, sx = np.cos(pitch), np.sin(pitch)
    cy, sy = np.cos(roll), np.sin(roll)
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    return rz @ rx @ ry


def _local(u, v, w, centre, rot: np.ndarray):
    du, dv, dw = u - centre[0], v - centre[1], w - centre[2]
    return tuple((rot[0, i] * du + rot[1, i] * dv + rot[2, i] * dw).astype(_F32) for i in range(3))


@dataclass
class _Curve:
    points: np.ndarray  # (N, 3) patient mm, about 1 mm apart
    radius: np.ndarray  # (N,) mm
    t: np.ndarray  # (N,) 0..1 along the curve


def _curve(ctrl, radii, step: float = 1.0) -> _Curve:
    ctrl = np.asarray(ctrl, float)
    chord = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(ctrl, axis=0), axis=1))])
    spline = CubicSpline(chord, ctrl, axis=0, bc_type="natural")
    s = np.linspace(0.0, chord[-1], max(2, int(chord[-1] / step) + 1))
    return _Curve(spline(s), np.interp(s, chord, radii), s / chord[-1])


# ----------------------------------------------------------------------------------------------- grid
class _Grid:
    """Voxel grid of one case in canonical RAS array order, plus the patient frame."""

    def __init__(self, origin, spacing, shape, body_centre, z_ref: float, yaw: float, coarse):
        self.origin = np.asarray(origin, float)
        self.spacing = np.asarray(spacing, float)
        self.shape = tuple(int(n) for n in shape)
        self.axes = [self.origin[a] + self.spacing[a] * np.arange(self.shape[a]) for a in range(3)]
        self.bcx, self.bcy = body_centre
        self.z_ref = z_ref
        self.cos, self.sin = np.cos(yaw), np.sin(yaw)
        self.coarse = coarse

    def world_xy(self, u, v):
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

    def mesh(self, sl, coarse=None) -> "_Mesh":
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
        u = (self.cos * dx + self.sin * dy).astype(_F32)
        v = (-self.sin * dx + self.cos * dy).astype(_F32)
        w = (cs[2] - self.z_ref)[None, None, :].astype(_F32)
        return _Mesh(u, v, w, tuple(hs), tuple(ks), sl)

    def fine_patient(self, sl, mask: np.ndarray):
        """Patient coordinates of the voxels selected by `mask` inside box `sl`."""
        i, j, k = np.nonzero(mask)
        x = self.axes[0][sl[0]][i] - self.bcx
        y = self.axes[1][sl[1]][j] - self.bcy
        u = (self.cos * x + self.sin * y).astype(_F32)
        v = (-self.sin * x + self.cos * y).astype(_F32)
        w = (self.axes[2][sl[2]][k] - self.z_ref).astype(_F32)
        return u, v, w

    def near(self, mesh: "_Mesh", points: np.ndarray, half_mm) -> np.ndarray:
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
    def block_plan(mesh: "_Mesh", need: np.ndarray | None = None, block: int | None = 20):
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
                        count = size[a] if hi[a] == shape[a] - 1 else size[a] - 1  # shared node row goes to the next block
                        stop = min(mesh.sl[a].stop, start + count)
                        fine.append(slice(start, stop))
                        keep.append(slice(0, stop - start))
                    if all(s.stop > s.start for s in fine):
                        yield crop, tuple(fine), size, tuple(keep)

    @staticmethod
    def upsample(fields: list[np.ndarray], size, keep, fortran: bool = False) -> list[np.ndarray]:
        """Trilinear upsampling of coarse field crops (nodes on every k-th voxel) to `size` voxels, cropped by
        `keep`; `fortran` returns Fortran-ordered arrays (like the volume arrays) at no extra cost."""
        stack = np.stack(fields).astype(_F32, copy=False)
        if fortran:
            stack = stack.transpose(0, 3, 2, 1)
        if tuple(size) != stack.shape[1:][:: -1 if fortran else 1]:
            t = torch.from_numpy(np.ascontiguousarray(stack))[None]
            out_size = tuple(size[::-1]) if fortran else tuple(size)
            stack = F.interpolate(t, size=out_size, mode="trilinear", align_corners=True)[0].numpy()
        if fortran:
            stack = stack.transpose(0, 3, 2, 1)
        return [f[keep] for f in stack]

    def blocks(self, mesh: "_Mesh", fields: list[np.ndarray], need: np.ndarray | None = None, block: int = 20,
               fortran: bool = False):
        """Trilinear upsampling of coarse fields onto the voxels of the mesh's box, block by block, skipping
        blocks without a node where `need` holds (need=None: the whole box at once). Yields (voxel slices,
        fine arrays)."""
        fields = [np.broadcast_to(f, mesh.shape) for f in fields]
        for crop, fine, size, keep in self.block_plan(mesh, need, block if need is not None else None):
            yield fine, self.upsample([f[crop] for f in fields], size, keep, fortran)


@dataclass
class _Mesh:
    u: np.ndarray  # (mx, my, 1) patient u of the coarse nodes
    v: np.ndarray  # (mx, my, 1)
    w: np.ndarray  # (1, 1, mz)
    h: tuple[float, float, float]  # node spacing, mm
    k: tuple[int, int, int]  # voxels per node step
    sl: tuple[slice, slice, slice]  # voxel box

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.u.shape[0], self.u.shape[1], self.w.shape[2]

    def points(self, mask: np.ndarray):
        """Patient coordinates (1-D arrays) of the nodes where mask holds."""
        i, j, k = np.nonzero(mask)
        return self.u[i, j, 0], self.v[i, j, 0], self.w[0, 0, k]


def _tube_sdf(curve: _Curve, tree: cKDTree, u, v, w, metric=(1.0, 1.0, 1.0), reach: float = 20.0):
    """Distance of points (1-D arrays) to the curve in the scaled metric minus the local radius (capped at
    `reach`), and the index of the nearest curve sample."""
    q = np.stack([u * metric[0], v * metric[1], w * metric[2]], axis=1)
    d, idx = tree.query(q, distance_upper_bound=float(curve.radius.max()) + reach)
    idx = np.minimum(idx, len(curve.radius) - 1)
    f = np.minimum(d - curve.radius[idx], reach).astype(_F32)
    return f, idx


def _curve_tree(curve: _Curve, metric=(1.0, 1.0, 1.0)) -> cKDTree:
    return cKDTree(curve.points * np.asarray(metric))


# ----------------------------------------------------------------------------------------------- builder
class _Builder:
    """Samples the anatomy of one case, then paints tissue classes and renders HU."""

    def __init__(self, seed: int, scale: float):
        self.seed = int(seed)
        self.scale = float(scale)
        self.rng = np.random.default_rng(self.seed)
        self._sample_body()
        self._sample_spine_and_vessels()
        self._sample_kidneys()
        self._sample_pancreas()
        self._sample_gut_and_organs()
        self._sample_grid()

    # ------------------------------------------------------------------ body outline and wall layers
    def _sample_body(self) -> None:
        r = self.rng
        self.width = _u(r, 250, 380)
        self.a = self.width / 2
        depth = self.width * _u(r, 0.68, 0.85)
        self.b_post = depth * _u(r, 0.45, 0.5)
        self.b_ant = depth - self.b_post
        self.p_ant, self.p_post = _u(r, 2.0, 2.5), _u(r, 2.6, 3.4)
        self.harm = [(k, r.normal(0, 0.012), _u(r, 0, 2 * np.pi)) for k in (2, 3, 4)]
        self.g_a, self.g_b = _u(r, -0.03, 0.03), _u(r, -0.05, 0.02)
        self.t_skin = _u(r, 1.5, 2.5)
        self.t_fat = float(np.clip(4 + (self.width - 250) / 130 * 30 + r.normal(0, 6), 3, 45))
        self.fat_harm = (_u(r, 0.1, 0.35), r.normal(0, 0.1), r.normal(0, 0.08), _u(r, 0, 2 * np.pi))
        self.t_lat, self.t_rect, self.w_linea = _u(r, 9, 17), _u(r, 7, 13), _u(r, 3, 7)
        self.t_post = _u(r, 38, 55) * np.sqrt(self.width / 300)
        self.wall_planes, self.wall_plane_half = (_u(r, 0.3, 0.4), _u(r, 0.62, 0.72)), _u(r, 0.5, 0.9)
        self.t_ql = _u(r, 8, 16)
        self.yaw = float(np.clip(r.normal(0, 0.035), -0.08, 0.08))

    def body_radius(self, th, w):
        a = self.a * (1 + self.g_a * w / 100)
        b_ant = self.b_ant * (1 + self.g_b * w / 100)
        s, c = np.sin(th), np.abs(np.cos(th))
        ant = s >= 0
        p = np.where(ant, self.p_ant, self.p_post)
        b = np.where(ant, b_ant, self.b_post)
        r = ((c / a) ** p + (np.abs(s) / b) ** p) ** (-1.0 / p)
        for k, amp, ph in self.harm:
            r = r * (1 + amp * np.cos(k * th + ph))
        return r.astype(_F32)

    def fat_thickness(self, th):
        c1, c2, c3, ph = self.fat_harm
        prof = 1 + c1 * np.sin(th) + c2 * np.cos(2 * th) + c3 * np.cos(3 * th + ph)
        return (self.t_fat * np.clip(prof, 0.3, None)).astype(_F32)

    def muscle_thickness(self, th, u=None, v=None):
        back = np.abs(th + np.pi / 2)
        back = np.minimum(back, 2 * np.pi - back)
        t = (self.t_lat + (self.t_rect - self.t_lat) * np.exp(-(((th - np.pi / 2) / 0.55) ** 2))
             + self.t_post * np.exp(-((back / 0.5) ** 2)) + self.t_ql * np.exp(-(((back - 1.0) / 0.25) ** 2)))
        if u is not None:
            t = t * (1 - 0.85 * np.exp(-((u / self.w_linea) ** 2)) * (v > 0))
        return np.maximum(t, 1.0).astype(_F32)

    def cavity_radius(self, th, w=0.0):
        """Distance from the body centre to the inner surface of the muscle wall along angle th."""
        th = np.asarray(th, float)
        return (self.body_radius(th, w) - self.t_skin - self.fat_thickness(th) - self.muscle_thickness(th))

    # ------------------------------------------------------------------ spine and great vessels
    def _sample_spine_and_vessels(self) -> None:
        r = self.rng
        self.a_cav = float(min(self.cavity_radius(0.0), self.cavity_radius(np.pi)))
        self.b_cav = float(self.cavity_radius(np.pi / 2))
        self.v_pm = -float(self.cavity_radius(-np.pi / 2))  # front of the paraspinal muscle mass
        self.rx_vb, self.ry_vb = _u(r, 19, 25), _u(r, 14, 18)
        self.rcx, self.rcy, self.t_arch = _u(r, 9, 12), _u(r, 7, 9), _u(r, 5, 7)
        self.v_c = self.v_pm + self.rcy + self.t_arch - _u(r, 8, 14)  # spinal canal centre
        self.v_vb = self.v_c + self.rcy + 1.0 + self.ry_vb
        self.period, self.t_disc, self.t_cort = _u(r, 30, 36), _u(r, 7, 10), _u(r, 1.6, 2.4)
        self.w_disc0 = _u(r, 0, self.period)
        self.spinous_len = max(15.0, self.t_post - _u(r, 8, 16))
        # aorta (patient's left of the midline, anterior to the vertebral body) and IVC (right)
        self.r_ao = _u(r, 9, 14)
        self.u_ao = -_u(r, 4, 14)
        self.v_ao = self.v_vb + self.ry_vb + self.r_ao + _u(r, 1, 5)
        self.ao_drift = _u(r, -6, 6)
        self.rx_ivc, self.ry_ivc = _u(r, 11, 16), _u(r, 7, 12)
        self.u_ivc = _u(r, 18, 30)
        self.v_ivc = self.v_vb + self.ry_vb + self.ry_ivc + _u(r, 2, 8)
        self.calcified = r.random() < 0.5
        # superior mesenteric artery / vein; w = 0 at the portal confluence behind the pancreatic neck
        self.r_sma, self.r_smv = _u(r, 3, 4.5), _u(r, 5, 7.5)
        self.u_sma = self.u_ao + _u(r, 0, 4)
        self.v_sma = self.v_ao + self.r_ao + _u(r, 5, 10) + self.r_sma
        self.w_sma0 = _u(r, 6, 14)
        self.w_celiac = self.w_sma0 + _u(r, 10, 18)
        self.u_smv = self.u_sma + self.r_sma + self.r_smv + _u(r, 3, 7)
        self.v_smv = self.v_sma + _u(r, -1, 4)
        self.r_pv = _u(r, 6, 8)

    # ------------------------------------------------------------------ kidneys
    def _sample_kidneys(self) -> None:
        r = self.rng
        self.kidneys = []
        w_left = _u(r, -5, 20)
        for side, w_c in ((-1, w_left), (1, w_left - _u(r, 10, 25))):
            radii = (_u(r, 24, 29), _u(r, 17, 22), _u(r, 48, 58))
            u_c = side * (self.rx_vb + _u(r, 38, 50) + radii[0] * 0.5)
            u_c = side * min(abs(u_c), self.a_cav - radii[0] - 8)
            v_c = self.v_vb + _u(r, -8, 6)
            hilum_turn = np.radians(_u(r, 25, 45))  # hilum faces antero-medially
            tilt = np.radians(_u(r, 8, 20))  # upper pole medial
            rot = _rotation(-side * hilum_turn, _u(r, -0.15, 0.05), -side * tilt)
            # local axis 0 must point laterally
            if side < 0:
                rot = rot @ np.diag([-1.0, 1.0, 1.0])
            self.kidneys.append(dict(side=side, centre=(u_c, v_c, w_c), radii=radii, rot=rot,
                                     n_pyr=int(r.integers(4, 7)), hilum_w=w_c + _u(r, -8, 8)))

    # ------------------------------------------------------------------ pancreas and tumour
    def _sample_pancreas(self) -> None:
        r = self.rng
        lk = self.kidneys[0]
        v_ao_front = self.v_ao + self.r_ao
        self.k_p = _u(r, 1.15, 1.5)  # cross-section taller (cranio-caudal) than thick
        r_unc, r_head, r_neck = _u(r, 5, 8), _u(r, 11, 15), _u(r, 6, 9)
        r_body, r_tail = _u(r, 8, 11), _u(r, 7, 11)
        r_tip = r_tail * _u(r, 0.6, 0.9)
        self.r_head = r_head
        u_h = self.u_smv + self.r_smv + r_head * 0.7 + _u(r, 1, 5)
        v_h = max(self.v_ivc + self.ry_ivc + r_head * 0.8 + _u(r, 1, 4), self.v_smv - 2)
        w_h = -_u(r, 8, 18)
        self.head = np.array([u_h, v_h, w_h])
        unc = (self.u_smv + _u(r, -3, 3), v_ao_front + r_unc + _u(r, 1, 4), w_h - _u(r, 10, 18))
        neck = (self.u_smv + _u(r, -3, 2), self.v_smv + self.r_smv + r_neck + _u(r, 1, 3), _u(r, 2, 8))
        body = (self.u_sma - _u(r, 18, 30), self.v_sma + self.r_sma + r_body + _u(r, 3, 8), _u(r, 4, 14))
        lk_front = lk["centre"][1] + lk["radii"][1]
        tail1 = (-self.a_cav * _u(r, 0.35, 0.45), lk_front + r_tail + _u(r, 3, 8), _u(r, 10, 25))
        tail2 = (-self.a_cav * _u(r, 0.55, 0.68), lk["centre"][1] + _u(r, 0, 15), _u(r, 18, 45))
        ctrl = np.array([unc, tuple(self.head), neck, body, tail1, tail2])
        radii = np.array([r_unc, r_head, r_neck, r_body, r_tail, r_tip])
        # anterior room: the cavity must hold the pancreas body plus a margin; deepen the belly if not
        front = max(neck[1] + r_neck, body[1] + r_body) + _u(r, 25, 45)
        if front > self.b_cav:
            self.b_ant += front - self.b_cav
            self.b_cav = float(self.cavity_radius(np.pi / 2))
        self.pancreas_ctrl, self.pancreas_radii = ctrl, radii
        self.head_radii = (r_head * _u(r, 1.0, 1.3), r_head * _u(r, 0.8, 1.0), r_head * self.k_p * _u(r, 1.2, 1.6))
        self.lobulation = (_Fourier(r, 2.0), _u(r, 1.0, 2.2), _Fourier(r, 9.0), _u(r, 1.5, 3.5))
        self.pancreas_fat = (_Fourier(r, 1.5), _u(r, 0.9, 2.0), _u(r, 0.3, 0.7))  # lobular fatty clefts
        curve = _curve(ctrl, radii)
        # tumour: head 60 %, body 25 %, tail 15 % (typical for pancreatic ductal adenocarcinoma)
        self.tumour = None
        self.duct_radius = np.full(len(curve.t), _u(r, 0.8, 1.5))
        if r.random() < 0.6:
            t_nodes = curve.t[[int(np.argmin(np.linalg.norm(curve.points - c, axis=1))) for c in ctrl]]
            region = r.choice(3, p=[0.6, 0.25, 0.15])
            t_lo, t_hi = [(t_nodes[0], t_nodes[2]), (t_nodes[2], t_nodes[4]), (t_nodes[4], t_nodes[5] - 0.03)][region]
            idx = int(np.argmin(np.abs(curve.t - _u(r, t_lo, t_hi))))
            local_r = curve.radius[idx] if region else max(curve.radius[idx], r_head)
            r_t = min(_u(r, 5, 17.5), local_r * 1.6 + 3)
            offset = np.array([r.normal(0, 0.25), r.normal(0, 0.25), r.normal(0, 0.25 * self.k_p)]) * local_r
            tr = tuple(r_t * _u(r, 0.8, 1.2) for _ in range(3))
            self.tumour = dict(centre=curve.points[idx] + offset, radii=tr, rot=_rotation(*r.uniform(-np.pi, np.pi, 3)),
                               lob=(_Fourier(r, max(2.0, r_t / 2.5)), 0.15 * r_t, _Fourier(r, 1.5), 0.8),
                               rim=_u(r, 0.0, 3.0), drop=_u(r, 10, 40), margin=_u(r, 1.0, 4.0))
            if region < 2 and r.random() < 0.6:  # upstream duct dilatation and parenchymal atrophy
                upstream = curve.t > curve.t[idx]
                self.duct_radius[upstream] = _u(r, 2.0, 4.0)
                self.pancreas_radii = radii.copy()
                atrophy = _u(r, 0.65, 0.9)
                for j in range(len(ctrl)):
                    if t_nodes[j] > curve.t[idx] + 0.1:
                        self.pancreas_radii[j] = max(radii[j] * atrophy, self.duct_radius.max() + 3)
        self.pancreas_curve = _curve(ctrl, self.pancreas_radii)
        self.duct_radius = np.interp(self.pancreas_curve.t, curve.t, self.duct_radius)
        pts = self.pancreas_curve.points
        z_half = self.pancreas_curve.radius * self.k_p
        lo, hi = (pts[:, 2] - z_half).min(), (pts[:, 2] + z_half).max()
        lo = min(lo, w_h - self.head_radii[2])
        hi = max(hi, w_h + self.head_radii[2])
        if self.tumour is not None:
            ext = max(self.tumour["radii"]) * 1.4 + self.tumour["rim"]
            lo, hi = min(lo, self.tumour["centre"][2] - ext), max(hi, self.tumour["centre"][2] + ext)
        self.pancreas_w = (float(lo), float(hi))

    # ------------------------------------------------------------------ gut, liver, spleen, ribs, lungs
    def _sample_gut_and_organs(self) -> None:
        r = self.rng
        u_h, v_h, w_h = self.head
        body_pt = self.pancreas_ctrl[3]
        self.oral_contrast = r.random() < 0.3
        rd = _u(r, 9, 13)  # duodenal radius
        # stomach: fundus -> body -> antrum -> pylorus, anterior to the pancreas body
        s_st = _u(r, 0.6, 1.15)
        st_r = np.array([_u(r, 35, 50), _u(r, 30, 45), _u(r, 22, 35), _u(r, 15, 22), _u(r, 8, 11)]) * s_st
        st_r[-1] = max(st_r[-1], 8.0)
        pyl = (u_h + _u(r, -5, 8), v_h + self.r_head + _u(r, 15, 30), w_h + _u(r, 25, 40))
        v_ant = min(body_pt[1] + self.pancreas_radii[3] + st_r[2] * 0.8 + _u(r, 4, 12), self.b_cav - st_r[2] * 0.5)
        self.stomach = _curve([
            (-self.a_cav * _u(r, 0.4, 0.6), self.v_vb + _u(r, 30, 60), _u(r, 100, 130)),
            (-self.a_cav * _u(r, 0.35, 0.55), self.b_cav * _u(r, 0.1, 0.3), _u(r, 55, 80)),
            (-self.a_cav * _u(r, 0.15, 0.35), v_ant, _u(r, 30, 45)),
            (u_h - _u(r, 10, 30), v_ant, pyl[2] + _u(r, -5, 5)),
            pyl], st_r)
        self.stomach_wall = _u(r, 3, 6)
        self.stomach_gas = _u(r, 0.1, 0.6)  # fraction of the stomach's antero-posterior depth filled with gas
        # duodenum: bulb, descending part lateral to the head, horizontal part between aorta and SMA
        w_d2_low = w_h - self.head_radii[2] - _u(r, 3, 12)
        w_d3 = min(self.pancreas_ctrl[0][2] - self.pancreas_radii[0] * self.k_p - rd - 3, w_d2_low - 12)
        u_d2 = u_h + self.head_radii[0] + rd + _u(r, 2, 6)
        ctrl = [pyl,
                (u_h + self.r_head + rd + _u(r, 5, 12), v_h + self.r_head * 0.5 + _u(r, 5, 15), pyl[2] + _u(r, -5, 5)),
                (u_d2, v_h + _u(r, -5, 5), w_h + _u(r, 5, 15)),
                (u_d2 + _u(r, -3, 3), v_h + _u(r, -8, 2), w_d2_low),
                (self.u_ivc, self.v_ivc + self.ry_ivc + rd + 3, w_d3),
                (self.u_ao, self.v_ao + self.r_ao + rd * 0.6 + 2, w_d3 - _u(r, 0, 5)),
                (self.u_ao - self.r_ao - rd - _u(r, 3, 8), self.v_ao + _u(r, 0, 10), w_d3 + _u(r, 10, 20)),
                (self.u_ao - self.r_ao - rd - _u(r, 10, 20), self.v_sma + _u(r, 5, 15), -_u(r, 0, 15))]
        self.duodenum = _curve(ctrl, [rd * 0.7, rd * 1.1, rd, rd, rd, rd * 0.6, rd, rd * 0.9])
        # colon: ascending (right flank) -> hepatic flexure -> transverse (anterior) -> splenic flexure -> descending
        u_r, u_l = self.a_cav - _u(r, 22, 35), -(self.a_cav - _u(r, 20, 32))
        b = self.b_cav
        ctrl = [(u_r, self.v_vb + _u(r, 20, 50), -250), (u_r - _u(r, 0, 8), self.v_vb + _u(r, 30, 55), -_u(r, 20, 40)),
                (u_r - _u(r, 10, 25), self.v_vb + _u(r, 50, 80), _u(r, 0, 25)),
                (self.a_cav * _u(r, 0.2, 0.4), b - _u(r, 25, 40), _u(r, -10, 15)),
                (_u(r, -20, 20), b - _u(r, 25, 40), -_u(r, 10, 60)),
                (-self.a_cav * _u(r, 0.3, 0.5), b - _u(r, 30, 45), _u(r, -5, 20)),
                (u_l + _u(r, 5, 15), self.v_vb + _u(r, 40, 70), _u(r, 35, 65)),
                (u_l, self.v_vb + _u(r, 15, 40), -_u(r, 0, 30)), (u_l + _u(r, 0, 8), self.v_vb + _u(r, 15, 40), -250)]
        ra, rt, rdsc = _u(r, 16, 25), _u(r, 14, 22), _u(r, 12, 18)
        self.colon = _curve(ctrl, [ra, ra, ra, rt, rt, rt, rdsc, rdsc, rdsc])
        self.colon_haustra = (_u(r, 20, 30), _u(r, 0.08, 0.18))
        self.colon_gas_level = self.v_vb + _u(r, 20, 90)
        self.duodenum_gas_level = self.v_vb + _u(r, 60, 140)
        self.stool_bubbles = _u(r, 0.9, 1.6)
        # liver: right lobe against the right wall, left lobe across the midline anteriorly
        ac, bc = self.a_cav, self.b_cav
        self.liver = dict(
            right=((ac * _u(r, 0.4, 0.55), _u(r, -0.15, 0.1) * bc, _u(r, 75, 100)),
                   (ac * _u(r, 0.55, 0.7), bc * _u(r, 0.7, 0.9), _u(r, 95, 120))),
            left=((ac * _u(r, -0.1, 0.1), bc * _u(r, 0.4, 0.6), _u(r, 75, 100)),
                  (ac * _u(r, 0.35, 0.5), bc * _u(r, 0.22, 0.32), _u(r, 40, 55))),
            deform=(_Fourier(r, 20.0), _u(r, 4, 8), _Fourier(r, 6.0), 1.5))
        self.liver_vessel_radius = _u(r, 1.5, 3.0)
        self.gallbladder = None
        if r.random() < 0.65:
            self.gallbladder = dict(centre=(self.a_cav * _u(r, 0.15, 0.35), self.b_cav * _u(r, 0.3, 0.55), _u(r, 5, 35)),
                                    radii=(_u(r, 10, 17), _u(r, 10, 17), _u(r, 25, 40)),
                                    rot=_rotation(_u(r, -0.5, 0.5), _u(r, 0.35, 0.9), 0.0))
        # spleen: crescent against the left postero-lateral wall, concave towards its hilum
        th_s = np.radians(_u(r, -170, -130))
        thin = _u(r, 18, 26)
        dist = float(self.cavity_radius(th_s)) - thin - _u(r, 2, 8)
        centre = (dist * np.cos(th_s), dist * np.sin(th_s), _u(r, 45, 75))
        rot = _rotation(th_s, 0.0, 0.0) @ _rotation(0.0, _u(r, -0.3, 0.1), 0.0)
        self.spleen = dict(centre=centre, radii=(thin, _u(r, 45, 60), _u(r, 45, 60)), rot=rot,
                           hollow=(thin * 1.3 + _u(r, 8, 16), _u(r, 0.45, 0.65)), deform=(_Fourier(r, 15.0), _u(r, 2, 5)))
        # ribs 12 .. 9 on both sides, descending as they run forwards
        w12 = _u(r, 10, 35)
        self.ribs = []
        for side in (-1, 1):
            for k, end in enumerate((_u(r, 80, 100), _u(r, 110, 130), _u(r, 140, 160), _u(r, 150, 165))):
                self.ribs.append(dict(side=side, w0=w12 + k * _u(r, 22, 28) + r.normal(0, 3), psi0=_u(r, 25, 35),
                                      psi1=end, slope=_u(r, 35, 55), radius=_u(r, 3.5, 4.8)))
        self.w_lung = _u(r, 40, 85)
        self.lung_slope = _u(r, 0.4, 0.7)
        # small bowel and mesentery
        self.bowel = dict(sigma=_u(r, 8, 11), radius=_u(r, 8, 13), wall=_u(r, 2, 3), amount=_u(r, 0.3, 1.5),
                          gas_level=self.b_cav * _u(r, 0.35, 0.95))

    # ------------------------------------------------------------------ grid
    def _sample_grid(self) -> None:
        r = self.rng
        s_xy = float(np.clip((self.width + _u(r, 40, 130)) / _MATRIX, 0.7, 1.0))  # field of view fitted to the body
        s_z = float(r.choice([1.5, 2.0, 2.5, 3.0, 4.0, 5.0], p=[0.1, 0.15, 0.35, 0.15, 0.1, 0.15]))
        n_xy = max(16, int(round(_MATRIX / self.scale)))
        spacing = np.array([s_xy * self.scale, s_xy * self.scale, s_z * self.scale])
        self.fov = n_xy * spacing[0]
        fov_c = r.normal(0, 8, 2)
        slack = max(0.0, self.fov / 2 - max(self.a, self.b_ant, self.b_post) - 15)
        body_c = fov_c + np.clip(r.normal([0, -8], [6, 8]), -slack, slack)
        lo, hi = self.pancreas_w
        span = hi - lo
        margin = max(12.0, 1.5 * spacing[2])  # the whole pancreas plus at least 1.5 slices each side
        extent = max(_u(r, 120, 200), span + 2 * margin + 6)
        below = _u(r, margin, extent - span - margin)
        w_lo = lo - below
        n_z = max(4, int(np.ceil(extent / spacing[2])) + 1)  # slice centres span at least `extent`
        z_ref = _u(r, -450, -100)
        origin = (fov_c[0] - (n_xy - 1) / 2 * spacing[0], fov_c[1] - (n_xy - 1) / 2 * spacing[1], z_ref + w_lo)
        coarse = (2.0, 2.0, 3.0)
        self.grid = _Grid(origin, spacing, (n_xy, n_xy, n_z), body_c, z_ref, self.yaw, coarse)
        self.fov_centre = fov_c
        self.w_range = (w_lo, w_lo + (n_z - 1) * spacing[2])
        self.noise_sd = float(np.clip(10 + 10 * (self.width - 250) / 130 + r.normal(0, 2), 10, 20))
        self.blur_sigma_vox = _u(r, 0.5, 0.9)  # in-plane; slices are thick enough to skip z
        self.perm = tuple(int(i) for i in r.permutation(3))
        if r.random() < 0.4:  # DICOM-derived LPS arrays with slices last are the most common on disk
            self.perm, flips = (0, 1, 2), (True, True, bool(r.random() < 0.5))
        else:
            flips = tuple(bool(f) for f in r.random(3) < 0.5)
        self.flips_canonical = flips

    # ================================================================== painting
    def build(self) -> PhantomCase:
        """Paint the tissue map organ by organ, render HU, reorient. Most painters only take intra-abdominal fat
        outside the fat planes reserved around earlier organs, so the call order sets who wins an overlap."""
        g = self.grid
        # Fortran order: axial slices contiguous (fast in-plane blur, cheap LPS flips on output)
        self.tissue = np.zeros(g.shape, np.uint8, order="F")
        self.reserved = np.zeros(g.shape, bool, order="F")
        self.pancreas_box: list[tuple[int, int]] = [(g.shape[a], 0) for a in range(3)]
        self._paint_body()
        self._paint_lungs()
        self._paint_spine()
        self._paint_ribs()
        self._paint_retroperitoneal_muscles()
        self._paint_great_vessels()
        self._paint_kidneys()
        self._paint_branch_vessels()
        self._paint_pancreas()
        self._paint_tube_organ(self.duodenum, wall=2.5, content="duodenum", halo=1.0)
        self._paint_tube_organ(self.stomach, wall=self.stomach_wall, content="stomach", halo=2.0)
        self._paint_tube_organ(self.colon, wall=2.0, content="colon", halo=2.0)
        self._paint_spleen()
        self._paint_liver()
        self._paint_small_bowel()
        hu = self._render_hu()
        return self._finish(hu)

    def _paint(self, sl, mask: np.ndarray, tid: int, onto: tuple[int, ...] | None = None,
               respect_reserved: bool = True) -> None:
        """Set tissue `tid` where mask holds inside box `sl`, only onto the `onto` tissues (None: any) and, with
        respect_reserved, outside the fat planes kept around earlier organs."""
        sub = self.tissue[sl]
        if onto is not None:
            mask = mask & _onto_lut(onto)[sub]
        if respect_reserved:
            mask = mask & ~self.reserved[sl]
        sub[mask] = tid

    def _reserve(self, sl, mask: np.ndarray) -> None:
        self.reserved[sl] |= mask

    def _box(self, lo, hi):
        lo = np.maximum(np.asarray(lo, float), [-1e4, -1e4, self.w_range[0] - 1])
        hi = np.minimum(np.asarray(hi, float), [1e4, 1e4, self.w_range[1] + 1])
        if np.any(lo > hi):
            return None
        return self.grid.box(lo, hi)

    # ------------------------------------------------------------------ body
    def _paint_body(self) -> None:
        g = self.grid
        mesh = g.mesh(tuple(slice(0, n) for n in g.shape), (2.0, 2.0, 6.0))
        u, v, w = mesh.u, mesh.v, mesh.w
        rad, th = np.hypot(u, v), np.arctan2(v, u)
        depth = self.body_radius(th, w) - rad
        b1 = self.t_skin
        b2 = b1 + self.fat_thickness(th)
        b3 = b2 + self.muscle_thickness(th, u, v)
        # layer coordinate: 0 at the skin surface, 1 / 2 / 3 at the inner faces of skin / fat / muscle
        phi = np.where(depth < b1, depth / b1,
                       np.where(depth < b2, 1 + (depth - b1) / (b2 - b1),
                                np.where(depth < b3, 2 + (depth - b2) / (b3 - b2), 3 + (depth - b3) / 10.0)))
        lut = np.array([_T["air"], _T["skin"], _T["subcutaneous_fat"], _T["muscle"], _T["visceral_fat"]], np.uint8)
        phi = np.ascontiguousarray(phi, dtype=_F32)
        for crop, sl, size, keep in g.block_plan(mesh, need=phi >= 0):  # blocks touching the body
            if phi[crop].min() >= 3:  # interpolation stays within the node range: all intra-abdominal
                self.tissue[sl] = _T["visceral_fat"]
                continue
            (phi_f,) = g.upsample([phi[crop]], size, keep, fortran=True)
            np.clip(phi_f + 1, 0, 4, out=phi_f)
            self.tissue[sl] = lut[phi_f.astype(np.uint8)]
        # thin fat planes between external oblique, internal oblique and transversus in the lateral wall
        lateral = np.clip((np.abs(np.cos(th)) - 0.55) * 5, 0, 1) * (np.sin(th) > -0.5)
        wobble = 0.06 * np.sin(3 * th + self.fat_harm[3]) + 0.04 * np.sin(w / 23.0)
        planes = [depth - (b2 + (frac + wobble) * (b3 - b2)) for frac in self.wall_planes]
        need = (lateral > 0.5) & ((np.abs(planes[0]) < 2) | (np.abs(planes[1]) < 2))
        for sl, (lat_f, p1, p2) in g.blocks(mesh, [lateral, *planes], need=need):
            fat = (lat_f > 0.5) & ((np.abs(p1) < self.wall_plane_half) | (np.abs(p2) < self.wall_plane_half))
            self._paint(sl, fat, _T["subcutaneous_fat"], (_T["muscle"],))

    def _paint_lungs(self) -> None:
        """Posterior costophrenic recesses in the upper slices, under a thin diaphragm."""
        if self.w_range[1] < self.w_lung:
            return
        g = self.grid
        sl = self._box((-1e4, -1e4, self.w_lung), (1e4, 1e4, 1e4))
        if sl is None:
            return
        mesh = g.mesh(sl, (2.0, 2.0, 3.0))
        u, v, w = mesh.u, mesh.v, mesh.w
        th = np.arctan2(v, u)
        inner = self.cavity_radius(th, w) - np.hypot(u, v)  # depth inside the cavity
        back = np.clip(-np.sin(th) * 1.6 - 0.3, 0, 1) * np.clip((np.abs(np.cos(th)) - 0.12) * 4, 0, 1)
        lung_depth = np.clip((w - self.w_lung) * self.lung_slope, 0, 45) * back
        f = inner - lung_depth
        for sl, (f_in, f_depth) in g.blocks(mesh, [f, lung_depth], need=(lung_depth > 0) & (f < 4)):
            cav = (self.tissue[sl] == _T["visceral_fat"]) & (f_depth > 1.0)
            self._paint(sl, cav & (f_in < 0), _T["lung"])
            self._paint(sl, cav & (f_in >= 0) & (f_in < 3.5), _T["muscle"])

    # ------------------------------------------------------------------ spine
    def _paint_spine(self) -> None:
        g = self.grid
        reach = self.rcx + 40
        sl = self._box((-reach, self.v_pm - self.t_post - 5, -1e4), (reach, self.v_vb + self.ry_vb + 3, 1e4))
        if sl is None:
            return
        mesh = g.mesh(sl, (1.25, 1.25, 2.0))
        u, v, w = mesh.u, mesh.v, mesh.w
        P = self.period
        zp = np.mod(w - self.w_disc0, P)  # position within one vertebral level, disc centred at 0 / P
        dz = np.minimum(zp, P - zp) - self.t_disc / 2  # < 0 inside the disc slab
        vb = _ellipse_sdf(u, v - self.v_vb, self.rx_vb, self.ry_vb)
        notch = _ellipse_sdf(u, v - (self.v_vb - self.ry_vb - 3), self.rx_vb * 0.35, 6.0)
        vb = np.maximum(vb, -notch)
        canal = _ellipse_sdf(u, v - self.v_c, self.rcx, self.rcy)
        dv = v - self.v_c
        ring = np.maximum(np.maximum(_ellipse_sdf(u, dv, self.rcx + self.t_arch, self.rcy + self.t_arch), -canal),
                          dv - self.rcy * 0.2)
        post = np.maximum(ring, np.abs(zp - P * 0.5) - P * 0.33)
        ped = _box_sdf(np.abs(u) - (self.rcx + self.t_arch / 2 - 1), v - (self.v_c + self.v_vb - self.ry_vb * 0.5) / 2,
                       zp - P * 0.5, (self.t_arch / 2, (self.v_vb - self.ry_vb * 0.5 - self.v_c) / 2, P * 0.3))
        sp_len = self.spinous_len
        sp = _box_sdf(u, dv + self.rcy + self.t_arch + sp_len / 2 - 2, zp - P * 0.55 - dv * 0.25,
                      (3.0, sp_len / 2, P * 0.2))
        tp = _box_sdf(np.abs(u) - (self.rcx + 15), dv - 3, zp - P * 0.55, (15.0, 3.5, P * 0.1))
        post = np.minimum(np.minimum(post, ped), np.minimum(sp, tp))
        need = (vb < 1) | (canal < 0) | (post < 0)
        for sl, (vb_f, dz_f, canal_f, post_f) in g.blocks(mesh, [vb, dz, canal, post], need=need):
            body = (vb_f < 0) & (dz_f >= 0)
            cort = body & ((vb_f > -self.t_cort) | (dz_f < self.t_cort))
            self._paint(sl, body & ~cort, _T["bone_cancellous"], respect_reserved=False)
            self._paint(sl, cort, _T["bone_cortical"], respect_reserved=False)
            self._paint(sl, (vb_f < 1.0) & (dz_f < 0), _T["intervertebral_disc"], respect_reserved=False)
            self._paint(sl, (post_f < 0) & (post_f > -1.5), _T["bone_cortical"], respect_reserved=False)
            self._paint(sl, post_f <= -1.5, _T["bone_cancellous"], respect_reserved=False)
            self._paint(sl, canal_f < 0, _T["spinal_canal"], respect_reserved=False)

    def _paint_ribs(self) -> None:
        for rib in self.ribs:
            psi = np.radians(np.linspace(rib["psi0"], rib["psi1"], 24))
            th = -np.pi / 2 + rib["side"] * psi
            w = rib["w0"] - (psi - psi[0]) * rib["slope"]
            if w.min() > self.w_range[1] + 10 or w.max() < self.w_range[0] - 10:
                continue
            depth = self.t_skin + self.fat_thickness(th) + np.minimum(self.muscle_thickness(th) * 0.8, 30) + 1
            rad = self.body_radius(th, w) - depth
            pts = np.stack([rad * np.cos(th), rad * np.sin(th), w], axis=1)
            curve = _curve(pts, np.full(len(pts), rib["radius"]))
            self._paint_tube(curve, metric=(1.0, 1.0, 1 / 1.4), layers=[(0.0, _T["bone_cortical"]),
                             (-1.2, _T["bone_cancellous"])], onto=(_T["muscle"], _T["visceral_fat"], _T["lung"]),
                             respect_reserved=False, coarse=(2.0, 2.0, 2.5))

    def _tube_mesh(self, curve: _Curve, metric, reach: float, coarse, extra_boxes=()):
        """Coarse mesh over a curve's bounding box with the tube distance field evaluated near the curve only."""
        r_max = float(curve.radius.max())
        half_xy = (r_max + reach) / min(metric[0], metric[1]) + 1
        half_z = (r_max + reach) / metric[2] + 1
        pad = np.array([half_xy, half_xy, half_z])
        lo, hi = curve.points.min(axis=0) - pad, curve.points.max(axis=0) + pad
        sl = self._box(lo, hi)
        if sl is None:
            return None
        mesh = self.grid.mesh(sl, coarse)
        near = self.grid.near(mesh, curve.points, (half_xy + max(mesh.h[:2]), half_z + mesh.h[2]))
        f = np.full(mesh.shape, reach, _F32)
        idx = np.zeros(mesh.shape, np.int64)
        if near.any():
            f[near], idx[near] = _tube_sdf(curve, _curve_tree(curve, metric), *mesh.points(near), metric, reach)
        return mesh, f, idx

    def _paint_tube(self, curve: _Curve, layers, onto=None, metric=(1.0, 1.0, 1.0), halo: float = 0.0,
                    respect_reserved: bool = True, coarse=(1.5, 1.5, 2.5)) -> None:
        """Paint nested shells of a tube: layers = [(sdf threshold, tissue), ...] from outside in."""
        tm = self._tube_mesh(curve, metric, max(halo, 0.0) + 2.0, coarse)
        if tm is None:
            return
        mesh, f, _ = tm
        for sl, (ff,) in self.grid.blocks(mesh, [f], need=f < max(halo, 0.0)):
            for thr, tid in layers:
                self._paint(sl, ff < thr, tid, onto, respect_reserved)
            if halo > 0:
                self._reserve(sl, ff < halo)

    # ------------------------------------------------------------------ muscles and vessels
    def _paint_retroperitoneal_muscles(self) -> None:
        r = self.rng
        fat = (_T["visceral_fat"],)
        for side in (-1, 1):  # psoas against the vertebral body, growing caudally; quadratus lumborum behind
            radii = [3.0, _u(r, 7, 11), _u(r, 15, 22)]
            ws = [50.0, 0.0, -110.0]
            pts = [(side * (self.rx_vb + rr * 0.75), self.v_vb - self.ry_vb * 0.2 + (0 if k < 2 else 6), wk)
                   for k, (rr, wk) in enumerate(zip(radii, ws))]
            self._paint_tube(_curve(pts, radii), [(0.0, _T["muscle"])], onto=fat, metric=(1.0, 0.85, 1.0), halo=1.5,
                             coarse=(2.0, 2.0, 3.0))
            ql = _u(r, 9, 14)
            x = side * (self.rx_vb + _u(r, 30, 40))
            ctrl = [(x, self.v_pm + ql * 0.3, _u(r, 15, 35)), (x * 1.1, self.v_pm + ql * 0.4, -150)]
            self._paint_tube(_curve(ctrl, [ql * 0.4, ql * 1.2]), [(0.0, _T["muscle"])], onto=fat,
                             metric=(0.7, 1.0, 1.0), halo=1.5, coarse=(2.0, 2.0, 3.0))

    def _paint_great_vessels(self) -> None:
        fat_muscle = (_T["visceral_fat"], _T["muscle"])
        ws = np.array([200.0, 0.0, -250.0])
        ao = _curve([(self.u_ao + self.ao_drift * wk / 100, self.v_ao, wk) for wk in ws],
                    [self.r_ao, self.r_ao, self.r_ao * 0.9])
        self._paint_tube(ao, [(0.0, _T["aorta"])], onto=fat_muscle, halo=1.5, coarse=(1.25, 1.25, 2.5))
        if self.calcified:
            self._paint_calcification(ao)
        ivc = _curve([(self.u_ivc + 3, self.v_ivc + 4, 200), (self.u_ivc, self.v_ivc, 0),
                      (self.u_ivc - 2, self.v_ivc - 2, -250)], [self.rx_ivc] * 3)
        self._paint_tube(ivc, [(0.0, _T["ivc"])], onto=fat_muscle, metric=(1.0, self.rx_ivc / self.ry_ivc, 1.0), halo=1.0)
        r = self.rng
        for side in (-1, 1):  # diaphragmatic crura wrapping the aorta
            ux = self.u_ao + side * (self.r_ao + 4)
            crus = _curve([(ux + side * 4, self.v_vb + self.ry_vb * 0.3, -40), (ux, self.v_ao, 5),
                           (self.u_ao + side * self.r_ao * 0.5, self.v_ao + self.r_ao + 5, 45)], [_u(r, 3, 6)] * 3)
            self._paint_tube(crus, [(0.0, _T["muscle"])], onto=(_T["visceral_fat"],), respect_reserved=False)

    def _paint_calcification(self, aorta: _Curve) -> None:
        r = self.rng
        spots = _Fourier(r, 2.5)
        threshold = _u(r, 1.2, 1.9)
        tm = self._tube_mesh(aorta, (1.0, 1.0, 1.0), 2.0, (1.0, 1.0, 2.0))
        if tm is None:
            return
        mesh, f, _ = tm
        for sl, (ff,) in self.grid.blocks(mesh, [f], need=(f < 0.5) & (f > -3)):
            wall = (ff > -2.5) & (ff < 0.5) & (self.tissue[sl] == _T["aorta"])
            if not wall.any():
                continue
            spot = spots(*self.grid.fine_patient(sl, wall)) > threshold
            sub = self.tissue[sl]
            sub[tuple(a[spot] for a in np.nonzero(wall))] = _T["calcification"]

    def _paint_kidneys(self) -> None:
        for k in self.kidneys:
            c, (rl, ra, rz), rot = k["centre"], k["radii"], k["rot"]
            ext = max(rl, ra, rz) + 12
            sl = self._box(np.array(c) - ext, np.array(c) + ext)
            if sl is None:
                continue
            mesh = self.grid.mesh(sl, (1.5, 1.5, 2.5))
            q0, q1, q2 = _local(mesh.u, mesh.v, mesh.w, c, rot)
            kid = _ellipsoid_sdf(q0, q1, q2, (rl, ra, rz))
            sinus = _ellipsoid_sdf(q0 + 0.55 * rl, q1, q2, (0.55 * rl, 0.45 * ra, 0.6 * rz))
            rho = np.sqrt((q0 / rl) ** 2 + (q1 / ra) ** 2 + (q2 / rz) ** 2)
            ang = np.arctan2(q1 / ra, q0 / rl + 0.25)
            pyramids = (np.cos(k["n_pyr"] * ang) + 0.25) * np.cos(np.pi * 2.2 * q2 / rz)
            medulla = np.maximum(np.maximum(rho - 0.76, 0.4 - rho) * 20, -pyramids * 6)  # < 0 inside a pyramid
            halo = self.rng.uniform(4, 10)
            fat = (_T["visceral_fat"],)
            for sl, (kid_f, sin_f, med_f) in self.grid.blocks(mesh, [kid, sinus, medulla], need=kid < halo):
                inside = kid_f < 0
                self._paint(sl, inside & (sin_f < 0), _T["renal_sinus_fat"], fat)
                self._paint(sl, inside & (sin_f >= 0) & (sin_f < 2.5), _T["kidney_cortex"], fat)
                self._paint(sl, inside & (sin_f >= 2.5) & (med_f < 0), _T["kidney_medulla"], fat)
                self._paint(sl, inside & (sin_f >= 2.5) & (med_f >= 0), _T["kidney_cortex"], fat)
                self._reserve(sl, kid_f < halo)

    def _kidney_hilum(self, k: dict) -> np.ndarray:
        rl = k["radii"][0]
        return np.asarray(k["centre"]) + k["rot"] @ np.array([-1.05 * rl, 0.0, 0.0])

    def _paint_branch_vessels(self) -> None:
        r = self.rng
        fat = (_T["visceral_fat"], _T["renal_sinus_fat"], _T["muscle"])
        v_front = self.v_ao + self.r_ao
        # superior mesenteric artery and coeliac branches
        sma = _curve([(self.u_ao, self.v_ao + self.r_ao * 0.5, self.w_sma0 + 4),
                      (self.u_sma, self.v_sma - 2, self.w_sma0 - 8), (self.u_sma + 1, self.v_sma + 8, -30),
                      (self.u_sma + 3, self.v_sma + 14, -70), (self.u_sma + 6, self.v_sma + 20, -250)], [self.r_sma] * 5)
        self._paint_tube(sma, [(0.0, _T["artery"])], onto=fat, halo=_u(r, 3, 6), respect_reserved=False)
        tip = (self.u_ao + 2, v_front + 12, self.w_celiac + 3)
        ra = _u(r, 2.2, 3.2)
        self._paint_tube(_curve([(self.u_ao, self.v_ao + self.r_ao * 0.5, self.w_celiac), tip], [ra + 0.8] * 2),
                         [(0.0, _T["artery"])], onto=fat, respect_reserved=False)
        hep = _curve([tip, (self.u_ivc, v_front + 14, self.w_celiac + 2), (self.u_ivc + 15, v_front + 22, 50)], [ra] * 3)
        self._paint_tube(hep, [(0.0, _T["artery"])], onto=fat, respect_reserved=False)
        # splenic artery: tortuous along the upper border of the pancreas body and tail
        pc = self.pancreas_curve
        sel = pc.t > 0.45
        pts = pc.points[sel][::8].copy()
        pts[:, 2] += pc.radius[sel][::8] * self.k_p + ra + 1
        pts[:, 1] += np.sin(np.arange(len(pts)) * _u(r, 0.9, 1.6)) * _u(r, 2, 6)
        self._paint_tube(_curve(np.vstack([tip, pts]), [ra] * (len(pts) + 1)), [(0.0, _T["artery"])], onto=fat,
                         respect_reserved=False)
        # renal arteries and veins
        for k in self.kidneys:
            h = self._kidney_hilum(k)
            hw = k["hilum_w"]
            art = _curve([(self.u_ao + k["side"] * self.r_ao * 0.7, self.v_ao - 2, hw + 4),
                          ((self.u_ao + h[0]) / 2, self.v_vb + self.ry_vb - 2, hw + 2), (h[0], h[1] - 3, hw)], [ra] * 3)
            self._paint_tube(art, [(0.0, _T["artery"])], onto=fat, respect_reserved=False)
            rv = _u(r, 4, 6)
            if k["side"] < 0:  # left renal vein passes between the aorta and the SMA
                ctrl = [(h[0], h[1] + 3, hw), (self.u_ao - self.r_ao - 6, v_front + 2, hw + 3),
                        (self.u_ao, v_front + rv * 0.7 + 0.5, self.w_sma0 - 6), (self.u_ivc, self.v_ivc, self.w_sma0 - 6)]
            else:
                ctrl = [(h[0], h[1] + 3, hw), (self.u_ivc + 2, self.v_ivc, hw + 5)]
            self._paint_tube(_curve(ctrl, [rv] * len(ctrl)), [(0.0, _T["vein"])], onto=fat, respect_reserved=False)
        # superior mesenteric vein, portal vein and splenic vein
        conf = (self.u_smv, self.v_smv, 0.0)
        smv = _curve([(self.u_smv + 4, self.v_smv + 6, -250), (self.u_smv + 1, self.v_smv + 2, -40), conf], [self.r_smv] * 3)
        self._paint_tube(smv, [(0.0, _T["vein"])], onto=fat, halo=1.0, respect_reserved=False)
        pv = _curve([conf, (self.u_smv + 12, self.v_smv - 4, 18),
                     (self.u_ivc + 8, self.v_ivc + self.ry_ivc + self.r_pv + 6, 40),
                     (self.u_ivc + 30, self.v_ivc + self.ry_ivc + 15, 70), (self.u_ivc + 50, self.v_ivc + 10, 95)],
                    [self.r_pv] * 5)
        self._paint_tube(pv, [(0.0, _T["vein"])], onto=fat, halo=1.0, respect_reserved=False)
        rs = _u(r, 3.5, 5.0)
        sel = pc.t > 0.35
        pts = pc.points[sel][::6].copy()
        pts[:, 1] -= pc.radius[sel][::6] + rs * 0.4
        pts[:, 2] += pc.radius[sel][::6] * 0.3
        sv = _curve(np.vstack([conf, pts]), [rs] * (len(pts) + 1))
        self._paint_tube(sv, [(0.0, _T["vein"])], onto=fat, respect_reserved=False)

    # ------------------------------------------------------------------ pancreas
    def _pancreas_fields(self, u, v, w, tree):
        pc = self.pancreas_curve
        metric = (1.0, 1.0, 1.0 / self.k_p)
        tube, idx = _tube_sdf(pc, tree, u, v, w, metric, reach=40)
        head = _ellipsoid_sdf(u - self.head[0], v - self.head[1], w - self.head[2], self.head_radii)
        lob_fine, a_fine, lob_coarse, a_coarse = self.lobulation
        env = _smin(tube, head, 6.0) + a_fine * lob_fine(u, v, w) + a_coarse * lob_coarse(u, v, w)
        duct = tube + pc.radius[idx] - self.duct_radius[idx]
        if self.tumour is not None:
            t = self._tumour_sdf(u, v, w)
            env = np.minimum(env, t - self.tumour["rim"])
        else:
            t = np.full_like(env, 100.0)
        return env.astype(_F32), duct.astype(_F32), t.astype(_F32)

    def _tumour_sdf(self, u, v, w) -> np.ndarray:
        tm = self.tumour
        q = _local(u, v, w, tm["centre"], tm["rot"])
        f = _ellipsoid_sdf(*q, tm["radii"])
        lob, amp, fine, amp_fine = tm["lob"]
        return f + amp * lob(u, v, w) + amp_fine * fine(u, v, w)

    def _paint_pancreas(self) -> None:
        pc = self.pancreas_curve
        reach = 6.0 + max(1.5, 1.2 * float(self.grid.spacing[:2].max()))  # lobulation amplitude plus halo
        pad_xy = float(pc.radius.max()) + reach
        pad_z = float(pc.radius.max()) * self.k_p + reach
        boxes = [(pc.points.min(axis=0) - [pad_xy, pad_xy, pad_z], pc.points.max(axis=0) + [pad_xy, pad_xy, pad_z]),
                 (self.head - np.array(self.head_radii) - reach, self.head + np.array(self.head_radii) + reach)]
        if self.tumour is not None:
            ext = max(self.tumour["radii"]) * 1.4 + self.tumour["rim"] + reach
            boxes.append((self.tumour["centre"] - ext, self.tumour["centre"] + ext))
        lo = np.min([b[0] for b in boxes], axis=0)
        hi = np.max([b[1] for b in boxes], axis=0)
        sl = self._box(lo, hi)
        if sl is None:
            return
        g = self.grid
        mesh = g.mesh(sl, (1.5, 1.5, 2.0))
        near = g.near(mesh, pc.points, (pad_xy + max(mesh.h[:2]), pad_z + mesh.h[2]))
        for b_lo, b_hi in boxes[1:]:
            near |= g.near(mesh, np.array([b_lo, b_hi, (b_lo + b_hi) / 2]), (float(np.max(b_hi - b_lo)) / 2 + 3,) * 2)
        env = np.full(mesh.shape, reach, _F32)
        duct = np.full(mesh.shape, reach, _F32)
        tum = np.full(mesh.shape, 100.0, _F32)
        tree = _curve_tree(pc, (1.0, 1.0, 1.0 / self.k_p))
        env[near], duct[near], tum[near] = self._pancreas_fields(*mesh.points(near), tree)
        fat = (_T["visceral_fat"],)
        # fat plane kept free of bowel; wider on coarse grids so blurred gas never reaches a labelled voxel
        halo = max(1.5, 1.2 * float(g.spacing[:2].max()))
        for sl, (env_f, duct_f, tum_f) in g.blocks(mesh, [env, duct, tum], need=env < halo):
            self._paint(sl, env_f < 0, _T["pancreas"], fat)
            self._paint(sl, (tum_f < 0) & (env_f < 0), _T["tumour"], (_T["pancreas"],), respect_reserved=False)
            self._paint(sl, duct_f < 0, _T["pancreatic_duct"], (_T["pancreas"],), respect_reserved=False)
            self._reserve(sl, env_f < halo)
            self.pancreas_box = [(min(a0, s.start), max(a1, s.stop)) for (a0, a1), s in zip(self.pancreas_box, sl)]
        self._drop_pancreas_islands()

    def _drop_pancreas_islands(self) -> None:
        """Return small fragments cut off the gland by the lobulation noise to fat (a real gland is connected)."""
        sl = tuple(slice(a0, a1) for a0, a1 in self.pancreas_box)
        if any(s.stop <= s.start for s in sl):
            return
        sub = self.tissue[sl]
        components, n = ndi.label(_onto_lut((_T["pancreas"], _T["tumour"], _T["pancreatic_duct"]))[sub])
        if n < 2:
            return
        sizes = np.bincount(components.ravel())
        sizes[0] = 0
        small = sizes < 0.05 * sizes.max()
        small[0] = False
        sub[small[components]] = _T["visceral_fat"]

    # ------------------------------------------------------------------ hollow organs
    def _paint_tube_organ(self, curve: _Curve, wall: float, content: str, halo: float) -> None:
        r = self.rng
        fat = (_T["visceral_fat"],)
        fluid = _T["oral_contrast"] if self.oral_contrast and content != "colon" else _T["bowel_fluid"]
        level_field = _Fourier(r, 30.0)  # gas/fluid levels: horizontal locally, at heights varying along the gut
        mottle = _Fourier(r, 1.8)
        haustra_len, haustra_amp = self.colon_haustra
        top_v = float((curve.points[:, 1] + curve.radius).max())
        coarse = (2.0, 2.0, 2.5) if content == "duodenum" else (3.0, 3.0, 3.0)
        reach = halo + 2 + (float(curve.radius.max()) * haustra_amp if content == "colon" else 0.0)
        tm = self._tube_mesh(curve, (1.0, 1.0, 1.0), reach, coarse)
        if tm is None:
            return
        mesh, f, idx = tm
        if content == "colon":
            f = f + (curve.radius[idx] * haustra_amp * np.cos(2 * np.pi * curve.t[idx] * len(curve.t) / haustra_len))
        for sl, (ff,) in self.grid.blocks(mesh, [f], need=f < halo):
            self._paint(sl, ff < 0, _T["bowel_wall"], fat)
            lumen = (ff < -wall) & (self.tissue[sl] == _T["bowel_wall"])
            if lumen.any():
                pu, pv, pw = self.grid.fine_patient(sl, lumen)
                if content == "stomach":
                    gas = pv > top_v - wall - self.stomach_gas * 2 * float(curve.radius.mean())
                    ids = np.where(gas, _T["bowel_gas"], fluid)
                elif content == "colon":
                    gas = pv + 15 * level_field(pu, pv, pw) > self.colon_gas_level
                    bubbles = mottle(pu, pv, pw) > self.stool_bubbles
                    ids = np.where(gas | bubbles, _T["bowel_gas"], _T["stool"])
                else:
                    gas = pv + 15 * level_field(pu, pv, pw) > self.duodenum_gas_level
                    ids = np.where(gas, _T["bowel_gas"], fluid)
                sub = self.tissue[sl]
                sub[np.nonzero(lumen)] = ids.astype(np.uint8)
            self._reserve(sl, ff < halo)

    def _paint_small_bowel(self) -> None:
        """Loops as tubes around the intersection curves of two random fields' zero sets."""
        r = self.rng
        bw = self.bowel
        g = self.grid
        sl = self._box((-self.a_cav - 5, self.v_vb - 20, -1e4), (self.a_cav + 5, self.b_cav + 5, 1e4))
        if sl is None:
            return
        mesh = g.mesh(sl, (3.0, 3.0, 3.0))
        u, v, w, h, shape = mesh.u, mesh.v, mesh.w, mesh.h, mesh.shape

        def curve_distance(sigma: float) -> np.ndarray:
            sq = []
            for _ in range(2):
                f = _smooth_noise(r, shape, h, sigma)
                grad = np.gradient(f, *h) if min(shape) > 1 else [np.ones_like(f)] * 3
                sq.append((f / (np.sqrt(grad[0] ** 2 + grad[1] ** 2 + grad[2] ** 2) + 1e-3)) ** 2)
            return np.minimum(np.sqrt(sq[0] + sq[1]), 60.0)

        d = curve_distance(bw["sigma"])
        presence = _smooth_noise(r, shape, h, 25.0) + bw["amount"]
        # keep loops out of the retroperitoneum behind the vessels and kidneys
        retro = (self.v_ao + self.r_ao + 5 + 0.35 * np.abs(u)) - v
        tube = d + np.maximum(-presence, 0) * 25 + np.maximum(retro, 0) * 2 - bw["radius"] - bw["wall"]
        content = v + 15 * _smooth_noise(r, shape, h, 20.0) - bw["gas_level"]  # > 0: gas above a fluid level
        md = curve_distance(6.0) - _u(r, 1.2, 2.0) + np.maximum(retro + 10, 0)  # mesenteric vessels
        fluid = _T["oral_contrast"] if self.oral_contrast else _T["bowel_fluid"]
        for sl, (tube_f, cont, md_f) in g.blocks(mesh, [tube, content, md], need=(tube < 0) | (md < 0)):
            sub = self.tissue[sl]
            free = (sub == _T["visceral_fat"]) & ~self.reserved[sl]
            sub[free & (tube_f < 0)] = _T["bowel_wall"]
            lumen = free & (tube_f < -bw["wall"])
            sub[lumen & (cont > 0)] = _T["bowel_gas"]
            sub[lumen & (cont <= 0)] = fluid
            sub[(sub == _T["visceral_fat"]) & (md_f < 0)] = _T["vein"]

    # ------------------------------------------------------------------ solid organs
    def _paint_spleen(self) -> None:
        sp = self.spleen
        c, radii, rot = np.asarray(sp["centre"]), sp["radii"], sp["rot"]
        ext = max(radii) + 10
        sl = self._box(c - ext, c + ext)
        if sl is None:
            return
        mesh = self.grid.mesh(sl, (2.0, 2.0, 2.5))
        u, v, w = mesh.u, mesh.v, mesh.w
        q0, q1, q2 = _local(u, v, w, c, rot)
        f = _ellipsoid_sdf(q0, q1, q2, radii)
        off, frac = sp["hollow"]
        hollow = _ellipsoid_sdf(q0 + off, q1, q2, (radii[0] * 1.4, radii[1] * frac + 10, radii[2] * frac + 10))
        field, amp = sp["deform"]
        f = np.maximum(f, -hollow) + amp * field(u, v, w)
        for sl, (ff,) in self.grid.blocks(mesh, [f], need=f < 2):
            self._paint(sl, ff < 0, _T["spleen"], (_T["visceral_fat"],))
            self._reserve(sl, ff < 2.0)

    def _paint_liver(self) -> None:
        lv = self.liver
        (c1, r1), (c2, r2) = lv["right"], lv["left"]
        lo = np.minimum(np.subtract(c1, r1), np.subtract(c2, r2)) - 12
        hi = np.maximum(np.add(c1, r1), np.add(c2, r2)) + 12
        sl = self._box(lo, hi)
        if sl is None:
            return
        mesh = self.grid.mesh(sl, (2.0, 2.0, 3.0))
        u, v, w, h = mesh.u, mesh.v, mesh.w, mesh.h
        f = _smin(_ellipsoid_sdf(u - c1[0], v - c1[1], w - c1[2], r1),
                  _ellipsoid_sdf(u - c2[0], v - c2[1], w - c2[2], r2), 15.0)
        big, a_big, small, a_small = lv["deform"]
        inside = f < a_big + a_small + 1
        f[inside] += a_big * big(*mesh.points(inside)) + a_small * small(*mesh.points(inside))
        r = self.rng
        vd = []
        for _ in range(2):  # intrahepatic vessels: the same two-field tube trick as the bowel
            n = _smooth_noise(r, f.shape, h, 9.0)
            grad = np.gradient(n, *h) if min(f.shape) > 1 else [np.ones_like(n)] * 3
            vd.append((n / (np.sqrt(grad[0] ** 2 + grad[1] ** 2 + grad[2] ** 2) + 1e-3)) ** 2)
        vessel = np.sqrt(vd[0] + vd[1]) - self.liver_vessel_radius
        for sl, (ff, vf) in self.grid.blocks(mesh, [f, vessel], need=f < 0):
            self._paint(sl, ff < 0, _T["liver"], (_T["visceral_fat"],))
            self._paint(sl, (vf < 0) & (ff < -6), _T["hepatic_vessel"], (_T["liver"],), respect_reserved=False)
        if self.gallbladder is not None:
            gb = self.gallbladder
            c = np.asarray(gb["centre"])
            ext = max(gb["radii"]) + 4
            gsl = self._box(c - ext, c + ext)
            if gsl is not None:
                gm = self.grid.mesh(gsl, (1.5, 1.5, 2.5))
                gf = _ellipsoid_sdf(*_local(gm.u, gm.v, gm.w, c, gb["rot"]), gb["radii"])
                onto = (_T["liver"], _T["visceral_fat"], _T["hepatic_vessel"])
                for gsl, (ff,) in self.grid.blocks(gm, [gf], need=gf < 0):
                    self._paint(gsl, ff < 0, _T["gallbladder"], onto, respect_reserved=False)

    # ================================================================== HU image
    def _render_hu(self) -> np.ndarray:
        r = self.rng
        names = list(TISSUES)
        mean = np.zeros(256, _F32)
        tex = np.zeros(256, _F32)
        for name in names:
            mean[TISSUES[name]] = _u(r, *_HU_MEAN_RANGE[name])
            tex[TISSUES[name]] = _HU_TEXTURE.get(name, 0.0)
        mean[_T["artery"]] = mean[_T["aorta"]] - _u(r, 0, 25)
        mean[_T["tumour"]] = mean[_T["pancreas"]]
        g = self.grid
        full = tuple(slice(0, n) for n in g.shape)
        mesh = g.mesh(full, (6.0, 6.0, 6.0))
        ((_, (texture,)),) = g.blocks(mesh, [_smooth_noise(r, mesh.shape, mesh.h, 5.0)], fortran=True)
        gland_idx, gland_delta = self._pancreas_hu(mean)
        # CT noise: uniform white noise that the in-plane blur turns into correlated, near-Gaussian noise
        kernel = self._kernel(self.blur_sigma_vox)
        noise_gain = _F32(self.noise_sd / float(np.sum(kernel**2)) / 73.9)  # 73.9 = std of uniform int8
        xs, ys = g.axes[0] - self.fov_centre[0], g.axes[1] - self.fov_centre[1]
        outside = (xs[:, None] ** 2 + ys[None, :] ** 2) > (self.fov / 2) ** 2
        out = np.empty(g.shape, np.int16, order="F")
        slab = 8  # axial slices per pass: keeps the arithmetic in cache
        for z0 in range(0, g.shape[2], slab):
            zs = slice(z0, min(z0 + slab, g.shape[2]))
            t = self.tissue[:, :, zs]
            hu = mean[t]
            hu += tex[t] * texture[:, :, zs]
            sel = (gland_idx[2] >= zs.start) & (gland_idx[2] < zs.stop)
            hu[gland_idx[0][sel], gland_idx[1][sel], gland_idx[2][sel] - z0] += gland_delta[sel]
            hu += np.frombuffer(r.bytes(hu.size), np.int8).reshape(hu.shape, order="F") * noise_gain
            if len(kernel) > 1:
                for axis in (0, 1):
                    ndi.correlate1d(hu, kernel, axis=axis, output=hu, mode="nearest")
            hu[outside] = -1024
            np.rint(hu, out=hu)
            np.clip(hu, -1024, 3071, out=hu)
            out[:, :, zs] = hu
        return out

    @staticmethod
    def _kernel(sigma: float) -> np.ndarray:
        radius = max(1, int(2.5 * sigma + 0.5))
        x = np.arange(-radius, radius + 1)
        k = np.exp(-0.5 * (x / sigma) ** 2)
        return (k / k.sum()).astype(_F32)

    def _pancreas_hu(self, mean: np.ndarray) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        """HU offsets of the gland voxels: lobular fatty texture and the ill-defined hypodense tumour.
        Returns (voxel indices, offsets)."""
        none = (tuple(np.zeros(0, int) for _ in range(3)), np.zeros(0, _F32))
        sl = tuple(slice(a0, a1) for a0, a1 in self.pancreas_box)
        if any(s.stop <= s.start for s in sl):
            return none
        sub = self.tissue[sl]
        gland = _onto_lut((_T["pancreas"], _T["tumour"], _T["pancreatic_duct"]))[sub]
        if not gland.any():
            return none
        fat_field, strength, share = self.pancreas_fat
        pu, pv, pw = self.grid.fine_patient(sl, gland)
        idx = np.nonzero(gland)
        tissue = sub[idx]
        fatty = np.clip((fat_field(pu, pv, pw) - strength) * share, 0, 0.8)
        fatty[tissue != _T["pancreas"]] = 0
        delta = fatty * (mean[_T["visceral_fat"]] - mean[_T["pancreas"]])
        if self.tumour is not None:
            tm = self.tumour
            ft = self._tumour_sdf(pu, pv, pw)
            delta -= tm["drop"] * np.clip(0.5 - ft / (2 * tm["margin"]), 0, 1) * (tissue != _T["pancreatic_duct"])
        return tuple(i + s.start for i, s in zip(idx, sl)), delta.astype(_F32)

    # ================================================================== orientation
    def _finish(self, hu: np.ndarray) -> PhantomCase:
        g = self.grid
        label_lut = np.zeros(256, np.uint8)
        label_lut[list(_PANCREAS_TISSUES)] = 1
        label_lut[_T["tumour"]] = 2
        label = label_lut[self.tissue]
        flips, perm = self.flips_canonical, self.perm
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
            return _fortran_copy(arr) if copy else arr

        codes = tuple(("LPI"[p] if flips[p] else "RAS"[p]) for p in perm)
        # the tissue map is not written to disk: a view is enough
        return PhantomCase(hu=orient(hu), label=orient(label), tissue=orient(self.tissue, copy=False), affine=affine,
                           spacing=tuple(float(g.spacing[p]) for p in perm), permutation=tuple(perm),
                           flips=tuple(bool(flips[p]) for p in perm), axcodes=codes,
                           has_tumour=bool((label == 2).any()), seed=self.seed)


def _fortran_copy(view: np.ndarray, block: int = 32) -> np.ndarray:
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


# ----------------------------------------------------------------------------------------------- public API
def generate_case(seed: int, scale: float = 1.0) -> PhantomCase:
    """Generate one phantom; the same (seed, scale) always gives identical arrays and affine.

    `scale` multiplies the voxel spacing (and divides the in-plane matrix), so scale=4 gives tiny volumes.
    """
    if not scale > 0:
        raise PipelineError(f"phantom scale must be > 0, got {scale}")
    with _single_torch_thread():
        return _Builder(seed, scale).build()


@contextmanager
def _single_torch_thread():
    """Many small upsampling calls: torch's intra-op thread pool only adds overhead (and stalls on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def case_seed(seed: int, index: int) -> int:
    """Seed of case `index` of a data set generated with `seed` (independent of the data set size)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def nifti_bytes(array: np.ndarray, affine: np.ndarray) -> bytes:
    """Gzipped NIfTI-1 file contents (qform and sform = affine, mm units); deterministic (gzip mtime 0)."""
    img = nib.Nifti1Image(array, affine)
    hdr = img.header
    hdr.set_data_dtype(array.dtype)
    hdr.set_qform(affine, code=1)
    hdr.set_sform(affine, code=1)
    hdr.set_xyzt_units("mm", "sec")
    hdr.set_zooms(tuple(float(z) for z in np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))))
    return gzip.compress(img.to_bytes(), compresslevel=1, mtime=0)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _generate_and_write(seed: int, scale: float, image_path: Path, label_path: Path) -> None:
    case = _Builder(seed, scale).build()
    _write_atomic(image_path, nifti_bytes(case.hu, case.affine))
    _write_atomic(label_path, nifti_bytes(case.label, case.affine))


def make_pancreas_dataset(out_dir: str | Path, n: int = 20, seed: int = 0, n_test: int | None = None,
                          scale: float = 1.0, overwrite: bool = False) -> Path:
    """Write n training phantoms (+ n_test held-out, default max(1, n // 5)) in MSD Task07 layout; return out_dir.

    dataset.json is written last, so a folder without it is an interrupted run. labelsTs/ holds the
    held-out labels (real MSD has none). With overwrite=True, files of the same names are replaced.
    """
    out = Path(out_dir)
    n = int(n)
    n_test = max(1, n // 5) if n_test is None else int(n_test)
    if n < 1 or n_test < 0:
        raise PipelineError(f"phantom data set needs n >= 1 and n_test >= 0, got n={n}, n_test={n_test}")
    meta_path = out / "dataset.json"
    if meta_path.exists():
        if not overwrite:
            raise PipelineError(f"{out} already holds a data set (dataset.json); pass overwrite=True to replace it")
        meta_path.unlink()
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    width = max(3, len(str(n + n_test - 1)))
    if not scale > 0:
        raise PipelineError(f"phantom scale must be > 0, got {scale}")
    training, test = [], []
    pending: deque[Future] = deque()
    # two cases in flight: numpy, torch and zlib release the GIL, so generation and compression use both cores
    with _single_torch_thread(), ThreadPoolExecutor(max_workers=2) as pool:
        for i in range(n + n_test):
            name = f"pancreas_{i:0{width}d}.nii.gz"
            img_dir, lab_dir = ("imagesTr", "labelsTr") if i < n else ("imagesTs", "labelsTs")
            pending.append(pool.submit(_generate_and_write, case_seed(seed, i), scale, out / img_dir / name,
                                       out / lab_dir / name))
            while len(pending) > 2:
                pending.popleft().result()
            if i < n:
                training.append({"image": f"./{img_dir}/{name}", "label": f"./{lab_dir}/{name}"})
            else:
                test.append(f"./{img_dir}/{name}")
        while pending:
            pending.popleft().result()
    meta = {
        "name": "Pancreas phantom",
        "description": ("Synthetic portal-venous abdominal CT phantoms with pancreas and pancreatic tumour labels "
                        f"(pipeline.data.pancreas_phantom, seed={seed}, scale={scale})"),
        "reference": "Synthetic; layout of the Medical Segmentation Decathlon Task07_Pancreas (Antonelli et al. 2022)",
        "licence": "CC0-1.0 (synthetic data, no patient information)",
        "release": "1.0",
        "tensorImageSize": "3D",
        "modality": {"0": "CT"},
        "labels": {"0": "background", "1": "pancreas", "2": "cancer"},
        "numTraining": n,
        "numTest": n_test,
        "training": training,
        "test": test,
    }
    _write_atomic(meta_path, (json.dumps(meta, indent=4) + "\n").encode())
    return out
