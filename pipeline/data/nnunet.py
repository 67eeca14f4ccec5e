"""The nnU-Net v2 raw data set layout: its dataset.json, its file names, and the cases they give.

    DatasetXXX_Name/
      dataset.json    channel_names, labels (name -> value, or name -> [values] for regions), numTraining, file_ending
      imagesTr/       <case>_<XXXX><file_ending>: one file per channel, XXXX = 0000, 0001, ... as in channel_names
      labelsTr/       <case><file_ending>
      imagesTs/       held-out cases, same naming (labels, if any, in labelsTs/)

There is no case list: the cases are found from the file names, as nnU-Net does. Everything is checked here with a
one-line ``PipelineError`` naming dataset.json or the file (a missing channel names the file that should be there);
``pipeline.data.listing`` turns the cases into data list entries, so a folder of this kind trains, evaluates and is
checked like an MSD one.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.data.cases import IMAGE_EXTENSIONS, case_id
from pipeline.errors import PipelineError

__all__ = [
    "CHANNEL_SUFFIX",
    "NnUNetCase",
    "channel_case",
    "group_channel_files",
    "is_nnunet_meta",
    "label_classes",
    "label_regions",
    "label_values",
    "nnunet_cases",
    "nnunet_file_ending",
]

#: ``<case>_<XXXX>``: nnU-Net's channel suffix (4 digits) at the end of an image's name without its file ending
CHANNEL_SUFFIX = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")
#: nnU-Net readers this pipeline can stand in for (``overwrite_image_reader_writer``); Tiff3DIO needs 3D TIFF
#: reading with a spacing sidecar, which no reader here does
KNOWN_IO = ("SimpleITKIO", "NibabelIO", "NibabelIOWithReorient", "NaturalImage2DIO")


@dataclass(frozen=True)
class NnUNetCase:
    """One case of an nnU-Net raw folder: its id, channel files in channel order, label (or None), folder."""

    case: str
    images: list[Path]
    label: Path | None
    folder: str  # imagesTr or imagesTs


def is_nnunet_meta(meta: Mapping[str, Any]) -> bool:
    """True for an nnU-Net v2 dataset.json: ``channel_names`` and no case list (an MSD file lists its cases)."""
    return "channel_names" in meta and "training" not in meta


def channel_case(path: str | Path) -> tuple[str, int] | None:
    """(case, channel) of an image named ``<case>_<XXXX><ending>``, None for a name without a channel suffix."""
    match = CHANNEL_SUFFIX.match(case_id(path))
    return (match["case"], int(match["channel"])) if match else None


def _channel_groups(files: list[Path], channels: int, base: Path | None = None) -> dict[str, list[Path]]:
    """``files``, each named ``<case>_<XXXX><ending>``, grouped by case (sorted) in channel order 0..``channels`` - 1.

    Every problem is a one-line PipelineError naming the file (relative to ``base`` when given): a name without the
    channel suffix, a channel beyond the ``channels`` of dataset.json, or a case that lacks a channel (naming the
    file that should be there).
    """
    def shown(path: Path) -> Path:
        return path.relative_to(base) if base is not None else path

    groups: dict[str, dict[int, Path]] = {}
    for path in files:
        parsed = channel_case(path)
        if parsed is None:
            ending = path.name[len(case_id(path)):]
            raise PipelineError(f"{shown(path)}: image name lacks the channel suffix (<case>_0000{ending})")
        case, channel = parsed
        if channel >= channels:
            raise PipelineError(f"{shown(path)}: channel {channel:04d}, but dataset.json channel_names lists "
                                f"{channels} channel(s)")
        groups.setdefault(case, {})[channel] = path
    for case, by_channel in sorted(groups.items()):
        first = next(iter(by_channel.values()))
        for channel in range(channels):
            if channel not in by_channel:
                missing = first.with_name(f"{case}_{channel:04d}{first.name[len(case_id(first)):]}")
                raise PipelineError(f"{shown(missing)}: missing (case {case} has channel(s) "
                                    f"{', '.join(f'{c:04d}' for c in sorted(by_channel))} of {channels})")
    return {case: [by_channel[c] for c in range(channels)] for case, by_channel in sorted(groups.items())}


def group_channel_files(files: list[Path], channels: int) -> dict[str, list[Path]] | None:
    """Files named ``<case>_0000``, ``<case>_0001``, ... (an inference input folder) grouped by case in channel
    order, when every file of ``files`` carries a channel suffix below ``channels``; None when they do not (not an
    nnU-Net-style folder).

    A case that lacks a channel is a PipelineError naming the file that should be there.
    """
    parsed = [channel_case(p) for p in files]
    if not parsed or any(cc is None or cc[1] >= channels for cc in parsed):
        return None
    return _channel_groups(files, channels)


def nnunet_file_ending(meta: Mapping[str, Any], source: Path) -> str:
    """The ``file_ending`` of an nnU-Net dataset.json, checked against the file types this pipeline reads."""
    ending = meta.get("file_ending")
    if not isinstance(ending, str) or not ending.startswith("."):
        raise PipelineError(f"{source}: nnU-Net dataset.json needs 'file_ending' (such as \".nii.gz\"), got {ending!r}")
    if ending.lower() not in IMAGE_EXTENSIONS:
        raise PipelineError(f"{source}: file_ending {ending!r} is not a file type this pipeline reads "
                            f"({', '.join(IMAGE_EXTENSIONS)})")
    io = meta.get("overwrite_image_reader_writer")
    if io is not None and io not in KNOWN_IO:
        raise PipelineError(f"{source}: overwrite_image_reader_writer {io!r} is not supported (3D TIFF and custom "
                            f"readers are not read here; supported: {', '.join(KNOWN_IO)}); convert the images to "
                            "NIfTI")
    return ending


def label_values(labels: Mapping[str, Any]) -> list[int]:
    """Every integer label value an nnU-Net ``labels`` dict names: plain values and the union of region lists."""
    values: set[int] = set()
    for value in labels.values():
        values.update(int(v) for v in (value if isinstance(value, (list, tuple)) else [value]))
    return sorted(values)


def label_regions(labels: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """The regions of an nnU-Net ``labels`` dict (name -> the label values it unites, as for BraTS); {} if none."""
    return {name: tuple(int(v) for v in value) for name, value in labels.items() if isinstance(value, (list, tuple))}


def label_classes(labels: Mapping[str, Any]) -> list[str] | None:
    """Foreground class names of a dataset.json ``labels`` dict: MSD ({"1": "pancreas"}, by value) or nnU-Net v2
    ({"pancreas": 1}, which must name the values 1..n one by one); None for regions or gaps in a v2 dict."""
    if labels and all(str(k).strip().isdigit() for k in labels):
        return [str(labels[k]) for k in sorted(labels, key=int) if int(k) > 0]
    if not labels or not all(isinstance(v, int) and not isinstance(v, bool) for v in labels.values()):
        return None
    by_value = {int(v): str(k) for k, v in labels.items() if int(v) > 0}
    if sorted(by_value) != list(range(1, len(by_value) + 1)):
        return None
    return [by_value[v] for v in sorted(by_value)]


def _channel_count(meta: Mapping[str, Any], source: Path) -> int:
    names = meta.get("channel_names")
    if not isinstance(names, Mapping) or not names:
        raise PipelineError(f"{source}: 'channel_names' must be a non-empty object such as {{\"0\": \"CT\"}}")
    if sorted(str(k) for k in names) != sorted(str(i) for i in range(len(names))):
        raise PipelineError(f"{source}: channel_names keys {sorted(names)} are not 0..{len(names) - 1}")
    return len(names)


def _cases(root: Path, folder: str, label_folder: str, ending: str, channels: int, need_labels: bool
           ) -> list[NnUNetCase]:
    images = [p for p in sorted((root / folder).iterdir())  # nnU-Net reads only files with the data set's file_ending
              if p.name.endswith(ending) and not p.name.startswith(".") and not p.is_dir()]
    groups = _channel_groups(images, channels, base=root)
    labels_dir = root / label_folder
    cases = []
    for case, case_images in groups.items():
        label = labels_dir / f"{case}{ending}"
        if not label.is_file():
            if need_labels:
                raise PipelineError(f"{label_folder}/{case}{ending}: missing (the label of case {case})")
            label = None
        cases.append(NnUNetCase(case, case_images, label, folder))
    if labels_dir.is_dir():
        for path in sorted(labels_dir.iterdir()):
            if path.name.endswith(ending) and not path.name.startswith(".") and path.name[: -len(ending)] not in groups:
                raise PipelineError(f"{label_folder}/{path.name}: label has no image {folder}/"
                                    f"{path.name[: -len(ending)]}_0000{ending}")
    return cases


def nnunet_cases(root: Path, meta: Mapping[str, Any], source: Path) -> dict[str, list[NnUNetCase] | None]:
    """The cases of an nnU-Net v2 raw folder: "training" (imagesTr/ + labelsTr/) and "test" (imagesTs/, labels
    from labelsTs/ where present; None without imagesTs/). Checks channels, labels and numTraining."""
    if "dataset" in meta:
        raise PipelineError(f"{source}: the 'dataset' file list of nnU-Net is not supported; keep the files in "
                            "imagesTr/ and labelsTr/")
    ending = nnunet_file_ending(meta, source)
    channels = _channel_count(meta, source)
    if not (root / "imagesTr").is_dir():
        raise PipelineError(f"{root / 'imagesTr'}: missing (an nnU-Net data set keeps its training images there)")
    if not (root / "labelsTr").is_dir():
        raise PipelineError(f"{root / 'labelsTr'}: missing (an nnU-Net data set keeps its training labels there)")
    training = _cases(root, "imagesTr", "labelsTr", ending, channels, need_labels=True)
    if not training:
        raise PipelineError(f"{root / 'imagesTr'}: no images named <case>_0000{ending}")
    expected = meta.get("numTraining")
    if expected is not None and expected != len(training):
        raise PipelineError(f"{source}: numTraining is {expected}, but imagesTr/ holds {len(training)} case(s)")
    test = None
    if (root / "imagesTs").is_dir():
        test = _cases(root, "imagesTs", "labelsTs", ending, channels, need_labels=False)
    return {"training": training, "validation": None, "test": test}
