"""Rendering Hounsfield units from a painted tissue map.

Each tissue gets a per-case mean drawn from ``HU_MEAN_RANGE`` plus a smooth inhomogeneity; the pancreas gets
lobular fatty texture and the tumour its ill-defined hypodensity. CT noise is white noise that the in-plane blur
turns into correlated, near-Gaussian noise; voxels outside the reconstruction circle are -1024. The result is
int16, clipped to [-1024, 3071].
"""
from __future__ import annotations

import numpy as np
import scipy.ndimage as ndi

from pipeline.data.phantom.anatomy import Pancreas
from pipeline.data.phantom.geometry import F32, smooth_noise
from pipeline.data.phantom.geometry import uniform as _u
from pipeline.data.phantom.grid import Grid
from pipeline.data.phantom.painting import TissueMap
from pipeline.data.phantom.scan import Scan
from pipeline.data.phantom.tables import GLAND_TISSUES, HU_MEAN_RANGE, HU_TEXTURE, TISSUES, T, tissue_lut


def render_hu(tissues: TissueMap, pancreas: Pancreas, scan: Scan, rng: np.random.Generator) -> np.ndarray:
    """int16 HU volume (canonical RAS array order, Fortran layout) of the painted `tissues`, noise from `rng`."""
    r = rng
    mean = np.zeros(256, F32)
    tex = np.zeros(256, F32)
    for name in TISSUES:
        mean[TISSUES[name]] = _u(r, *HU_MEAN_RANGE[name])
        tex[TISSUES[name]] = HU_TEXTURE.get(name, 0.0)
    mean[T["artery"]] = mean[T["aorta"]] - _u(r, 0, 25)
    mean[T["tumour"]] = mean[T["pancreas"]]
    g = scan.grid
    full = tuple(slice(0, n) for n in g.shape)
    mesh = g.mesh(full, (6.0, 6.0, 6.0))
    ((_, (texture,)),) = g.blocks(mesh, [smooth_noise(r, mesh.shape, mesh.h, 5.0)], fortran=True)
    gland_idx, gland_delta = pancreas_hu_offsets(tissues, pancreas, g, mean)
    # CT noise: uniform white noise that the in-plane blur turns into correlated, near-Gaussian noise
    kernel = gaussian_kernel(scan.blur_sigma_vox)
    noise_gain = F32(scan.noise_sd / float(np.sum(kernel**2)) / 73.9)  # 73.9 = std of uniform int8
    xs, ys = g.axes[0] - scan.fov_centre[0], g.axes[1] - scan.fov_centre[1]
    outside = (xs[:, None] ** 2 + ys[None, :] ** 2) > (scan.fov / 2) ** 2
    tissue = tissues.tissue
    out = np.empty(g.shape, np.int16, order="F")
    slab = 8  # axial slices per pass: keeps the arithmetic in cache
    for z0 in range(0, g.shape[2], slab):
        zs = slice(z0, min(z0 + slab, g.shape[2]))
        t = tissue[:, :, zs]
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


def gaussian_kernel(sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian kernel (float32) of standard deviation `sigma` voxels, radius about 2.5 sigma."""
    radius = max(1, int(2.5 * sigma + 0.5))
    x = np.arange(-radius, radius + 1)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).astype(F32)


def pancreas_hu_offsets(tissues: TissueMap, pancreas: Pancreas, grid: Grid,
                        mean: np.ndarray) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """HU offsets of the gland voxels: lobular fatty texture and the ill-defined hypodense tumour.
    Returns (voxel indices, offsets); `mean` is the per-tissue mean HU of the case."""
    none = (tuple(np.zeros(0, int) for _ in range(3)), np.zeros(0, F32))
    sl = tissues.pancreas_box
    if any(s.stop <= s.start for s in sl):
        return none
    sub = tissues.tissue[sl]
    gland = tissue_lut(GLAND_TISSUES)[sub]
    if not gland.any():
        return none
    fat_field, strength, share = pancreas.fat
    pu, pv, pw = grid.fine_patient(sl, gland)
    idx = np.nonzero(gland)
    tissue = sub[idx]
    fatty = np.clip((fat_field(pu, pv, pw) - strength) * share, 0, 0.8)
    fatty[tissue != T["pancreas"]] = 0
    delta = fatty * (mean[T["visceral_fat"]] - mean[T["pancreas"]])
    tm = pancreas.tumour
    if tm is not None:
        ft = tm.sdf(pu, pv, pw)
        profile = np.clip(0.5 - ft / (2 * tm.margin), 0, 1) * (tissue != T["pancreatic_duct"])
        delta -= tumour_drop(tm, tissue, ft, delta, profile) * profile
    return tuple(i + s.start for i, s in zip(idx, sl)), delta.astype(F32)


def tumour_drop(tm, tissue: np.ndarray, ft: np.ndarray, delta: np.ndarray, profile: np.ndarray) -> float:
    """The tumour's peak hypodensity (HU): `tm.drop` as drawn, or, when `tm.contrast` is set, the drop that makes the
    gland within 5 mm of the tumour minus the tumour `tm.contrast` HU before noise and blur. Both means are linear
    in the drop: contrast = (fat offset of the shell - of the tumour) + drop x (profile in the tumour - in the shell),
    the fatty texture lowering the gland and the ill-defined margin darkening the gland next to the tumour."""
    if tm.contrast is None:
        return float(tm.drop)
    inside = tissue == T["tumour"]
    shell = ~inside & (tissue == T["pancreas"]) & (ft <= 5.0)
    if not inside.any() or not shell.any():
        return float(tm.drop)
    gain = float(profile[inside].mean() - profile[shell].mean())
    fat = float(delta[shell].mean() - delta[inside].mean())
    return float(np.clip((tm.contrast - fat) / max(gain, 0.05), 0.0, 150.0))
