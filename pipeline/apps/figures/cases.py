"""The cases a figure shows: image, label (optional), prediction and attention-map files, checked before anything
is drawn, and their arrays in display orientation.

Files are read with MONAI's ``LoadImage`` in their own voxel order; a 3D case is turned to RAS (axis flips and
permutations only, from nibabel's ``io_orientation``: no resampling, so labels stay labels) for display. What the
label and prediction files must share with the image (shape, affine) is checked from their headers first, so a
mismatched case stops the command with one line before any PNG is written.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from pipeline.data.case_files import affines_match, read_header
from pipeline.data.cases import IMAGE_EXTENSIONS, case_id, image_files
from pipeline.errors import PipelineError, short_error

#: the suffix inference gives label maps and attention maps (the bundles' ``inference.json``)
PRED_SUFFIX = "_seg"
ATTENTION_SUFFIX = "_attention"


@dataclass(frozen=True)
class FigureCase:
    """One case to draw: its id and files (``label`` and ``attention`` may be absent)."""

    case: str
    image: Path
    pred: Path
    label: Path | None = None
    attention: Path | None = None


@dataclass
class CaseArrays:
    """A case's arrays in display orientation: ``(x, y)`` for 2D, ``(x, y, z)`` RAS for 3D.

    ``slice_of_file`` maps a RAS axial index back to the index along the file's own superior-inferior axis
    (identity for 2D), so titles and ``--slice`` speak the numbering a viewer of the file shows.
    """

    image: np.ndarray
    pred: np.ndarray
    label: np.ndarray | None
    attention: list[np.ndarray] = field(default_factory=list)
    spatial_dims: int = 2
    si_flipped: bool = False

    def ras_slice(self, file_index: int) -> int:
        """The RAS axial index of the file's slice ``file_index`` (3D)."""
        n = self.image.shape[-1]
        if not 0 <= file_index < n:
            raise PipelineError(f"--slice {file_index}: outside 0..{n - 1} (the case has {n} axial slices)")
        return n - 1 - file_index if self.si_flipped else file_index

    def slice_of_file(self, ras_index: int) -> int:
        """The file's own slice index of RAS axial index ``ras_index`` (3D)."""
        return self.image.shape[-1] - 1 - ras_index if self.si_flipped else ras_index


def select_cases(
    cases: Sequence[dict], names: Sequence[str] | None = None, max_cases: int | None = None,
) -> list[dict]:
    """``cases`` (dicts with ``"image"`` and optionally ``"label"``) limited to the ids ``names`` (all must exist)
    or to the first ``max_cases``."""
    by_id = {case_id(c["image"]): c for c in cases}
    if names:
        unknown = [n for n in names if n not in by_id]
        if unknown:
            shown = ", ".join(sorted(by_id)[:8]) + (" ..." if len(by_id) > 8 else "")
            raise PipelineError(f"case(s) {', '.join(unknown)} not found; the cases here are: {shown or 'none'}")
        return [by_id[n] for n in names]
    chosen = [by_id[k] for k in sorted(by_id)]
    return chosen[:max_cases] if max_cases else chosen


def image_cases(images: str | Path, labels: str | Path | None = None) -> list[dict]:
    """Cases from an image file or a folder of images, each with the label of the same case id in ``labels``
    (a folder) when given; an image whose label is missing is an error naming both."""
    path = Path(images)
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = list(image_files(path).values())
        if not files:
            raise PipelineError(f"{path}: no image files ({', '.join(IMAGE_EXTENSIONS)})")
    else:
        raise PipelineError(f"{path}: no such file or folder")
    if labels is None:
        return [{"image": str(f)} for f in files]
    label_dir = Path(labels)
    if not label_dir.is_dir():
        raise PipelineError(f"{label_dir}: label folder not found")
    by_id = {case_id(p): p for p in image_files(label_dir).values()}
    missing = [f for f in files if case_id(f) not in by_id]
    if missing:
        raise PipelineError(f"{missing[0]}: no label of case {case_id(missing[0])} in {label_dir}")
    return [{"image": str(f), "label": str(by_id[case_id(f)])} for f in files]


def image_dims(path: str | Path) -> int:
    """2 or 3: the spatial dimensions of an image file from its header (a NIfTI of shape (x, y, 1) is 2D)."""
    shape = tuple(read_header(path).spatial_shape)
    while len(shape) > 2 and shape[-1] == 1:
        shape = shape[:-1]
    return len(shape)




