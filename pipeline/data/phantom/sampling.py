"""Drawing one patient's anatomy (``pipeline.data.phantom.anatomy``) from a random generator.

``sample_anatomy`` draws every size, position and deformation field from one random generator in a fixed order
(the order is part of the output: the same seed gives the same patient).
"""
from __future__ import annotations

import numpy as np

from pipeline.data.phantom.anatomy import (
    Anatomy,
    Body,
    Gallbladder,
    Gut,
    Kidney,
    Liver,
    Lungs,
    Pancreas,
    Rib,
    SmallBowel,
    Spine,
    Spleen,
    Tumour,
    Vessels,
)
from pipeline.data.phantom.geometry import FourierField, make_curve, rotation
from pipeline.data.phantom.geometry import uniform as _u


def sample_anatomy(rng: np.random.Generator) -> Anatomy:
    """Draw one patient's anatomy from `rng` (body, spine and vessels, kidneys, pancreas, gut, organs)."""
    body = sample_body(rng)
    spine = sample_spine(rng, body)
    vessels = sample_vessels(rng, spine)
    kidneys = sample_kidneys(rng, body, spine)
    pancreas = sample_pancreas(rng, body, vessels, kidneys[0])
    gut = sample_gut(rng, body, spine, vessels, pancreas)
    liver, gallbladder = sample_liver(rng, body)
    spleen = sample_spleen(rng, body)
    ribs = sample_ribs(rng)
    lungs = Lungs(w_base=_u(rng, 40, 85), slope=_u(rng, 0.4, 0.7))
    r = rng
    small_bowel = SmallBowel(sigma=_u(r, 8, 11), radius=_u(r, 8, 13), wall=_u(r, 2, 3), amount=_u(r, 0.3, 1.5),
                             gas_level=body.b_cav * _u(r, 0.35, 0.95))
    return Anatomy(body, spine, vessels, kidneys, pancreas, gut, liver, gallbladder, spleen, ribs, lungs, small_bowel)


def sample_body(r: np.random.Generator) -> Body:
    """Body outline and wall layers; the cavity extents follow from them."""
    width = _u(r, 250, 380)
    a = width / 2
    depth = width * _u(r, 0.68, 0.85)
    b_post = depth * _u(r, 0.45, 0.5)
    b_ant = depth - b_post
    p_ant, p_post = _u(r, 2.0, 2.5), _u(r, 2.6, 3.4)
    harm = [(k, r.normal(0, 0.012), _u(r, 0, 2 * np.pi)) for k in (2, 3, 4)]
    g_a, g_b = _u(r, -0.03, 0.03), _u(r, -0.05, 0.02)
    t_skin = _u(r, 1.5, 2.5)
    t_fat = float(np.clip(4 + (width - 250) / 130 * 30 + r.normal(0, 6), 3, 45))
    fat_harm = (_u(r, 0.1, 0.35), r.normal(0, 0.1), r.normal(0, 0.08), _u(r, 0, 2 * np.pi))
    t_lat, t_rect, w_linea = _u(r, 9, 17), _u(r, 7, 13), _u(r, 3, 7)
    t_post = _u(r, 38, 55) * np.sqrt(width / 300)
    wall_planes, wall_plane_half = (_u(r, 0.3, 0.4), _u(r, 0.62, 0.72)), _u(r, 0.5, 0.9)
    t_ql = _u(r, 8, 16)
    yaw = float(np.clip(r.normal(0, 0.035), -0.08, 0.08))
    body = Body(width=width, a=a, b_ant=b_ant, b_post=b_post, p_ant=p_ant, p_post=p_post, harm=harm, g_a=g_a,
                g_b=g_b, t_skin=t_skin, t_fat=t_fat, fat_harm=fat_harm, t_lat=t_lat, t_rect=t_rect, w_linea=w_linea,
                t_post=t_post, t_ql=t_ql, wall_planes=wall_planes, wall_plane_half=wall_plane_half, yaw=yaw)
    body.a_cav = float(min(body.cavity_radius(0.0), body.cavity_radius(np.pi)))
    body.b_cav = float(body.cavity_radius(np.pi / 2))
    body.v_pm = -float(body.cavity_radius(-np.pi / 2))
    return body


