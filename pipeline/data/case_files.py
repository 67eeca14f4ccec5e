"""Header-level checks of a case's files: readable headers (no voxel data), matching shapes and affines.

The checks read headers only (nibabel for NIfTI, PIL for PNG, SimpleITK for other formats), so they are fast even
for hundreds of large CT volumes. MONAI has no such checks.
"""
from __future__ import annotations

import gzip
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.data.cases import IMAGE_EXTENSIONS, ITK_EXTENSIONS, NIFTI_EXTENSIONS, PIL_EXTENSIONS
from pipeline.errors import PipelineError, short_error

if TYPE_CHECKING:
    from pipeline.data.listing import DataEntry

__all__ = ["SINGLE_CHANNEL_MODES", "ImageHeader", "affines_match", "check_case_files", "read_header"]

# PIL modes that load as one channel; an RGB label would become a 3-channel label map.
SINGLE_CHANNEL_MODES = ("1", "L", "P", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")


@dataclass(frozen=True)
class ImageHeader:
    """What the checks need from a header: spatial shape, extra (channel/time) dims, affine (RAS, or None)."""

    spatial_shape: tuple[int, ...]
    extra_shape: tuple[int, ...] = ()
    affine: np.ndarray | None = field(default=None, compare=False)
    mode: str | None = None  # PIL mode, for 2D images


class _Problem(Exception):
    """A header problem, described without the file name (the caller adds case and file)."""


def _nifti_data_problem(path: Path, img: Any) -> str | None:
    """Cheap truncation check: file size (.nii) or the gzip trailer's length field (.nii.gz).

    The trailer holds the uncompressed size mod 2**32; only when it disagrees (a truncated file, or a
    legitimate multi-member gzip) do we pay for decompressing the file to know which it is.
    """
    # The loaded image's header copy has vox_offset reset to 0; the array proxy keeps the file's offset.
    offset = getattr(img.dataobj, "offset", None)
    if offset is None:
        return None
    expected = int(offset) + int(np.prod(img.shape)) * img.get_data_dtype().itemsize
    size = path.stat().st_size
    if not path.name.lower().endswith(".gz"):
        if size < expected:
            return f"file truncated: {size} bytes, header needs {expected}"
        return None
    with open(path, "rb") as f:
        f.seek(-4, os.SEEK_END)
        isize = int.from_bytes(f.read(4), "little")
    if isize == expected % 2**32:
        return None
    total = 0
    try:
        with gzip.open(path, "rb") as g:
            while chunk := g.read(1 << 24):
                total += len(chunk)
    except Exception as e:  # noqa: BLE001 - any decompression failure means a corrupt file
        return f"corrupt or truncated gzip ({short_error(e)})"
    if total < expected:
        return f"data truncated: {total} bytes after decompression, header needs {expected}"
    return None


def _gzip_cause(path: Path) -> str | None:
    """The gzip-level error behind a failed NIfTI load (nibabel reports only "Cannot work out file type")."""
    if not path.name.lower().endswith(".gz"):
        return None
    try:
        with gzip.open(path, "rb") as g:
            g.read(1 << 16)
    except Exception as e:  # noqa: BLE001
        return short_error(e)
    return None


MAX_VOXELS = 2**31  # per image (8 GiB as float32): beyond it a header is damaged or the image is not a scan
VOXEL_SIZE_MM = (1e-3, 1e4)  # a voxel size outside this range is a damaged header (pixdim, qform or sform)


def _nifti_header_problem(img: Any) -> str | None:
    """What makes a NIfTI header unusable although nibabel opens it: empty or absurd dims, a voxel type that is not
    a real number, a non-finite or degenerate affine (pixdim, qform, sform), non-finite scl_slope / scl_inter."""
    shape = tuple(int(s) for s in img.shape)
    if not shape or min(shape) < 1:
        return f"dims {shape}: every axis needs at least one voxel"
    if len(shape) > 4:
        return f"dims {shape}: more than 4 axes (x, y, z and one channel or time axis) do not load as an image"
    if int(np.prod(shape, dtype=np.float64)) > MAX_VOXELS:
        return f"dims {shape}: more than {MAX_VOXELS:,} voxels"
    dtype = img.get_data_dtype()
    if dtype.fields or dtype.kind not in "biuf":
        return f"voxel type {dtype} (datatype {int(img.header['datatype'])}) is not a real number type"
    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.isfinite(affine).all():
        return "affine (pixdim / qform / sform) holds NaN or infinite values"
    sizes = np.linalg.norm(affine[:3, :3], axis=0)
    if not ((sizes >= VOXEL_SIZE_MM[0]) & (sizes <= VOXEL_SIZE_MM[1])).all():
        return f"voxel size {_fmt(sizes)} mm outside {VOXEL_SIZE_MM[0]:g}..{VOXEL_SIZE_MM[1]:g} (pixdim / qform / sform)"
    pixdim = np.abs(np.asarray(img.header["pixdim"][1:4], dtype=np.float64))
    used = [i for i in range(min(3, len(shape))) if shape[i] > 1]
    if not np.isfinite(pixdim).all() or any(not VOXEL_SIZE_MM[0] <= pixdim[i] <= VOXEL_SIZE_MM[1] for i in used):
        return f"pixdim {_fmt(pixdim)} is not a voxel size in mm (damaged header)"
    if int(img.header["qform_code"]) > 0 and not np.isfinite(img.header.get_qform()).all():
        return "qform holds NaN or infinite values"
    slope, inter = img.header.get_slope_inter()
    if any(v is not None and not np.isfinite(v) for v in (slope, inter)):
        return f"scl_slope {slope} / scl_inter {inter} not finite"
    offset = getattr(img.dataobj, "offset", 0)
    if not np.isfinite(float(offset)) or offset < 0:
        return f"vox_offset {offset} is not a byte offset"
    return None


def _read_header(path: Path) -> ImageHeader:
    """Header of one image file, without reading voxel data; raises _Problem."""
    lower = path.name.lower()
    if lower.endswith(NIFTI_EXTENSIONS):
        import nibabel as nib

        try:
            img = nib.load(str(path))
            shape = tuple(int(s) for s in img.shape)
            affine = np.asarray(img.affine, dtype=np.float64)
        except Exception as e:  # noqa: BLE001 - nibabel/gzip raise many types for bad files
            cause = _gzip_cause(path)
            if cause is None and "Cannot work out file type" in str(e):
                cause = "no NIfTI-1/NIfTI-2 header"
            raise _Problem(f"unreadable NIfTI ({cause or short_error(e).replace(str(path), path.name)})") from e
        try:
            problem = _nifti_header_problem(img)
        except Exception as e:  # noqa: BLE001 - nibabel raises many types for a damaged header
            problem = f"unusable NIfTI header ({short_error(e)})"
        if problem:
            raise _Problem(problem)
        problem = _nifti_data_problem(path, img)
        if problem:
            raise _Problem(problem)
        shape = shape + (1,) * (3 - len(shape))  # NIfTI: the first 3 dims are spatial
        return ImageHeader(shape[:3], shape[3:], affine)
    if lower.endswith(PIL_EXTENSIONS):
        from PIL import Image

        try:
            with Image.open(path) as im:
                size, mode, frames = im.size, im.mode, int(getattr(im, "n_frames", 1))
                im.verify()  # chunk CRCs etc. without decoding pixels
        except Exception as e:  # noqa: BLE001
            raise _Problem(f"unreadable image ({short_error(e)})") from e
        if frames > 1:  # PIL (MONAI's PILReader) would read the first page only, silently
            raise _Problem(f"multi-page image ({frames} pages, a 3D TIFF?) is not read here; convert it to NIfTI")
        return ImageHeader((int(size[0]), int(size[1])), (), None, mode)  # (W, H) as MONAI's PILReader
    if lower.endswith(ITK_EXTENSIONS):
        import SimpleITK as sitk

        try:
            reader = sitk.ImageFileReader()
            reader.SetFileName(str(path))
            reader.ReadImageInformation()
            size = tuple(int(s) for s in reader.GetSize())
            ndim = len(size)
            direction = np.asarray(reader.GetDirection(), dtype=np.float64).reshape(ndim, ndim)
            affine = np.eye(ndim + 1)
            affine[:ndim, :ndim] = direction * np.asarray(reader.GetSpacing())[None, :]
            affine[:ndim, ndim] = reader.GetOrigin()
            if ndim == 3:  # ITK is LPS, NIfTI/nibabel RAS
                affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
            comps = int(reader.GetNumberOfComponents())
        except Exception as e:  # noqa: BLE001
            raise _Problem(f"unreadable image ({short_error(e)})") from e
        return ImageHeader(size, (comps,) if comps > 1 else (), affine)
    raise _Problem(f"unsupported file type; expected one of {', '.join(IMAGE_EXTENSIONS)}")


def read_header(path: str | Path) -> ImageHeader:
    """Read an image header (no voxel data) for NIfTI, PNG/TIFF/JPEG or MetaImage/NRRD; PipelineError if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: file missing")
    try:
        return _read_header(path)
    except _Problem as p:
        raise PipelineError(f"{path}: {p}") from None


def affines_match(a: np.ndarray, b: np.ndarray, rtol: float = 1e-3, atol_mm: float = 1e-3) -> bool:
    """True when two affines agree: direction*spacing within ``rtol`` of the voxel size, origin within
    ``atol_mm`` (+ ``rtol`` of the voxel size) millimetres."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return False
    n = a.shape[0] - 1
    spacing = np.maximum(np.linalg.norm(a[:n, :n], axis=0), np.linalg.norm(b[:n, :n], axis=0))
    if np.any(np.abs(a[:n, :n] - b[:n, :n]) > rtol * spacing[None, :]):
        return False
    return bool(np.all(np.abs(a[:n, n] - b[:n, n]) <= atol_mm + rtol * spacing.max()))


def _fmt(values: np.ndarray) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


def _affine_difference(a: np.ndarray, b: np.ndarray) -> str:
    n = a.shape[0] - 1
    sa, sb = np.linalg.norm(a[:n, :n], axis=0), np.linalg.norm(b[:n, :n], axis=0)
    parts = []
    if not np.allclose(sa, sb, rtol=1e-3, atol=0):
        parts.append(f"spacing {_fmt(sb)} vs image {_fmt(sa)}")
    if not np.allclose(a[:n, n], b[:n, n], rtol=0, atol=1e-3 + 1e-3 * max(sa.max(), sb.max())):
        parts.append(f"origin {_fmt(b[:n, n])} vs image {_fmt(a[:n, n])}")
    if not parts:
        da, db = a[:n, :n] / np.where(sa == 0, 1, sa), b[:n, :n] / np.where(sb == 0, 1, sb)
        parts.append(f"direction differs by up to {np.abs(da - db).max():.3g}")
    return "label affine differs from image affine: " + "; ".join(parts)


def check_case_files(e: DataEntry) -> str | None:
    """The first header-level problem of one case's files as one line naming the case and file, or None."""
    where = e.describe
    headers: list[ImageHeader] = []
    files = [("image", p) for p in e.images] + ([("label", e.label)] if e.label is not None else [])
    for kind, path in files:
        if not path.exists():
            return f"{where(path)}: {kind} file missing"
        if not path.is_file():
            return f"{where(path)}: {kind} path is not a file"
        try:
            headers.append(_read_header(path))
        except _Problem as p:
            return f"{where(path)}: {kind} {p}"
    image, others = headers[0], headers[1 : len(e.images)]
    for path, h in zip(e.images[1:], others):
        if h.spatial_shape != image.spatial_shape:
            return f"{where(path)}: image shape {h.spatial_shape} differs from first image shape {image.spatial_shape}"
    if e.label is None:
        return None
    label = headers[-1]
    if e.label in e.images:
        return f"{where(e.label)}: label is the image file itself"
    pad = max(len(image.spatial_shape), len(label.spatial_shape))
    img_shape = image.spatial_shape + (1,) * (pad - len(image.spatial_shape))
    lbl_shape = label.spatial_shape + (1,) * (pad - len(label.spatial_shape))
    if img_shape != lbl_shape:
        return f"{where(e.label)}: label shape {label.spatial_shape} differs from image shape {image.spatial_shape}"
    if any(s != 1 for s in label.extra_shape):
        return f"{where(e.label)}: label has extra dimensions {label.extra_shape}; expected one label map"
    if label.mode is not None and label.mode not in SINGLE_CHANNEL_MODES:
        return f"{where(e.label)}: label image mode {label.mode}; expected a single-channel (grayscale/palette) image"
    if image.affine is not None and label.affine is not None and not affines_match(image.affine, label.affine):
        return f"{where(e.label)}: {_affine_difference(image.affine, label.affine)}"
    return None
