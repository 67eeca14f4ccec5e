"""One patient's anatomy: a plain description of body wall, spine, vessels and organs (drawn by ``sampling``).

Coordinates are patient millimetres: u towards the patient's right, v anterior, w superior, with w = 0 at the
portal confluence behind the pancreatic neck. Nothing here knows about voxels; the painters in ``painting`` turn
the description into a tissue map.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.data.phantom.geometry import F32, Curve, FourierField, ellipsoid_sdf, to_local


# ----------------------------------------------------------------------------------------------- description
@dataclass
class Body:
    """Outline of the abdomen (a superellipse with harmonics) and its wall: skin, fat and muscle layers."""

    width: float  # left-right width, mm
    a: float  # half width
    b_ant: float  # depth in front of the body centre (deepened when the pancreas needs room)
    b_post: float  # depth behind the body centre
    p_ant: float  # superellipse exponents, front and back
    p_post: float
    harm: list[tuple[int, float, float]]  # (order, relative amplitude, phase) of the outline's harmonics
    g_a: float  # relative change of width / anterior depth per 100 mm in w
    g_b: float
    t_skin: float
    t_fat: float  # mean subcutaneous fat thickness
    fat_harm: tuple[float, float, float, float]  # angular profile of the fat thickness
    t_lat: float  # muscle thickness: lateral wall, rectus, linea alba width, back, quadratus lumborum
    t_rect: float
    w_linea: float
    t_post: float
    t_ql: float
    wall_planes: tuple[float, float]  # depths (fractions of the muscle layer) of the fat planes between muscles
    wall_plane_half: float
    yaw: float  # rotation of the patient in the table plane, rad
    a_cav: float = 0.0  # half width of the abdominal cavity
    b_cav: float = 0.0  # depth of the cavity in front of the body centre
    v_pm: float = 0.0  # front of the paraspinal muscle mass

    def body_radius(self, th, w) -> np.ndarray:
        """Distance from the body centre to the skin along in-plane angle `th` at height `w`."""
        a = self.a * (1 + self.g_a * w / 100)
        b_ant = self.b_ant * (1 + self.g_b * w / 100)
        s, c = np.sin(th), np.abs(np.cos(th))
        ant = s >= 0
        p = np.where(ant, self.p_ant, self.p_post)
        b = np.where(ant, b_ant, self.b_post)
        r = ((c / a) ** p + (np.abs(s) / b) ** p) ** (-1.0 / p)
        for k, amp, ph in self.harm:
            r = r * (1 + amp * np.cos(k * th + ph))
        return r.astype(F32)

    def fat_thickness(self, th) -> np.ndarray:
        """Subcutaneous fat thickness along angle `th`."""
        c1, c2, c3, ph = self.fat_harm
        prof = 1 + c1 * np.sin(th) + c2 * np.cos(2 * th) + c3 * np.cos(3 * th + ph)
        return (self.t_fat * np.clip(prof, 0.3, None)).astype(F32)

    def muscle_thickness(self, th, u=None, v=None) -> np.ndarray:
        """Muscle layer thickness along angle `th`; with u, v the thin linea alba in the anterior midline."""
        back = np.abs(th + np.pi / 2)
        back = np.minimum(back, 2 * np.pi - back)
        t = (self.t_lat + (self.t_rect - self.t_lat) * np.exp(-(((th - np.pi / 2) / 0.55) ** 2))
             + self.t_post * np.exp(-((back / 0.5) ** 2)) + self.t_ql * np.exp(-(((back - 1.0) / 0.25) ** 2)))
        if u is not None:
            t = t * (1 - 0.85 * np.exp(-((u / self.w_linea) ** 2)) * (v > 0))
        return np.maximum(t, 1.0).astype(F32)

    def cavity_radius(self, th, w=0.0) -> np.ndarray:
        """Distance from the body centre to the inner surface of the muscle wall along angle th."""
        th = np.asarray(th, float)
        return (self.body_radius(th, w) - self.t_skin - self.fat_thickness(th) - self.muscle_thickness(th))

    def make_room_in_front(self, front: float) -> None:
        """Deepen the belly so that the cavity reaches at least `front` (mm in v) in the midline."""
        if front > self.b_cav:
            self.b_ant += front - self.b_cav
            self.b_cav = float(self.cavity_radius(np.pi / 2))


@dataclass
class Spine:
    """Lumbar vertebrae (body, arch, processes), discs and spinal canal, repeating every `period` mm in w."""

    rx_vb: float  # vertebral body half axes
    ry_vb: float
    rcx: float  # spinal canal half axes
    rcy: float
    t_arch: float
    v_c: float  # canal centre
    v_vb: float  # vertebral body centre
    period: float
    t_disc: float
    t_cort: float
    w_disc0: float
    spinous_len: float


@dataclass
class Vessels:
    """Aorta, inferior vena cava, superior mesenteric artery and vein, coeliac origin and portal vein."""

    r_ao: float
    u_ao: float
    v_ao: float
    ao_drift: float  # mm of lateral drift per 100 mm in w
    rx_ivc: float
    ry_ivc: float
    u_ivc: float
    v_ivc: float
    calcified: bool  # aortic wall calcifications
    r_sma: float
    r_smv: float
    u_sma: float
    v_sma: float
    w_sma0: float  # SMA origin
    w_celiac: float
    u_smv: float
    v_smv: float
    r_pv: float


@dataclass
class Kidney:
    """One kidney: ellipsoid in a rotated frame whose local axis 0 points laterally."""

    side: int  # -1 left, +1 right
    centre: tuple[float, float, float]
    radii: tuple[float, float, float]
    rot: np.ndarray
    n_pyr: int  # medullary pyramids around the sinus
    hilum_w: float  # height of the renal vessels

    def hilum(self) -> np.ndarray:
        """Patient coordinates of the renal hilum (medial notch)."""
        rl = self.radii[0]
        return np.asarray(self.centre) + self.rot @ np.array([-1.05 * rl, 0.0, 0.0])


@dataclass
class Tumour:
    """Lobulated ellipsoidal pancreatic tumour, hypodense by `drop` HU (or set to show `contrast`) with an ill-defined
    margin."""

    centre: np.ndarray
    radii: tuple[float, float, float]
    rot: np.ndarray
    lob: tuple[FourierField, float, FourierField, float]  # (coarse field, amplitude, fine field, amplitude)
    rim: float  # the gland outline grows around the tumour by this much
    drop: float
    margin: float
    # tumour-pancreas contrast (HU, gland within 5 mm minus tumour) the rendering aims at; None: `drop` as drawn
    contrast: float | None = None

    def sdf(self, u, v, w) -> np.ndarray:
        """Approximate signed distance (mm) to the tumour surface at patient coordinates u, v, w."""
        q = to_local(u, v, w, self.centre, self.rot)
        f = ellipsoid_sdf(*q, self.radii)
        lob, amp, fine, amp_fine = self.lob
        return f + amp * lob(u, v, w) + amp_fine * fine(u, v, w)


@dataclass
class Pancreas:
    """Gland as a tube along a spline (uncinate, head, neck, body, tail) plus a head ellipsoid, with its duct."""

    k_p: float  # cross-section taller (cranio-caudal) than thick by this factor
    r_head: float
    head: np.ndarray  # head centre
    ctrl: np.ndarray  # (6, 3) control points
    radii: np.ndarray  # (6,) tube radii at the control points (after any atrophy)
    head_radii: tuple[float, float, float]
    lobulation: tuple[FourierField, float, FourierField, float]  # (fine field, amplitude, coarse field, amplitude)
    fat: tuple[FourierField, float, float]  # lobular fatty clefts: (field, threshold, share)
    tumour: Tumour | None
    duct_radius: np.ndarray  # along `curve`
    curve: Curve
    w_extent: tuple[float, float]  # lowest and highest w of gland and tumour


@dataclass
class Gut:
    """Stomach, duodenum and colon as tubes, with their wall thickness and gas / fluid levels."""

    oral_contrast: bool
    stomach: Curve
    stomach_wall: float
    stomach_gas: float  # fraction of the stomach's antero-posterior depth filled with gas
    duodenum: Curve
    colon: Curve
    colon_haustra: tuple[float, float]  # (length in curve samples, relative amplitude)
    colon_gas_level: float
    duodenum_gas_level: float
    stool_bubbles: float


@dataclass
class Liver:
    """Right and left lobes as two smoothly joined ellipsoids ((centre), (radii)), deformed by two fields."""

    right: tuple[tuple[float, float, float], tuple[float, float, float]]
    left: tuple[tuple[float, float, float], tuple[float, float, float]]
    deform: tuple[FourierField, float, FourierField, float]
    vessel_radius: float


@dataclass
class Gallbladder:
    """Rotated ellipsoid under the liver."""

    centre: tuple[float, float, float]
    radii: tuple[float, float, float]
    rot: np.ndarray


@dataclass
class Spleen:
    """Crescent against the left postero-lateral wall: an ellipsoid hollowed towards its hilum, deformed."""

    centre: tuple[float, float, float]
    radii: tuple[float, float, float]
    rot: np.ndarray
    hollow: tuple[float, float]  # (offset of the hollowing ellipsoid, its relative size)
    deform: tuple[FourierField, float]


@dataclass
class Rib:
    """One lower rib running forwards and down from the spine along the body wall."""

    side: int
    w0: float
    psi0: float  # start and end angle from the back, degrees
    psi1: float
    slope: float  # descent in mm per radian
    radius: float


@dataclass
class Lungs:
    """Posterior costophrenic recesses above height `w_base`, deepening by `slope` mm per mm."""

    w_base: float
    slope: float


@dataclass
class SmallBowel:
    """Loops of small bowel and mesenteric vessels filling the free intra-abdominal fat."""

    sigma: float
    radius: float
    wall: float
    amount: float
    gas_level: float


@dataclass
class Anatomy:
    """Everything drawn about one patient, in patient millimetre coordinates."""

    body: Body
    spine: Spine
    vessels: Vessels
    kidneys: list[Kidney]  # left, right
    pancreas: Pancreas
    gut: Gut
    liver: Liver
    gallbladder: Gallbladder | None
    spleen: Spleen
    ribs: list[Rib]
    lungs: Lungs
    small_bowel: SmallBowel