def sample_spine(r: np.random.Generator, body: Body) -> Spine:
    """Vertebral body, canal and arch sizes, in front of the paraspinal muscles."""
    rx_vb, ry_vb = _u(r, 19, 25), _u(r, 14, 18)
    rcx, rcy, t_arch = _u(r, 9, 12), _u(r, 7, 9), _u(r, 5, 7)
    v_c = body.v_pm + rcy + t_arch - _u(r, 8, 14)  # spinal canal centre
    v_vb = v_c + rcy + 1.0 + ry_vb
    period, t_disc, t_cort = _u(r, 30, 36), _u(r, 7, 10), _u(r, 1.6, 2.4)
    w_disc0 = _u(r, 0, period)
    spinous_len = max(15.0, body.t_post - _u(r, 8, 16))
    return Spine(rx_vb=rx_vb, ry_vb=ry_vb, rcx=rcx, rcy=rcy, t_arch=t_arch, v_c=v_c, v_vb=v_vb, period=period,
                 t_disc=t_disc, t_cort=t_cort, w_disc0=w_disc0, spinous_len=spinous_len)


def sample_vessels(r: np.random.Generator, spine: Spine) -> Vessels:
    """Great vessels in front of the spine and the mesenteric vessels in front of the aorta."""
    # aorta (patient's left of the midline, anterior to the vertebral body) and IVC (right)
    r_ao = _u(r, 9, 14)
    u_ao = -_u(r, 4, 14)
    v_ao = spine.v_vb + spine.ry_vb + r_ao + _u(r, 1, 5)
    ao_drift = _u(r, -6, 6)
    rx_ivc, ry_ivc = _u(r, 11, 16), _u(r, 7, 12)
    u_ivc = _u(r, 18, 30)
    v_ivc = spine.v_vb + spine.ry_vb + ry_ivc + _u(r, 2, 8)
    calcified = r.random() < 0.5
    # superior mesenteric artery / vein; w = 0 at the portal confluence behind the pancreatic neck
    r_sma, r_smv = _u(r, 3, 4.5), _u(r, 5, 7.5)
    u_sma = u_ao + _u(r, 0, 4)
    v_sma = v_ao + r_ao + _u(r, 5, 10) + r_sma
    w_sma0 = _u(r, 6, 14)
    w_celiac = w_sma0 + _u(r, 10, 18)
    u_smv = u_sma + r_sma + r_smv + _u(r, 3, 7)
    v_smv = v_sma + _u(r, -1, 4)
    r_pv = _u(r, 6, 8)
    return Vessels(r_ao=r_ao, u_ao=u_ao, v_ao=v_ao, ao_drift=ao_drift, rx_ivc=rx_ivc, ry_ivc=ry_ivc, u_ivc=u_ivc,
                   v_ivc=v_ivc, calcified=calcified, r_sma=r_sma, r_smv=r_smv, u_sma=u_sma, v_sma=v_sma,
                   w_sma0=w_sma0, w_celiac=w_celiac, u_smv=u_smv, v_smv=v_smv, r_pv=r_pv)


def sample_kidneys(r: np.random.Generator, body: Body, spine: Spine) -> list[Kidney]:
    """Left and right kidney beside the spine, the right one lower."""
    kidneys = []
    w_left = _u(r, -5, 20)
    for side, w_c in ((-1, w_left), (1, w_left - _u(r, 10, 25))):
        radii = (_u(r, 24, 29), _u(r, 17, 22), _u(r, 48, 58))
        u_c = side * (spine.rx_vb + _u(r, 38, 50) + radii[0] * 0.5)
        u_c = side * min(abs(u_c), body.a_cav - radii[0] - 8)
        v_c = spine.v_vb + _u(r, -8, 6)
        hilum_turn = np.radians(_u(r, 25, 45))  # hilum faces antero-medially
        tilt = np.radians(_u(r, 8, 20))  # upper pole medial
        rot = rotation(-side * hilum_turn, _u(r, -0.15, 0.05), -side * tilt)
        # local axis 0 must point laterally
        if side < 0:
            rot = rot @ np.diag([-1.0, 1.0, 1.0])
        kidneys.append(Kidney(side=side, centre=(u_c, v_c, w_c), radii=radii, rot=rot,
                              n_pyr=int(r.integers(4, 7)), hilum_w=w_c + _u(r, -8, 8)))
    return kidneys


