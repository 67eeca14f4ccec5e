"""What to segment: one image file, a folder of image files, or a DICOM series folder, checked before anything runs.

MONAI reads DICOM series with ``ITKReader`` (needs the ``itk`` package) or ``PydicomReader`` (needs ``pydicom``);
neither is a dependency here, while SimpleITK is. ``SimpleITKReader`` is a MONAI ``ImageReader`` on SimpleITK for
DICOM series folders and MetaImage/NRRD files, so ``LoadImaged`` reads them like NIfTI files and the geometry
(direction, spacing, origin, as SimpleITK reads it) ends up in the MetaTensor's RAS affine, which ``Invertd`` and
``SaveImaged`` then use to write the label map on the scan's own grid. A folder with several series: the one with
the most slices is used unless ``series_uid`` names another, and the log says which.
"""
from __future__ import annotations

import contextlib
import locale
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.data import ImageReader
from monai.transforms import LoadImaged
from monai.utils import MetaKeys, SpaceKeys

from pipeline.data.case_files import SINGLE_CHANNEL_MODES, read_header
from pipeline.data.cases import ITK_EXTENSIONS, NIFTI_EXTENSIONS, PIL_EXTENSIONS, image_files
from pipeline.data.nnunet import group_channel_files
from pipeline.errors import PipelineError

logger = logging.getLogger(__name__)

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@contextlib.contextmanager
def keep_locale() -> Iterator[None]:
    """Restore the process locale after SimpleITK/GDCM calls: GDCM sets the C locale while it converts DICOM values
    and leaves it so, after which Python decodes child processes' output as ASCII."""
    saved = locale.setlocale(locale.LC_ALL, None)
    try:
        yield
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def dicom_series(folder: str | Path) -> dict[str, list[str]]:
    """SeriesInstanceUID -> sorted slice files of every DICOM series GDCM can read in ``folder`` (not recursive)."""
    import SimpleITK as sitk

    with keep_locale():
        uids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
        return {uid: list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid)) for uid in uids}


def select_series(folder: str | Path, series_uid: str | None = None, log: bool = False) -> tuple[str, list[str]]:
    """The series to read from a DICOM folder: ``series_uid`` if given, else the one with the most slices.

    A folder without a readable series, or a ``series_uid`` it does not hold, is a one-line PipelineError.
    """
    series = dicom_series(folder)
    if not series:
        n = sum(1 for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith("."))
        raise PipelineError(
            f"{folder}: no readable DICOM series and no image files ({n} file(s), none a DICOM image that GDCM "
            f"can read; image files end in {', '.join(NIFTI_EXTENSIONS + PIL_EXTENSIONS + ITK_EXTENSIONS)})"
        )
    if series_uid:
        if series_uid not in series:
            raise PipelineError(
                f"{folder}: no DICOM series with SeriesInstanceUID {series_uid}; it holds {', '.join(sorted(series))}"
            )
        uid = series_uid
    else:
        uid = max(sorted(series), key=lambda u: len(series[u]))  # most slices; ties: the smallest UID
    if log:
        others = [f"{u} ({len(series[u])} slices)" for u in sorted(series) if u != uid]
        logger.info(
            "%s: DICOM series %s (%d slices)%s", folder, uid, len(series[uid]),
            f"; also in the folder: {', '.join(others)} (choose with --series_uid)" if others else "",
        )
    return uid, series[uid]


def sitk_affine(image: Any) -> np.ndarray:
    """The RAS voxel-to-world affine (NIfTI convention) of a SimpleITK image (LPS direction, spacing, origin)."""
    ndim = image.GetDimension()
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(ndim, ndim)
    affine = np.eye(4)
    affine[:ndim, :ndim] = direction * np.asarray(image.GetSpacing(), dtype=np.float64)[None, :]
    affine[:ndim, 3] = image.GetOrigin()
    return _LPS_TO_RAS @ affine


