"""Ignite handlers MONAI lacks: per-case metric tables with HD95 in mm, slice panels with attention maps, progress,
a non-finite-loss guard."""
from pipeline.handlers.case_metrics import CaseMetricsHandler
from pipeline.handlers.nan_guard import NonFiniteLossGuard
from pipeline.handlers.panels import SegmentationPanelHandler
from pipeline.handlers.progress import ProgressBar

__all__ = ["CaseMetricsHandler", "NonFiniteLossGuard", "ProgressBar", "SegmentationPanelHandler"]
