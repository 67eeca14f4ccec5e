"""Per-case, per-class segmentation metrics and the tables that summarise them.

Always: Dice, IoU, HD95 (mm). With ``extended`` (evaluation): also the average symmetric surface distance (ASSD,
mm), the normalised surface Dice (NSD) at a tolerance in mm, precision and recall. All come from MONAI's metric
functions. Empty masks, per class (the reason in brackets):

============================  =====================================  ========================================
case                          reported                               why
============================  =====================================  ========================================
class absent from the label   Dice, IoU, recall, HD95, ASSD, NSD:    nothing to find: averaging a 0 or a 1
and from the prediction       NaN; precision NaN                     would reward or punish a case that has
                                                                     no bearing on the class
class absent from the label,  Dice, IoU, recall, HD95, ASSD: NaN;    every predicted voxel is a false
present in the prediction     precision 0; NSD 0                     positive; distances to an empty surface
                                                                     are undefined
class present in the label,   Dice 0, IoU 0, recall 0, NSD 0;        the class was missed; distances from an
absent from the prediction    precision NaN; HD95, ASSD NaN          empty prediction are undefined (not 0)
============================  =====================================  ========================================

Summaries count only the finite values (``n`` in the tables), so a missed class shows as Dice 0 and as a smaller
``n`` for the distances.
"""
from __future__ import annotations

import csv
import json
import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from monai.metrics import (
    compute_average_surface_distance,
    compute_confusion_matrix_metric,
    compute_dice,
    compute_hausdorff_distance,
    compute_iou,
    compute_surface_dice,
    get_confusion_matrix,
)

from pipeline.fileio import atomic_path, write_text_atomic

METRICS = ("dice", "iou", "hd95")
EXTENDED_METRICS = ("assd", "nsd", "precision", "recall")


def spacing_of(t: torch.Tensor, spatial_dims: int) -> tuple[float, ...]:
    """Voxel spacing (mm) of a channel-first MetaTensor from its affine; 1.0 per axis for a plain tensor."""
    pixdim = getattr(t, "pixdim", None)
    if pixdim is None:
        return (1.0,) * spatial_dims
    values = [round(float(v), 6) for v in np.asarray(pixdim).ravel()[:spatial_dims]]
    return tuple(values) if len(values) == spatial_dims else (1.0,) * spatial_dims


def case_metrics(
    pred: torch.Tensor, label: torch.Tensor, class_names: Sequence[str], hd95: bool = True,
    spacing: Sequence[float] | None = None, extended: bool = False, nsd_tolerance: float = 2.0,
) -> dict[str, float]:
    """Metrics of one case from one-hot ``(C, *spatial)`` pred and label; background channel 0 is skipped.

    Keys ``dice_<class>``, ``iou_<class>``, ``hd95_<class>`` (mm); with ``extended`` also ``assd_<class>`` (mm),
    ``nsd_<class>`` (surface Dice at ``nsd_tolerance`` mm), ``precision_<class>`` and ``recall_<class>``. Distances
    use ``spacing`` (mm per voxel, 1 when None). Empty masks: the module docstring's table.
    """
    p, y = pred[None].float(), label[None].float()
    mm = [float(v) for v in spacing] if spacing else None
    values: dict[str, torch.Tensor] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values["dice"] = compute_dice(p, y, include_background=False, ignore_empty=True)[0]
        values["iou"] = compute_iou(p, y, include_background=False, ignore_empty=True)[0]
        if hd95:
            values["hd95"] = compute_hausdorff_distance(p, y, include_background=False, percentile=95, spacing=mm)[0]
        if extended:
            values["assd"] = compute_average_surface_distance(p, y, include_background=False, symmetric=True,
                                                              spacing=mm)[0]
            values["nsd"] = compute_surface_dice(p, y, [float(nsd_tolerance)] * (p.shape[1] - 1),
                                                 include_background=False, spacing=mm)[0]
            confusion = get_confusion_matrix(p, y, include_background=False)
            values["precision"] = compute_confusion_matrix_metric("precision", confusion)[0]
            values["recall"] = compute_confusion_matrix_metric("sensitivity", confusion)[0]
    pred_empty = p[0, 1:].flatten(1).sum(1) == 0
    label_empty = y[0, 1:].flatten(1).sum(1) == 0
    out: dict[str, float] = {}
    for metric, v in values.items():
        for c, name in enumerate(class_names):
            x = float(v[c])
            if metric in ("hd95", "assd") and (pred_empty[c] or label_empty[c]):
                x = float("nan")  # a distance to or from an empty surface is undefined
            elif metric == "nsd" and label_empty[c]:
                x = 0.0 if not pred_empty[c] else float("nan")
            elif metric == "recall" and label_empty[c]:
                x = float("nan")
            out[f"{metric}_{name}"] = x if math.isfinite(x) else float("nan")
    return out


def metric_keys(class_names: Sequence[str], hd95: bool = True, extended: bool = False) -> list[str]:
    """``<metric>_<class>`` keys that ``case_metrics`` returns for these options, metric by metric."""
    metrics = tuple(m for m in METRICS if hd95 or m != "hd95") + (EXTENDED_METRICS if extended else ())
    return [f"{m}_{c}" for m in metrics for c in class_names]


def summarise(rows: Sequence[dict[str, float | str]], keys: Sequence[str]) -> dict[str, dict[str, float]]:
    """Mean, std, median and count (non-NaN cases) of each metric key over the cases."""
    summary = {}
    for k in keys:
        vals = np.array([float(r[k]) for r in rows if k in r], dtype=float)
        vals = vals[np.isfinite(vals)]
        summary[k] = {
            "mean": float(vals.mean()) if vals.size else float("nan"),
            "std": float(vals.std()) if vals.size else float("nan"),
            "median": float(np.median(vals)) if vals.size else float("nan"),
            "n": int(vals.size),
        }
    return summary


def write_tables(rows: Sequence[dict], summary: dict[str, dict[str, float]], out_dir: str | Path) -> list[Path]:
    """Write ``metrics_per_case.csv``, ``metrics_summary.csv``, ``metrics_summary.json`` and ``metrics_summary.md``,
    each through a temporary file: a full disk keeps the previous table and stops with one line (``WriteError``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fields = list(rows[0].keys()) if rows else ["case"]
    per_case = out / "metrics_per_case.csv"
    with atomic_path(per_case) as tmp, tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    summ = out / "metrics_summary.csv"
    with atomic_path(summ) as tmp, tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["metric", "mean", "std", "median", "n"])
        for k, s in summary.items():
            w.writerow([k, f"{s['mean']:.4f}", f"{s['std']:.4f}", f"{s['median']:.4f}", s["n"]])
    js = out / "metrics_summary.json"
    write_text_atomic(js, json.dumps({k: {m: (None if isinstance(v, float) and not math.isfinite(v) else v)
                                          for m, v in s.items()} for k, s in summary.items()}, indent=2) + "\n")
    md = out / "metrics_summary.md"
    write_text_atomic(md, format_summary(summary) + "\n")
    return [per_case, summ, js, md]


def format_summary(summary: dict[str, dict[str, float]]) -> str:
    """A markdown table: one row per metric, mean ± std, median, number of cases."""
    lines = ["| metric | mean ± std | median | cases |", "|---|---|---|---|"]
    for k, s in summary.items():
        lines.append(f"| {k} | {s['mean']:.4f} ± {s['std']:.4f} | {s['median']:.4f} | {s['n']} |")
    return "\n".join(lines)
