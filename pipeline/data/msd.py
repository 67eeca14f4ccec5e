"""Writing a generated data set in the Medical Segmentation Decathlon (MSD) layout.

    out_dir/
      imagesTr/  labelsTr/   training (and validation) cases: image and label share one file name
      imagesTs/  labelsTs/   held-out cases (real MSD has no labelsTs; generated sets keep the labels there)
      dataset.json           written last: a folder without it is an interrupted run

``write_msd_dataset`` serves every generator (2D shapes as PNG, CT phantoms as NIfTI). It checks everything first
and refuses with a one-line ``PipelineError`` naming the folder or file, before it creates, deletes or writes
anything. With ``overwrite=True`` it replaces only a data set of the same generator (same dataset.json "name"),
and of that data set only the files its dataset.json lists under the generator's own file names; anything else
in the folder is left alone.
"""
from __future__ import annotations

import gzip
import io
import json
import os
import re
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import PipelineError

SPLIT_DIRS = ("imagesTr", "labelsTr", "imagesTs", "labelsTs")
LISTS = ("training", "validation", "test")  # dataset.json lists; validation cases live in imagesTr/ too


@dataclass(frozen=True)
class MSDCase:
    """One image/label pair: the generator's index for it, its file name (the same under images* and labels*)
    and the dataset.json list it belongs to (training, validation or test)."""

    index: int
    name: str
    split: str

    @property
    def folder_suffix(self) -> str:
        """"Ts" for held-out cases, "Tr" for training and validation cases."""
        return "Ts" if self.split == "test" else "Tr"

    @property
    def image(self) -> str:
        """Image path relative to the data set folder, as dataset.json writes it."""
        return f"./images{self.folder_suffix}/{self.name}"

    @property
    def label(self) -> str:
        """Label path relative to the data set folder, as dataset.json writes it."""
        return f"./labels{self.folder_suffix}/{self.name}"


@dataclass(frozen=True)
class MSDDataset:
    """What a generator writes: the dataset.json header, the cases, and how to recognise its own files."""

    header: dict[str, Any]  # name, description, reference, licence, release, tensorImageSize, modality, labels
    cases: Sequence[MSDCase]
    file_pattern: str  # regular expression every file name of this generator matches in full
    lists: tuple[str, ...] = LISTS  # lists written to dataset.json (each may be empty)
    test_labels_listed: bool = True  # test entries {"image", "label"}; False: image paths only, as in real MSD
    json_indent: int = 2

    def meta(self) -> dict[str, Any]:
        """The dataset.json contents: header, case counts and the lists."""
        meta = dict(self.header)
        meta["numTraining"] = sum(c.split != "test" for c in self.cases)  # cases in imagesTr/
        meta["numTest"] = sum(c.split == "test" for c in self.cases)
        for key in self.lists:
            chosen = [c for c in self.cases if c.split == key]
            if key == "test" and not self.test_labels_listed:
                meta[key] = [c.image for c in chosen]
            else:
                meta[key] = [{"image": c.image, "label": c.label} for c in chosen]
        return meta


Encoder = Callable[[MSDCase], tuple[bytes, bytes]]


def write_msd_dataset(out_dir: str | Path, dataset: MSDDataset, encode: Encoder, overwrite: bool = False,
                      workers: int = 1) -> Path:
    """Write `dataset` into `out_dir` (image and label bytes from `encode(case)`); return the dataset.json path.

    Everything is checked before anything on disk changes; `workers` > 1 encodes that many cases at a time in
    threads (worthwhile when encoding releases the GIL, as numpy and zlib do). dataset.json is written last.
    """
    root = Path(os.path.abspath(out_dir))
    old_files = check_msd_target(root, dataset, overwrite)
    dataset_json = root / "dataset.json"
    if dataset_json.exists():
        dataset_json.unlink()  # the old list no longer describes the files once writing starts
    for sub in SPLIT_DIRS:
        (root / sub).mkdir(parents=True, exist_ok=True)
    _write_cases(root, dataset.cases, encode, workers)
    targets = {_target(root, rel) for c in dataset.cases for rel in (c.image, c.label)}
    for stale in sorted(old_files - targets):
        stale.unlink(missing_ok=True)
    text = json.dumps(dataset.meta(), indent=dataset.json_indent) + "\n"
    write_atomic(dataset_json, text.encode("utf-8"))
    return dataset_json


