"""Checked data lists from an MSD-style ``dataset.json`` folder or a plain folder of image/label pairs.

Paths follow ``monai.data.load_decathlon_datalist`` semantics (relative to the data set folder, "image"
may be a list of files for several channels, extra keys pass through), and training/validation splits
follow nnU-Net (sorted case ids, seeded k-fold). The checks are our own, because MONAI has none:
paths must stay inside the data set folder, files must exist and their headers must be readable,
image and label must agree in spatial shape and affine, and case ids must be unique. The checks read
headers only (nibabel for NIfTI, PIL for PNG, SimpleITK for other formats), so they are fast even for
hundreds of large CT volumes. Every problem is a one-line ``PipelineError`` naming the file or case.
"""
from __future__ import annotations

import gzip
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import PipelineError

__all__ = [
    "IMAGE_EXTENSIONS",
    "ITK_EXTENSIONS",
    "NIFTI_EXTENSIONS",
    "PIL_EXTENSIONS",
    "SPLITS",
    "DataEntry",
    "DatasetEntries",
    "ImageHeader",
    "affines_match",
    "case_id",
    "dataset_entries",
    "image_files",
    "load_datalist",
    "read_dataset_json",
    "read_header",
    "short_error",
    "split_cases",
]

SPLITS = ("training", "validation", "test")
NIFTI_EXTENSIONS = (".nii.gz", ".nii")
PIL_EXTENSIONS = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
ITK_EXTENSIONS = (".mha", ".mhd", ".nrrd", ".nhdr")
IMAGE_EXTENSIONS = NIFTI_EXTENSIONS + PIL_EXTENSIONS + ITK_EXTENSIONS
# PIL modes that load as one channel; an RGB label would become a 3-channel label map.
SINGLE_CHANNEL_MODES = ("1", "L", "P", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
PLAIN_LAYOUTS = (("imagesTr", "labelsTr"), ("images", "labels"))


def case_id(path: str | Path) -> str:
    """Case id of an image file: its name without the image extension(s), e.g. ``la_003.nii.gz`` -> ``la_003``."""
    name = Path(path).name
    lower = name.lower()
    for ext in sorted(IMAGE_EXTENSIONS, key=len, reverse=True):
        if lower.endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)]
    return Path(name).stem or name


# ---------------------------------------------------------------------------------------------------
# Headers


@dataclass(frozen=True)
class ImageHeader:
    """What the checks need from a header: spatial shape, extra (channel/time) dims, affine (RAS, or None)."""

    spatial_shape: tuple[int, ...]
    extra_shape: tuple[int, ...] = ()
    affine: np.ndarray | None = field(default=None, compare=False)
    mode: str | None = None  # PIL mode, for 2D images


class _Problem(Exception):
    """A header problem, described without the file name (the caller adds case and file)."""


def short_error(exc: BaseException) -> str:
    """An exception as one short line, ``Type: first line of its message``, for problem messages."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


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
        problem = _nifti_data_problem(path, img)
        if problem:
            raise _Problem(problem)
        shape = shape + (1,) * (3 - len(shape))  # NIfTI: the first 3 dims are spatial
        return ImageHeader(shape[:3], shape[3:], affine)
    if lower.endswith(PIL_EXTENSIONS):
        from PIL import Image

        try:
            with Image.open(path) as im:
                size, mode = im.size, im.mode
                im.verify()  # chunk CRCs etc. without decoding pixels
        except Exception as e:  # noqa: BLE001
            raise _Problem(f"unreadable image ({short_error(e)})") from e
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


# ---------------------------------------------------------------------------------------------------
# Entries


@dataclass
class DataEntry:
    """One listed case before any file check: absolute paths, where it is listed, and the data set folder.

    ``where`` is its place in the listing (``training[3]`` or ``imagesTr/x.nii.gz``); ``check()`` runs the
    header-level checks, ``describe(path)`` gives the ``case X (imagesTr/x.nii.gz)`` prefix of messages.
    """

    case: str
    images: list[Path]
    label: Path | None
    where: str
    root: Path
    image_is_list: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The case as load_datalist returns it: {"image", "label" (if any), "case"} plus extra keys."""
        out: dict[str, Any] = dict(self.extra)
        out["image"] = [str(p) for p in self.images] if self.image_is_list else str(self.images[0])
        if self.label is not None:
            out["label"] = str(self.label)
        out["case"] = self.case
        return out

    def rel(self, path: Path) -> str:
        """``path`` relative to the data set folder (POSIX style), or as given when it lies elsewhere."""
        return _rel(self.root, path)

    def describe(self, path: Path | None = None) -> str:
        """Message prefix naming the case and one of its files (default: its first image)."""
        return f"case {self.case} ({self.rel(self.images[0] if path is None else path)})"

    def check(self) -> str | None:
        """First header-level problem of this case as one line (see load_datalist), or None."""
        return _check_entry(self)


