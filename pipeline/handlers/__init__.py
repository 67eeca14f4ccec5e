"""Ignite handlers MONAI lacks: per-case metric tables with HD95 in mm, slice panels with attention maps, progress,
lesion-level detection metrics, a non-finite-loss guard, a clean stop on SIGTERM/SIGINT, the share of time spent waiting for data."""
from pipeline.handlers.case_metrics import CaseMetricsHandler
from pipeline.handlers.data_wait import DataWaitReport
from pipeline.handlers.lesions import LesionMetricsHandler
from pipeline.handlers.nan_guard import NonFiniteLossGuard
from pipeline.handlers.preemption import PreemptionHandler
from pipeline.handlers.panels import SegmentationPanelHandler
from pipeline.handlers.progress import ProgressBar

__all__ = ["CaseMetricsHandler", "DataWaitReport", "LesionMetricsHandler", "NonFiniteLossGuard", "PreemptionHandler", "ProgressBar",
           "SegmentationPanelHandler"]
