"""Ignite handler: lesion-level detection metrics of an evaluator (``pipeline.evaluation.lesions``): per lesion
found or missed with its volume and contrast, false-positive components per case, case-level AUROC / AP."""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import torch
from ignite.engine import Engine, Events

from pipeline.evaluation.case_metrics import spacing_of
from pipeline.evaluation.lesions import (
    DETECTION_IOU,
    SHELL_MM,
    case_lesions,
    format_lesion_summary,
    lesion_summary,
    write_lesion_tables,
)
from pipeline.handlers.case_metrics import item_case_name

logger = logging.getLogger(__name__)

__all__ = ["LesionMetricsHandler"]


def _labels(x: torch.Tensor) -> np.ndarray:
    """A one-hot ``(C, *spatial)`` map or a ``(1, *spatial)`` class map as an integer array without the channel."""
    t = torch.as_tensor(x).detach().cpu()
    return (t.argmax(0) if t.shape[0] > 1 else t[0]).numpy().astype(np.int16)


class LesionMetricsHandler:
    """Collects lesion rows from a SupervisedEvaluator's post-processed ``pred`` and ``label`` (one-hot or class
    maps), ``image`` mapped back to HU by ``to_hu`` for the contrast, and the case score under ``prob_key`` (set by
    ``pipeline.transforms.ChannelMaxd``). At epoch end: ``<prefix>lesion_sensitivity``,
    ``<prefix>lesion_fp_per_case`` and ``<prefix>case_auroc`` into the engine's metrics, a table in the log and, with
    ``output_dir``, ``lesions.csv``, ``lesion_cases.csv`` and ``lesion_summary.json`` / ``.md``. ``lesion_class``
    None disables it (a data set without a lesion class)."""

    def __init__(self, lesion_class: int | None, gland_classes: Sequence[int] = (1,),
                 to_hu: Callable | None = None, prob_key: str = "max_prob", output_dir: str | None = None,
                 prefix: str = "", min_iou: float = DETECTION_IOU, shell_mm: float = SHELL_MM) -> None:
        self.lesion_class = lesion_class
        self.gland_classes = list(gland_classes)
        self.to_hu = to_hu
        self.prob_key = prob_key
        self.output_dir = output_dir
        self.prefix = prefix
        self.min_iou, self.shell_mm = float(min_iou), float(shell_mm)
        self.lesions: list[dict] = []
        self.cases: list[dict] = []
        self.summary: dict = {}

    def attach(self, engine: Engine) -> None:
        if self.lesion_class is None:
            return
        engine.add_event_handler(Events.EPOCH_STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.update)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.complete)

    def reset(self, engine: Engine | None = None) -> None:
        self.lesions, self.cases = [], []

    def update(self, engine: Engine) -> None:
        items = engine.state.output
        for item in [items] if isinstance(items, dict) else items:
            label = item["label"]
            image = item.get("image")
            hu = None
            if image is not None and self.to_hu is not None:
                hu = self.to_hu(torch.as_tensor(image).detach().float().cpu()[0]).numpy()
            rows, case = case_lesions(
                _labels(item["pred"]), _labels(label), int(self.lesion_class),
                spacing_of(torch.as_tensor(label), torch.as_tensor(label).ndim - 1), image=hu,
                gland_labels=self.gland_classes, max_prob=float(item.get(self.prob_key, float("nan"))),
                case=item_case_name(item, len(self.cases)), min_iou=self.min_iou, shell_mm=self.shell_mm)
            self.lesions += rows
            self.cases.append(case)

    def complete(self, engine: Engine) -> None:
        self.summary = s = lesion_summary(self.lesions, self.cases)
        for key, value in (("lesion_sensitivity", s["sensitivity"]["sensitivity"]),
                           ("lesion_fp_per_case", s["fp_components_per_case"]), ("case_auroc", s["case_auroc"])):
            if np.isfinite(value):
                engine.state.metrics[f"{self.prefix}{key}"] = float(value)
        logger.info("lesion detection over %d cases (%d lesions):\n%s", len(self.cases), len(self.lesions),
                    format_lesion_summary(s))
        if self.output_dir:
            paths = write_lesion_tables(self.lesions, self.cases, s, self.output_dir)
            logger.info("lesion tables written: %s", ", ".join(str(p) for p in paths))
