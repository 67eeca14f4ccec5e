"""``--tracking mlflow``: MONAI's own switch, made to reach our bundles' trainer and evaluator.

``monai.bundle run --tracking mlflow`` appends an MLFlowHandler to ``train#handlers`` and ``validate#handlers``
before the config is parsed; our bundles take those sections from configs/engine/train.json with ``%`` macros,
which are expanded only later, so MONAI finds nothing to patch. What the switch does change is the top-level
``save_execute_config``: ``true`` (our default) becomes the path of the executed config it writes (or None when it
is set false). The engine wiring therefore carries its own MLFlowHandlers, enabled by ``tracking_enabled`` on
rank 0, storing to ``tracking_uri`` (by default a SQLite file under ``output_dir``, artifacts in
``output_dir/mlruns``: MLflow >= 3.13 and MONAI's handler refuse the old file store).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError


def tracking_enabled(save_execute_config: Any) -> bool:
    """Whether ``--tracking`` was given: MONAI's patch replaced our ``save_execute_config: true`` by a path (or None).

    A one-line PipelineError when it was, but mlflow (with SQLAlchemy for its local store) is not installed.
    """
    if isinstance(save_execute_config, bool):
        return False
    missing = [m for m in ("mlflow", "sqlalchemy", "alembic") if importlib.util.find_spec(m) is None]
    if missing:
        raise PipelineError(
            f"--tracking mlflow needs {', '.join(missing)}: pip install -e '.[tracking]' (mlflow-skinny, SQLAlchemy, "
            "alembic)"
        )
    return True


def mlflow_disabled(save_execute_config: Any) -> bool:
    """The ``_disabled_`` of our MLFlowHandlers: off unless ``--tracking`` was given, and off on ranks > 0."""
    from pipeline.engines.distributed import is_main_process

    return not (tracking_enabled(save_execute_config) and is_main_process())


def tracking_artifacts(save_execute_config: Any, ckpt_dir: str) -> list[str]:
    """What the tracked run stores as artifacts when training completes: the executed config, the best checkpoint
    and its model_config.json (files that do not exist then are skipped by the handler)."""
    files = [str(Path(ckpt_dir) / "model.pt"), str(Path(ckpt_dir) / "model_config.json")]
    if isinstance(save_execute_config, str) and save_execute_config:
        files.insert(0, save_execute_config)
    return files


__all__ = ["mlflow_disabled", "tracking_artifacts", "tracking_enabled"]
