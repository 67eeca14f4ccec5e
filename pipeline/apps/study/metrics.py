"""The study's metrics beyond ``pipeline.evaluation`` (which gives Dice, IoU and HD95 per case and class).

MONAI has the surface-distance machinery (``get_mask_edges``, ``get_surface_distance``) but none of these scores,
so they are written here on top of it and of SciPy's connected components:

* boundary F1 at a tolerance (Csurka et al. 2013, "BF score"): the share of predicted boundary pixels within
  ``tolerance`` px of the true boundary (precision) and the converse (recall), combined as their harmonic mean;
  per case and class, NaN when the class is in neither mask, 0 when it is in only one;
* IoU inside overlap regions: per class, pixels counted only where two or more generated shapes overlap (the
  region comes from the generator, not from the label), pooled over the test cases;
* gap accuracy: the share of background pixels lying in a 1-2 px gap between two objects (``d1 + d2 <= 3`` in the
  notation of the U-Net paper's weight map) that the prediction leaves background, pooled over the cases: the
  pixels the boundary-weighted loss up-weights;
* IoU by object size: every connected component (8-connected) of each class in the label is an object; its IoU
  is taken against the union of the predicted components of that class that touch it (so two objects predicted
  as one blob each score below 1), and objects are binned by area: small < 100 px <= medium < 1000 px <= large.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from monai.metrics.utils import get_mask_edges, get_surface_distance
from scipy import ndimage

from pipeline.transforms.boundary import two_nearest_object_distances

__all__ = ["SIZE_BINS", "CaseScores", "boundary_f1", "gap_mask", "object_ious", "pool_scores", "score_case",
           "size_bin"]

SIZE_BINS = (("small", 0, 100), ("medium", 100, 1000), ("large", 1000, math.inf))  # object area in pixels
GAP_SUM = 3.0  # d1 + d2 (px) at most: background pixels in a gap of 1-2 px between two objects
_EIGHT = np.ones((3, 3), bool)


def boundary_f1(pred: np.ndarray, truth: np.ndarray, tolerance: float = 2.0) -> float:
    """Boundary F1 of two binary masks at ``tolerance`` px; NaN when both are empty, 0 when one is."""
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    if not pred.any() and not truth.any():
        return float("nan")
    if not pred.any() or not truth.any():
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        edges_pred, edges_truth = get_mask_edges(pred, truth, crop=True, always_return_as_numpy=True)
        to_truth = np.asarray(get_surface_distance(edges_pred, edges_truth, distance_metric="euclidean"))
        to_pred = np.asarray(get_surface_distance(edges_truth, edges_pred, distance_metric="euclidean"))
    precision = float((to_truth <= tolerance).mean())
    recall = float((to_pred <= tolerance).mean())
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def gap_mask(label: np.ndarray) -> np.ndarray:
    """Background pixels of an integer ``label`` in a gap of at most ~2 px between two objects (d1 + d2 <= 3)."""
    d1, d2, n_objects = two_nearest_object_distances(np.asarray(label, np.int64))
    if n_objects < 2:
        return np.zeros(label.shape, bool)
    return (np.asarray(label) == 0) & (d1 + d2 <= GAP_SUM)


def size_bin(area: int) -> str:
    """The name of the size bin of an object of ``area`` pixels."""
    return next(name for name, lo, hi in SIZE_BINS if lo <= area < hi)


def object_ious(pred: np.ndarray, label: np.ndarray, classes: Iterable[int]) -> list[tuple[int, int, float]]:
    """``(class, area, IoU)`` of every labelled object (connected component per class) against the predicted
    components of its class that touch it."""
    out = []
    for c in classes:
        truth_parts, n_truth = ndimage.label(label == c, structure=_EIGHT)
        if n_truth == 0:
            continue
        pred_parts, _ = ndimage.label(pred == c, structure=_EIGHT)
        for k in range(1, n_truth + 1):
            obj = truth_parts == k
            touching = np.unique(pred_parts[obj])
            blob = np.isin(pred_parts, touching[touching > 0])
            union = int((obj | blob).sum())
            out.append((int(c), int(obj.sum()), float((obj & blob).sum()) / union))
    return out


@dataclass
class CaseScores:
    """What one case adds to a run's scores: boundary F1 per class, pooled counts, per-object IoUs."""

    bf1: dict[int, float]
    overlap: dict[int, tuple[int, int]]  # class -> (intersection, union) inside the overlap region
    gap: tuple[int, int]  # (gap pixels predicted background, gap pixels)
    objects: list[tuple[int, int, float]] = field(default_factory=list)


def score_case(pred: np.ndarray, label: np.ndarray, n_classes: int, overlap: np.ndarray | None = None,
               tolerance: float = 2.0) -> CaseScores:
    """The study's scores of one 2D case: integer ``pred`` and ``label`` maps, ``overlap`` a bool region or None."""
    pred, label = np.asarray(pred), np.asarray(label)
    if pred.shape != label.shape:
        raise ValueError(f"prediction {pred.shape} and label {label.shape} differ in shape")
    classes = range(1, n_classes)
    bf1 = {c: boundary_f1(pred == c, label == c, tolerance) for c in classes}
    region = np.zeros(label.shape, bool) if overlap is None else np.asarray(overlap, bool)
    pooled = {c: (int(((pred == c) & (label == c) & region).sum()), int((((pred == c) | (label == c)) & region).sum()))
              for c in classes}
    gaps = gap_mask(label)
    return CaseScores(bf1, pooled, (int((gaps & (pred == 0)).sum()), int(gaps.sum())),
                      object_ious(pred, label, classes))


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def pool_scores(cases: Sequence[CaseScores], n_classes: int) -> dict[str, float]:
    """Run-level scores: ``bf1`` (mean over classes of the per-case means), ``overlap_iou`` (mean over classes of
    the pooled IoU; NaN without overlaps), ``gap_accuracy`` (NaN without gaps), ``iou_<bin>`` and ``objects_<bin>``
    (mean object IoU and object count per size bin)."""
    classes = range(1, n_classes)
    out = {"bf1": _nanmean([_nanmean([c.bf1[k] for c in cases]) for k in classes])}
    ious = []
    for k in classes:
        inter, union = (sum(c.overlap[k][i] for c in cases) for i in (0, 1))
        ious.append(inter / union if union else float("nan"))
    out["overlap_iou"] = _nanmean(ious)
    kept, total = (sum(c.gap[i] for c in cases) for i in (0, 1))
    out["gap_accuracy"] = kept / total if total else float("nan")
    objects = [o for c in cases for o in c.objects]
    for name, lo, hi in SIZE_BINS:
        values = [iou for _, area, iou in objects if lo <= area < hi]
        out[f"iou_{name}"] = _nanmean(values)
        out[f"objects_{name}"] = float(len(values))
    return out