# Tumour-pancreas contrast of pancreatic adenocarcinoma in portal-venous CT (HU, gland minus tumour):
#   Lu et al., Radiology 1996;199:697-701: 39 +/- 16 HU in the hepatic (portal-venous) phase, 27 tumours;
#   PubMed 17961951 (57 carcinomas): 49 hypo-attenuating, 40.5 +/- 23.0 HU; 8 (14 %) iso-attenuating, 7.1 +/- 4.7 HU;
#   Prokesch et al., Radiology 2002;224:764-768: 6 of 53 (11 %) iso-attenuating, 4.15 +/- 8.5 HU.
# "published" draws from that mixture; "v1" keeps the drop drawn in `sample_pancreas` (10-40 HU at the core, which
# the margin, the partial volume and the gland's fatty texture brought to 0-20 HU: docs/decisions.md).
TUMOUR_CONTRASTS = ("published", "v1")
ISO_SHARE = 0.12
ISO_HU, HYPO_HU = (5.5, 5.0, 0.0, 15.0), (40.0, 20.0, 10.0, 100.0)  # mean, sd, low and high clip
CONTRAST_STREAM = 0x7C0  # the second seed word of the contrast's own random stream


def draw_tumour_contrast(r: np.random.Generator) -> float:
    """A tumour-pancreas contrast (HU) from the published mixture: iso-attenuating with ISO_SHARE, else hypo."""
    mean, sd, lo, hi = ISO_HU if r.random() < ISO_SHARE else HYPO_HU
    return float(np.clip(r.normal(mean, sd), lo, hi))


