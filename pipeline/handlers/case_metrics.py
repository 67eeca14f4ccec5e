"""Ignite handler: per-case, per-class metrics (Dice / IoU / HD95 in mm; in evaluation also ASSD, NSD, precision,
recall) for an evaluator, as metrics and as tables.

MONAI's metric handlers report one aggregate per metric and its HausdorffDistance handler cannot read each
case's voxel spacing, which HD95 in millimetres on resampled CT needs; this handler fills that gap.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch
from ignite.engine import Engine, Events

from pipeline.data.cases import case_id
from pipeline.evaluation.case_metrics import (
    case_metrics,
    format_summary,
    metric_keys,
    spacing_of,
    summarise,
    write_tables,
)

logger = logging.getLogger(__name__)


def item_case_name(item: dict, index: int) -> str:
    """The case id of an evaluator output item (from its image, pred or label file name), else ``case_<index>``."""
    for key in ("image", "pred", "label"):
        meta = getattr(item.get(key), "meta", None) or {}
        name = meta.get("filename_or_obj")
        if name:
            return case_id(str(name))
    return f"case_{index:04d}"


class CaseMetricsHandler:
    """Collects per-case metrics from a SupervisedEvaluator whose post-processed ``pred``/``label`` are one-hot.

    At epoch end it puts ``<prefix>dice_<class>``, ``<prefix>iou_<class>``, ``<prefix>hd95_<class>`` (means over
    cases) into ``engine.state.metrics`` so the stats handlers attached after it log them, logs a table, and
    writes CSV, JSON and markdown tables when ``output_dir`` is set. ``extended`` adds ``assd``, ``nsd`` (at
    ``nsd_tolerance`` mm), ``precision`` and ``recall`` per class.
    """

    def __init__(
        self, class_names: Sequence[str], hd95: bool = True, prefix: str = "val_", output_dir: str | None = None,
        extended: bool = False, nsd_tolerance: float = 2.0,
    ) -> None:
        self.class_names = list(class_names)
        self.hd95 = hd95
        self.extended = extended
        self.nsd_tolerance = float(nsd_tolerance)
        self.prefix = prefix
        self.output_dir = output_dir
        self.rows: list[dict] = []
        self.summary: dict[str, dict[str, float]] = {}

    @property
    def keys(self) -> list[str]:
        return metric_keys(self.class_names, self.hd95, self.extended)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.update)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.complete)

    def reset(self, engine: Engine | None = None) -> None:
        self.rows = []

    def update(self, engine: Engine) -> None:
        items = engine.state.output
        if isinstance(items, dict):
            items = [items]
        for item in items:
            pred, label = item["pred"], item["label"]
            spatial_dims = pred.ndim - 1
            row: dict = {"case": item_case_name(item, len(self.rows))}
            row.update(
                case_metrics(
                    torch.as_tensor(pred), torch.as_tensor(label), self.class_names, self.hd95,
                    spacing_of(label, spatial_dims), extended=self.extended, nsd_tolerance=self.nsd_tolerance,
                )
            )
            self.rows.append(row)

    def complete(self, engine: Engine) -> None:
        self.summary = summarise(self.rows, self.keys)
        for key, stats in self.summary.items():
            if math.isfinite(stats["mean"]):
                engine.state.metrics[f"{self.prefix}{key}"] = stats["mean"]
        if self.output_dir:  # evaluation: the full table; during training the stats handler logs one line
            logger.info("per-class metrics over %d cases:\n%s", len(self.rows), format_summary(self.summary))
            paths = write_tables(self.rows, self.summary, self.output_dir)
            logger.info("metric tables written: %s", ", ".join(str(p) for p in paths))
