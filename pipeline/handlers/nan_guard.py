"""Stop training on a non-finite loss, and end the run with one line instead of exit code 0.

ignite's ``TerminateOnNan`` stops the engine, but a MONAI handler list calls ``attach(engine)``, which it lacks, and a
terminated run still exits 0 with a checkpoint in place. This wrapper attaches itself, remembers where the loss went
non-finite, and ``raise_if_stopped`` (run after ``trainer.run()``) turns that into a PipelineError. The interrupted
epoch never completes, so validation and the best-checkpoint saver do not run on the broken weights.

Under torch.distributed the ranks agree first (one all-reduce of a flag per iteration): a rank whose own loss stayed
finite stops at the same iteration as the one whose loss did not, instead of waiting for it in the next gradient
all-reduce until the process group times out.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import ignite.distributed as idist
from ignite.engine import Engine, Events
from ignite.handlers import TerminateOnNan
from pipeline.errors import PipelineError
from pipeline.handlers.progress import engine_loss


def _loss(output: Any) -> Any:
    loss = engine_loss(output)
    return output if loss is None else loss


def _any_rank(flag: bool) -> bool:
    """``flag`` or-ed over the ranks of a torch.distributed run (``flag`` itself in a single process); ignite's
    ``idist.all_reduce`` picks the device the backend needs (CUDA for nccl)."""
    if idist.get_world_size() == 1:
        return flag
    return bool(idist.all_reduce(torch.tensor([float(flag)]), op="MAX").item() > 0)


class NonFiniteLossGuard(TerminateOnNan):
    """``TerminateOnNan`` on the trainer's loss, attachable from a bundle's handler list."""

    def __init__(self, output_transform: Callable[[Any], Any] | None = None, ckpt_dir: str | None = None) -> None:
        super().__init__(output_transform=output_transform or _loss)
        self.ckpt_dir = ckpt_dir
        self.stopped_at: tuple[int, int, float] | None = None

    def attach(self, engine: Engine) -> None:
        """Check the loss after every iteration."""
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        already = engine.should_terminate
        super().__call__(engine)
        if _any_rank(engine.should_terminate and not already):
            if not engine.should_terminate:  # this rank's loss was finite: stop with the others
                engine.terminate()
            loss = self._output_transform(engine.state.output)
            value = float(loss.detach().float().mean()) if hasattr(loss, "detach") else float(loss)
            self.stopped_at = (engine.state.epoch, engine.state.iteration, value)

    def raise_if_stopped(self) -> None:
        """Raise a one-line PipelineError if training was stopped by a non-finite loss."""
        if self.stopped_at is None:
            return
        epoch, iteration, value = self.stopped_at
        what = f"the loss became {value} (non-finite)" if not math.isfinite(value) else (
            "the loss of another process became non-finite")
        kept = f"; the best checkpoint in {self.ckpt_dir} was left as it was" if self.ckpt_dir else ""
        raise PipelineError(
            f"training stopped at epoch {epoch}, iteration {iteration}: {what}; "
            f"lower --learning_rate or check the data with `python -m pipeline check-data`{kept}"
        )