def sample_pancreas(r: np.random.Generator, body: Body, vessels: Vessels, left_kidney: Kidney) -> Pancreas:
    """Gland along the splenic vein from the duodenal sweep to the splenic hilum, with an optional tumour.

    Deepens the belly (`body`) when the cavity has no room in front of the gland.
    """
    ve, lk = vessels, left_kidney
    v_ao_front = ve.v_ao + ve.r_ao
    k_p = _u(r, 1.15, 1.5)  # cross-section taller (cranio-caudal) than thick
    r_unc, r_head, r_neck = _u(r, 5, 8), _u(r, 11, 15), _u(r, 6, 9)
    r_body, r_tail = _u(r, 8, 11), _u(r, 7, 11)
    r_tip = r_tail * _u(r, 0.6, 0.9)
    u_h = ve.u_smv + ve.r_smv + r_head * 0.7 + _u(r, 1, 5)
    v_h = max(ve.v_ivc + ve.ry_ivc + r_head * 0.8 + _u(r, 1, 4), ve.v_smv - 2)
    w_h = -_u(r, 8, 18)
    head = np.array([u_h, v_h, w_h])
    unc = (ve.u_smv + _u(r, -3, 3), v_ao_front + r_unc + _u(r, 1, 4), w_h - _u(r, 10, 18))
    neck = (ve.u_smv + _u(r, -3, 2), ve.v_smv + ve.r_smv + r_neck + _u(r, 1, 3), _u(r, 2, 8))
    body_pt = (ve.u_sma - _u(r, 18, 30), ve.v_sma + ve.r_sma + r_body + _u(r, 3, 8), _u(r, 4, 14))
    lk_front = lk.centre[1] + lk.radii[1]
    tail1 = (-body.a_cav * _u(r, 0.35, 0.45), lk_front + r_tail + _u(r, 3, 8), _u(r, 10, 25))
    tail2 = (-body.a_cav * _u(r, 0.55, 0.68), lk.centre[1] + _u(r, 0, 15), _u(r, 18, 45))
    ctrl = np.array([unc, tuple(head), neck, body_pt, tail1, tail2])
    radii = np.array([r_unc, r_head, r_neck, r_body, r_tail, r_tip])
    # anterior room: the cavity must hold the pancreas body plus a margin; deepen the belly if not
    front = max(neck[1] + r_neck, body_pt[1] + r_body) + _u(r, 25, 45)
    body.make_room_in_front(front)
    pancreas_radii = radii
    head_radii = (r_head * _u(r, 1.0, 1.3), r_head * _u(r, 0.8, 1.0), r_head * k_p * _u(r, 1.2, 1.6))
    lobulation = (FourierField(r, 2.0), _u(r, 1.0, 2.2), FourierField(r, 9.0), _u(r, 1.5, 3.5))
    fat = (FourierField(r, 1.5), _u(r, 0.9, 2.0), _u(r, 0.3, 0.7))  # lobular fatty clefts
    curve = make_curve(ctrl, radii)
    # tumour: head 60 %, body 25 %, tail 15 % (typical for pancreatic ductal adenocarcinoma)
    tumour = None
    duct_radius = np.full(len(curve.t), _u(r, 0.8, 1.5))
    if r.random() < 0.6:
        t_nodes = curve.t[[int(np.argmin(np.linalg.norm(curve.points - c, axis=1))) for c in ctrl]]
        region = r.choice(3, p=[0.6, 0.25, 0.15])
        t_lo, t_hi = [(t_nodes[0], t_nodes[2]), (t_nodes[2], t_nodes[4]), (t_nodes[4], t_nodes[5] - 0.03)][region]
        idx = int(np.argmin(np.abs(curve.t - _u(r, t_lo, t_hi))))
        local_r = curve.radius[idx] if region else max(curve.radius[idx], r_head)
        r_t = min(_u(r, 5, 17.5), local_r * 1.6 + 3)
        offset = np.array([r.normal(0, 0.25), r.normal(0, 0.25), r.normal(0, 0.25 * k_p)]) * local_r
        tr = tuple(r_t * _u(r, 0.8, 1.2) for _ in range(3))
        t_rot = rotation(*r.uniform(-np.pi, np.pi, 3))
        lob = (FourierField(r, max(2.0, r_t / 2.5)), 0.15 * r_t, FourierField(r, 1.5), 0.8)
        rim, drop, margin = _u(r, 0.0, 3.0), _u(r, 10, 40), _u(r, 1.0, 4.0)
        tumour = Tumour(centre=curve.points[idx] + offset, radii=tr, rot=t_rot, lob=lob, rim=rim, drop=drop,
                        margin=margin)
        if region < 2 and r.random() < 0.6:  # upstream duct dilatation and parenchymal atrophy
            upstream = curve.t > curve.t[idx]
            duct_radius[upstream] = _u(r, 2.0, 4.0)
            pancreas_radii = radii.copy()
            atrophy = _u(r, 0.65, 0.9)
            for j in range(len(ctrl)):
                if t_nodes[j] > curve.t[idx] + 0.1:
                    pancreas_radii[j] = max(radii[j] * atrophy, duct_radius.max() + 3)
    pancreas_curve = make_curve(ctrl, pancreas_radii)
    duct_radius = np.interp(pancreas_curve.t, curve.t, duct_radius)
    pts = pancreas_curve.points
    z_half = pancreas_curve.radius * k_p
    lo, hi = (pts[:, 2] - z_half).min(), (pts[:, 2] + z_half).max()
    lo = min(lo, w_h - head_radii[2])
    hi = max(hi, w_h + head_radii[2])
    if tumour is not None:
        ext = max(tumour.radii) * 1.4 + tumour.rim
        lo, hi = min(lo, tumour.centre[2] - ext), max(hi, tumour.centre[2] + ext)
    return Pancreas(k_p=k_p, r_head=r_head, head=head, ctrl=ctrl, radii=pancreas_radii, head_radii=head_radii,
                    lobulation=lobulation, fat=fat, tumour=tumour, duct_radius=duct_radius, curve=pancreas_curve,
                    w_extent=(float(lo), float(hi)))


