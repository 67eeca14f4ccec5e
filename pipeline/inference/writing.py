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

from monai.transforms import SaveImaged

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


__all__ = ["AtomicSaveImaged", "atomic_writer"]
