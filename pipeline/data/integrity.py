"""Label value checks and a whole-data-set check.

Label values need the voxel data, so they are checked when the data are loaded anyway: put
``CheckLabelValuesd`` right after ``LoadImaged``. MONAI has no such check (a stray value such as 3 or
255 in a label file otherwise surfaces much later as a CUDA assert or a silently wrong one-hot), so
these are our own. ``check_dataset`` runs every header check of ``pipeline.data.datalist`` plus the
label value check (and, optionally, a full read of every image) and returns all problems found.
"""
from __future__ import annotations

import gzip
from collections.abc import Hashable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.transforms import MapTransform
from monai.utils import convert_to_numpy

from pipeline.data import datalist as dl
from pipeline.errors import PipelineError

__all__ = ["CheckLabelValuesd", "allowed_label_values", "check_case_labels", "check_dataset", "load_label_array"]

AllowedSpec = int | Sequence[float] | Mapping[str, Any]
_MAX_LISTED = 10


def allowed_label_values(allowed: AllowedSpec) -> tuple[float, ...]:
    """Allowed label values from a number of classes (n -> 0..n-1), a sequence of values, or a
    dataset.json "labels" dict (MSD {"0": "background", ...} or nnU-Net v2 {"background": 0, ...})."""
    if isinstance(allowed, bool):
        raise PipelineError(f"allowed label values {allowed!r}: expected a class count, values or a labels dict")
    if isinstance(allowed, (int, np.integer)):
        allowed = int(allowed)
        if allowed < 1:
            raise PipelineError(f"number of classes {allowed}: must be >= 1")
        return tuple(float(v) for v in range(allowed))
    if isinstance(allowed, Mapping):
        keys = [str(k).strip() for k in allowed]
        if keys and all(k.lstrip("-").isdigit() for k in keys):
            return tuple(sorted(float(k) for k in keys))
        values: list[float] = []
        for name, v in allowed.items():
            for item in v if isinstance(v, (list, tuple)) else [v]:  # nnU-Net regions list several labels
                if isinstance(item, bool) or not isinstance(item, (int, float)):
                    raise PipelineError(f"labels entry {name!r}: {v!r} is not a label value")
                values.append(float(item))
        if not values:
            raise PipelineError("labels dict is empty")
        return tuple(sorted(set(values)))
    if isinstance(allowed, (str, bytes)) or not isinstance(allowed, Iterable):
        raise PipelineError(f"allowed label values {allowed!r}: expected a class count, values or a labels dict")
    values = []
    for v in allowed:
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise PipelineError(f"allowed label values {allowed!r}: {v!r} is not a number")
        values.append(float(v))
    if not values:
        raise PipelineError("allowed label values: empty")
    return tuple(sorted(set(values)))


def _format_values(values: Iterable[float]) -> str:
    return ", ".join(str(int(v)) if float(v).is_integer() else repr(float(v)) for v in values)


def _label_problem(array: Any, allowed: tuple[float, ...] | None) -> str | None:
    """'label has unexpected values [...]' or None. Without ``allowed``: values must be integers >= 0."""
    arr = np.asarray(convert_to_numpy(array))
    if allowed is None:
        if arr.dtype.kind in "ub":
            return None
        ok = np.isfinite(arr) & (arr >= 0) & (np.mod(arr, 1) == 0) if arr.dtype.kind == "f" else arr >= 0
        wanted = "non-negative integers"
    else:
        ok = np.isin(arr, np.asarray(allowed))
        wanted = _format_values(allowed)
    if bool(np.all(ok)):
        return None
    bad = np.unique(arr[~ok])  # only the offending voxels: cheap when the label is mostly fine
    listed = _format_values(bad[:_MAX_LISTED]) + (f", ... ({len(bad)} in all)" if len(bad) > _MAX_LISTED else "")
    return f"label has unexpected values [{listed}] (allowed {wanted})"


