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

from pipeline.data.phantom.anatomy import Anatomy
from pipeline.data.phantom.canvas import TissueCanvas
from pipeline.data.phantom.geometry import (
    F32,
    Curve,
    FourierField,
    box_sdf,
    ellipse_sdf,
    ellipsoid_sdf,
    make_curve,
    to_local,
)
from pipeline.data.phantom.geometry import uniform as _u
from pipeline.data.phantom.painting_organs import (
    paint_liver,
    paint_pancreas,
    paint_small_bowel,
    paint_spleen,
    paint_tube_organ,
)
from pipeline.data.phantom.scan import Scan
from pipeline.data.phantom.tables import T


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
