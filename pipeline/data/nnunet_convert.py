"""``python -m pipeline convert``: a data set from the MSD layout to nnU-Net v2's raw layout and back.

MSD -> nnU-Net (as nnU-Net's own ``nnUNetv2_convert_MSD_dataset``): ``imagesTr/x.nii.gz`` -> ``imagesTr/x_0000.nii.gz``;
a 4D multi-channel image (Task01 BrainTumour) is split into one 3D file per channel, a listed image of several files
maps file by file; labels keep their names; the test list goes to ``imagesTs/`` (``labelsTs/`` where labels exist);
validation cases join ``imagesTr/`` (nnU-Net draws its own folds). dataset.json v2 gets channel_names from "modality",
labels as name -> value, numTraining and file_ending.

nnU-Net -> MSD: the channel files of a case are merged into one 4D NIfTI, the MSD way (so MSD -> nnU-Net -> MSD gives
the same arrays and affines); formats other than NIfTI keep one file per channel, listed as ``"image": [...]`` (no
writer for 4D MetaImage/NRRD/PNG here). Region labels (BraTS style) are listed by value and kept under "regions".

Every case is checked (headers, channels, one file ending) before the first file is written; the destination must be
new or empty (never overwritten) and dataset.json is written last, so a folder without it is an interrupted conversion.
Unchanged files are copied, not hard-linked: a later edit of one copy then cannot change the other data set.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.data.case_files import SINGLE_CHANNEL_MODES, read_header
from pipeline.data.cases import NIFTI_EXTENSIONS, case_id
from pipeline.data.listing import DataEntry, DatasetEntries, dataset_entries
from pipeline.data.nnunet import is_nnunet_meta, label_regions, label_values
from pipeline.errors import PipelineError
from pipeline.fileio import atomic_path, write_text_atomic

__all__ = ["FORMATS", "convert_dataset", "msd_to_nnunet", "nnunet_dataset_name", "nnunet_to_msd"]

FORMATS = ("nnunet", "msd")
CARRIED = ("name", "description", "reference", "licence", "license", "release")  # descriptive keys both layouts keep


def nnunet_dataset_name(dataset_id: int, name: str) -> str:
    """nnU-Net's folder name ``DatasetXXX_Name`` (``7, "Pancreas"`` -> ``Dataset007_Pancreas``), checked."""
    if not 0 <= dataset_id <= 999:
        raise PipelineError(f"dataset id {dataset_id}: nnU-Net data set ids are 0..999")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise PipelineError(f"data set name {name!r}: use letters, digits, '_', '-', '.' (no spaces or slashes)")
    return f"Dataset{dataset_id:03d}_{name}"


def _check_target(dst: Path, src: Path) -> None:
    """Refuse a destination that exists and is not an empty folder, or that lies inside the source (or around it)."""
    if dst == src or dst.is_relative_to(src) or src.is_relative_to(dst):
        raise PipelineError(f"{dst}: the converted data set must go outside {src} (and not around it)")
    if dst.exists():
        if not dst.is_dir():
            raise PipelineError(f"{dst}: exists and is not a folder")
        if any(dst.iterdir()):
            hint = "" if (dst / "dataset.json").exists() else (" (without dataset.json it is an interrupted "
                                                               "conversion: remove it and convert again)")
            raise PipelineError(f"{dst}: already exists and is not empty; refusing to overwrite it{hint}")


def _ending(path: Path) -> str:
    """A file's image ending as written (``.nii.gz`` of ``x.nii.gz``)."""
    return path.name[len(case_id(path)):]


def _one_ending(listing: DatasetEntries) -> str:
    """The one file ending of every image and label of a data set (nnU-Net allows one per data set)."""
    endings: dict[str, Path] = {}
    for e in listing.all():
        for path in e.images + ([e.label] if e.label is not None else []):
            endings.setdefault(_ending(path), path)
    if len(endings) > 1:
        first, *others = endings.items()
        raise PipelineError(f"{others[0][1]}: file ending {others[0][0]!r} differs from {first[0]!r} of {first[1]}; "
                            "nnU-Net needs one file ending per data set")
    return next(iter(endings))


def _check_cases(listing: DatasetEntries) -> None:
    """Header checks of every case (the first problem as one line), before anything is written."""
    for e in listing.all():
        problem = e.check()
        if problem is not None:
            raise PipelineError(problem)