def sample_gut(r: np.random.Generator, body: Body, spine: Spine, vessels: Vessels, pancreas: Pancreas) -> Gut:
    """Stomach in front of the pancreas, duodenal C-loop around its head, colon framing the abdomen."""
    ve, pan = vessels, pancreas
    u_h, v_h, w_h = pan.head
    body_pt = pan.ctrl[3]
    oral_contrast = r.random() < 0.3
    rd = _u(r, 9, 13)  # duodenal radius
    # stomach: fundus -> body -> antrum -> pylorus, anterior to the pancreas body
    s_st = _u(r, 0.6, 1.15)
    st_r = np.array([_u(r, 35, 50), _u(r, 30, 45), _u(r, 22, 35), _u(r, 15, 22), _u(r, 8, 11)]) * s_st
    st_r[-1] = max(st_r[-1], 8.0)
    pyl = (u_h + _u(r, -5, 8), v_h + pan.r_head + _u(r, 15, 30), w_h + _u(r, 25, 40))
    v_ant = min(body_pt[1] + pan.radii[3] + st_r[2] * 0.8 + _u(r, 4, 12), body.b_cav - st_r[2] * 0.5)
    stomach = make_curve([
        (-body.a_cav * _u(r, 0.4, 0.6), spine.v_vb + _u(r, 30, 60), _u(r, 100, 130)),
        (-body.a_cav * _u(r, 0.35, 0.55), body.b_cav * _u(r, 0.1, 0.3), _u(r, 55, 80)),
        (-body.a_cav * _u(r, 0.15, 0.35), v_ant, _u(r, 30, 45)),
        (u_h - _u(r, 10, 30), v_ant, pyl[2] + _u(r, -5, 5)),
        pyl], st_r)
    stomach_wall = _u(r, 3, 6)
    stomach_gas = _u(r, 0.1, 0.6)
    # duodenum: bulb, descending part lateral to the head, horizontal part between aorta and SMA
    w_d2_low = w_h - pan.head_radii[2] - _u(r, 3, 12)
    w_d3 = min(pan.ctrl[0][2] - pan.radii[0] * pan.k_p - rd - 3, w_d2_low - 12)
    u_d2 = u_h + pan.head_radii[0] + rd + _u(r, 2, 6)
    ctrl = [pyl,
            (u_h + pan.r_head + rd + _u(r, 5, 12), v_h + pan.r_head * 0.5 + _u(r, 5, 15), pyl[2] + _u(r, -5, 5)),
            (u_d2, v_h + _u(r, -5, 5), w_h + _u(r, 5, 15)),
            (u_d2 + _u(r, -3, 3), v_h + _u(r, -8, 2), w_d2_low),
            (ve.u_ivc, ve.v_ivc + ve.ry_ivc + rd + 3, w_d3),
            (ve.u_ao, ve.v_ao + ve.r_ao + rd * 0.6 + 2, w_d3 - _u(r, 0, 5)),
            (ve.u_ao - ve.r_ao - rd - _u(r, 3, 8), ve.v_ao + _u(r, 0, 10), w_d3 + _u(r, 10, 20)),
            (ve.u_ao - ve.r_ao - rd - _u(r, 10, 20), ve.v_sma + _u(r, 5, 15), -_u(r, 0, 15))]
    duodenum = make_curve(ctrl, [rd * 0.7, rd * 1.1, rd, rd, rd, rd * 0.6, rd, rd * 0.9])
    # colon: ascending (right flank) -> hepatic flexure -> transverse (anterior) -> splenic flexure -> descending
    a_cav, v_vb = body.a_cav, spine.v_vb
    u_r, u_l = a_cav - _u(r, 22, 35), -(a_cav - _u(r, 20, 32))
    b = body.b_cav
    ctrl = [(u_r, v_vb + _u(r, 20, 50), -250), (u_r - _u(r, 0, 8), v_vb + _u(r, 30, 55), -_u(r, 20, 40)),
            (u_r - _u(r, 10, 25), v_vb + _u(r, 50, 80), _u(r, 0, 25)),
            (a_cav * _u(r, 0.2, 0.4), b - _u(r, 25, 40), _u(r, -10, 15)),
            (_u(r, -20, 20), b - _u(r, 25, 40), -_u(r, 10, 60)),
            (-a_cav * _u(r, 0.3, 0.5), b - _u(r, 30, 45), _u(r, -5, 20)),
            (u_l + _u(r, 5, 15), v_vb + _u(r, 40, 70), _u(r, 35, 65)),
            (u_l, v_vb + _u(r, 15, 40), -_u(r, 0, 30)), (u_l + _u(r, 0, 8), v_vb + _u(r, 15, 40), -250)]
    ra, rt, rdsc = _u(r, 16, 25), _u(r, 14, 22), _u(r, 12, 18)
    colon = make_curve(ctrl, [ra, ra, ra, rt, rt, rt, rdsc, rdsc, rdsc])
    colon_haustra = (_u(r, 20, 30), _u(r, 0.08, 0.18))
    colon_gas_level = v_vb + _u(r, 20, 90)
    duodenum_gas_level = v_vb + _u(r, 60, 140)
    stool_bubbles = _u(r, 0.9, 1.6)
    return Gut(oral_contrast=oral_contrast, stomach=stomach, stomach_wall=stomach_wall, stomach_gas=stomach_gas,
               duodenum=duodenum, colon=colon, colon_haustra=colon_haustra, colon_gas_level=colon_gas_level,
               duodenum_gas_level=duodenum_gas_level, stool_bubbles=stool_bubbles)


