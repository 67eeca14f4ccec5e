"""``--ema true``: validate, keep and export an exponential moving average of the weights (ignite's EMAHandler).

ignite's ``EMAHandler`` holds the averaged copy and applies ``ema = (1 - m) * ema + m * weights`` after every
iteration. What it lacks here is a warm-up that survives ``--resume``: its own warm-up is a scheduler whose
position is not in the trainer's state, so a resumed run would start it again. ``EMAWeights`` sets the momentum
from the trainer's iteration instead, ``m_t = max(ema_momentum, 10 / (t + 10))`` (the warm-up of timm's ModelEma):
the average spans about the last tenth of the iterations so far, and at most ``1 / ema_momentum`` iterations.

With it on, the evaluator scores the averaged network, the best-model saver writes it as ``model.pt`` (so
evaluate.json and inference.json use it), and the full checkpoint carries it for a resume. The training loss is
still the online network's.
"""
from __future__ import annotations

import math

import torch
from ignite.engine import Engine, Events
from ignite.handlers import EMAHandler

from pipeline.config import flag
from pipeline.engines.distributed import unwrap
from pipeline.errors import PipelineError

STATE_NAME = "ema_momentum"
WARMUP = 10.0


def warmup_momentum(iteration: int, momentum: float) -> float:
    """The update weight of the new weights after ``iteration`` (1-based) steps."""
    return max(float(momentum), min(1.0, WARMUP / (int(iteration) + WARMUP)))


class EMAWeights:
    """ignite's EMAHandler with an iteration-based warm-up; attach it to the trainer (a MONAI train handler)."""

    def __init__(self, network: torch.nn.Module, momentum: float) -> None:
        self.momentum = float(momentum)
        self.ema = EMAHandler(unwrap(network), momentum=self.momentum, handle_buffers="copy")

    @property
    def ema_model(self) -> torch.nn.Module:
        return self.ema.ema_model

    def _set_momentum(self, engine: Engine) -> None:
        setattr(engine.state, STATE_NAME, warmup_momentum(engine.state.iteration, self.momentum))

    def attach(self, engine: Engine) -> None:
        # registered before ignite's update, which reads the momentum from the state at the same event
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._set_momentum)
        self.ema.attach(engine, name=STATE_NAME, warn_if_exists=False)


def ema_weights(network: torch.nn.Module, enabled: bool | str, momentum: float | str) -> EMAWeights | None:
    """The ``--ema`` handler, or None when it is off (``rank_zero_handlers`` drops a None)."""
    if not flag(enabled, "ema"):
        return None
    try:
        value = float(momentum)
    except (TypeError, ValueError):
        value = math.nan
    if not 0.0 < value < 1.0:
        raise PipelineError(f"--ema_momentum {momentum!r} must be a number between 0 and 1 (exclusive), e.g. 0.01")
    return EMAWeights(network, value)


def evaluation_network(network: torch.nn.Module, ema: EMAWeights | None) -> torch.nn.Module:
    """What validation scores and ``model.pt`` holds: the averaged network with ``--ema true``, else the network
    itself (outside DistributedDataParallel)."""
    return ema.ema_model if ema is not None else unwrap(network)


__all__ = ["EMAWeights", "ema_weights", "evaluation_network", "warmup_momentum"]
