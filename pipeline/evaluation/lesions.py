"""Lesion-level detection metrics: each tumour a connected component, scored as found or missed, PANORAMA-style.

Voxel Dice hides what a reader of a pancreas CT cares about first: was the tumour found, how many false alarms came
with it, and does the model know which patients have one. Per case:

- **Lesions** are the 26-connected (3D; 8-connected in 2D) components of the lesion class in the reference label,
  parts less than ``MERGE_MM`` (4 mm) apart taken as one (a duct running through a tumour splits its label);
  **candidates** the same components of the prediction.
- **Detection rule**: a lesion is *detected* when a candidate overlaps it with IoU > 0.1 (``DETECTION_IOU``, the
  hit criterion of the PI-CAI / PANORAMA evaluation); a candidate that reaches IoU > 0.1 with no lesion is a
  **false-positive component**.
- Per lesion: volume (ml), **contrast** (HU): mean of the gland (``gland_labels``) within ``shell_mm`` of the lesion
  minus the lesion's mean, so a hypo-attenuating tumour has a positive contrast (the tumour-pancreas contrast of
  the radiology literature); NaN when no gland voxel lies in that shell or no image is given.
- Per case: the maximum lesion-class probability, the case-level score.

Summaries: lesion sensitivity overall and by volume and contrast bin, sensitivity in the goal bin (volume >= 1 ml
and contrast >= 10 HU), false-positive components per case, and the case-level AUROC (MONAI's ``compute_roc_auc``)
and average precision of the maximum probability against "the case has a lesion".

Connected components come from ``scipy.ndimage.label`` and the shell from its Euclidean distance transform in mm:
MONAI has a largest-component filter but no component matching, so this module is our own.
"""
from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from pipeline.fileio import atomic_path, json_ready, write_text_atomic

DETECTION_IOU = 0.1
SHELL_MM = 5.0
MERGE_MM = 4.0  # tumour voxels closer than this are one lesion: a duct running through a tumour splits its label
VOLUME_BINS_ML = (1.0, 5.0)  # < 1 ml, 1-5 ml, >= 5 ml
CONTRAST_BINS_HU = (10.0, 20.0)  # < 10 HU (iso-attenuating), 10-20 HU, >= 20 HU
GOAL_VOLUME_ML, GOAL_CONTRAST_HU = 1.0, 10.0

LESION_FIELDS = ("case", "lesion", "volume_ml", "contrast_hu", "detected", "iou")
CASE_FIELDS = ("case", "lesions", "detected", "fp_components", "max_prob")


def components(mask: np.ndarray, spacing: Sequence[float] | None = None,
               merge_mm: float = 0.0) -> tuple[np.ndarray, int]:
    """Fully connected components (26 in 3D, 8 in 2D) of a boolean mask: (labels 1..count, count). With
    ``merge_mm`` > 0, parts less than ``merge_mm`` apart (each grown by half of it, in mm) are one component."""
    structure = ndimage.generate_binary_structure(mask.ndim, mask.ndim)
    if merge_mm <= 0 or not mask.any():
        labels, n = ndimage.label(mask, structure=structure)
        return labels, int(n)
    mm = [float(s) for s in spacing] if spacing is not None else [1.0] * mask.ndim
    box = ndimage.find_objects(mask.astype(np.uint8))[0]
    grow = [int(math.ceil(merge_mm / max(s, 1e-6))) + 1 for s in mm]
    box = tuple(slice(max(0, b.start - g), min(n, b.stop + g)) for b, g, n in zip(box, grow, mask.shape))
    near = ndimage.distance_transform_edt(~mask[box], sampling=mm) <= merge_mm / 2
    grouped, _ = ndimage.label(near, structure=structure)
    grouped[~mask[box]] = 0
    ids, inverse = np.unique(grouped, return_inverse=True)  # ids[0] == 0: background stays 0
    labels = np.zeros(mask.shape, np.int32)
    labels[box] = inverse.reshape(grouped.shape)
    return labels, int(len(ids) - 1)


def lesion_contrast(image: np.ndarray, lesion: np.ndarray, gland: np.ndarray, spacing: Sequence[float],
                    shell_mm: float = SHELL_MM) -> float:
    """Mean of ``image`` over the ``gland`` voxels within ``shell_mm`` of ``lesion`` minus its mean over ``lesion``;
    NaN without gland in that shell. Works on the lesion's bounding box grown by the shell."""
    box = ndimage.find_objects(lesion.astype(np.uint8))[0]
    grow = [int(math.ceil(shell_mm / max(float(s), 1e-6))) + 1 for s in spacing]
    box = tuple(slice(max(0, b.start - g), min(n, b.stop + g)) for b, g, n in zip(box, grow, lesion.shape))
    les = lesion[box]
    dist = ndimage.distance_transform_edt(~les, sampling=[float(s) for s in spacing])
    shell = gland[box] & ~les & (dist <= shell_mm)
    if not shell.any():
        return float("nan")
    img = image[box]
    return float(img[shell].mean() - img[les].mean())


