"""One error type for bad user input, printed as a single line when it ends a command."""
from __future__ import annotations

import sys
from types import TracebackType


class PipelineError(ValueError):
    """Bad input (data set, config value, preset): the message names the file or key and the problem."""


def short_error(exc: BaseException) -> str:
    """An exception as one short line, ``Type: first line of its message``, for problem messages."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


_WORKER_MARK = "PipelineError: "


def _find_pipeline_error(exc: BaseException | None) -> PipelineError | None:
    """Walk an exception chain (MONAI wraps errors raised while a config is parsed) to our own error.

    A DataLoader worker re-raises errors as a new exception whose text holds the worker's traceback; the
    PipelineError's one line is recovered from that text.
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        text = str(exc)
        if "DataLoader worker" in text and _WORKER_MARK in text:
            line = text[text.rindex(_WORKER_MARK) + len(_WORKER_MARK):].strip().splitlines()
            if line:
                return PipelineError(line[0])
        if isinstance(exc, PipelineError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _refused_pickle(exc: BaseException | None) -> PipelineError | None:
    """torch.load(weights_only=True) refusing a file (a pickle payload, or not a checkpoint) where a library, not
    the pipeline, loaded it (e.g. MONAI's ``ckpt_export --ckpt_file``): one line, nothing of it was run."""
    import pickle

    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, pickle.UnpicklingError):
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return PipelineError(f"a checkpoint file was refused by torch.load(weights_only=True): {first[:200]}")
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def install_excepthook() -> None:
    """Print a PipelineError that ends the program as one ``error: ...`` line instead of a traceback wall.

    Other exceptions keep the previous hook. Set PIPELINE_TRACEBACK=1 to see the full traceback.
    """
    previous = sys.excepthook
    if getattr(previous, "_pipeline_hook", False):
        return

    def hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        import os

        found = _find_pipeline_error(exc) or _refused_pickle(exc)
        if found is None or os.environ.get("PIPELINE_TRACEBACK"):
            previous(exc_type, exc, tb)
            return
        print(f"error: {found}", file=sys.stderr)

    hook._pipeline_hook = True  # type: ignore[attr-defined]
    sys.excepthook = hook


def existing_file(path: str, what: str = "file", hint: str = "") -> str:
    """Return ``path`` if it is a file, else raise a one-line PipelineError naming it (used by bundle configs)."""
    from pathlib import Path

    if not Path(path).is_file():
        raise PipelineError(f"{what} {path} not found" + (f": {hint}" if hint else ""))
    return path
