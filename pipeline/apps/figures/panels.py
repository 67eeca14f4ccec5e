"""One PNG per case like the report's Fig. 1.9: image, ground truth, prediction and one attention map per gated level,
the case's Dice per class in the title; 3D cases as one axial slice in radiological convention.

The drawing is ``pipeline.handlers.panels.panel_figure`` (the TensorBoard panel); what is added here is the choice
of slice (the most foreground by default, or the file's own slice number), the display window (CT soft tissue,
W 400 / L 40) and the metric, computed with the evaluation's ``case_metrics`` (MONAI's Dice, its empty-mask rules).
"""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from monai.networks import one_hot

from pipeline.evaluation.case_metrics import case_metrics
from pipeline.apps.figures.cases import CaseArrays, FigureCase, load_case
from pipeline.handlers.panels import best_slice, panel_figure

logger = logging.getLogger(__name__)

#: CT soft-tissue window (width, level) in HU
SOFT_TISSUE_WINDOW = (400.0, 40.0)
#: a 3D image whose values reach this (air, in HU) is taken for CT and shown in the soft-tissue window
CT_AIR_HU = -500.0


def display_range(image: np.ndarray, spatial_dims: int,
                  window: Sequence[float] | None = None) -> tuple[float, float] | None:
    """(lo, hi) shown from black to white: ``window`` (width, level) if given, the soft-tissue window for CT (3D
    values down to air), else None (the panel's 1st-99th percentile)."""
    if window is None and spatial_dims == 3 and float(image.min()) <= CT_AIR_HU:
        window = SOFT_TISSUE_WINDOW
    if window is None:
        return None
    width, level = float(window[0]), float(window[1])
    return level - width / 2, level + width / 2


def case_dice(pred: np.ndarray, label: np.ndarray, class_names: Sequence[str]) -> dict[str, float]:
    """Dice per foreground class of one case (NaN when the class is in neither map), from ``case_metrics``.

    Computed on the bounding box of label and prediction foreground, which holds every voxel Dice counts, so a
    large CT volume is not one-hot encoded whole.
    """
    fg = np.argwhere((pred > 0) | (label > 0))
    box = tuple(slice(lo, hi + 1) for lo, hi in zip(fg.min(0), fg.max(0))) if len(fg) else (slice(0, 1),) * pred.ndim
    n = len(class_names) + 1
    p = one_hot(torch.as_tensor(np.ascontiguousarray(pred[box]))[None, None], n)[0]
    y = one_hot(torch.as_tensor(np.ascontiguousarray(label[box]))[None, None], n)[0]
    metrics = case_metrics(p, y, class_names, hd95=False)
    return {name: metrics[f"dice_{name}"] for name in class_names}


def _fmt(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


def body_box(image: np.ndarray, margin: float = 0.05) -> tuple[slice, slice]:
    """In-plane bounding box of a CT slice's body (values above air, ``CT_AIR_HU``) with ``margin`` of its size
    around it; the whole slice when nothing is above air."""
    inside = np.argwhere(image > CT_AIR_HU)
    if not len(inside):
        return slice(None), slice(None)
    lo, hi = inside.min(0), inside.max(0) + 1
    pad = np.ceil((hi - lo) * margin).astype(int)
    lo, hi = np.maximum(lo - pad, 0), np.minimum(hi + pad, image.shape)
    return slice(int(lo[0]), int(hi[0])), slice(int(lo[1]), int(hi[1]))


def dice_text(pred: np.ndarray, label: np.ndarray, class_names: Sequence[str]) -> str:
    """``"organ 0.812, lesion n/a"``: Dice per class; a class the label lacks is not scored (n/a, as in the
    evaluation tables) and is marked "(FP)" when the prediction has it (false positives only)."""
    dice = case_dice(pred, label, class_names)
    parts = []
    for c, (name, value) in enumerate(dice.items(), start=1):
        note = " (FP)" if math.isnan(value) and (pred == c).any() else ""
        parts.append(f"{name} {_fmt(value)}{note}")
    return ", ".join(parts)


def case_figure(
    arrays: CaseArrays, case: str, class_names: Sequence[str], level_names: Sequence[int] | None = None,
    slice_index: int | None = None, window: Sequence[float] | None = None,
) -> tuple[Figure, str]:
    """The figure of one case and its title (with the case's Dice per class when it has a label; 3D: the shown
    slice's Dice under the prediction). ``slice_index``: 3D, the file's own axial slice number (default: the slice
    with the most label foreground, else prediction foreground), shown cropped to the body for CT.
    ``level_names``: the gated level of each attention map, in file order."""
    label, pred, image = arrays.label, arrays.pred, arrays.image
    maps = arrays.attention
    if level_names is not None and len(level_names) == len(maps):
        keys: list[int | str] = [int(v) for v in level_names]
    else:
        keys = [f"attention map {i + 1}" for i in range(len(maps))]
    lo_hi = display_range(image, arrays.spatial_dims, window)
    title, subtitles = case, {}
    if arrays.spatial_dims == 3:
        if slice_index is None:
            z = best_slice(label if label is not None and label.any() else pred)
            how = "most foreground"
        else:
            z = arrays.ras_slice(slice_index)
            how = "chosen"
        title = f"{case}: axial slice {arrays.slice_of_file(z)} of {image.shape[-1]} ({how})"
        box = body_box(image[..., z]) if float(image.min()) <= CT_AIR_HU else (slice(None), slice(None))
        pick = lambda a: a[box + (z,)]  # noqa: E731
        if label is not None:
            subtitles["prediction"] = "slice Dice: " + dice_text(pick(pred), pick(label), class_names)
    else:
        pick = lambda a: a  # noqa: E731
    if label is not None:
        title += "   case Dice " + dice_text(pred, label, class_names)
    fig = panel_figure(
        pick(image), pick(label) if label is not None else None, pick(pred),
        {k: pick(m) for k, m in zip(keys, maps)}, class_names, title=title,
        radiological=arrays.spatial_dims == 3, window=lo_hi, subtitles=subtitles,
    )
    return fig, title


def write_figures(
    cases: Sequence[FigureCase], out_dir: str | Path, class_names: Sequence[str], spatial_dims: int,
    level_names: Sequence[int] | None = None, slice_index: int | None = None, window: Sequence[float] | None = None,
    dpi: int = 100,
) -> list[Path]:
    """``<out_dir>/<case>.png`` for every case; returns the files. Every figure is drawn before the first is
    written, so a case that cannot be drawn (e.g. ``slice_index`` outside it) leaves ``out_dir`` untouched."""
    figures = []
    for case in cases:
        fig, title = case_figure(load_case(case, spatial_dims), case.case, class_names, level_names, slice_index,
                                 window)
        figures.append((fig, title, Path(out_dir) / f"{case.case}.png"))
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    for fig, title, path in figures:
        fig.savefig(path, dpi=dpi)
        logger.info("%s -> %s", title, path)
    return [path for _, _, path in figures]