def case_lesions(
    pred: np.ndarray, label: np.ndarray, lesion_label: int, spacing: Sequence[float],
    image: np.ndarray | None = None, gland_labels: Sequence[int] = (1,), max_prob: float = float("nan"),
    case: str = "", min_iou: float = DETECTION_IOU, shell_mm: float = SHELL_MM, merge_mm: float = MERGE_MM,
) -> tuple[list[dict], dict]:
    """Lesion rows and the case row for integer label maps ``pred`` and ``label`` (same spatial shape, no channel).

    ``image`` (same grid, in HU for CT) gives each lesion's contrast; ``max_prob`` is the case's maximum
    lesion-class probability, carried into the case row.
    """
    if pred.shape != label.shape:
        raise ValueError(f"{case}: prediction shape {pred.shape} differs from the label's {label.shape}")
    voxel_ml = float(np.prod([float(s) for s in spacing])) / 1000.0
    truth, n_true = components(label == lesion_label, spacing, merge_mm)
    cand, n_cand = components(pred == lesion_label, spacing, merge_mm)
    cand_size = np.bincount(cand.ravel(), minlength=n_cand + 1)
    gland = np.isin(label, list(gland_labels)) if image is not None else None
    matched = np.zeros(n_cand + 1, bool)
    rows = []
    for k in range(1, n_true + 1):
        mask = truth == k
        size = int(mask.sum())
        overlap = np.bincount(cand[mask], minlength=n_cand + 1)
        overlap[0] = 0
        iou = overlap / np.maximum(size + cand_size - overlap, 1)
        iou[0] = 0.0
        hits = iou > min_iou
        matched |= hits
        contrast = lesion_contrast(image, mask, gland, spacing, shell_mm) if image is not None else float("nan")
        rows.append({"case": case, "lesion": k, "volume_ml": size * voxel_ml, "contrast_hu": contrast,
                     "detected": bool(hits.any()), "iou": float(iou.max()) if n_cand else 0.0})
    fp = int(n_cand - matched[1:].sum())
    case_row = {"case": case, "lesions": n_true, "detected": sum(r["detected"] for r in rows),
                "fp_components": fp, "max_prob": float(max_prob)}
    return rows, case_row


def average_precision(scores: Sequence[float], positive: Sequence[bool]) -> float:
    """Area under the precision-recall step curve over the distinct score thresholds (scikit-learn's definition)."""
    s, y = np.asarray(scores, float), np.asarray(positive, bool)
    if not y.any():
        return float("nan")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # the last index of each distinct threshold
    tp = np.cumsum(y)[last]
    precision, recall = tp / (last + 1), tp / y.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def case_auroc(scores: Sequence[float], positive: Sequence[bool]) -> float:
    """MONAI's ROC AUC of the case scores; NaN unless both classes are present."""
    from monai.metrics import compute_roc_auc

    y = np.asarray(positive, bool)
    if y.all() or not y.any():
        return float("nan")
    return float(compute_roc_auc(torch.as_tensor(np.asarray(scores, float)), torch.as_tensor(y.astype(float))))


def _rate(rows: Sequence[dict], keep: Callable[[dict], bool]) -> dict:
    chosen = [r for r in rows if keep(r)]
    found = sum(bool(r["detected"]) for r in chosen)
    return {"detected": found, "lesions": len(chosen),
            "sensitivity": found / len(chosen) if chosen else float("nan")}


def _bins(edges: Sequence[float], unit: str) -> list[tuple[str, float, float]]:
    lo = [-math.inf, *edges]
    hi = [*edges, math.inf]
    names = [f"<{edges[0]:g} {unit}"] + [f"{a:g}-{b:g} {unit}" for a, b in zip(edges, edges[1:])] + [
        f">={edges[-1]:g} {unit}"]
    return list(zip(names, lo, hi))


