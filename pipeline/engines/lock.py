"""One run per folder: a training run holds its ``ckpt_dir``, an inference run its ``pred_dir``.

Two runs writing the same checkpoint folder would overwrite each other's epoch checkpoints and best model; two
inference runs the same predictions. The lock is the file ``<folder>/.pipeline.lock``, held with ``fcntl.flock``
for the life of the process and holding JSON ``{pid, host, started, argv}`` so that a refused run can say which
process holds the folder. The kernel drops a flock when its process dies, however it dies (``kill -9`` included):
a lock file nobody holds is stale, and the next run takes it over and says so. The file is removed at a normal exit
(``finalize`` or atexit); after removal, a run that opened the old file before it went checks that the name still
points at the file it locked, and otherwise tries again.

On file systems without flock (some network mounts) the lock falls back to the recorded pid: alive on this host
means held, a lock from another host is taken as held (its process cannot be checked from here).
"""
from __future__ import annotations

import atexit
import datetime as dt
import errno
import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError

try:
    import fcntl
except ImportError:  # not on POSIX: the pid check alone
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

LOCK_NAME = ".pipeline.lock"
_HELD: dict[Path, "FolderLock"] = {}


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (one owned by another user counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    return True


def _describe(info: dict[str, Any]) -> str:
    argv = info.get("argv")
    command = " ".join(str(a) for a in argv) if isinstance(argv, list) else "?"
    if len(command) > 200:
        command = command[:197] + "..."
    return (f"pid {info.get('pid', '?')} on {info.get('host', '?')}, started {info.get('started', '?')}: "
            f"{command}")


def _read(path: Path) -> dict[str, Any]:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


class FolderLock:
    """The lock of one folder (see the module docstring); ``what`` names the run in messages ("training")."""

    def __init__(self, folder: str | Path, what: str = "run") -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.what = what
        self.fd: int | None = None
        self.created_folder = False

    def _refuse(self, info: dict[str, Any]) -> None:
        if self.fd is not None:  # the holder's file: close it, never remove it
            os.close(self.fd)
            self.fd = None
        raise PipelineError(
            f"{self.folder}: another run is writing here ({_describe(info)}); wait for it to end, or choose another "
            f"folder (if that process is gone, delete {self.path})"
        )

    def acquire(self) -> "FolderLock":
        """Take the lock or raise a one-line PipelineError naming the live holder; a stale lock is taken over
        with a log line."""
        self.created_folder = not self.folder.exists()
        self.folder.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
              "argv": list(getattr(sys, "orig_argv", sys.argv)),
              "what": self.what}
        for _ in range(10):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            locked = True
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as e:
                    os.close(fd)
                    if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                        self._refuse(_read(self.path))
                    locked = False  # flock unsupported here: the pid check below decides
                    fd = os.open(self.path, os.O_RDWR)
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if not same:  # the holder removed the file between our open and our flock: try the new one
                os.close(fd)
                continue
            self.fd = fd
            previous = _read(self.path)
            if previous and not locked and previous.get("pid") != me["pid"] and (
                    previous.get("host") != me["host"] or pid_alive(int(previous.get("pid", 0)))):
                self._refuse(previous)
            if previous:
                logger.warning("%s: took over the stale lock of a run that is no longer running (%s)", self.folder,
                               _describe(previous))
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
            os.fsync(fd)
            _HELD[self.path] = self
            atexit.register(self.release)
            return self
        raise PipelineError(f"{self.path}: could not take the lock (it keeps changing); is another run starting?")

    def release(self) -> None:
        """Remove the lock file (and the folder, if the lock created it and nothing else was written) and let go."""
        if self.fd is None:
            return
        try:
            if os.path.samestat(os.fstat(self.fd), os.stat(self.path)):
                self.path.unlink()
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None
        _HELD.pop(self.path, None)
        if self.created_folder:
            try:
                self.folder.rmdir()  # only when empty
            except OSError:
                pass


def lock_folder(folder: str | Path, what: str = "run", enabled: bool = True) -> FolderLock | None:
    """Lock ``folder`` for this process (``FolderLock``); ``enabled`` False (ranks other than 0): nothing. A folder
    this process already holds is released first, so that one process may run one workflow after another."""
    if not enabled:
        return None
    path = Path(folder) / LOCK_NAME
    if path in _HELD:
        _HELD[path].release()
    return FolderLock(folder, what).acquire()


def release_folder(folder: str | Path) -> None:
    """Release this process's lock of ``folder`` (the bundles' ``finalize``); nothing if it holds none."""
    held = _HELD.get(Path(folder) / LOCK_NAME)
    if held is not None:
        held.release()


__all__ = ["FolderLock", "LOCK_NAME", "lock_folder", "pid_alive", "release_folder"]