class SimpleITKReader(ImageReader):
    """MONAI ImageReader on SimpleITK: DICOM series folders (``series_uid`` or the largest series) and
    MetaImage/NRRD files, one file or a list of one-channel files (nnU-Net's ``<case>_0000.nrrd``, ``_0001``...)
    stacked as channels. Arrays come in ITK index order (i, j, k), the affine in RAS, as NibabelReader gives them.
    """

    def __init__(self, series_uid: str | None = None) -> None:
        super().__init__()
        self.series_uid = series_uid or None

    def verify_suffix(self, filename: Sequence[str] | str) -> bool:
        """A single folder (DICOM series), or MetaImage/NRRD files."""
        names = [str(f) for f in (filename if isinstance(filename, (list, tuple)) else [filename])]
        if len(names) == 1 and Path(names[0]).is_dir():
            return True
        return bool(names) and all(n.lower().endswith(ITK_EXTENSIONS) for n in names)

    def read(self, data: Sequence[str] | str, **kwargs: Any) -> Any:
        """Read the series (folder) or file(s) with SimpleITK; one-line PipelineError if one cannot be read."""
        if isinstance(data, (list, tuple)) and len(data) > 1:
            return [self.read(str(d)) for d in data]
        return self._read_one(str(data[0] if isinstance(data, (list, tuple)) else data))

    def _read_one(self, path: str) -> Any:
        import SimpleITK as sitk

        try:
            with keep_locale():
                if Path(path).is_dir():
                    _, files = select_series(path, self.series_uid)
                    reader = sitk.ImageSeriesReader()
                    reader.SetFileNames(files)
                    return reader.Execute()
                return sitk.ReadImage(path)
        except RuntimeError as e:  # SimpleITK's errors are RuntimeErrors with a multi-line ITK message
            lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
            raise PipelineError(f"{path}: unreadable by SimpleITK ({lines[-1] if lines else e})") from None

    def get_data(self, img: Any) -> tuple[np.ndarray, dict]:
        """(array in i, j, k order with components last, meta dict with the RAS affine and spatial shape)."""
        import SimpleITK as sitk

        if isinstance(img, list):  # one file per channel: stacked in front, as NibabelReader stacks a list
            arrays, metas = zip(*(self.get_data(i) for i in img))
            if any(a.shape != arrays[0].shape for a in arrays):
                raise PipelineError(f"channel files of one case differ in shape: {[a.shape for a in arrays]}")
            meta = dict(metas[0])
            meta[MetaKeys.ORIGINAL_CHANNEL_DIM] = 0
            return np.stack(arrays, axis=0), meta
        array = sitk.GetArrayFromImage(img)  # (k, j, i[, components])
        ndim = img.GetDimension()
        array = np.transpose(array, tuple(range(ndim))[::-1] + tuple(range(ndim, array.ndim)))
        affine = sitk_affine(img)
        if ndim == 2:  # keep MONAI's 2D affine shape (3x3)
            affine = affine[[0, 1, 3]][:, [0, 1, 3]]
        meta = {
            MetaKeys.AFFINE: affine,
            MetaKeys.ORIGINAL_AFFINE: affine.copy(),
            MetaKeys.SPATIAL_SHAPE: np.asarray(img.GetSize()),
            MetaKeys.SPACE: SpaceKeys.RAS,
            MetaKeys.ORIGINAL_CHANNEL_DIM: -1 if img.GetNumberOfComponentsPerPixel() > 1 else float("nan"),
            "spacing": np.asarray(img.GetSpacing()),
        }
        return array, meta


class LoadScand(LoadImaged):
    """``LoadImaged`` that also reads DICOM series folders and MetaImage/NRRD files (``SimpleITKReader``, tried
    first for those; NIfTI and PNG keep MONAI's own readers)."""

    def __init__(self, keys: Any, series_uid: str | None = None, **kwargs: Any) -> None:
        super().__init__(keys, **kwargs)
        self.register(SimpleITKReader(series_uid))


def _layout(path: Path, series_uid: str | None) -> tuple[int, int, tuple[int, ...]]:
    """(spatial dims, channels, shape) of an input from its header only; PipelineError if unreadable."""
    if path.is_dir():
        import SimpleITK as sitk

        _, files = select_series(path, series_uid)
        reader = sitk.ImageFileReader()
        reader.SetFileName(files[0])
        try:
            with keep_locale():
                reader.ReadImageInformation()
        except RuntimeError:
            raise PipelineError(f"{files[0]}: unreadable DICOM slice") from None
        size = tuple(int(s) for s in reader.GetSize()[:2]) + (len(files),)
        return 3, int(reader.GetNumberOfComponents()), size
    header = read_header(path)  # readable, not truncated
    name = path.name.lower()
    if name.endswith(NIFTI_EXTENSIONS):
        import nibabel as nib

        shape = tuple(int(s) for s in nib.load(str(path)).shape)
        spatial = min(len(shape), 3)
        return spatial, int(np.prod(shape[3:], dtype=np.int64)) if len(shape) > 3 else 1, shape
    if name.endswith(PIL_EXTENSIONS):
        channels = 1 if header.mode in SINGLE_CHANNEL_MODES else len(header.mode or "x")
        return 2, channels, header.spatial_shape
    return len(header.spatial_shape), int(np.prod(header.extra_shape or (1,))), header.spatial_shape


