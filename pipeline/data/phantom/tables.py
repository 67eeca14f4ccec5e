"""Tissue classes of the phantom and their CT numbers.

``TISSUES`` names the tissue classes painted into a phantom's tissue map (uint8 ids). ``HU_MEAN_RANGE`` gives
the range each tissue's per-case mean Hounsfield value is drawn from (portal-venous phase, as specified for this
project) and ``HU_TEXTURE`` the amplitude (HU) of the smooth within-organ inhomogeneity. The label map of a case
follows from the tissue map through ``label_lut``.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

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
T = TISSUES  # short alias for the painters

HU_MEAN_RANGE: dict[str, tuple[float, float]] = {
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
HU_TEXTURE: dict[str, float] = {
    "skin": 4, "subcutaneous_fat": 6, "muscle": 5, "visceral_fat": 8, "lung": 35, "bone_cortical": 60,
    "bone_cancellous": 30, "intervertebral_disc": 6, "spinal_canal": 4, "aorta": 6, "artery": 8, "ivc": 12,
    "vein": 8, "calcification": 60, "liver": 4, "hepatic_vessel": 10, "gallbladder": 3, "spleen": 4,
    "kidney_cortex": 8, "kidney_medulla": 8, "renal_sinus_fat": 12, "bowel_wall": 8, "bowel_fluid": 5,
    "oral_contrast": 40, "bowel_gas": 4, "stool": 45, "pancreas": 6, "pancreatic_duct": 3, "tumour": 9,
}

PANCREAS_TISSUES = (T["pancreas"], T["pancreatic_duct"])  # label 1
GLAND_TISSUES = (T["pancreas"], T["tumour"], T["pancreatic_duct"])  # everything inside the gland outline


@lru_cache(maxsize=64)
def tissue_lut(ids: tuple[int, ...]) -> np.ndarray:
    """Boolean lookup table over uint8 tissue ids: True for `ids` (index it with a tissue array)."""
    lut = np.zeros(256, bool)
    lut[list(ids)] = True
    return lut


def label_lut() -> np.ndarray:
    """uint8 lookup table from tissue id to label: 1 pancreas (gland and duct), 2 tumour, 0 anything else."""
    lut = np.zeros(256, np.uint8)
    lut[list(PANCREAS_TISSUES)] = 1
    lut[T["tumour"]] = 2
    return lut
