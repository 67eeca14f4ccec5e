"""Painting the abdominal organs of one case: pancreas, hollow organs (duodenum, stomach, colon, small bowel) and
solid organs (spleen, liver), called in order by ``painting.paint_tissues``. Fine texture (bowel loops, gas levels)
is drawn from the case's random generator, in painting order.
"""
from __future__ import annotations

import numpy as np
import scipy.ndimage as ndi

from pipeline.data.phantom.anatomy import Anatomy, Pancreas
from pipeline.data.phantom.canvas import TissueCanvas
from pipeline.data.phantom.geometry import (
    F32,
    Curve,
    FourierField,
    curve_tree,
    ellipsoid_sdf,
    noise_curve_distance,
    smooth_noise,
    smooth_union,
    to_local,
    tube_sdf,
)
from pipeline.data.phantom.geometry import uniform as _u
from pipeline.data.phantom.tables import GLAND_TISSUES, T, tissue_lut


# ----------------------------------------------------------------------------------------------- pancreas
def pancreas_fields(pan: Pancreas, u, v, w, tree) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Signed distances (mm) at patient points (1-D arrays) to the lobulated gland outline (grown around any
    tumour), to the duct and to the tumour (100 without one)."""
    pc = pan.curve
    metric = (1.0, 1.0, 1.0 / pan.k_p)
    tube, idx = tube_sdf(pc, tree, u, v, w, metric, reach=40)
    head = ellipsoid_sdf(u - pan.head[0], v - pan.head[1], w - pan.head[2], pan.head_radii)
    lob_fine, a_fine, lob_coarse, a_coarse = pan.lobulation
    env = smooth_union(tube, head, 6.0) + a_fine * lob_fine(u, v, w) + a_coarse * lob_coarse(u, v, w)
    duct = tube + pc.radius[idx] - pan.duct_radius[idx]
    if pan.tumour is not None:
        t = pan.tumour.sdf(u, v, w)
        env = np.minimum(env, t - pan.tumour.rim)
    else:
        t = np.full_like(env, 100.0)
    return env.astype(F32), duct.astype(F32), t.astype(F32)


def paint_pancreas(canvas: TissueCanvas, pan: Pancreas) -> tuple[slice, slice, slice]:
    """Gland, duct and tumour with a fat plane around them; returns the voxel box holding the gland."""
    pc = pan.curve
    g = canvas.grid
    reach = 6.0 + max(1.5, 1.2 * float(g.spacing[:2].max()))  # lobulation amplitude plus halo
    pad_xy = float(pc.radius.max()) + reach
    pad_z = float(pc.radius.max()) * pan.k_p + reach
    boxes = [(pc.points.min(axis=0) - [pad_xy, pad_xy, pad_z], pc.points.max(axis=0) + [pad_xy, pad_xy, pad_z]),
             (pan.head - np.array(pan.head_radii) - reach, pan.head + np.array(pan.head_radii) + reach)]
    if pan.tumour is not None:
        ext = max(pan.tumour.radii) * 1.4 + pan.tumour.rim + reach
        boxes.append((pan.tumour.centre - ext, pan.tumour.centre + ext))
    lo = np.min([b[0] for b in boxes], axis=0)
    hi = np.max([b[1] for b in boxes], axis=0)
    box = [(g.shape[a], 0) for a in range(3)]
    sl = canvas.box(lo, hi)
    if sl is None:
        return tuple(slice(a0, a1) for a0, a1 in box)
    mesh = g.mesh(sl, (1.5, 1.5, 2.0))
    near = g.near(mesh, pc.points, (pad_xy + max(mesh.h[:2]), pad_z + mesh.h[2]))
    for b_lo, b_hi in boxes[1:]:
        near |= g.near(mesh, np.array([b_lo, b_hi, (b_lo + b_hi) / 2]), (float(np.max(b_hi - b_lo)) / 2 + 3,) * 2)
    env = np.full(mesh.shape, reach, F32)
    duct = np.full(mesh.shape, reach, F32)
    tum = np.full(mesh.shape, 100.0, F32)
    tree = curve_tree(pc, (1.0, 1.0, 1.0 / pan.k_p))
    env[near], duct[near], tum[near] = pancreas_fields(pan, *mesh.points(near), tree)
    fat = (T["visceral_fat"],)
    # fat plane kept free of bowel; wider on coarse grids so blurred gas never reaches a labelled voxel
    halo = max(1.5, 1.2 * float(g.spacing[:2].max()))
    for sl, (env_f, duct_f, tum_f) in g.blocks(mesh, [env, duct, tum], need=env < halo):
        canvas.paint(sl, env_f < 0, T["pancreas"], fat)
        canvas.paint(sl, (tum_f < 0) & (env_f < 0), T["tumour"], (T["pancreas"],), respect_reserved=False)
        canvas.paint(sl, duct_f < 0, T["pancreatic_duct"], (T["pancreas"],), respect_reserved=False)
        canvas.reserve(sl, env_f < halo)
        box = [(min(a0, s.start), max(a1, s.stop)) for (a0, a1), s in zip(box, sl)]
    pancreas_box = tuple(slice(a0, a1) for a0, a1 in box)
    drop_pancreas_islands(canvas, pancreas_box)
    return pancreas_box


def drop_pancreas_islands(canvas: TissueCanvas, box: tuple[slice, slice, slice]) -> None:
    """Return small fragments cut off the gland by the lobulation noise to fat (a real gland is connected)."""
    if any(s.stop <= s.start for s in box):
        return
    sub = canvas.tissue[box]
    components, n = ndi.label(tissue_lut(GLAND_TISSUES)[sub])
    if n < 2:
        return
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    small = sizes < 0.05 * sizes.max()
    small[0] = False
    sub[small[components]] = T["visceral_fat"]


# ----------------------------------------------------------------------------------------------- hollow organs
def paint_tube_organ(canvas: TissueCanvas, anatomy: Anatomy, rng: np.random.Generator, curve: Curve, wall: float,
                     content: str, halo: float) -> None:
    """Stomach, duodenum or colon (`content`): wall, then gas above fluid (or stool with bubbles) in the lumen."""
    r, gut = rng, anatomy.gut
    fat = (T["visceral_fat"],)
    fluid = T["oral_contrast"] if gut.oral_contrast and content != "colon" else T["bowel_fluid"]
    level_field = FourierField(r, 30.0)  # gas/fluid levels: horizontal locally, at heights varying along the gut
    mottle = FourierField(r, 1.8)
    haustra_len, haustra_amp = gut.colon_haustra
    top_v = float((curve.points[:, 1] + curve.radius).max())
    coarse = (2.0, 2.0, 2.5) if content == "duodenum" else (3.0, 3.0, 3.0)
    reach = halo + 2 + (float(curve.radius.max()) * haustra_amp if content == "colon" else 0.0)
    tm = canvas.tube_mesh(curve, (1.0, 1.0, 1.0), reach, coarse)
    if tm is None:
        return
    mesh, f, idx = tm
    if content == "colon":
        f = f + (curve.radius[idx] * haustra_amp * np.cos(2 * np.pi * curve.t[idx] * len(curve.t) / haustra_len))
    for sl, (ff,) in canvas.grid.blocks(mesh, [f], need=f < halo):
        canvas.paint(sl, ff < 0, T["bowel_wall"], fat)
        lumen = (ff < -wall) & (canvas.tissue[sl] == T["bowel_wall"])
        if lumen.any():
            pu, pv, pw = canvas.grid.fine_patient(sl, lumen)
            if content == "stomach":
                gas = pv > top_v - wall - gut.stomach_gas * 2 * float(curve.radius.mean())
                ids = np.where(gas, T["bowel_gas"], fluid)
            elif content == "colon":
                gas = pv + 15 * level_field(pu, pv, pw) > gut.colon_gas_level
                bubbles = mottle(pu, pv, pw) > gut.stool_bubbles
                ids = np.where(gas | bubbles, T["bowel_gas"], T["stool"])
            else:
                gas = pv + 15 * level_field(pu, pv, pw) > gut.duodenum_gas_level
                ids = np.where(gas, T["bowel_gas"], fluid)
            sub = canvas.tissue[sl]
            sub[np.nonzero(lumen)] = ids.astype(np.uint8)
        canvas.reserve(sl, ff < halo)


def paint_small_bowel(canvas: TissueCanvas, anatomy: Anatomy, rng: np.random.Generator) -> None:
    """Loops as tubes around the intersection curves of two random fields' zero sets, plus mesenteric vessels."""
    r, bw, body, ve = rng, anatomy.small_bowel, anatomy.body, anatomy.vessels
    g = canvas.grid
    sl = canvas.box((-body.a_cav - 5, anatomy.spine.v_vb - 20, -1e4), (body.a_cav + 5, body.b_cav + 5, 1e4))
    if sl is None:
        return
    mesh = g.mesh(sl, (3.0, 3.0, 3.0))
    u, v, h, shape = mesh.u, mesh.v, mesh.h, mesh.shape
    d = np.minimum(noise_curve_distance(r, shape, h, bw.sigma), 60.0)
    presence = smooth_noise(r, shape, h, 25.0) + bw.amount
    # keep loops out of the retroperitoneum behind the vessels and kidneys
    retro = (ve.v_ao + ve.r_ao + 5 + 0.35 * np.abs(u)) - v
    tube = d + np.maximum(-presence, 0) * 25 + np.maximum(retro, 0) * 2 - bw.radius - bw.wall
    content = v + 15 * smooth_noise(r, shape, h, 20.0) - bw.gas_level  # > 0: gas above a fluid level
    md = np.minimum(noise_curve_distance(r, shape, h, 6.0), 60.0) - _u(r, 1.2, 2.0) + np.maximum(retro + 10, 0)
    fluid = T["oral_contrast"] if anatomy.gut.oral_contrast else T["bowel_fluid"]
    for sl, (tube_f, cont, md_f) in g.blocks(mesh, [tube, content, md], need=(tube < 0) | (md < 0)):
        sub = canvas.tissue[sl]
        free = (sub == T["visceral_fat"]) & ~canvas.reserved[sl]
        sub[free & (tube_f < 0)] = T["bowel_wall"]
        lumen = free & (tube_f < -bw.wall)
        sub[lumen & (cont > 0)] = T["bowel_gas"]
        sub[lumen & (cont <= 0)] = fluid
        sub[(sub == T["visceral_fat"]) & (md_f < 0)] = T["vein"]