def _copy(src: Path, dst: Path) -> None:
    """Copy a file through a temporary name (never half a file under the final name)."""
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def _file_channels(e: DataEntry) -> int:
    """Channels of a case: its files when it lists several, else the 4th axis of its one file (1 without one)."""
    if e.image_is_list:
        return len(e.images)
    header = read_header(e.images[0])
    extra = [s for s in header.extra_shape if s != 1]
    if header.mode is not None and header.mode not in SINGLE_CHANNEL_MODES:
        raise PipelineError(f"{e.describe()}: {header.mode} colour image; converting colour images is not supported")
    if len(extra) > 1:
        raise PipelineError(f"{e.describe()}: image has extra dimensions {header.extra_shape}; expected at most one "
                            "channel axis")
    return extra[0] if extra else 1


def _nifti(data: np.ndarray, like: Any) -> Any:
    """A NIfTI image of ``data`` with the geometry (affine, qform, sform, units) of the loaded image ``like``."""
    import nibabel as nib

    header = like.header.copy()
    header.set_data_dtype(data.dtype)
    return nib.Nifti1Image(data, like.affine, header=header)


def _save_nifti(image: Any, path: Path) -> None:
    import nibabel as nib

    with atomic_path(path) as tmp:
        nib.save(image, str(tmp))


def _split_channels(src: Path, dst_for_channel: list[Path]) -> None:
    """Write each channel (4th axis) of a 4D NIfTI as its own 3D NIfTI with the same geometry."""
    import nibabel as nib

    image = nib.load(str(src))
    data = np.asanyarray(image.dataobj)
    for c, dst in enumerate(dst_for_channel):
        _save_nifti(_nifti(np.ascontiguousarray(data[..., c]), image), dst)


def _merge_channels(srcs: list[Path], dst: Path) -> None:
    """Stack one-channel NIfTI files along a 4th axis (the first file's geometry) into one file."""
    import nibabel as nib

    images = [nib.load(str(p)) for p in srcs]
    data = np.stack([np.asanyarray(i.dataobj) for i in images], axis=-1)
    _save_nifti(_nifti(data, images[0]), dst)


def _entries(listing: DatasetEntries) -> tuple[list[DataEntry], list[DataEntry]]:
    """(imagesTr cases: training then validation, test cases)."""
    return ([e for key in ("training", "validation") for e in listing.splits.get(key) or []],
            list(listing.splits.get("test") or []))


def msd_to_nnunet(src: str | Path, dst: str | Path, dataset_id: int | None = None, name: str | None = None) -> Path:
    """Convert the MSD data set ``src`` into an nnU-Net v2 raw data set ``dst`` (with ``dataset_id``:
    ``dst/DatasetXXX_Name``, Name defaulting to ``src``'s folder name without ``TaskXX_``); return its folder."""
    listing = dataset_entries(src)
    meta = listing.meta
    if meta is None or is_nnunet_meta(meta):
        raise PipelineError(f"{listing.source}: not an MSD data set (a dataset.json with a 'training' list)")
    root = Path(os.path.abspath(dst))
    if dataset_id is not None:
        name = name or re.sub(r"^Task\d+_", "", listing.root.name)
        root = root / nnunet_dataset_name(dataset_id, name)
    elif name is not None:
        raise PipelineError("--name needs --dataset-id (it forms the folder name DatasetXXX_Name)")
    _check_target(root, listing.root)
    ending = _one_ending(listing)
    _check_cases(listing)
    modality = meta.get("modality") if isinstance(meta.get("modality"), dict) else {}
    channels = len(modality) or None
    train, test = _entries(listing)
    for e in train + test:
        n = _file_channels(e)
        channels = channels or n
        if n != channels:
            raise PipelineError(f"{e.describe()}: image has {n} channel(s), dataset.json modality lists {channels}")
        if n > 1 and not e.image_is_list and ending not in NIFTI_EXTENSIONS:
            raise PipelineError(f"{e.describe()}: multi-channel {ending} files cannot be split here (NIfTI only)")
    labels = meta.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise PipelineError(f"{listing.source}: no 'labels'; nnU-Net's dataset.json needs them")
    if all(str(k).strip().isdigit() for k in labels):
        names = [str(v) for v in labels.values()]
        duplicate = next((n for n in names if names.count(n) > 1), None)
        if duplicate is not None:
            raise PipelineError(f"{listing.source}: label name {duplicate!r} names two values; nnU-Net maps names")
        labels = {str(v): int(k) for k, v in sorted(labels.items(), key=lambda kv: int(kv[0]))}
    for folder, cases in (("Tr", train), ("Ts", test)):
        for e in cases:
            images = [root / f"images{folder}" / f"{e.case}_{c:04d}{ending}" for c in range(channels or 1)]
            images[0].parent.mkdir(parents=True, exist_ok=True)
            if e.image_is_list or len(images) == 1:
                for source, target in zip(e.images, images):
                    _copy(source, target)
            else:
                _split_channels(e.images[0], images)
            if e.label is not None:
                (root / f"labels{folder}").mkdir(parents=True, exist_ok=True)
                _copy(e.label, root / f"labels{folder}" / f"{e.case}{ending}")
    (root / "labelsTr").mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {k: meta[k] for k in CARRIED if k in meta}
    out["channel_names"] = ({str(k): str(v) for k, v in modality.items()} if modality
                            else {str(c): f"channel_{c}" for c in range(channels or 1)})
    out["labels"] = labels
    out["numTraining"] = len(train)
    out["file_ending"] = ending
    write_text_atomic(root / "dataset.json", json.dumps(out, indent=4) + "\n")
    return root


