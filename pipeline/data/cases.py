"""Image files and case ids: the file types a data set may hold and how a file name gives its case id.

Small helpers shared by the data lists, evaluation, inference and the figures.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["IMAGE_EXTENSIONS", "ITK_EXTENSIONS", "NIFTI_EXTENSIONS", "PIL_EXTENSIONS", "case_id", "image_files"]

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