def figure_cases(cases: Sequence[dict], pred_dir: str | Path, spatial_dims: int) -> list[FigureCase]:
    """Pair each case with ``<pred_dir>/<case>_seg.*`` (and ``<case>_attention.nii.gz`` if there) and check from
    the headers that image, label and prediction share shape (and affine, 3D); the first problem is one line."""
    folder = Path(pred_dir)
    if not folder.is_dir():
        raise PipelineError(f"{folder}: prediction folder not found")
    by_id = {case_id(name): p for name, p in image_files(folder).items()}
    out = []
    for c in cases:
        image = Path(c["image"])
        cid = case_id(image)
        pred = by_id.get(cid + PRED_SUFFIX)
        if pred is None:
            raise PipelineError(f"{folder}: no prediction {cid}{PRED_SUFFIX}.* for {image}")
        label = Path(c["label"]) if c.get("label") else None
        attention = by_id.get(cid + ATTENTION_SUFFIX)
        ref = read_header(image)
        shape = tuple(ref.spatial_shape) + tuple(ref.extra_shape)
        while len(shape) > spatial_dims and shape[-1] == 1:  # a 2D NIfTI is (x, y, 1)
            shape = shape[:-1]
        if len(shape) != spatial_dims:
            raise PipelineError(f"{image}: image of shape {shape}; expected a single-channel {spatial_dims}D image")
        for path in (p for p in (label, pred, attention) if p is not None):
            header = read_header(path)
            if tuple(header.spatial_shape[:spatial_dims]) != shape:
                raise PipelineError(f"{path}: shape {tuple(header.spatial_shape[:spatial_dims])} differs from the "
                                    f"image's {shape} ({image})")
            if spatial_dims == 3 and ref.affine is not None and header.affine is not None and not affines_match(
                    ref.affine, header.affine):
                raise PipelineError(f"{path}: affine differs from the image's ({image}): not on the image's grid")
        out.append(FigureCase(cid, image, pred, label, attention))
    return out


def _load(path: Path):
    from monai.transforms import LoadImage

    try:
        return LoadImage(image_only=True)(str(path))
    except Exception as e:  # noqa: BLE001 - any reader failure is one line naming the file
        raise PipelineError(f"{path}: unreadable image ({short_error(e)})") from None


def _spatial(array: np.ndarray, spatial_dims: int) -> np.ndarray:
    """``array`` without trailing singleton axes beyond ``spatial_dims`` (a 2D NIfTI loads as (x, y, 1))."""
    while array.ndim > spatial_dims and array.shape[-1] == 1:
        array = array[..., 0]
    return array


def load_case(case: FigureCase, spatial_dims: int) -> CaseArrays:
    """The case's arrays (image float32, label/pred int, attention maps float32 one per channel), 3D in RAS."""
    image = _load(case.image)
    arrays = {"image": _spatial(np.asarray(image, dtype=np.float32), spatial_dims),
              "pred": _spatial(np.asarray(_load(case.pred)), spatial_dims).astype(np.int64)}
    if case.label is not None:
        arrays["label"] = _spatial(np.asarray(_load(case.label)), spatial_dims).astype(np.int64)
    maps: list[np.ndarray] = []
    if case.attention is not None:
        att = np.asarray(_load(case.attention), dtype=np.float32)
        spatial = att.shape[:spatial_dims]
        channels = att.reshape(*spatial, -1)  # 2D maps are written (x, y, 1, levels), 3D ones (x, y, z, levels)
        maps = [channels[..., i] for i in range(channels.shape[-1])]
    flipped = False
    if spatial_dims == 3:
        ornt = nib.orientations.io_orientation(np.asarray(image.affine, dtype=np.float64))
        si_axis = int(np.flatnonzero(ornt[:, 0] == 2)[0])
        flipped = bool(ornt[si_axis, 1] < 0)
        arrays = {k: nib.orientations.apply_orientation(v, ornt) for k, v in arrays.items()}
        maps = [nib.orientations.apply_orientation(m, ornt) for m in maps]
    return CaseArrays(arrays["image"], arrays["pred"], arrays.get("label"), maps, spatial_dims, flipped)