def sample_liver(r: np.random.Generator, body: Body) -> tuple[Liver, Gallbladder | None]:
    """Liver (right lobe against the right wall, left lobe across the midline anteriorly) and gallbladder."""
    ac, bc = body.a_cav, body.b_cav
    right = ((ac * _u(r, 0.4, 0.55), _u(r, -0.15, 0.1) * bc, _u(r, 75, 100)),
             (ac * _u(r, 0.55, 0.7), bc * _u(r, 0.7, 0.9), _u(r, 95, 120)))
    left = ((ac * _u(r, -0.1, 0.1), bc * _u(r, 0.4, 0.6), _u(r, 75, 100)),
            (ac * _u(r, 0.35, 0.5), bc * _u(r, 0.22, 0.32), _u(r, 40, 55)))
    deform = (FourierField(r, 20.0), _u(r, 4, 8), FourierField(r, 6.0), 1.5)
    liver = Liver(right=right, left=left, deform=deform, vessel_radius=_u(r, 1.5, 3.0))
    gallbladder = None
    if r.random() < 0.65:
        centre = (body.a_cav * _u(r, 0.15, 0.35), body.b_cav * _u(r, 0.3, 0.55), _u(r, 5, 35))
        radii = (_u(r, 10, 17), _u(r, 10, 17), _u(r, 25, 40))
        gallbladder = Gallbladder(centre=centre, radii=radii, rot=rotation(_u(r, -0.5, 0.5), _u(r, 0.35, 0.9), 0.0))
    return liver, gallbladder


def sample_spleen(r: np.random.Generator, body: Body) -> Spleen:
    """Spleen: crescent against the left postero-lateral wall, concave towards its hilum."""
    th_s = np.radians(_u(r, -170, -130))
    thin = _u(r, 18, 26)
    dist = float(body.cavity_radius(th_s)) - thin - _u(r, 2, 8)
    centre = (dist * np.cos(th_s), dist * np.sin(th_s), _u(r, 45, 75))
    rot = rotation(th_s, 0.0, 0.0) @ rotation(0.0, _u(r, -0.3, 0.1), 0.0)
    radii = (thin, _u(r, 45, 60), _u(r, 45, 60))
    hollow = (thin * 1.3 + _u(r, 8, 16), _u(r, 0.45, 0.65))
    return Spleen(centre=centre, radii=radii, rot=rot, hollow=hollow, deform=(FourierField(r, 15.0), _u(r, 2, 5)))


def sample_ribs(r: np.random.Generator) -> list[Rib]:
    """Ribs 12 .. 9 on both sides, descending as they run forwards."""
    w12 = _u(r, 10, 35)
    ribs = []
    for side in (-1, 1):
        for k, end in enumerate((_u(r, 80, 100), _u(r, 110, 130), _u(r, 140, 160), _u(r, 150, 165))):
            w0 = w12 + k * _u(r, 22, 28) + r.normal(0, 3)
            psi0 = _u(r, 25, 35)
            ribs.append(Rib(side=side, w0=w0, psi0=psi0, psi1=end, slope=_u(r, 35, 55), radius=_u(r, 3.5, 4.8)))
    return ribs
