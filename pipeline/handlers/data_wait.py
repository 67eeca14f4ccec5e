"""How much of a training run's iteration time is spent waiting for data: one log line when the run ends.

ignite's ``BasicTimeProfiler`` measures the time to fetch each batch (dataflow) and to process it (the train step);
it lacks a one-argument ``attach`` for MONAI handler lists and a one-line verdict. The share tells whether the
loaders keep up with the network (a large share means the network waits for its batches).
"""
from __future__ import annotations

import logging

import torch
from ignite.engine import Engine, Events
from ignite.handlers import BasicTimeProfiler

logger = logging.getLogger(__name__)


class DataWaitReport(BasicTimeProfiler):
    """Profiles the trainer and logs ``data wait: X s of Y s iteration time (Z %)`` when it completes."""

    def attach(self, engine: Engine) -> None:
        """Profile ``engine`` and report when it completes or is terminated."""
        super().attach(engine)
        engine.add_event_handler(Events.COMPLETED, self.report)

    def _as_first_started(self, engine: Engine) -> None:
        """ignite sizes its per-iteration arrays by ``len(dataloader)``; an ``epoch_length`` longer than one pass
        (``epoch_length`` on CUDA) would overrun them, so they are sized by the engine's epoch length."""
        super()._as_first_started(engine)
        per_epoch = engine.state.epoch_length
        if per_epoch and self.max_epochs * per_epoch != self.total_num_iters:
            self.total_num_iters = self.max_epochs * per_epoch
            self._reset(self.max_epochs, self.total_num_iters)

    def shares(self) -> tuple[float, float]:
        """(seconds fetching batches, seconds processing them) so far."""
        data = float(torch.as_tensor(self.dataflow_times).clamp(min=0).sum())
        step = float(torch.as_tensor(self.processing_times).clamp(min=0).sum())
        return data, step

    def report(self, engine: Engine | None = None) -> str:
        """Log and return the one-line summary."""
        data, step = self.shares()
        total = data + step
        share = 100.0 * data / total if total > 0 else 0.0
        line = f"data wait: {data:.1f} s of {total:.1f} s iteration time ({share:.1f} %); train steps {step:.1f} s"
        logger.info(line)
        return line
