"""Every case a data set folder lists: an MSD-style ``dataset.json``, an nnU-Net v2 raw folder (its dataset.json
has ``channel_names`` and no case list; ``pipeline.data.nnunet``) or a plain folder of image/label pairs.

Paths follow ``monai.data.load_decathlon_datalist`` semantics (relative to the data set folder, "image" may be a
list of files for several channels, extra keys pass through). Structure, paths and duplicates are validated here:
paths must stay inside the data set folder and case ids must be unique. Every problem is a one-line
``PipelineError`` naming the file or case; the files themselves are checked by ``pipeline.data.case_files``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.data.case_files import check_case_files
from pipeline.data.cases import IMAGE_EXTENSIONS, case_id, image_files
from pipeline.data.nnunet import is_nnunet_meta, nnunet_cases
from pipeline.errors import PipelineError
from pipeline.schema import check_schema, int_list, integers, load_json_file

__all__ = ["SPLITS", "DataEntry", "DatasetEntries", "dataset_entries", "read_dataset_json"]

SPLITS = ("training", "validation", "test")
PLAIN_LAYOUTS = (("imagesTr", "labelsTr"), ("images", "labels"))


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
        return check_case_files(self)


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


_TEXT = {"type": ["string", "number", "null"], "maxLength": 10_000}
_NAMES = {"type": "object", "maxProperties": 64, "propertyNames": {"maxLength": 100},
          "additionalProperties": {"type": "string", "maxLength": 200}}
#: what dataset.json may hold besides the lists (MSD keys, nnU-Net v2's channel_names / file_ending / label ids);
#: other keys pass through unread. The lists are checked entry by entry (``_json_entry``).
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        **{k: _TEXT for k in ("name", "description", "reference", "licence", "license", "release",
                              "tensorImageSize")},
        "labels": {"type": "object", "maxProperties": 256, "propertyNames": {"maxLength": 100},
                   "additionalProperties": {"anyOf": [
                       {"type": "string", "maxLength": 200}, integers(0, 255), int_list(0, 255, 1, 255)]}},
        "modality": _NAMES, "channel_names": _NAMES,
        "numTraining": integers(0, 10**7), "numTest": integers(0, 10**7),
        "file_ending": {"type": "string", "maxLength": 20},
        "overwrite_image_reader_writer": {"type": "string", "maxLength": 100},
        **{k: {"type": "array", "maxItems": 10**6} for k in SPLITS},
    },
}


def _read_json(path: Path) -> dict:
    meta = load_json_file(path, "dataset.json")
    if not isinstance(meta, dict):
        raise PipelineError(f"{path}: top level is a JSON {type(meta).__name__}; expected an object")
    check_schema({k: v for k, v in meta.items() if k not in SPLITS}, SCHEMA, path)
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


def _entries_from_nnunet(root: Path, source: Path, meta: dict) -> dict[str, list[DataEntry] | None]:
    """Entries of an nnU-Net v2 raw folder: one per case, its channel files as a list when there are several."""
    groups: dict[str, list[DataEntry] | None] = {}
    for key, cases in nnunet_cases(root, meta, source).items():
        groups[key] = None if cases is None else [
            DataEntry(c.case, c.images, c.label, f"{c.folder}/{c.case}", root, image_is_list=len(c.images) > 1)
            for c in cases
        ]
    _check_duplicates(groups, source)
    return groups


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
    """List every case of a data set folder (dataset.json of MSD or nnU-Net v2, else imagesTr/+labelsTr/ or
    images/+labels/).

    Structure, paths and duplicates are validated (PipelineError naming dataset.json or the file); the
    files themselves are not read: ``DataEntry.check()`` does that per case.
    """
    root = _root(dataset_dir)
    source = root / "dataset.json"
    if source.exists():
        meta = _read_json(source)
        read = _entries_from_nnunet if is_nnunet_meta(meta) else _entries_from_json
        return DatasetEntries(root, meta, read(root, source, meta))
    return DatasetEntries(root, None, _entries_from_folder(root))


def read_dataset_json(dataset_dir: str | Path) -> dict:
    """Read and validate ``dataset_dir/dataset.json`` (structure, entries, paths, duplicates); return it as is."""
    root = _root(dataset_dir)
    source = root / "dataset.json"
    if not source.is_file():
        raise PipelineError(f"{source}: not found")
    meta = _read_json(source)
    (_entries_from_nnunet if is_nnunet_meta(meta) else _entries_from_json)(root, source, meta)
    return meta
