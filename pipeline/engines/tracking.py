"""``--tracking mlflow``: MONAI's own switch, given the run's parameters and files.

``monai.bundle run --tracking mlflow`` appends MONAI's MLFlowHandler to ``train#handlers`` and ``validate#handlers``
(the bundles' sections are plain dicts, so MONAI's patch reaches them). ``training_handlers`` is what the trainer
and the evaluator take as their handler list: the handlers of this rank (``rank_zero_handlers``), with any
MLFlowHandler given the run's parameters and, at the end, the checkpoint files as artifacts. The store is
``tracking_uri`` (by default a SQLite file under ``output_dir``: MLflow >= 3.13 and MONAI's handler refuse the old
file store).
"""
from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from monai.handlers import MLFlowHandler

from pipeline.engines.distributed import rank_zero_handlers
from pipeline.errors import PipelineError


def training_handlers(handlers: Iterable[Any] | None, params: Mapping[str, Any] | None = None,
                      artifacts: Sequence[str] = ()) -> list[Any]:
    """This rank's ``handlers``; an MLFlowHandler among them (``--tracking mlflow``) logs ``params`` at the start
    and stores ``artifacts`` (files missing then are skipped) when the run completes. A one-line PipelineError
    when tracking is asked for but mlflow (with SQLAlchemy and alembic for its local store) is not installed."""
    out = rank_zero_handlers(handlers)
    for handler in out:
        if not isinstance(handler, MLFlowHandler):
            continue
        missing = [m for m in ("mlflow", "sqlalchemy", "alembic") if importlib.util.find_spec(m) is None]
        if missing:
            raise PipelineError(
                f"--tracking mlflow needs {', '.join(missing)}: pip install -e '.[tracking]' (mlflow-skinny, "
                "SQLAlchemy, alembic)"
            )
        # MONAI's default output_transform reads a decollated (list) output; our trainers keep the batch dict
        handler.output_transform = _as_list(handler.output_transform)
        if params:
            handler.experiment_param = dict(params)
        if artifacts:
            own = handler.artifacts if isinstance(handler.artifacts, (list, tuple)) else [handler.artifacts]
            handler.artifacts = [a for a in own if a] + list(artifacts)
    return out


def _as_list(transform: Any) -> Any:
    def wrapped(output: Any) -> Any:
        return transform(output if isinstance(output, list) else [output])

    return wrapped


__all__ = ["training_handlers"]
