"""Shape primitives in patient millimetre coordinates (u right, v anterior, w superior).

Approximate signed distance functions (negative inside), smooth random fields, rotations, and tubes around
cubic-spline centre lines. Nothing here knows about organs or voxel grids; every random draw comes from the
generator passed in, so the caller fixes the draw order.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.ndimage as ndi
from scipy.interpolate import CubicSpline
from scipy.spatial import cKDTree

F32 = np.float32


def uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    """One draw from U(lo, hi) as a Python float."""
    return float(rng.uniform(lo, hi))


class FourierField:
    """Smooth random field (unit variance) as a sum of random plane waves; evaluable anywhere, so
    pieces of one shape evaluated in different boxes stay continuous."""

    def __init__(self, rng: np.random.Generator, sigma_mm: float, n_modes: int = 24):
        self.k = (rng.standard_normal((n_modes, 3)) / sigma_mm).astype(F32)
        self.phase = rng.uniform(0.0, 2 * np.pi, n_modes).astype(F32)
        self.amp = F32(np.sqrt(2.0 / n_modes))

    def __call__(self, u, v, w) -> np.ndarray:
        shape = np.broadcast_shapes(np.shape(u), np.shape(v), np.shape(w))
        out = np.zeros(shape, F32)
        for (kx, ky, kz), ph in zip(self.k, self.phase):
            out += np.cos(kx * u + ky * v + (kz * w + ph))
        out *= self.amp
        return out


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], spacing: tuple[float, ...],
                 sigma_mm: float) -> np.ndarray:
    """Gaussian-filtered white noise on a grid, normalised to unit standard deviation."""
    field = rng.standard_normal(shape, dtype=F32)
    ndi.gaussian_filter(field, [sigma_mm / s for s in spacing], output=field, mode="reflect", truncate=3.0)
    std = float(field.std())
    return field / F32(std if std > 0 else 1.0)


def noise_curve_distance(rng: np.random.Generator, shape: tuple[int, int, int], spacing: tuple[float, ...],
                         sigma_mm: float) -> np.ndarray:
    """Approximate distance (mm) to the curves where the zero sets of two smooth random fields intersect:
    a tangle of random tubes once a radius is subtracted (small bowel loops, intrahepatic vessels)."""
    squares = []
    for _ in range(2):
        field = smooth_noise(rng, shape, spacing, sigma_mm)
        grad = np.gradient(field, *spacing) if min(shape) > 1 else [np.ones_like(field)] * 3
        squares.append((field / (np.sqrt(grad[0] ** 2 + grad[1] ** 2 + grad[2] ** 2) + 1e-3)) ** 2)
    return np.sqrt(squares[0] + squares[1])


def ellipsoid_sdf(d0, d1, d2, radii) -> np.ndarray:
    """Approximate signed distance (mm) to an axis-aligned ellipsoid, coordinates relative to its centre."""
    r0, r1, r2 = radii
    k0 = np.sqrt((d0 / r0) ** 2 + (d1 / r1) ** 2 + (d2 / r2) ** 2)
    k1 = np.sqrt((d0 / r0**2) ** 2 + (d1 / r1**2) ** 2 + (d2 / r2**2) ** 2)
    return (k0 * (k0 - 1.0) / np.maximum(k1, 1e-6)).astype(F32, copy=False)


def ellipse_sdf(du, dv, rx: float, ry: float) -> np.ndarray:
    """Approximate signed distance (mm) to an axis-aligned ellipse (an elliptic cylinder along w)."""
    k0 = np.sqrt((du / rx) ** 2 + (dv / ry) ** 2)
    k1 = np.sqrt((du / rx**2) ** 2 + (dv / ry**2) ** 2)
    return (k0 * (k0 - 1.0) / np.maximum(k1, 1e-6)).astype(F32, copy=False)


def box_sdf(d0, d1, d2, half) -> np.ndarray:
    """Signed distance (mm) to an axis-aligned box of half-sizes `half`, coordinates relative to its centre."""
    q0, q1, q2 = np.abs(d0) - half[0], np.abs(d1) - half[1], np.abs(d2) - half[2]
    outside = np.sqrt(np.maximum(q0, 0) ** 2 + np.maximum(q1, 0) ** 2 + np.maximum(q2, 0) ** 2)
    return (outside + np.minimum(np.maximum(np.maximum(q0, q1), q2), 0)).astype(F32, copy=False)


def smooth_union(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Smooth union of two distance fields (blend width k mm)."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return (b * (1 - h) + a * h - k * h * (1 - h)).astype(F32, copy=False)


def rotation(yaw: float, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """Rotation matrix (columns = local axes in patient coordinates): yaw about w, pitch about u, roll about v."""
    cz, sz = np.cos(yaw), np.sin(yaw)
    cx, sx = np.cos(pitch), np.sin(pitch)
    cy, sy = np.cos(roll), np.sin(roll)
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    return rz @ rx @ ry


def to_local(u, v, w, centre, rot: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Patient coordinates relative to `centre`, expressed along the local axes (columns) of `rot`."""
    du, dv, dw = u - centre[0], v - centre[1], w - centre[2]
    return tuple((rot[0, i] * du + rot[1, i] * dv + rot[2, i] * dw).astype(F32) for i in range(3))


@dataclass
class Curve:
    """Centre line of a tube, sampled about 1 mm apart, with its radius along the way."""

    points: np.ndarray  # (N, 3) patient mm
    radius: np.ndarray  # (N,) mm
    t: np.ndarray  # (N,) 0..1 along the curve


def make_curve(ctrl, radii, step: float = 1.0) -> Curve:
    """Natural cubic spline through control points (chord-length parameter), radii interpolated linearly."""
    ctrl = np.asarray(ctrl, float)
    chord = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(ctrl, axis=0), axis=1))])
    spline = CubicSpline(chord, ctrl, axis=0, bc_type="natural")
    s = np.linspace(0.0, chord[-1], max(2, int(chord[-1] / step) + 1))
    return Curve(spline(s), np.interp(s, chord, radii), s / chord[-1])


def curve_tree(curve: Curve, metric=(1.0, 1.0, 1.0)) -> cKDTree:
    """k-d tree of the curve samples in the metric scaled by `metric` per axis (for `tube_sdf`)."""
    return cKDTree(curve.points * np.asarray(metric))


def tube_sdf(curve: Curve, tree: cKDTree, u, v, w, metric=(1.0, 1.0, 1.0),
             reach: float = 20.0) -> tuple[np.ndarray, np.ndarray]:
    """Distance of points (1-D arrays) to the curve in the scaled metric minus the local radius (capped at
    `reach`), and the index of the nearest curve sample."""
    q = np.stack([u * metric[0], v * metric[1], w * metric[2]], axis=1)
    d, idx = tree.query(q, distance_upper_bound=float(curve.radius.max()) + reach)
    idx = np.minimum(idx, len(curve.radius) - 1)
    f = np.minimum(d - curve.radius[idx], reach).astype(F32)
    return f, idx
