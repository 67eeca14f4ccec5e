"""The fingerprint of a data set: geometry, body extent, class frequencies and foreground intensities.

A lean pass of our own rather than MONAI's Auto3DSeg ``DataAnalyzer``: the analyser runs every case through a
float32 transform chain and computes per-label shape and intensity statistics the plan does not use, yet not the
body extent the target spacing and patch depend on, and it is several times slower for the same median spacing
and shape. Each case is read once with nibabel
(MONAI's ``LoadImage`` for other formats), never resampled: spacing, shape and body extent are measured along
the stored axes and permuted into RAS order with the affine's orientation, as ``Orientationd("RAS")`` in the
bundles. The body is the voxels above -500 HU for CT (dataset.json ``modality`` "CT", or HU-like values when
none is declared), the bundles' ``CropForegroundd`` threshold, else above 0 (MONAI's default).
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.data.cases import NIFTI_EXTENSIONS, PIL_EXTENSIONS
from pipeline.data.datalist import load_datalist
from pipeline.data.listing import dataset_entries
from pipeline.errors import PipelineError, short_error

__all__ = ["BODY_THRESHOLD_CT", "SAMPLES_PER_CASE", "case_fingerprint", "dataset_fingerprint"]

BODY_THRESHOLD_CT = -500.0  # HU; the bundles crop to the body with the same threshold
SAMPLES_PER_CASE = 10_000  # foreground voxels sampled per case for the intensity statistics


def _load(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Voxels (first volume / channel only) and affine of one image file, as stored on disk."""
    path = Path(path)
    try:
        if path.name.lower().endswith(NIFTI_EXTENSIONS):
            import nibabel as nib

            img = nib.load(str(path))
            data = np.asanyarray(img.dataobj)
            affine = np.asarray(img.affine, dtype=np.float64)
            while data.ndim > 3:
                data = data[..., 0]
            return data, affine
        from monai.transforms import LoadImage

        tensor = LoadImage(image_only=True)(str(path))
        data = np.asarray(tensor)
        affine = np.asarray(tensor.affine, dtype=np.float64)
        n = 2 if path.name.lower().endswith(PIL_EXTENSIONS) else min(affine.shape[0] - 1, data.ndim)
        while data.ndim > n:  # channels last (RGB PNG) or 4D
            data = data[..., 0]
        keep = list(range(n)) + [affine.shape[0] - 1]  # MONAI gives 2D images a 4x4 affine
        return data, affine[np.ix_(keep, keep)]
    except PipelineError:
        raise
    except Exception as e:  # noqa: BLE001 - readers raise many types for bad files
        raise PipelineError(f"{path}: unreadable ({short_error(e)})") from None


def _ras_order(affine: np.ndarray) -> tuple[list[int], np.ndarray]:
    """For each stored axis, the RAS axis it becomes after reorientation; and the stored voxel spacing."""
    import nibabel as nib

    n = affine.shape[0] - 1
    spacing = np.sqrt((affine[:n, :n] ** 2).sum(axis=0))
    ornt = nib.orientations.io_orientation(affine)
    return [int(a) for a in ornt[:, 0]], spacing


def _to_ras(values: Sequence[float], axes: list[int]) -> list[float]:
    out = [0.0] * len(axes)
    for stored, ras in enumerate(axes):
        out[ras] = float(values[stored])
    return out


def _label_counts(label: np.ndarray, chunk: int = 1 << 22) -> np.ndarray:
    """Voxels per label value, counted in chunks (bincount would otherwise copy a whole CT label map to int64)."""
    flat = label.ravel(order="K")
    counts = np.zeros(1, np.int64)
    for i in range(0, flat.size, chunk):
        part = np.bincount(flat[i : i + chunk])
        counts = np.pad(counts, (0, max(0, part.size - counts.size)))
        counts[: part.size] += part
    return counts


def case_fingerprint(case: dict, index: int, seed: int = 0, ct: bool | None = None) -> dict[str, Any]:
    """Geometry (RAS order), body extent, label voxel counts and sampled foreground intensities of one case.

    ``ct``: True/False as declared by the data set, None to decide from the image (minimum below -500).
    The foreground sample (at most SAMPLES_PER_CASE voxels) is drawn with ``default_rng([seed, index])``.
    """
    image, affine = _load(case["image"])
    label, _ = _load(case["label"])
    if label.shape != image.shape:
        raise PipelineError(
            f"case {case.get('case')}: label shape {label.shape} differs from image shape {image.shape}"
        )
    if label.dtype.kind not in "ui":
        label = np.rint(label).astype(np.int32)
    if label.size and label.min() < 0:
        raise PipelineError(f"case {case.get('case')}: negative label value {int(label.min())}")
    axes, spacing = _ras_order(affine)
    hu_like = bool(image.min() < BODY_THRESHOLD_CT) if ct is None else ct
    body = image > (BODY_THRESHOLD_CT if hu_like else 0)
    extent = []
    for a in range(image.ndim):
        hit = np.flatnonzero(body.any(axis=tuple(b for b in range(image.ndim) if b != a)))
        extent.append((hit[-1] - hit[0] + 1) * spacing[a] if hit.size else image.shape[a] * spacing[a])
    fg = image[label > 0]
    if fg.size > SAMPLES_PER_CASE:
        fg = fg[np.random.default_rng([seed, index]).choice(fg.size, SAMPLES_PER_CASE, replace=False)]
    counts = _label_counts(label)
    return {
        "case": case.get("case"),
        "spacing": [round(v, 4) for v in _to_ras(spacing, axes)],
        "shape": [int(v) for v in _to_ras(image.shape, axes)],
        "body_extent_mm": [round(v, 1) for v in _to_ras(extent, axes)],
        "class_voxels": {str(c): int(n) for c, n in enumerate(counts) if n},
        "hu_like": hu_like,
        "foreground_sample": fg.astype(np.float64),
    }


