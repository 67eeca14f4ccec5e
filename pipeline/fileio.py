"""Small file helpers shared by the checkpoint folder (model_config.json), plan files, metric tables and predictions.

Every file a run writes for later use goes through a temporary name in the same folder and a rename: a full disk, a
write error or a kill leaves the previous file under the final name (or none), never half of a new one. A failed
write is one line naming the path and the OS error (``WriteError``), with the temporary file removed.
"""
from __future__ import annotations

import contextlib
import errno
import math
import os
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError, short_error


class WriteError(PipelineError):
    """Writing ``path`` failed (disk full, quota, I/O error); whatever was under that name before is still there."""

    def __init__(self, path: str | Path, error: BaseException) -> None:
        self.path, self.error = Path(path), error
        super().__init__(f"{path}: could not write ({short_error(error)}); the previous file is kept")


def is_write_failure(error: BaseException) -> bool:
    """An OSError, or torch's zip writer reporting that its file write failed (it turns the OSError into text)."""
    return isinstance(error, OSError) or (isinstance(error, RuntimeError) and "write" in str(error).lower()
                                          and "PytorchStreamWriter" in str(error))


def temporary_name(path: Path) -> Path:
    """A unique hidden name beside ``path`` that ends with ``path``'s own name, so that writers which choose the
    format by extension (``.png``, ``.nii.gz``) write the same format."""
    return path.with_name(f".tmp-{uuid.uuid4().hex[:12]}-{path.name}")


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit(tmp: str | Path, path: str | Path) -> None:
    """fsync ``tmp``, give it the permissions a plain ``open()`` would (mkstemp's are 0600) and rename it to
    ``path``; on an OSError remove ``tmp`` and raise ``WriteError`` for ``path``."""
    try:
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise WriteError(path, e) from None
    fsync_dir(Path(path).parent)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path to write ``path``'s new content to; renamed to ``path`` when the block ends without error.
    A write failure in the block (``is_write_failure``) becomes ``WriteError``; any error removes the temporary file."""
    path = Path(path)
    tmp = temporary_name(path)
    try:
        yield tmp
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if is_write_failure(e):
            raise WriteError(path, e) from None
        raise
    commit(tmp, path)


class RecordingWriter:
    """A binary file's ``write`` that writes everything or raises the OSError, and remembers that error.

    torch's zip writer turns a failed or short write into a RuntimeError about stream positions that does not say
    why; the recorded OSError (``error``) does (``No space left on device``)."""

    def __init__(self, file: Any) -> None:
        self.file = file
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        done = 0
        try:
            while done < view.nbytes:
                n = self.file.write(view[done:])
                if not n:  # a regular file that takes nothing more is full
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                done += n
        except OSError as e:
            self.error = e
            raise
        return done

    def flush(self) -> None:
        self.file.flush()


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder (fsync, then rename): a reader or a
    killed run never sees half a file, and a full disk keeps the previous file (``WriteError``). Creates the
    folder."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WriteError(path, e) from None
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def json_ready(value: Any) -> Any:
    """``value`` as JSON-able Python: tuples -> lists, tensors and numpy values -> lists or numbers, non-finite
    floats -> strings."""
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return json_ready(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value