def nnunet_to_msd(src: str | Path, dst: str | Path) -> Path:
    """Convert the nnU-Net v2 raw data set ``src`` into an MSD data set ``dst`` (NIfTI channels merged into one 4D
    file per case, other formats listed file by file; see the module docstring); return its folder."""
    listing = dataset_entries(src)
    meta = listing.meta
    if meta is None or not is_nnunet_meta(meta):
        raise PipelineError(f"{listing.source}: not an nnU-Net v2 raw data set (a dataset.json with channel_names)")
    root = Path(os.path.abspath(dst))
    _check_target(root, listing.root)
    _check_cases(listing)
    ending = str(meta["file_ending"])
    channels = len(meta["channel_names"])
    merge = channels > 1 and ending in NIFTI_EXTENSIONS
    lists: dict[str, list[Any]] = {"training": [], "test": []}
    train, test = _entries(listing)
    for folder, key, cases in (("Tr", "training", train), ("Ts", "test", test)):
        for e in cases:
            image_dir = root / f"images{folder}"
            image_dir.mkdir(parents=True, exist_ok=True)
            if merge:
                _merge_channels(e.images, image_dir / f"{e.case}{ending}")
                image: str | list[str] = f"./images{folder}/{e.case}{ending}"
            elif channels == 1:
                _copy(e.images[0], image_dir / f"{e.case}{ending}")
                image = f"./images{folder}/{e.case}{ending}"
            else:
                image = []
                for source in e.images:
                    _copy(source, image_dir / source.name)
                    image.append(f"./images{folder}/{source.name}")
            label = None
            if e.label is not None:
                (root / f"labels{folder}").mkdir(parents=True, exist_ok=True)
                _copy(e.label, root / f"labels{folder}" / f"{e.case}{ending}")
                label = f"./labels{folder}/{e.case}{ending}"
            if key == "training":
                lists[key].append({"image": image, "label": label})
            else:  # MSD test lists hold image paths; labels found in labelsTs/ by name
                lists[key].append(image if isinstance(image, str) else {"image": image})
    out: dict[str, Any] = {k: meta[k] for k in CARRIED if k in meta}
    spatial = len(read_header(train[0].images[0]).spatial_shape)
    out["tensorImageSize"] = f"{spatial + (1 if merge else 0)}D"
    out["modality"] = {str(k): str(v) for k, v in meta["channel_names"].items()}
    labels = meta.get("labels") or {}
    regions = label_regions(labels)
    names = {int(v): str(k) for k, v in labels.items() if not isinstance(v, (list, tuple))}
    out["labels"] = {str(v): names.get(v, f"label_{v}") for v in label_values(labels)}
    if regions:
        out["regions"] = {k: list(v) for k, v in regions.items()}
    out["numTraining"] = len(train)
    out["numTest"] = len(test)
    out.update(lists)
    write_text_atomic(root / "dataset.json", json.dumps(out, indent=4) + "\n")
    return root


def convert_dataset(src: str | Path, dst: str | Path, to: str, dataset_id: int | None = None,
                    name: str | None = None) -> Path:
    """``python -m pipeline convert --to nnunet|msd SRC DST``: see msd_to_nnunet / nnunet_to_msd."""
    if to == "nnunet":
        return msd_to_nnunet(src, dst, dataset_id, name)
    if to == "msd":
        if dataset_id is not None or name is not None:
            raise PipelineError("--dataset-id and --name apply to --to nnunet only")
        return nnunet_to_msd(src, dst)
    raise PipelineError(f"--to {to!r}: expected one of {', '.join(FORMATS)}")