def load_label_array(path: str | Path) -> np.ndarray:
    """Voxel data of a label file (NIfTI via nibabel, PNG/TIFF via PIL, other formats via SimpleITK)."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: label file missing")
    lower = path.name.lower()
    try:
        if lower.endswith(dl.NIFTI_EXTENSIONS):
            import nibabel as nib

            return np.asanyarray(nib.load(str(path)).dataobj)
        if lower.endswith(dl.PIL_EXTENSIONS):
            from PIL import Image

            with Image.open(path) as im:
                return np.asarray(im)
        import SimpleITK as sitk

        return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    except Exception as e:  # noqa: BLE001 - readers raise many types for bad files
        raise PipelineError(f"{path}: unreadable label ({dl._short(e)})") from None


def check_case_labels(path: str | Path, allowed: AllowedSpec) -> list[float]:
    """Load a label file and return its sorted distinct values; PipelineError naming the file if any is not allowed."""
    arr = load_label_array(path)
    problem = _label_problem(arr, allowed_label_values(allowed))
    if problem:
        raise PipelineError(f"{path}: {problem}")
    return [float(v) for v in np.unique(arr)]


class CheckLabelValuesd(MapTransform):
    """Raise PipelineError naming the source file when a label holds values outside ``allowed``; else a no-op.

    ``allowed``: values, a number of classes, or a dataset.json "labels" dict. Place right after LoadImaged.
    """

    def __init__(
        self,
        keys: Hashable | Sequence[Hashable] = "label",
        allowed: AllowedSpec = (0, 1, 2),
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.allowed = allowed_label_values(allowed)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            problem = _label_problem(d[key], self.allowed)
            if problem:
                raise PipelineError(f"{self._source(d, key)}: {problem}")
        return d

    @staticmethod
    def _source(d: Mapping[Hashable, Any], key: Hashable) -> str:
        meta = getattr(d[key], "meta", None) or d.get(f"{key}_meta_dict") or {}
        name = meta.get("filename_or_obj") if isinstance(meta, Mapping) else None
        if isinstance(name, (list, tuple)) and name:  # batched meta
            name = name[0]
        return str(name) if name else f"{key!r}"


def _read_fully(path: Path) -> str | None:
    """Problem found by reading all of an image file (bad gzip CRC, truncated pixel data), or None."""
    lower = path.name.lower()
    try:
        if lower.endswith(".gz"):
            with gzip.open(path, "rb") as g:  # the gzip CRC check covers the whole stream
                while g.read(1 << 24):
                    pass
        elif lower.endswith(dl.PIL_EXTENSIONS):
            from PIL import Image

            with Image.open(path) as im:
                im.load()
        elif lower.endswith(dl.ITK_EXTENSIONS):
            import SimpleITK as sitk

            sitk.ReadImage(str(path))
    except Exception as e:  # noqa: BLE001
        return f"image data unreadable ({dl._short(e)})"
    return None


def check_dataset(
    dataset_dir: str | Path, allowed: AllowedSpec | None = None, *, read_images: bool = True
) -> list[str]:
    """Check every case (training, validation, test) of a data set; return one line per problem ([] = fine).

    Header checks as in load_datalist, label values against ``allowed`` (default: dataset.json "labels";
    without one, labels must be non-negative integers) and, with ``read_images``, a full read of each image.
    """
    try:
        root = dl._root(dataset_dir)
        groups, meta = dl._dataset_groups(root)
        if allowed is None and meta is not None and "labels" in meta:
            allowed = meta["labels"]
        values = allowed_label_values(allowed) if allowed is not None else None
    except PipelineError as e:
        return [str(e)]
    problems: list[str] = []
    entries = [e for key in dl.SPLITS for e in groups.get(key) or []]
    for e in entries:
        problem = dl._check_entry(root, e)
        if problem is None and read_images:
            for path in e.images:
                if (problem := _read_fully(path)) is not None:
                    problem = f"case {e.case} ({dl._rel(root, path)}): {problem}"
                    break
        if problem is None and e.label is not None:
            try:
                found = _label_problem(load_label_array(e.label), values)
            except PipelineError as err:
                found = str(err).split(": ", 1)[-1]
            if found:
                problem = f"case {e.case} ({dl._rel(root, e.label)}): {found}"
        if problem is not None:
            problems.append(problem)
    return problems
