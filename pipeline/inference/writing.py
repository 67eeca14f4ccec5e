"""Predictions written atomically: MONAI's ``SaveImaged`` with every file going through a temporary name.

``SaveImage`` writes straight to the final name, so a full disk or a kill while a label map is written leaves a
truncated image that looks like a finished prediction (and ``check_outputs`` of a rerun would see it as present).
``AtomicSaveImaged`` takes the same arguments and writes the same names and formats, but each writer writes a
hidden temporary file beside the final one (its name ends with the final name, so the format chosen from the
extension is the same) which is fsynced and renamed. A write failure removes the temporary file, keeps what was
under the final name before, and stops the run with one line (``WriteError``) instead of MONAI's "cannot find a
suitable writer" report, which would try the next writer and print every traceback.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from monai.data.folder_layout import default_name_formatter
from monai.transforms import SaveImaged

from pipeline.data.cases import case_id, nnunet_case
from pipeline.errors import PipelineError
from pipeline.fileio import WriteError, commit, is_write_failure, temporary_name


class _WriteFailed(BaseException):
    """Carries a WriteError past SaveImage's ``except Exception`` (which would try the next writer)."""

    def __init__(self, error: WriteError) -> None:
        super().__init__(str(error))
        self.error = error


def atomic_writer(writer: type) -> type:
    """A subclass of the MONAI image writer class ``writer`` whose ``write`` goes through a temporary file."""

    class AtomicWriter(writer):  # type: ignore[misc, valid-type]
        def write(self, filename_or_obj: Any, *args: Any, **kwargs: Any) -> Any:
            if not isinstance(filename_or_obj, (str, os.PathLike)):  # a file object: the caller owns it
                return super().write(filename_or_obj, *args, **kwargs)
            final = Path(filename_or_obj)
            tmp = temporary_name(final)
            try:
                result = super().write(str(tmp), *args, **kwargs)
                commit(tmp, final)
            except WriteError as e:
                raise _WriteFailed(e) from None
            except BaseException as e:
                tmp.unlink(missing_ok=True)
                if is_write_failure(e):
                    raise _WriteFailed(WriteError(final, e)) from None
                raise
            return result

    AtomicWriter.__name__ = AtomicWriter.__qualname__ = f"Atomic{writer.__name__}"
    return AtomicWriter


class AtomicSaveImaged(SaveImaged):
    """``SaveImaged`` (same arguments, names and formats) whose files appear under their final name only when
    complete; see the module docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.saver.writers = tuple(atomic_writer(w) for w in self.saver.writers)

    def __call__(self, data: Any) -> Any:
        try:
            return super().__call__(data)
        except _WriteFailed as e:
            raise e.error from None


#: ``pred_naming``: ``pipeline`` writes ``<input name>_seg<ext>``; ``nnunet`` writes ``<case><ext>``, the input's name
#: without nnU-Net's channel suffix ``_0000`` (and ``<case>_prob``/``_attention`` beside it), so that nnU-Net's tools
#: and ``python -m pipeline evaluate`` pair predictions with ``labelsTs/<case><ext>`` by name
PRED_NAMINGS = ("pipeline", "nnunet")


def check_pred_naming(naming: str) -> str:
    """``naming`` if it is one of PRED_NAMINGS, else a one-line PipelineError."""
    if naming not in PRED_NAMINGS:
        raise PipelineError(f"pred_naming {naming!r}: expected one of {', '.join(PRED_NAMINGS)}")
    return naming


def pred_postfix(naming: str) -> str:
    """SaveImaged's ``output_postfix`` of the label map for a ``pred_naming``: "seg", or "" for nnunet."""
    return "seg" if check_pred_naming(naming) == "pipeline" else ""


def nnunet_name(name: str) -> str:
    """An input's file name (or path) without nnU-Net's first-channel suffix: ``x/la_003_0000.nii.gz`` ->
    ``x/la_003.nii.gz``; other names unchanged."""
    path = Path(name)
    cid = case_id(path)
    case = nnunet_case(cid)
    return str(path.with_name(case + path.name[len(cid):])) if case != cid else name


def nnunet_name_formatter(metadict: dict, saver: Any) -> dict:
    """SaveImaged's ``output_name_formatter`` for ``pred_naming`` nnunet (MONAI's default, ``_0000`` removed)."""
    kwargs = default_name_formatter(metadict, saver)
    kwargs["subject"] = nnunet_name(kwargs["subject"])
    return kwargs


def pred_name_formatter(naming: str) -> Any:
    """SaveImaged's ``output_name_formatter`` for a ``pred_naming`` (None: MONAI's default)."""
    return nnunet_name_formatter if check_pred_naming(naming) == "nnunet" else None


__all__ = [
    "PRED_NAMINGS", "AtomicSaveImaged", "atomic_writer", "check_pred_naming", "nnunet_name",
    "nnunet_name_formatter", "pred_name_formatter", "pred_postfix",
]
