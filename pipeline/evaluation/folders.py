"""Score a folder of predicted label maps against a folder of reference labels, in the images' own space.

Pairs are matched by case id (file name without its image extension; a ``_seg`` / ``_pred`` suffix on a prediction
is ignored, so ``pancreas_001_seg.nii.gz`` meets ``pancreas_001.nii.gz``, as does nnU-Net's ``pancreas_001.nii.gz``;
so is the channel suffix of ``pancreas_001_0000_seg.nii.gz``, when no label carries it). Both are read with MONAI's
``LoadImage``;
a pair whose shapes or voxel-to-world affines differ is refused in one line, since a metric between two grids that do
not coincide measures the resampling, not the segmentation. Distances are in mm from the label's affine.

With a lesion class (``lesion_class``), lesion-level detection tables come too (``pipeline.evaluation.lesions``):
the contrast needs the images (``image_dir``, default the ``images*`` folder beside a ``labels*`` one, e.g.
``imagesTs`` for ``labelsTs``), the case-level score the probability maps that inference writes beside its label maps
(``<case>_prob``, ``--save-probabilities``); without them those columns are NaN.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from monai.networks import one_hot

from pipeline.data.cases import case_id, find_case_file, image_files
from pipeline.errors import PipelineError
from pipeline.evaluation.case_metrics import (
    case_metrics,
    metric_keys,
    spacing_of,
    summarise,
    write_tables,
)
from pipeline.evaluation.lesions import case_lesions, lesion_summary, write_lesion_tables

__all__ = ["evaluate_folders"]

PREDICTION_SUFFIXES = ("_seg", "_pred", "_prediction")
AUXILIARY_SUFFIXES = ("_prob", "_attention")  # inference's other outputs beside a label map


def _prediction_id(path: Path) -> str:
    cid = case_id(path)
    for suffix in PREDICTION_SUFFIXES:
        if cid.endswith(suffix) and len(cid) > len(suffix):
            return cid[: -len(suffix)]
    return cid


def _without_channel_suffix(preds: dict[str, Path], labels: dict[str, Path]) -> dict[str, Path]:
    """Prediction ids ``<case>_0000`` (an input named the nnU-Net way, written with ``_seg``) renamed ``<case>`` where
    only that matches a label."""
    out = {}
    for cid, path in preds.items():
        base = cid[:-5]
        renamed = cid.endswith("_0000") and cid not in labels and base in labels and base not in preds
        out[base if renamed else cid] = path
    return out


def _files(folder: str | Path, what: str) -> dict[str, Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise PipelineError(f"{folder}: {what} folder not found")
    files = image_files(folder)
    if what == "prediction":
        files = {k: p for k, p in files.items() if not case_id(p).endswith(AUXILIARY_SUFFIXES)}
    if not files:
        raise PipelineError(f"{folder}: no image files in the {what} folder")
    return {(_prediction_id(p) if what == "prediction" else case_id(p)): p for p in files.values()}


def _image_dir(label_dir: Path, image_dir: str | Path | None) -> Path | None:
    if image_dir is not None:
        return Path(image_dir)
    if label_dir.name.startswith("labels"):
        sibling = label_dir.with_name("images" + label_dir.name[len("labels"):])
        return sibling if sibling.is_dir() else None
    return None


def _by_case_id(folder: Path | None) -> dict[str, Path]:
    """The image files of ``folder`` by case id (none when there is no such folder), listed once per evaluation."""
    if folder is None or not folder.is_dir():
        return {}
    return {case_id(p): p for p in image_files(folder).values()}


def _load(path: Path):
    from monai.transforms import LoadImage

    try:
        return LoadImage(image_only=True, ensure_channel_first=True)(str(path))
    except Exception as e:  # noqa: BLE001 - any reader failure is one line naming the file
        raise PipelineError(f"{path}: unreadable image ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None


def _onehot(labels: torch.Tensor, n_classes: int, path: Path) -> torch.Tensor:
    values = torch.unique(labels)
    bad = [int(v) for v in values if v < 0 or v >= n_classes or v != torch.round(v)]
    if bad:
        raise PipelineError(f"{path}: label values {bad[:5]} outside 0..{n_classes - 1} (the classes given)")
    return one_hot(labels[None].long(), n_classes)[0].float()


def evaluate_folders(
    pred_dir: str | Path, label_dir: str | Path, out_dir: str | Path, class_names: Sequence[str],
    nsd_tolerance: float = 2.0, hd95: bool = True, lesion_class: int | None = None,
    image_dir: str | Path | None = None, gland_classes: Sequence[int] = (1,),
) -> dict[str, dict[str, float]]:
    """Per-case, per-class metrics of every prediction with a label, written as tables to ``out_dir``.

    ``class_names`` are the foreground classes 1..n. Returns the summary (mean, std, median, n per metric). A
    prediction without a label, or a label without a prediction, is an error naming the case; nothing is written
    until every pair has been checked and scored.
    """
    preds, labels = _files(pred_dir, "prediction"), _files(label_dir, "label")
    preds = _without_channel_suffix(preds, labels)
    missing = sorted(set(labels) - set(preds))
    extra = sorted(set(preds) - set(labels))
    if missing:
        raise PipelineError(f"{pred_dir}: no prediction for case(s) {', '.join(missing[:5])} of {label_dir}")
    if extra:
        raise PipelineError(f"{label_dir}: no label for prediction(s) {', '.join(extra[:5])} in {pred_dir}")
    n_classes = len(class_names) + 1
    images = _by_case_id(_image_dir(Path(label_dir), image_dir) if lesion_class is not None else None)
    probs = _by_case_id(Path(pred_dir) if lesion_class is not None else None)
    rows, lesions, lesion_cases = [], [], []
    for cid in sorted(labels):
        label, pred = _load(labels[cid]), _load(preds[cid])
        if tuple(label.shape[1:]) != tuple(pred.shape[1:]):
            raise PipelineError(f"{preds[cid]}: shape {tuple(pred.shape[1:])} differs from its label's "
                                f"{tuple(label.shape[1:])} ({labels[cid]})")
        if not np.allclose(np.asarray(label.affine), np.asarray(pred.affine), atol=1e-3):
            raise PipelineError(f"{preds[cid]}: affine differs from its label's ({labels[cid]}); predictions must be "
                                "in the label's space")
        spatial_dims = label.ndim - 1
        row: dict = {"case": cid}
        row.update(case_metrics(_onehot(pred, n_classes, preds[cid]), _onehot(label, n_classes, labels[cid]),
                                class_names, hd95, spacing_of(label, spatial_dims), extended=True,
                                nsd_tolerance=nsd_tolerance))
        rows.append(row)
        if lesion_class is not None:
            found, case = _lesions(pred, label, cid, lesion_class, gland_classes, images, probs)
            lesions += found
            lesion_cases.append(case)
    summary = summarise(rows, metric_keys(class_names, hd95, extended=True))
    write_tables(rows, summary, out_dir)
    if lesion_class is not None:
        summary["lesions"] = lesion_summary(lesions, lesion_cases)  # type: ignore[assignment]
        write_lesion_tables(lesions, lesion_cases, summary["lesions"], out_dir)
    return summary


def _lesions(pred, label, cid: str, lesion_class: int, gland_classes: Sequence[int], images: dict[str, Path],
             probs: dict[str, Path]) -> tuple[list[dict], dict]:
    """Lesion rows and case row of one pair; the image (contrast) and the probability map (case score) if found."""
    image_file, prob_file = find_case_file(images, cid), find_case_file(probs, cid, "_prob")
    image = _load(image_file)[0].numpy().astype(np.float32) if image_file else None
    if image is not None and image.shape != tuple(label.shape[1:]):
        raise PipelineError(f"{image_file}: shape {image.shape} differs from its label's {tuple(label.shape[1:])}")
    max_prob = float("nan")
    if prob_file:
        prob = _load(prob_file)
        if prob.shape[0] <= lesion_class:
            raise PipelineError(f"{prob_file}: {prob.shape[0]} probability channels, no channel {lesion_class}")
        max_prob = float(prob[lesion_class].max())
    return case_lesions(pred[0].numpy().astype(np.int16), label[0].numpy().astype(np.int16), lesion_class,
                        spacing_of(label, label.ndim - 1), image=image, gland_labels=gland_classes,
                        max_prob=max_prob, case=cid)