def _summary(values: np.ndarray, digits: int = 3) -> dict[str, list[float]]:
    """Per-axis median and 10th / 90th percentiles over cases (rows)."""
    return {
        "median": [round(float(v), digits) for v in np.median(values, axis=0)],
        "p10": [round(float(v), digits) for v in np.percentile(values, 10, axis=0)],
        "p90": [round(float(v), digits) for v in np.percentile(values, 90, axis=0)],
    }


def _declared_modality(dataset_dir: str | Path) -> str | None:
    meta = dataset_entries(dataset_dir).meta or {}
    modality = meta.get("modality") or meta.get("channel_names")  # MSD, nnU-Net v2
    if isinstance(modality, dict) and modality:
        first = modality.get("0", next(iter(modality.values())))
        return str(first) if first is not None else None
    return None


def dataset_fingerprint(
    dataset_dir: str | Path, max_cases: int | None = None, seed: int = 0, workers: int = 2
) -> dict[str, Any]:
    """Fingerprint of the training cases of a data set folder (all of them, or ``max_cases`` drawn with ``seed``).

    Per case: spacing and shape (RAS axis order), body extent in mm, class voxel counts; over the cases:
    median and 10th/90th percentiles of those, class voxel frequencies, and the 0.5/99.5 percentiles, mean
    and std of the pooled foreground (label > 0) intensity sample. ``workers`` threads read the files.
    """
    start = time.perf_counter()
    cases = load_datalist(dataset_dir, "training", val_fraction=0.0)
    cases = [c for c in cases if "label" in c]
    if not cases:
        raise PipelineError(f"{dataset_dir}: no labelled training cases to fingerprint")
    n_total = len(cases)
    if max_cases is not None and 0 < max_cases < n_total:
        pick = np.sort(np.random.default_rng(seed).choice(n_total, max_cases, replace=False))
        cases = [cases[i] for i in pick]
    modality = _declared_modality(dataset_dir)
    ct = None if modality is None else modality.strip().upper() == "CT"
    jobs = [(c, i) for i, c in enumerate(cases)]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:  # zlib and numpy release the GIL
        per_case = list(pool.map(lambda job: case_fingerprint(job[0], job[1], seed, ct), jobs))
    dims = {len(c["spacing"]) for c in per_case}
    if len(dims) != 1:
        raise PipelineError(f"{dataset_dir}: cases mix {sorted(dims)} spatial dimensions")
    sample = np.concatenate([c.pop("foreground_sample") for c in per_case])
    totals: dict[str, int] = {}
    present: dict[str, int] = {}
    for c in per_case:
        for k, n in c["class_voxels"].items():
            totals[k] = totals.get(k, 0) + n
            present[k] = present.get(k, 0) + 1
    all_voxels = sum(totals.values())
    order = sorted(totals, key=int)
    intensity: dict[str, float | int | None] = {"n_samples": int(sample.size)}
    for key, value in (
        ("p00_5", np.percentile(sample, 0.5) if sample.size else None),
        ("p99_5", np.percentile(sample, 99.5) if sample.size else None),
        ("mean", sample.mean() if sample.size else None),
        ("std", sample.std() if sample.size else None),
    ):
        intensity[key] = None if value is None else round(float(value), 3)
    return {
        "dataset_dir": str(Path(dataset_dir).absolute()),
        "modality": modality,
        "ct": all(c["hu_like"] for c in per_case) if ct is None else ct,
        "spatial_dims": dims.pop(),
        "n_training_cases": n_total,
        "n_analysed": len(per_case),
        "spacing": _summary(np.array([c["spacing"] for c in per_case])),
        "shape": _summary(np.array([c["shape"] for c in per_case]), 1),
        "body_extent_mm": _summary(np.array([c["body_extent_mm"] for c in per_case]), 1),
        "class_frequencies": {k: round(totals[k] / all_voxels, 6) for k in order},
        "class_presence": {k: round(present[k] / len(per_case), 3) for k in order},
        "foreground_intensity": intensity,
        "cases": [{k: v for k, v in c.items() if k != "hu_like"} for c in per_case],
        "seconds": round(time.perf_counter() - start, 2),
    }
