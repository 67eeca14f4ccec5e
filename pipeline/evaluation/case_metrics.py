"""Per-case, per-class segmentation metrics (Dice, IoU, HD95 in mm) and the tables that summarise them."""
from __future__ import annotations

import csv
import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance, compute_iou

METRICS = ("dice", "iou", "hd95")


def spacing_of(t: torch.Tensor, spatial_dims: int) -> tuple[float, ...]:
    """Voxel spacing (mm) of a channel-first MetaTensor from its affine; 1.0 per axis for a plain tensor."""
    pixdim = getattr(t, "pixdim", None)
    if pixdim is None:
        return (1.0,) * spatial_dims
    values = [round(float(v), 6) for v in np.asarray(pixdim).ravel()[:spatial_dims]]
    return tuple(values) if len(values) == spatial_dims else (1.0,) * spatial_dims


def case_metrics(
    pred: torch.Tensor, label: torch.Tensor, class_names: Sequence[str], hd95: bool = True,
    spacing: Sequence[float] | None = None,
) -> dict[str, float]:
    """Metrics of one case from one-hot ``(C, *spatial)`` pred and label; background channel 0 is skipped.

    Keys ``dice_<class>``, ``iou_<class>``, ``hd95_<class>`` (mm); NaN where the class is absent from the label
    (and, for HD95, from the prediction).
    """
    p, y = pred[None].float(), label[None].float()
    out: dict[str, float] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dice = compute_dice(p, y, include_background=False, ignore_empty=True)[0]
        iou = compute_iou(p, y, include_background=False, ignore_empty=True)[0]
        hd = (
            compute_hausdorff_distance(
                p, y, include_background=False, percentile=95,
                spacing=[float(v) for v in spacing] if spacing else None,
            )[0]
            if hd95
            else None
        )
    for c, name in enumerate(class_names):
        out[f"dice_{name}"] = float(dice[c])
        out[f"iou_{name}"] = float(iou[c])
        if hd is not None:
            v = float(hd[c])
            out[f"hd95_{name}"] = v if math.isfinite(v) else float("nan")
    return out


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
    """Write ``metrics_per_case.csv``, ``metrics_summary.csv`` and ``metrics_summary.md`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fields = list(rows[0].keys()) if rows else ["case"]
    per_case = out / "metrics_per_case.csv"
    with per_case.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    summ = out / "metrics_summary.csv"
    with summ.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["metric", "mean", "std", "median", "n"])
        for k, s in summary.items():
            w.writerow([k, f"{s['mean']:.4f}", f"{s['std']:.4f}", f"{s['median']:.4f}", s["n"]])
    md = out / "metrics_summary.md"
    md.write_text(format_summary(summary) + "\n")
    return [per_case, summ, md]


def format_summary(summary: dict[str, dict[str, float]]) -> str:
    """A markdown table: one row per metric, mean ± std, median, number of cases."""
    lines = ["| metric | mean ± std | median | cases |", "|---|---|---|---|"]
    for k, s in summary.items():
        lines.append(f"| {k} | {s['mean']:.4f} ± {s['std']:.4f} | {s['median']:.4f} | {s['n']} |")
    return "\n".join(lines)