@dataclass(frozen=True)
class DatasetEntries:
    """Every case a data set folder lists, per split ("training", "validation", "test"; None where not given).

    ``meta`` is the dataset.json content, None for a plain folder of image/label pairs.
    """

    root: Path
    meta: dict | None
    splits: dict[str, list[DataEntry] | None]

    @property
    def source(self) -> Path:
        """The file or folder the listing comes from, for messages: dataset.json or the folder itself."""
        return self.root / "dataset.json" if self.meta is not None else self.root

    def all(self) -> list[DataEntry]:
        """All entries, training then validation then test, in listing order."""
        return [e for key in SPLITS for e in self.splits.get(key) or []]


def _root(dataset_dir: str | Path) -> Path:
    path = Path(dataset_dir)
    if not path.exists():
        raise PipelineError(f"{dataset_dir}: data set folder not found")
    if not path.is_dir():
        raise PipelineError(f"{dataset_dir}: not a folder")
    return Path(os.path.normpath(path.absolute()))


def _rel(root: Path, path: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _inside(path: Path, root: Path) -> bool:
    return path != root and path.is_relative_to(root)


def _resolve(root: Path, value: Any, where: str, source: Path) -> Path:
    """Absolute, normalised path of a data list entry; refuses paths that leave the data set folder.

    ``..`` is resolved lexically (symlinks inside the folder may point anywhere, as data folders often
    are links to a data disk); absolute paths must lie inside the folder too.
    """
    if not isinstance(value, str) or not value.strip():
        raise PipelineError(f"{source}: {where} is {value!r}; expected a non-empty path string")
    raw = Path(value)
    full = Path(os.path.normpath(raw if raw.is_absolute() else root / raw))
    if _inside(full, root):
        return full
    if raw.is_absolute() and _inside(full, Path(os.path.realpath(root))):
        return full  # absolute path written via the real location of a linked data set folder
    raise PipelineError(f"{source}: {where} {value!r} points outside the data set folder {root}")


def _read_json(path: Path) -> dict:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise PipelineError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise PipelineError(f"{path}: unreadable ({short_error(e)})") from None
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as e:
        raise PipelineError(f"{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    if not isinstance(meta, dict):
        raise PipelineError(f"{path}: top level is a JSON {type(meta).__name__}; expected an object")
    return meta


def _json_entry(root: Path, source: Path, key: str, i: int, item: Any, need_label: bool) -> DataEntry:
    where = f"{key}[{i}]"
    if isinstance(item, str) and not need_label:
        item = {"image": item}  # real MSD test lists are plain image paths
    if not isinstance(item, dict):
        wanted = "an object with 'image' and 'label'" if need_label else "an image path or an object with 'image'"
        raise PipelineError(f"{source}: {where} is a {type(item).__name__}; expected {wanted}")
    if "image" not in item:
        raise PipelineError(f"{source}: {where} has no 'image'")
    if need_label and "label" not in item:
        raise PipelineError(f"{source}: {where} has no 'label'")
    value = item["image"]
    is_list = isinstance(value, list)
    if is_list and not value:
        raise PipelineError(f"{source}: {where} 'image' is an empty list")
    values = value if is_list else [value]
    images = [
        _resolve(root, v, f"{where} image" + (f"[{j}]" if is_list else ""), source) for j, v in enumerate(values)
    ]
    label = None
    if need_label or item.get("label") is not None:
        label = _resolve(root, item.get("label"), f"{where} label", source)
    if label is None and key == "test":
        guess = root / "labelsTs" / images[0].name
        label = guess if guess.is_file() else None
    extra = {k: v for k, v in item.items() if k not in ("image", "label", "case")}
    return DataEntry(case_id(images[0]), images, label, where, root, is_list, extra)


def _check_duplicates(groups: dict[str, list[DataEntry] | None], source: Path | str) -> None:
    """Refuse a case id or image file listed twice (within training+validation, within test, or across)."""
    seen_case: dict[tuple[bool, str], str] = {}
    seen_file: dict[Path, str] = {}
    for key in SPLITS:
        for e in groups.get(key) or []:
            scope = key == "test"
            other = seen_case.get((scope, e.case))
            if other is not None:
                raise PipelineError(f"{source}: case {e.case} listed twice ({other}, {e.where})")
            seen_case[(scope, e.case)] = e.where
            for p in e.images:
                if p in seen_file:
                    raise PipelineError(f"{source}: image {p.name} listed twice ({seen_file[p]}, {e.where})")
                seen_file[p] = e.where


def _entries_from_json(root: Path, source: Path, meta: dict) -> dict[str, list[DataEntry] | None]:
    """Validated entries per split (None where dataset.json has no such list)."""
    groups: dict[str, list[DataEntry] | None] = {}
    for key in SPLITS:
        items = meta.get(key)
        if items is None:
            if key == "training":
                raise PipelineError(f"{source}: no 'training' list")
            groups[key] = None
            continue
        if not isinstance(items, list):
            raise PipelineError(f"{source}: '{key}' is a JSON {type(items).__name__}; expected a list")
        if key == "training" and not items:
            raise PipelineError(f"{source}: 'training' list is empty")
        groups[key] = [_json_entry(root, source, key, i, it, need_label=key != "test") for i, it in enumerate(items)]
    if "labels" in meta and not isinstance(meta["labels"], dict):
        raise PipelineError(f"{source}: 'labels' is a JSON {type(meta['labels']).__name__}; expected an object")
    _check_duplicates(groups, source)
    return groups


def image_files(folder: str | Path) -> dict[str, Path]:
    """Image files (IMAGE_EXTENSIONS) in a folder by file name, sorted; hidden files (macOS '._x.nii.gz') skipped."""
    folder = Path(folder)
    return {
        p.name: p
        for p in sorted(folder.iterdir())
        if not p.name.startswith(".") and p.name.lower().endswith(IMAGE_EXTENSIONS) and not p.is_dir()
    }


def _entries_from_folder(root: Path) -> dict[str, list[DataEntry] | None]:
    """Pairs from imagesTr/+labelsTr/ (test: imagesTs/ [+labelsTs/]) or images/+labels/, matched by file name."""
    for image_dir, label_dir in PLAIN_LAYOUTS:
        if (root / image_dir).is_dir():
            break
    else:
        raise PipelineError(f"{root}: no dataset.json and no imagesTr/+labelsTr/ or images/+labels/ folders")
    if not (root / label_dir).is_dir():
        raise PipelineError(f"{root}: no dataset.json, and {image_dir}/ has no {label_dir}/ beside it")
    images, labels = image_files(root / image_dir), image_files(root / label_dir)
    if not images:
        raise PipelineError(f"{root / image_dir}: no image files ({', '.join(IMAGE_EXTENSIONS)})")
    for missing, have, other in ((images, labels, label_dir), (labels, images, image_dir)):
        orphans = [name for name in missing if name not in have]
        if orphans:
            kind = "image" if missing is images else "label"
            more = f" (and {len(orphans) - 1} more)" if len(orphans) > 1 else ""
            raise PipelineError(
                f"{_rel(root, missing[orphans[0]])}: {kind} has no matching {other}/{orphans[0]}{more}"
            )
    groups: dict[str, list[DataEntry] | None] = {
        "training": [
            DataEntry(case_id(p), [p], labels[name], f"{image_dir}/{name}", root) for name, p in images.items()
        ],
        "validation": None,
        "test": None,
    }
    if image_dir == "imagesTr" and (root / "imagesTs").is_dir():
        test_labels = image_files(root / "labelsTs") if (root / "labelsTs").is_dir() else {}
        groups["test"] = [
            DataEntry(case_id(p), [p], test_labels.get(name), f"imagesTs/{name}", root)
            for name, p in image_files(root / "imagesTs").items()
        ]
    _check_duplicates(groups, root)
    return groups


def dataset_entries(dataset_dir: str | Path) -> DatasetEntries:
    """List every case of a data set folder (dataset.json, else imagesTr/+labelsTr/ or images/+labels/).

    Structure, paths and duplicates are validated (PipelineError naming dataset.json or the file); the
    files themselves are not read: ``DataEntry.check()`` does that per case.
    """
    root = _root(dataset_dir)
    source = root / "dataset.json"
    if source.exists():
        meta = _read_json(source)
        return DatasetEntries(root, meta, _entries_from_json(root, source, meta))
    return DatasetEntries(root, None, _entries_from_folder(root))


def read_dataset_json(dataset_dir: str | Path) -> dict:
    """Read and validate ``dataset_dir/dataset.json`` (structure, entries, paths, duplicates); return it as is."""
    root = _root(dataset_dir)
    source = root / "dataset.json"
    if not source.is_file():
        raise PipelineError(f"{source}: not found")
    meta = _read_json(source)
    _entries_from_json(root, source, meta)
    return meta


# ---------------------------------------------------------------------------------------------------
# Checks


def _check_entry(e: DataEntry) -> str | None:
    """Header-level problems of one case (first one found), or None."""
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


def _raise_problems(problems: list[str]) -> None:
    if problems:
        more = f" (and {len(problems) - 1} more problem(s); `python -m pipeline check-data` lists all)"
        raise PipelineError(problems[0] + (more if len(problems) > 1 else ""))


# ---------------------------------------------------------------------------------------------------
# Splits


def split_cases(
    cases: list[dict],
    split: str,
    *,
    val_fraction: float = 0.2,
    num_folds: int = 0,
    fold: int = 0,
    seed: int = 0,
) -> list[dict]:
    """Deterministic training/validation part of ``cases`` (dicts with "case"), sorted by case id.

    ``num_folds > 1``: k-fold as nnU-Net (sorted ids, ``RandomState(seed)`` shuffle, folds of n//k or
    n//k+1; seed=12345 reproduces nnU-Net's splits), unless every case carries a MONAI-style "fold" key,
    which is used as is. Otherwise a seeded random split with ``val_fraction`` (>= 1 validation case
    when there are >= 2 cases and val_fraction > 0).
    """
    if split not in ("training", "validation"):
        raise PipelineError(f"split {split!r}: split_cases handles 'training' or 'validation'")
    ids = [c.get("case") for c in cases]
    if any(not isinstance(i, str) for i in ids):
        raise PipelineError("split_cases: every case needs a string 'case' id")
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise PipelineError(f"case {dup}: listed twice")
    ordered = sorted(cases, key=lambda c: c["case"])
    n = len(ordered)
    if num_folds > 1:
        if not 0 <= fold < num_folds:
            raise PipelineError(f"fold={fold}: must be in [0, {num_folds}) for num_folds={num_folds}")
        if n and all(isinstance(c.get("fold"), int) for c in ordered):
            bad = next((c for c in ordered if not 0 <= c["fold"] < num_folds), None)
            if bad is not None:
                raise PipelineError(f"case {bad['case']}: 'fold' {bad['fold']} outside [0, {num_folds})")
            val_ids = {c["case"] for c in ordered if c["fold"] == fold}
        else:
            if n < num_folds:
                raise PipelineError(f"num_folds={num_folds}: only {n} case(s) to split")
            order = np.arange(n)
            np.random.RandomState(seed).shuffle(order)  # same as sklearn KFold(shuffle=True, random_state=seed)
            sizes = np.full(num_folds, n // num_folds)
            sizes[: n % num_folds] += 1
            start = int(sizes[:fold].sum())
            val_ids = {ordered[i]["case"] for i in order[start : start + sizes[fold]]}
    else:
        if not 0.0 <= val_fraction < 1.0:
            raise PipelineError(f"val_fraction={val_fraction}: must be in [0, 1)")
        n_val = 0
        if n >= 2 and val_fraction > 0:
            n_val = min(n - 1, max(1, math.floor(n * val_fraction + 0.5)))
        perm = np.random.default_rng(seed).permutation(n)
        val_ids = {ordered[i]["case"] for i in perm[:n_val]}
    want_val = split == "validation"
    return [c for c in ordered if (c["case"] in val_ids) == want_val]


def load_datalist(
    dataset_dir: str | Path,
    split: str = "training",
    *,
    val_fraction: float = 0.2,
    num_folds: int = 0,
    fold: int = 0,
    seed: int = 0,
    check: bool = True,
    require_labels: bool = False,
) -> list[dict]:
    """Cases of one split as dicts {"image", "label" (absent for unlabelled test cases), "case"}, absolute paths.

    Uses dataset.json (its "validation" list if present, else a split of "training", see split_cases;
    "test" entries may be strings, labels found in labelsTs/ are attached) or plain image/label folders.
    ``check`` runs the header-level checks on every returned case; ``require_labels`` (for evaluation)
    refuses a case without a label. Sorted by case id.
    """
    if split not in SPLITS:
        raise PipelineError(f"split {split!r}: expected one of {', '.join(SPLITS)}")
    listing = dataset_entries(dataset_dir)
    groups, meta, source = listing.splits, listing.meta, listing.source
    if split == "test":
        entries = groups["test"]
        if entries is None:
            what = "no 'test' list" if meta is not None else "no imagesTs/ folder"
            raise PipelineError(f"{source}: {what}")
    elif groups["validation"] is not None:
        if num_folds > 1:
            raise PipelineError(
                f"{source}: has an explicit 'validation' list, so num_folds={num_folds} cannot apply; use num_folds=0"
            )
        entries = groups[split]
    else:
        by_case = {e.case: e for e in groups["training"] or []}
        chosen = split_cases(
            [e.as_dict() for e in by_case.values()],
            split,
            val_fraction=val_fraction,
            num_folds=num_folds,
            fold=fold,
            seed=seed,
        )
        entries = [by_case[c["case"]] for c in chosen]
    entries = sorted(entries or [], key=lambda e: e.case)
    if require_labels:
        unlabelled = [e for e in entries if e.label is None]
        if unlabelled:
            e = unlabelled[0]
            more = f" (and {len(unlabelled) - 1} more)" if len(unlabelled) > 1 else ""
            raise PipelineError(
                f"{e.describe()}: {split} case has no label{more}; "
                "evaluation needs labels (labelsTs/ with the same file names)"
            )
    if check:
        _raise_problems([p for e in entries if (p := e.check()) is not None])
    return [e.as_dict() for e in entries]