# ----------------------------------------------------------------------------------------------- solid organs
def paint_spleen(canvas: TissueCanvas, anatomy: Anatomy) -> None:
    """Spleen: hollowed, deformed ellipsoid with a fat plane around it."""
    sp = anatomy.spleen
    c, radii, rot = np.asarray(sp.centre), sp.radii, sp.rot
    ext = max(radii) + 10
    sl = canvas.box(c - ext, c + ext)
    if sl is None:
        return
    mesh = canvas.grid.mesh(sl, (2.0, 2.0, 2.5))
    u, v, w = mesh.u, mesh.v, mesh.w
    q0, q1, q2 = to_local(u, v, w, c, rot)
    f = ellipsoid_sdf(q0, q1, q2, radii)
    off, frac = sp.hollow
    hollow = ellipsoid_sdf(q0 + off, q1, q2, (radii[0] * 1.4, radii[1] * frac + 10, radii[2] * frac + 10))
    field, amp = sp.deform
    f = np.maximum(f, -hollow) + amp * field(u, v, w)
    for sl, (ff,) in canvas.grid.blocks(mesh, [f], need=f < 2):
        canvas.paint(sl, ff < 0, T["spleen"], (T["visceral_fat"],))
        canvas.reserve(sl, ff < 2.0)


def paint_liver(canvas: TissueCanvas, anatomy: Anatomy, rng: np.random.Generator) -> None:
    """Liver with a tangle of intrahepatic vessels, and the gallbladder when there is one."""
    lv = anatomy.liver
    (c1, r1), (c2, r2) = lv.right, lv.left
    lo = np.minimum(np.subtract(c1, r1), np.subtract(c2, r2)) - 12
    hi = np.maximum(np.add(c1, r1), np.add(c2, r2)) + 12
    sl = canvas.box(lo, hi)
    if sl is None:
        return
    mesh = canvas.grid.mesh(sl, (2.0, 2.0, 3.0))
    u, v, w, h = mesh.u, mesh.v, mesh.w, mesh.h
    f = smooth_union(ellipsoid_sdf(u - c1[0], v - c1[1], w - c1[2], r1),
                     ellipsoid_sdf(u - c2[0], v - c2[1], w - c2[2], r2), 15.0)
    big, a_big, small, a_small = lv.deform
    inside = f < a_big + a_small + 1
    f[inside] += a_big * big(*mesh.points(inside)) + a_small * small(*mesh.points(inside))
    # intrahepatic vessels: the same two-field tube trick as the small bowel
    vessel = noise_curve_distance(rng, f.shape, h, 9.0) - lv.vessel_radius
    for sl, (ff, vf) in canvas.grid.blocks(mesh, [f, vessel], need=f < 0):
        canvas.paint(sl, ff < 0, T["liver"], (T["visceral_fat"],))
        canvas.paint(sl, (vf < 0) & (ff < -6), T["hepatic_vessel"], (T["liver"],), respect_reserved=False)
    gb = anatomy.gallbladder
    if gb is not None:
        c = np.asarray(gb.centre)
        ext = max(gb.radii) + 4
        gsl = canvas.box(c - ext, c + ext)
        if gsl is not None:
            gm = canvas.grid.mesh(gsl, (1.5, 1.5, 2.5))
            gf = ellipsoid_sdf(*to_local(gm.u, gm.v, gm.w, c, gb.rot), gb.radii)
            onto = (T["liver"], T["visceral_fat"], T["hepatic_vessel"])
            for gsl, (ff,) in canvas.grid.blocks(gm, [gf], need=gf < 0):
                canvas.paint(gsl, ff < 0, T["gallbladder"], onto, respect_reserved=False)
