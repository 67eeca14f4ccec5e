"""Whole-data-set check behind ``python -m pipeline check-data``, and label file checks.

``check_dataset`` lists every case with ``pipeline.data.listing``, runs its header checks, then per case
the image layout (one channel, or one per dataset.json modality: no 4D image beside a 3D label), a full
read of each image (corrupt data, NaN/Inf voxels) and the label values. Voxel data are read with MONAI's
``LoadImage``, as training reads them. At load time the same problems are stopped by the transforms in
``pipeline.transforms.checks`` (``CheckImaged``, ``CheckLabelValuesd``), whose problem texts are shared.
"""
from __future__ import annotations

import functools
import gzip
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from monai.transforms import LoadImage
from monai.utils import convert_to_numpy

from pipeline.data.case_files import read_header
from pipeline.data.listing import DataEntry, dataset_entries
from pipeline.errors import PipelineError, short_error
from pipeline.transforms.checks import AllowedSpec, allowed_label_values, label_value_problem, nonfinite_problem

__all__ = ["check_case_labels", "check_dataset", "load_label_array", "read_voxels"]


@functools.lru_cache(maxsize=1)
def _loader() -> LoadImage:
    return LoadImage(image_only=True, dtype=None)  # native dtype: no float copy of a whole CT just to check it


def read_voxels(path: str | Path) -> Any:
    """Voxel data of one image file, as training's LoadImaged reads it (MONAI ``LoadImage``, native dtype).

    Formats no installed MONAI reader handles (MetaImage/NRRD without the ``itk`` package) are read with
    SimpleITK instead. Reader errors propagate unchanged.
    """
    name = str(path)
    loader = _loader()
    if any(reader.verify_suffix(name) for reader in loader.readers):
        return loader(name)
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(sitk.ReadImage(name))


def _read(path: Path) -> tuple[Any, str | None]:
    """(voxels, None), or (None, the reader's error as one short line without the folder)."""
    try:
        return read_voxels(path), None
    except Exception as e:  # noqa: BLE001 - readers raise many types for bad files
        return None, short_error(e).replace(str(path), path.name)


def load_label_array(path: str | Path) -> np.ndarray:
    """Voxel data of a label file as a numpy array (see read_voxels); PipelineError naming the file if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: label file missing")
    voxels, error = _read(path)
    if error is not None:
        raise PipelineError(f"{path}: unreadable label ({error})")
    return np.asarray(convert_to_numpy(voxels))


def check_case_labels(path: str | Path, allowed: AllowedSpec) -> list[float]:
    """Load a label file and return its sorted distinct values; PipelineError naming the file if any is not allowed."""
    arr = load_label_array(path)
    problem = label_value_problem(arr, allowed_label_values(allowed))
    if problem:
        raise PipelineError(f"{path}: {problem}")
    return [float(v) for v in np.unique(arr)]


def _declared_channels(meta: Mapping[str, Any] | None) -> int:
    """Channels an image should have: the entries of dataset.json "modality" (MSD) or "channel_names"
    (nnU-Net v2) when there are several, else one."""
    for key in ("modality", "channel_names"):
        value = (meta or {}).get(key)
        if isinstance(value, Mapping) and value:
            return len(value)
    return 1


def _channels_text(n: int) -> str:
    return "one channel" if n == 1 else f"{n} channels, one per dataset.json modality"


def _layout_problem(e: DataEntry, channels: int) -> str | None:
    """An image whose extra (time/channel) dims do not load as ``channels`` channels, e.g. a 4D image, or None.

    LoadImaged(ensure_channel_first=True) turns one extra dim into channels: (x, y, z, t) -> (t, x, y, z);
    more than one extra dim leaves a spatial dim too many.
    """
    per_file = channels if len(e.images) == 1 else 1
    for path in e.images:
        try:
            header = read_header(path)
        except PipelineError as err:
            return f"{e.describe(path)}: image {str(err).split(': ', 1)[-1]}"
        extra, mode = header.extra_shape, ""
        if header.mode is not None:  # PIL: colour bands load as channels
            from PIL import Image

            bands = Image.getmodebands(header.mode)
            extra, mode = ((bands,) if bands > 1 else ()), f", mode {header.mode}"
        if len(extra) > 1 or (extra[0] if extra else 1) != per_file:
            shape = header.spatial_shape + extra
            wanted = f"a {len(header.spatial_shape)}D image with {_channels_text(per_file)}"
            return f"{e.describe(path)}: image is {len(shape)}D (shape {shape}{mode}); expected {wanted}"
    if len(e.images) > 1 and len(e.images) != channels:
        wanted = _channels_text(channels)
        return f"{e.describe()}: image lists {len(e.images)} files (one channel each); expected {wanted}"
    return None


def _gzip_problem(path: Path) -> str | None:
    """Problem found by decompressing a whole .gz stream (bad CRC or length the header read cannot see), or None."""
    try:
        with gzip.open(path, "rb") as g:
            while g.read(1 << 24):
                pass
    except Exception as e:  # noqa: BLE001 - any decompression failure means a corrupt file
        return short_error(e)
    return None


def _image_data_problem(e: DataEntry) -> str | None:
    """Full read of each image of a case: corrupt data, or NaN/Inf voxels; first problem or None."""
    for path in e.images:
        error = _gzip_problem(path) if path.name.lower().endswith(".gz") else None
        voxels = None
        if error is None:
            voxels, error = _read(path)
        if error is not None:
            return f"{e.describe(path)}: image data unreadable ({error})"
        problem = nonfinite_problem(voxels, "image")
        if problem:
            return f"{e.describe(path)}: {problem}"
    return None


def _label_problem(e: DataEntry, allowed: tuple[float, ...] | None) -> str | None:
    """Label values of a case against ``allowed`` (None: non-negative integers), or None."""
    if e.label is None:
        return None
    voxels, error = _read(e.label)
    problem = f"unreadable label ({error})" if error is not None else label_value_problem(voxels, allowed)
    return f"{e.describe(e.label)}: {problem}" if problem else None


def check_dataset(
    dataset_dir: str | Path, allowed: AllowedSpec | None = None, *, read_images: bool = True
) -> list[str]:
    """Check every case (training, validation, test) of a data set; return one line per problem ([] = fine).

    Per case, the first of: header checks as in load_datalist, image layout (see _layout_problem), with
    ``read_images`` a full read of each image (corrupt data, NaN/Inf voxels), label values against
    ``allowed`` (default: dataset.json "labels"; without one, labels must be non-negative integers).
    """
    try:
        listing = dataset_entries(dataset_dir)
        meta = listing.meta
        if allowed is None and meta is not None and "labels" in meta:
            allowed = meta["labels"]
        values = allowed_label_values(allowed) if allowed is not None else None
        channels = _declared_channels(meta)
    except PipelineError as e:
        return [str(e)]
    problems: list[str] = []
    for e in listing.all():
        problem = e.check() or _layout_problem(e, channels)
        if problem is None and read_images:
            problem = _image_data_problem(e)
        if problem is None:
            problem = _label_problem(e, values)
        if problem is not None:
            problems.append(problem)
    return problems
