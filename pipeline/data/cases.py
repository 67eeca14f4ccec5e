"""Image files and case ids: the file types a data set may hold and how a file name gives its case id.

Small helpers shared by the data lists, evaluation, inference and the figures.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

__all__ = ["IMAGE_EXTENSIONS", "ITK_EXTENSIONS", "NIFTI_EXTENSIONS", "PIL_EXTENSIONS", "case_id", "find_case_file",
           "image_files", "nnunet_case"]

NIFTI_EXTENSIONS = (".nii.gz", ".nii")
PIL_EXTENSIONS = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
ITK_EXTENSIONS = (".mha", ".mhd", ".nrrd", ".nhdr")
IMAGE_EXTENSIONS = NIFTI_EXTENSIONS + PIL_EXTENSIONS + ITK_EXTENSIONS


def case_id(path: str | Path) -> str:
    """Case id of an image file: its name without the image extension(s), e.g. ``la_003.nii.gz`` -> ``la_003``."""
    name = Path(path).name
    lower = name.lower()
    for ext in sorted(IMAGE_EXTENSIONS, key=len, reverse=True):
        if lower.endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)]
    return Path(name).stem or name


def image_files(folder: str | Path) -> dict[str, Path]:
    """Image files (IMAGE_EXTENSIONS) in a folder by file name, sorted; hidden files (macOS '._x.nii.gz') skipped."""
    folder = Path(folder)
    return {
        p.name: p
        for p in sorted(folder.iterdir())
        if not p.name.startswith(".") and p.name.lower().endswith(IMAGE_EXTENSIONS) and not p.is_dir()
    }


def nnunet_case(cid: str) -> str:
    """A case id without nnU-Net's first-channel suffix: ``la_003_0000`` -> ``la_003``; other ids unchanged."""
    return cid[:-5] if len(cid) > 5 and cid.endswith("_0000") else cid


def find_case_file(files: Mapping[str, Path], name: str, suffix: str = "", of_input: bool = False) -> Path | None:
    """The file of ``name`` (+ ``suffix``, such as ``_prob``) among ``files`` (by case id) under either naming; None
    if there is none.

    ``name`` is a case (``la_003``, as its label is named): ``<name>``, the nnU-Net input ``<name>_0000``, then
    ``<name>_seg``. With ``of_input``, ``name`` is an input's case id (``la_003_0000``) and the file is the label map
    written for it: ``<name>_seg`` (pred_naming pipeline), ``<name>`` without ``_0000`` (nnunet), then ``<name>``.
    """
    if of_input:
        forms = (f"{name}_seg", nnunet_case(name), name)
    else:
        forms = (name, f"{name}_0000", f"{name}_seg")
    return next((files[k + suffix] for k in forms if k + suffix in files), None)
