"""Painting one case's tissue map from its anatomy, organ by organ.

``paint_tissues`` evaluates each organ's implicit shape on a coarse mesh over its bounding box, upsamples it onto
the voxels and paints tissue classes into a ``TissueCanvas``. Most painters only take intra-abdominal fat outside
the fat planes reserved around earlier organs, so the call order sets who wins an overlap. Fine texture that is
not part of the anatomy description (vessel tangles, bowel loops, gas levels, calcified spots) is drawn from the
same random generator, in painting order.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.ndimage as ndi

from pipeline.data.phantom.anatomy import Anatomy, Pancreas
from pipeline.data.phantom.canvas import TissueCanvas
from pipeline.data.phantom.geometry import (
    F32,
    Curve,
    FourierField,
    box_sdf,
    curve_tree,
    ellipse_sdf,
    ellipsoid_sdf,
    make_curve,
    noise_curve_distance,
    smooth_noise,
    smooth_union,
    to_local,
    tube_sdf,
)
from pipeline.data.phantom.geometry import uniform as _u
from pipeline.data.phantom.scan import Scan
from pipeline.data.phantom.tables import GLAND_TISSUES, T, tissue_lut


@dataclass
class TissueMap:
    """The painted tissue classes of one case (canonical RAS array order, Fortran layout)."""

    tissue: np.ndarray  # uint8 ids in TISSUES
    pancreas_box: tuple[slice, slice, slice]  # voxel box holding every gland voxel (empty slices: no gland)


def paint_tissues(anatomy: Anatomy, scan: Scan, rng: np.random.Generator) -> TissueMap:
    """Paint every organ of `anatomy` onto the voxel grid of `scan`, drawing texture detail from `rng`."""
    canvas = TissueCanvas(scan.grid, scan.w_range)
    gut = anatomy.gut
    paint_body(canvas, anatomy)
    paint_lungs(canvas, anatomy)
    paint_spine(canvas, anatomy)
    paint_ribs(canvas, anatomy)
    paint_retroperitoneal_muscles(canvas, anatomy, rng)
    paint_great_vessels(canvas, anatomy, rng)
    paint_kidneys(canvas, anatomy, rng)
    paint_branch_vessels(canvas, anatomy, rng)
    pancreas_box = paint_pancreas(canvas, anatomy.pancreas)
    paint_tube_organ(canvas, anatomy, rng, gut.duodenum, wall=2.5, content="duodenum", halo=1.0)
    paint_tube_organ(canvas, anatomy, rng, gut.stomach, wall=gut.stomach_wall, content="stomach", halo=2.0)
    paint_tube_organ(canvas, anatomy, rng, gut.colon, wall=2.0, content="colon", halo=2.0)
    paint_spleen(canvas, anatomy)
    paint_liver(canvas, anatomy, rng)
    paint_small_bowel(canvas, anatomy, rng)
    return TissueMap(canvas.tissue, pancreas_box)


# ----------------------------------------------------------------------------------------------- body wall
def paint_body(canvas: TissueCanvas, anatomy: Anatomy) -> None:
    """Air, skin, subcutaneous fat, muscle wall (with thin intermuscular fat planes) and intra-abdominal fat."""
    g, body = canvas.grid, anatomy.body
    mesh = g.mesh(tuple(slice(0, n) for n in g.shape), (2.0, 2.0, 6.0))
    u, v, w = mesh.u, mesh.v, mesh.w
    rad, th = np.hypot(u, v), np.arctan2(v, u)
    depth = body.body_radius(th, w) - rad
    b1 = body.t_skin
    b2 = b1 + body.fat_thickness(th)
    b3 = b2 + body.muscle_thickness(th, u, v)
    # layer coordinate: 0 at the skin surface, 1 / 2 / 3 at the inner faces of skin / fat / muscle
    phi = np.where(depth < b1, depth / b1,
                   np.where(depth < b2, 1 + (depth - b1) / (b2 - b1),
                            np.where(depth < b3, 2 + (depth - b2) / (b3 - b2), 3 + (depth - b3) / 10.0)))
    lut = np.array([T["air"], T["skin"], T["subcutaneous_fat"], T["muscle"], T["visceral_fat"]], np.uint8)
    phi = np.ascontiguousarray(phi, dtype=F32)
    for crop, sl, size, keep in g.block_plan(mesh, need=phi >= 0):  # blocks touching the body
        if phi[crop].min() >= 3:  # interpolation stays within the node range: all intra-abdominal
            canvas.tissue[sl] = T["visceral_fat"]
            continue
        (phi_f,) = g.upsample([phi[crop]], size, keep, fortran=True)
        np.clip(phi_f + 1, 0, 4, out=phi_f)
        canvas.tissue[sl] = lut[phi_f.astype(np.uint8)]
    # thin fat planes between external oblique, internal oblique and transversus in the lateral wall
    lateral = np.clip((np.abs(np.cos(th)) - 0.55) * 5, 0, 1) * (np.sin(th) > -0.5)
    wobble = 0.06 * np.sin(3 * th + body.fat_harm[3]) + 0.04 * np.sin(w / 23.0)
    planes = [depth - (b2 + (frac + wobble) * (b3 - b2)) for frac in body.wall_planes]
    need = (lateral > 0.5) & ((np.abs(planes[0]) < 2) | (np.abs(planes[1]) < 2))
    for sl, (lat_f, p1, p2) in g.blocks(mesh, [lateral, *planes], need=need):
        fat = (lat_f > 0.5) & ((np.abs(p1) < body.wall_plane_half) | (np.abs(p2) < body.wall_plane_half))
        canvas.paint(sl, fat, T["subcutaneous_fat"], (T["muscle"],))


def paint_lungs(canvas: TissueCanvas, anatomy: Anatomy) -> None:
    """Posterior costophrenic recesses in the upper slices, under a thin diaphragm."""
    lungs, body = anatomy.lungs, anatomy.body
    if canvas.w_range[1] < lungs.w_base:
        return
    g = canvas.grid
    sl = canvas.box((-1e4, -1e4, lungs.w_base), (1e4, 1e4, 1e4))
    if sl is None:
        return
    mesh = g.mesh(sl, (2.0, 2.0, 3.0))
    u, v, w = mesh.u, mesh.v, mesh.w
    th = np.arctan2(v, u)
    inner = body.cavity_radius(th, w) - np.hypot(u, v)  # depth inside the cavity
    back = np.clip(-np.sin(th) * 1.6 - 0.3, 0, 1) * np.clip((np.abs(np.cos(th)) - 0.12) * 4, 0, 1)
    lung_depth = np.clip((w - lungs.w_base) * lungs.slope, 0, 45) * back
    f = inner - lung_depth
    for sl, (f_in, f_depth) in g.blocks(mesh, [f, lung_depth], need=(lung_depth > 0) & (f < 4)):
        cav = (canvas.tissue[sl] == T["visceral_fat"]) & (f_depth > 1.0)
        canvas.paint(sl, cav & (f_in < 0), T["lung"])
        canvas.paint(sl, cav & (f_in >= 0) & (f_in < 3.5), T["muscle"])


# ----------------------------------------------------------------------------------------------- skeleton
def paint_spine(canvas: TissueCanvas, anatomy: Anatomy) -> None:
    """Vertebral bodies with cortical rim, discs, spinal canal, arches, pedicles and processes."""
    g, sp, body = canvas.grid, anatomy.spine, anatomy.body
    reach = sp.rcx + 40
    sl = canvas.box((-reach, body.v_pm - body.t_post - 5, -1e4), (reach, sp.v_vb + sp.ry_vb + 3, 1e4))
    if sl is None:
        return
    mesh = g.mesh(sl, (1.25, 1.25, 2.0))
    u, v, w = mesh.u, mesh.v, mesh.w
    P = sp.period
    zp = np.mod(w - sp.w_disc0, P)  # position within one vertebral level, disc centred at 0 / P
    dz = np.minimum(zp, P - zp) - sp.t_disc / 2  # < 0 inside the disc slab
    vb = ellipse_sdf(u, v - sp.v_vb, sp.rx_vb, sp.ry_vb)
    notch = ellipse_sdf(u, v - (sp.v_vb - sp.ry_vb - 3), sp.rx_vb * 0.35, 6.0)
    vb = np.maximum(vb, -notch)
    canal = ellipse_sdf(u, v - sp.v_c, sp.rcx, sp.rcy)
    dv = v - sp.v_c
    ring = np.maximum(np.maximum(ellipse_sdf(u, dv, sp.rcx + sp.t_arch, sp.rcy + sp.t_arch), -canal),
                      dv - sp.rcy * 0.2)
    post = np.maximum(ring, np.abs(zp - P * 0.5) - P * 0.33)
    ped = box_sdf(np.abs(u) - (sp.rcx + sp.t_arch / 2 - 1), v - (sp.v_c + sp.v_vb - sp.ry_vb * 0.5) / 2,
                  zp - P * 0.5, (sp.t_arch / 2, (sp.v_vb - sp.ry_vb * 0.5 - sp.v_c) / 2, P * 0.3))
    sp_len = sp.spinous_len
    spinous = box_sdf(u, dv + sp.rcy + sp.t_arch + sp_len / 2 - 2, zp - P * 0.55 - dv * 0.25,
                      (3.0, sp_len / 2, P * 0.2))
    tp = box_sdf(np.abs(u) - (sp.rcx + 15), dv - 3, zp - P * 0.55, (15.0, 3.5, P * 0.1))
    post = np.minimum(np.minimum(post, ped), np.minimum(spinous, tp))
    need = (vb < 1) | (canal < 0) | (post < 0)
    for sl, (vb_f, dz_f, canal_f, post_f) in g.blocks(mesh, [vb, dz, canal, post], need=need):
        vertebra = (vb_f < 0) & (dz_f >= 0)
        cort = vertebra & ((vb_f > -sp.t_cort) | (dz_f < sp.t_cort))
        canvas.paint(sl, vertebra & ~cort, T["bone_cancellous"], respect_reserved=False)
        canvas.paint(sl, cort, T["bone_cortical"], respect_reserved=False)
        canvas.paint(sl, (vb_f < 1.0) & (dz_f < 0), T["intervertebral_disc"], respect_reserved=False)
        canvas.paint(sl, (post_f < 0) & (post_f > -1.5), T["bone_cortical"], respect_reserved=False)
        canvas.paint(sl, post_f <= -1.5, T["bone_cancellous"], respect_reserved=False)
        canvas.paint(sl, canal_f < 0, T["spinal_canal"], respect_reserved=False)


def paint_ribs(canvas: TissueCanvas, anatomy: Anatomy) -> None:
    """Lower ribs inside the muscle wall, cortical shell around cancellous bone."""
    body = anatomy.body
    for rib in anatomy.ribs:
        psi = np.radians(np.linspace(rib.psi0, rib.psi1, 24))
        th = -np.pi / 2 + rib.side * psi
        w = rib.w0 - (psi - psi[0]) * rib.slope
        if w.min() > canvas.w_range[1] + 10 or w.max() < canvas.w_range[0] - 10:
            continue
        depth = body.t_skin + body.fat_thickness(th) + np.minimum(body.muscle_thickness(th) * 0.8, 30) + 1
        rad = body.body_radius(th, w) - depth
        pts = np.stack([rad * np.cos(th), rad * np.sin(th), w], axis=1)
        curve = make_curve(pts, np.full(len(pts), rib.radius))
        canvas.paint_tube(curve, metric=(1.0, 1.0, 1 / 1.4), layers=[(0.0, T["bone_cortical"]),
                          (-1.2, T["bone_cancellous"])], onto=(T["muscle"], T["visceral_fat"], T["lung"]),
                          respect_reserved=False, coarse=(2.0, 2.0, 2.5))


# ----------------------------------------------------------------------------------------------- muscles, vessels
def paint_retroperitoneal_muscles(canvas: TissueCanvas, anatomy: Anatomy, rng: np.random.Generator) -> None:
    """Psoas against the vertebral body, growing caudally; quadratus lumborum behind."""
    r, sp, body = rng, anatomy.spine, anatomy.body
    fat = (T["visceral_fat"],)
    for side in (-1, 1):
        radii = [3.0, _u(r, 7, 11), _u(r, 15, 22)]
        ws = [50.0, 0.0, -110.0]
        pts = [(side * (sp.rx_vb + rr * 0.75), sp.v_vb - sp.ry_vb * 0.2 + (0 if k < 2 else 6), wk)
               for k, (rr, wk) in enumerate(zip(radii, ws))]
        canvas.paint_tube(make_curve(pts, radii), [(0.0, T["muscle"])], onto=fat, metric=(1.0, 0.85, 1.0), halo=1.5,
                          coarse=(2.0, 2.0, 3.0))
        ql = _u(r, 9, 14)
        x = side * (sp.rx_vb + _u(r, 30, 40))
        ctrl = [(x, body.v_pm + ql * 0.3, _u(r, 15, 35)), (x * 1.1, body.v_pm + ql * 0.4, -150)]
        canvas.paint_tube(make_curve(ctrl, [ql * 0.4, ql * 1.2]), [(0.0, T["muscle"])], onto=fat,
                          metric=(0.7, 1.0, 1.0), halo=1.5, coarse=(2.0, 2.0, 3.0))


def paint_great_vessels(canvas: TissueCanvas, anatomy: Anatomy, rng: np.random.Generator) -> None:
    """Aorta (with wall calcifications when drawn), inferior vena cava and the diaphragmatic crura."""
    ve, sp = anatomy.vessels, anatomy.spine
    fat_muscle = (T["visceral_fat"], T["muscle"])
    ws = np.array([200.0, 0.0, -250.0])
    ao = make_curve([(ve.u_ao + ve.ao_drift * wk / 100, ve.v_ao, wk) for wk in ws],
                    [ve.r_ao, ve.r_ao, ve.r_ao * 0.9])
    canvas.paint_tube(ao, [(0.0, T["aorta"])], onto=fat_muscle, halo=1.5, coarse=(1.25, 1.25, 2.5))
    if ve.calcified:
        paint_calcification(canvas, ao, rng)
    ivc = make_curve([(ve.u_ivc + 3, ve.v_ivc + 4, 200), (ve.u_ivc, ve.v_ivc, 0),
                      (ve.u_ivc - 2, ve.v_ivc - 2, -250)], [ve.rx_ivc] * 3)
    canvas.paint_tube(ivc, [(0.0, T["ivc"])], onto=fat_muscle, metric=(1.0, ve.rx_ivc / ve.ry_ivc, 1.0), halo=1.0)
    r = rng
    for side in (-1, 1):  # diaphragmatic crura wrapping the aorta
        ux = ve.u_ao + side * (ve.r_ao + 4)
        crus = make_curve([(ux + side * 4, sp.v_vb + sp.ry_vb * 0.3, -40), (ux, ve.v_ao, 5),
                           (ve.u_ao + side * ve.r_ao * 0.5, ve.v_ao + ve.r_ao + 5, 45)], [_u(r, 3, 6)] * 3)
        canvas.paint_tube(crus, [(0.0, T["muscle"])], onto=(T["visceral_fat"],), respect_reserved=False)


def paint_calcification(canvas: TissueCanvas, aorta: Curve, rng: np.random.Generator) -> None:
    """Spotty calcified plaques in the aortic wall."""
    r = rng
    spots = FourierField(r, 2.5)
    threshold = _u(r, 1.2, 1.9)
    tm = canvas.tube_mesh(aorta, (1.0, 1.0, 1.0), 2.0, (1.0, 1.0, 2.0))
    if tm is None:
        return
    mesh, f, _ = tm
    for sl, (ff,) in canvas.grid.blocks(mesh, [f], need=(f < 0.5) & (f > -3)):
        wall = (ff > -2.5) & (ff < 0.5) & (canvas.tissue[sl] == T["aorta"])
        if not wall.any():
            continue
        spot = spots(*canvas.grid.fine_patient(sl, wall)) > threshold
        sub = canvas.tissue[sl]
        sub[tuple(a[spot] for a in np.nonzero(wall))] = T["calcification"]


def paint_kidneys(canvas: TissueCanvas, anatomy: Anatomy, rng: np.random.Generator) -> None:
    """Kidneys: cortex, medullary pyramids and renal sinus fat, each with a perirenal fat plane."""
    for k in anatomy.kidneys:
        c, (rl, ra, rz), rot = k.centre, k.radii, k.rot
        ext = max(rl, ra, rz) + 12
        sl = canvas.box(np.array(c) - ext, np.array(c) + ext)
        if sl is None:
            continue
        mesh = canvas.grid.mesh(sl, (1.5, 1.5, 2.5))
        q0, q1, q2 = to_local(mesh.u, mesh.v, mesh.w, c, rot)
        kid = ellipsoid_sdf(q0, q1, q2, (rl, ra, rz))
        sinus = ellipsoid_sdf(q0 + 0.55 * rl, q1, q2, (0.55 * rl, 0.45 * ra, 0.6 * rz))
        rho = np.sqrt((q0 / rl) ** 2 + (q1 / ra) ** 2 + (q2 / rz) ** 2)
        ang = np.arctan2(q1 / ra, q0 / rl + 0.25)
        pyramids = (np.cos(k.n_pyr * ang) + 0.25) * np.cos(np.pi * 2.2 * q2 / rz)
        medulla = np.maximum(np.maximum(rho - 0.76, 0.4 - rho) * 20, -pyramids * 6)  # < 0 inside a pyramid
        halo = rng.uniform(4, 10)
        fat = (T["visceral_fat"],)
        for sl, (kid_f, sin_f, med_f) in canvas.grid.blocks(mesh, [kid, sinus, medulla], need=kid < halo):
            inside = kid_f < 0
            canvas.paint(sl, inside & (sin_f < 0), T["renal_sinus_fat"], fat)
            canvas.paint(sl, inside & (sin_f >= 0) & (sin_f < 2.5), T["kidney_cortex"], fat)
            canvas.paint(sl, inside & (sin_f >= 2.5) & (med_f < 0), T["kidney_medulla"], fat)
            canvas.paint(sl, inside & (sin_f >= 2.5) & (med_f >= 0), T["kidney_cortex"], fat)
            canvas.reserve(sl, kid_f < halo)


def paint_branch_vessels(canvas: TissueCanvas, anatomy: Anatomy, rng: np.random.Generator) -> None:
    """Mesenteric, coeliac, splenic, hepatic and renal arteries; renal, mesenteric, portal and splenic veins."""
    r, ve, sp = rng, anatomy.vessels, anatomy.spine
    pan = anatomy.pancreas
    fat = (T["visceral_fat"], T["renal_sinus_fat"], T["muscle"])
    v_front = ve.v_ao + ve.r_ao
    # superior mesenteric artery and coeliac branches
    sma = make_curve([(ve.u_ao, ve.v_ao + ve.r_ao * 0.5, ve.w_sma0 + 4),
                      (ve.u_sma, ve.v_sma - 2, ve.w_sma0 - 8), (ve.u_sma + 1, ve.v_sma + 8, -30),
                      (ve.u_sma + 3, ve.v_sma + 14, -70), (ve.u_sma + 6, ve.v_sma + 20, -250)], [ve.r_sma] * 5)
    canvas.paint_tube(sma, [(0.0, T["artery"])], onto=fat, halo=_u(r, 3, 6), respect_reserved=False)
    tip = (ve.u_ao + 2, v_front + 12, ve.w_celiac + 3)
    ra = _u(r, 2.2, 3.2)
    canvas.paint_tube(make_curve([(ve.u_ao, ve.v_ao + ve.r_ao * 0.5, ve.w_celiac), tip], [ra + 0.8] * 2),
                      [(0.0, T["artery"])], onto=fat, respect_reserved=False)
    hep = make_curve([tip, (ve.u_ivc, v_front + 14, ve.w_celiac + 2), (ve.u_ivc + 15, v_front + 22, 50)], [ra] * 3)
    canvas.paint_tube(hep, [(0.0, T["artery"])], onto=fat, respect_reserved=False)
    # splenic artery: tortuous along the upper border of the pancreas body and tail
    pc = pan.curve
    sel = pc.t > 0.45
    pts = pc.points[sel][::8].copy()
    pts[:, 2] += pc.radius[sel][::8] * pan.k_p + ra + 1
    pts[:, 1] += np.sin(np.arange(len(pts)) * _u(r, 0.9, 1.6)) * _u(r, 2, 6)
    canvas.paint_tube(make_curve(np.vstack([tip, pts]), [ra] * (len(pts) + 1)), [(0.0, T["artery"])], onto=fat,
                      respect_reserved=False)
    # renal arteries and veins
    for k in anatomy.kidneys:
        h = k.hilum()
        hw = k.hilum_w
        art = make_curve([(ve.u_ao + k.side * ve.r_ao * 0.7, ve.v_ao - 2, hw + 4),
                          ((ve.u_ao + h[0]) / 2, sp.v_vb + sp.ry_vb - 2, hw + 2), (h[0], h[1] - 3, hw)], [ra] * 3)
        canvas.paint_tube(art, [(0.0, T["artery"])], onto=fat, respect_reserved=False)
        rv = _u(r, 4, 6)
        if k.side < 0:  # left renal vein passes between the aorta and the SMA
            ctrl = [(h[0], h[1] + 3, hw), (ve.u_ao - ve.r_ao - 6, v_front + 2, hw + 3),
                    (ve.u_ao, v_front + rv * 0.7 + 0.5, ve.w_sma0 - 6), (ve.u_ivc, ve.v_ivc, ve.w_sma0 - 6)]
        else:
            ctrl = [(h[0], h[1] + 3, hw), (ve.u_ivc + 2, ve.v_ivc, hw + 5)]
        canvas.paint_tube(make_curve(ctrl, [rv] * len(ctrl)), [(0.0, T["vein"])], onto=fat, respect_reserved=False)
    # superior mesenteric vein, portal vein and splenic vein
    conf = (ve.u_smv, ve.v_smv, 0.0)
    smv = make_curve([(ve.u_smv + 4, ve.v_smv + 6, -250), (ve.u_smv + 1, ve.v_smv + 2, -40), conf], [ve.r_smv] * 3)
    canvas.paint_tube(smv, [(0.0, T["vein"])], onto=fat, halo=1.0, respect_reserved=False)
    pv = make_curve([conf, (ve.u_smv + 12, ve.v_smv - 4, 18),
                     (ve.u_ivc + 8, ve.v_ivc + ve.ry_ivc + ve.r_pv + 6, 40),
                     (ve.u_ivc + 30, ve.v_ivc + ve.ry_ivc + 15, 70), (ve.u_ivc + 50, ve.v_ivc + 10, 95)],
                    [ve.r_pv] * 5)
    canvas.paint_tube(pv, [(0.0, T["vein"])], onto=fat, halo=1.0, respect_reserved=False)
    rs = _u(r, 3.5, 5.0)
    sel = pc.t > 0.35
    pts = pc.points[sel][::6].copy()
    pts[:, 1] -= pc.radius[sel][::6] + rs * 0.4
    pts[:, 2] += pc.radius[sel][::6] * 0.3
    sv = make_curve(np.vstack([conf, pts]), [rs] * (len(pts) + 1))
    canvas.paint_tube(sv, [(0.0, T["vein"])], onto=fat, respect_reserved=False)


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