def check_msd_target(out_dir: str | Path, dataset: MSDDataset, overwrite: bool) -> set[Path]:
    """Raise a one-line PipelineError if `dataset` cannot be written into `out_dir` (touches nothing).

    Returns the files of an earlier data set of the same generator that an overwrite replaces.
    """
    root = Path(os.path.abspath(out_dir))
    _check_cases(root, dataset)
    existing = next(p for p in (root, *root.parents) if p.exists())
    if not existing.is_dir():
        raise PipelineError(f"{existing}: exists and is not a folder; cannot write a data set into {root}")
    for sub in SPLIT_DIRS:
        if (root / sub).exists() and not (root / sub).is_dir():
            raise PipelineError(f"{root / sub}: exists and is not a folder")
    targets = [_target(root, rel) for c in dataset.cases for rel in (c.image, c.label)]
    blocked = next((p for p in targets if p.is_dir()), None)
    if blocked is not None:
        raise PipelineError(f"{blocked}: is a folder where a data set file belongs")
    dataset_json = root / "dataset.json"
    if dataset_json.is_dir():
        raise PipelineError(f"{dataset_json}: is a folder")
    if dataset_json.exists():
        if not overwrite:
            raise PipelineError(f"{dataset_json}: already exists; pass overwrite=True to replace the data set")
        return _own_files(root, dataset_json, dataset)
    if not overwrite:
        clash = next((p for p in targets if p.exists()), None)
        if clash is not None:
            raise PipelineError(f"{clash}: already exists without a dataset.json (incomplete earlier run?); "
                                "pass overwrite=True to replace it")
    return set()


def _check_cases(root: Path, dataset: MSDDataset) -> None:
    """The case list itself: known lists, unique names of the generator's own pattern, at least one case."""
    if not dataset.cases:
        raise PipelineError(f"{root}: a data set needs at least one case")
    pattern = re.compile(dataset.file_pattern)
    seen: set[str] = set()
    for case in dataset.cases:
        if case.split not in dataset.lists:
            raise PipelineError(f"{root}: case {case.name!r} is in list {case.split!r}, "
                                f"expected one of {', '.join(dataset.lists)}")
        if not pattern.fullmatch(case.name) or case.name in seen:
            raise PipelineError(f"{root}: case file name {case.name!r} is repeated or does not match "
                                f"{dataset.file_pattern!r}")
        seen.add(case.name)


def _own_files(root: Path, dataset_json: Path, dataset: MSDDataset) -> set[Path]:
    """Files listed in an existing dataset.json of the same generator (to replace on overwrite); refuse anything
    else. Only the generator's own file names inside the four MSD sub-folders count, each with its partner
    (the same name under images* / labels*), since held-out labels are not listed."""
    name = dataset.header.get("name")
    try:
        old = json.loads(dataset_json.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise PipelineError(f"{dataset_json}: unreadable ({type(e).__name__}); refusing to overwrite it") from e
    if not isinstance(old, dict) or old.get("name") != name:
        raise PipelineError(f"{dataset_json}: not a {name} data set; refusing to overwrite it")
    pattern = re.compile(dataset.file_pattern)
    files: set[Path] = set()
    for key in LISTS:
        entries = old.get(key)
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, str):  # MSD test lists hold bare image paths
                rels = [entry]
            elif isinstance(entry, dict):
                rels = [entry.get("image"), entry.get("label")]
            else:
                continue
            for rel in rels:
                if not isinstance(rel, str):
                    continue
                path = _target(root, rel)
                folder = path.parent.name
                if path.parent.parent == root and folder in SPLIT_DIRS and pattern.fullmatch(path.name):
                    partner = ("labels" if folder.startswith("images") else "images") + folder[-2:]
                    files.update({path, root / partner / path.name})
    return files


def _target(root: Path, rel: str) -> Path:
    """Normalised absolute path of a dataset.json entry."""
    return Path(os.path.normpath(root / rel))


def _write_cases(root: Path, cases: Sequence[MSDCase], encode: Encoder, workers: int) -> None:
    """Encode and write every case; with workers > 1 keep that many cases in flight."""

    def job(case: MSDCase) -> None:
        image, label = encode(case)
        write_atomic(_target(root, case.image), image)
        write_atomic(_target(root, case.label), label)

    if workers <= 1:
        for case in cases:
            job(case)
        return
    pending: deque[Future] = deque()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for case in cases:
            pending.append(pool.submit(job, case))
            while len(pending) > workers:
                pending.popleft().result()
        while pending:
            pending.popleft().result()


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary ``.partial`` file, so a reader never sees half a file."""
    tmp = path.with_name(path.name + ".partial")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------- file formats
def png_bytes(array: np.ndarray) -> bytes:
    """PNG file contents of a 2-D uint8 array (PIL's encoder, deterministic)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def nifti_bytes(array: np.ndarray, affine: np.ndarray) -> bytes:
    """Gzipped NIfTI-1 file contents (qform and sform = affine, mm units); deterministic (gzip mtime 0)."""
    import nibabel as nib

    img = nib.Nifti1Image(array, affine)
    hdr = img.header
    hdr.set_data_dtype(array.dtype)
    hdr.set_qform(affine, code=1)
    hdr.set_sform(affine, code=1)
    hdr.set_xyzt_units("mm", "sec")
    hdr.set_zooms(tuple(float(z) for z in np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))))
    return gzip.compress(img.to_bytes(), compresslevel=1, mtime=0)