def check_layout(path: str | Path, spatial_dims: int, channels: int, series_uid: str | None = None) -> None:
    """Refuse (one line naming the file) an input whose header says it is not a ``spatial_dims``-D image with
    ``channels`` channels, e.g. a 4D series or a 2D slice given to a 3D network."""
    path = Path(path)
    dims, chans, shape = _layout(path, series_uid)
    if dims == spatial_dims and chans == channels:
        return
    what = f"a {dims}D image" + (f" with {chans} channels or time points" if chans != 1 else "")
    raise PipelineError(
        f"{path}: {what} (shape {shape}), but the checkpoint's network takes {spatial_dims}D images with "
        f"{channels} channel{'s' if channels != 1 else ''}"
    )


def inference_inputs(
    source: str | Path, spatial_dims: int, channels: int = 1, series_uid: str | None = None
) -> list[dict[str, Any]]:
    """The cases to segment, ``[{"image": path}]``: an image file, every image file in a folder, or a folder's
    DICOM series. A folder named the nnU-Net way (``<case>_0000``, ``<case>_0001``... for each of the network's
    ``channels``) gives one case per ``<case>``, its files as channels (``"image": [paths]`` when there are several).
    Every input's header is checked first, so bad input stops the run before anything is written."""
    path = Path(source).expanduser()
    if not path.exists():
        raise PipelineError(f"{path}: input not found (give an image file, a folder of images or a DICOM folder)")
    if path.is_file():
        if not path.name.lower().endswith(NIFTI_EXTENSIONS + PIL_EXTENSIONS + ITK_EXTENSIONS):
            raise PipelineError(
                f"{path}: not an image file this pipeline reads "
                f"({', '.join(NIFTI_EXTENSIONS + PIL_EXTENSIONS + ITK_EXTENSIONS)}"
                "); for DICOM give the folder that holds the series"
            )
        files = [path]
    else:
        files = [p for p in image_files(path).values() if p.is_file()]
        if not files:
            select_series(path, series_uid, log=True)
            files = [path]
    groups = group_channel_files(files, channels) if channels > 1 and path.is_dir() and files != [path] else None
    if groups is not None:
        for case_files in groups.values():
            for f in case_files:
                check_layout(f, spatial_dims, 1, series_uid)
        logger.info("inference input %s: %d case(s) of %d channel files (nnU-Net naming)", path, len(groups), channels)
        return [{"image": [str(f.resolve()) for f in case_files]} for case_files in groups.values()]
    for f in files:
        check_layout(f, spatial_dims, channels, series_uid)
    logger.info("inference input %s: %d case(s)", path, len(files))
    return [{"image": str(f.resolve())} for f in files]


__all__ = [
    "LoadScand",
    "SimpleITKReader",
    "check_layout",
    "dicom_series",
    "inference_datalist",
    "inference_inputs",
    "select_series",
    "sitk_affine",
]


def inference_datalist(
    input_dir: str | Path | None,
    dataset_dir: str | Path,
    split: str = "test",
    val_fraction: float = 0.2,
    num_folds: int = 0,
    fold: int = 0,
    seed: int = 0,
    spatial_dims: int | None = None,
    in_channels: int = 1,
    series_uid: str | None = None,
) -> list[dict[str, Any]]:
    """The images to segment: ``input_dir`` (an image file, a folder of images or a DICOM series folder) when
    given, else one split of ``dataset_dir``. With ``spatial_dims``, every image's header is checked against the
    network (dims, channels) first, so that a bad input stops the run before anything is written."""
    from pipeline.data.datalist import load_datalist
    from pipeline.data.prepare import image_list

    if input_dir:
        if spatial_dims is None:
            return image_list(input_dir)
        return inference_inputs(input_dir, spatial_dims, in_channels, series_uid)
    if not Path(dataset_dir).is_dir():
        raise PipelineError(
            f"no input: set --input to an image file, a folder of images or a DICOM folder (dataset_dir "
            f"{str(dataset_dir)!r}, used for the {split!r} split otherwise, does not exist; "
            "--input_dir is the same key)"
        )
    cases = load_datalist(dataset_dir, split, val_fraction=val_fraction, num_folds=num_folds, fold=fold, seed=seed)
    if spatial_dims is not None:
        for case in cases:
            images = case["image"] if isinstance(case["image"], list) else [case["image"]]
            for image in images:  # several files: one channel each
                check_layout(image, spatial_dims, in_channels if len(images) == 1 else 1)
    return cases