def lesion_summary(lesions: Sequence[dict], cases: Sequence[dict]) -> dict:
    """Sensitivity (overall, by volume bin, by contrast bin, goal bin), false positives per case, case AUROC / AP."""
    scores = [float(c["max_prob"]) for c in cases]
    positive = [int(c["lesions"]) > 0 for c in cases]
    scored = all(math.isfinite(s) for s in scores) and len(scores) > 0
    return {
        "rule": f"lesions and predicted components: connected parts less than {MERGE_MM:g} mm apart taken as one; "
                f"a lesion is detected when a predicted component overlaps it with IoU > {DETECTION_IOU}; "
                "a predicted component matching no lesion so is a false positive; contrast = gland within "
                f"{SHELL_MM:g} mm minus lesion (HU, positive = hypo-attenuating)",
        "cases": len(cases), "cases_with_lesion": sum(positive),
        "sensitivity": _rate(lesions, lambda r: True),
        "by_volume": {name: _rate(lesions, lambda r, a=a, b=b: a <= r["volume_ml"] < b)
                      for name, a, b in _bins(VOLUME_BINS_ML, "ml")},
        "by_contrast": {name: _rate(lesions, lambda r, a=a, b=b: a <= r["contrast_hu"] < b)
                        for name, a, b in _bins(CONTRAST_BINS_HU, "HU")},
        "goal_bin": {"definition": f"volume >= {GOAL_VOLUME_ML:g} ml and contrast >= {GOAL_CONTRAST_HU:g} HU",
                     **_rate(lesions, lambda r: r["volume_ml"] >= GOAL_VOLUME_ML
                             and r["contrast_hu"] >= GOAL_CONTRAST_HU)},
        "fp_components_per_case": (sum(int(c["fp_components"]) for c in cases) / len(cases)) if cases else math.nan,
        "case_auroc": case_auroc(scores, positive) if scored else math.nan,
        "case_average_precision": average_precision(scores, positive) if scored else math.nan,
    }


def format_lesion_summary(summary: dict) -> str:
    """A short markdown table of the summary."""
    def cell(rate: dict) -> str:
        return f"{rate['sensitivity']:.3f} ({rate['detected']}/{rate['lesions']})"

    lines = ["| lesion metric | value |", "|---|---|", f"| sensitivity | {cell(summary['sensitivity'])} |"]
    lines += [f"| sensitivity, {k} | {cell(v)} |" for k, v in summary["by_volume"].items()]
    lines += [f"| sensitivity, contrast {k} | {cell(v)} |" for k, v in summary["by_contrast"].items()]
    lines.append(f"| sensitivity, {summary['goal_bin']['definition']} | {cell(summary['goal_bin'])} |")
    lines.append(f"| false-positive components per case | {summary['fp_components_per_case']:.2f} |")
    lines.append(f"| case-level AUROC (max probability; {summary['cases_with_lesion']} of {summary['cases']} cases "
                 f"with a lesion) | {summary['case_auroc']:.3f} |")
    lines.append(f"| case-level average precision | {summary['case_average_precision']:.3f} |")
    return "\n".join(lines)


def write_lesion_tables(lesions: Sequence[dict], cases: Sequence[dict], summary: dict,
                        out_dir: str | Path) -> list[Path]:
    """``lesions.csv`` (one row per reference lesion), ``lesion_cases.csv`` and ``lesion_summary.json`` / ``.md``,
    each through a temporary file (a failed write keeps the previous table)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, rows, fields in (("lesions.csv", lesions, LESION_FIELDS), ("lesion_cases.csv", cases, CASE_FIELDS)):
        path = out / name
        with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
        paths.append(path)
    js, md = out / "lesion_summary.json", out / "lesion_summary.md"
    write_text_atomic(js, json.dumps(json_ready(summary), indent=2) + "\n")
    write_text_atomic(md, format_lesion_summary(summary) + "\n")
    return paths + [js, md]


def read_lesion_tables(folders: Sequence[str | Path]) -> tuple[list[dict], list[dict]]:
    """The lesion and case rows of several evaluation folders together (to summarise them as one set)."""
    lesions, cases = [], []
    for folder in folders:
        with (Path(folder) / "lesions.csv").open() as f:
            lesions += [{**r, "volume_ml": float(r["volume_ml"]), "contrast_hu": float(r["contrast_hu"]),
                         "detected": r["detected"] == "True", "iou": float(r["iou"])} for r in csv.DictReader(f)]
        with (Path(folder) / "lesion_cases.csv").open() as f:
            cases += [{**r, "lesions": int(r["lesions"]), "detected": int(r["detected"]),
                       "fp_components": int(r["fp_components"]), "max_prob": float(r["max_prob"])}
                      for r in csv.DictReader(f)]
    return lesions, cases
