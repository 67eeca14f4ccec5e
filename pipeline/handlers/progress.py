"""A progress bar for trainers and evaluators: ignite's tqdm ProgressBar showing the running loss."""
from __future__ import annotations

from typing import Any

from ignite.engine import Engine, Events
from ignite.handlers import ProgressBar as _IgniteProgressBar


def engine_loss(output: Any) -> Any:
    """The loss in a MONAI trainer's output (a dict, or a list of dicts when decollated); None if there is none."""
    if isinstance(output, list) and output:
        output = output[0]
    return output["loss"] if isinstance(output, dict) and "loss" in output else None


def _loss_of(output: Any) -> dict[str, float]:
    loss = engine_loss(output)
    return {} if loss is None else {"loss": float(loss.detach())}


class ProgressBar(_IgniteProgressBar):
    """ignite's ProgressBar with a one-argument ``attach`` (as MONAI handler lists call it) showing the loss, closed
    also when the engine is terminated.

    Off when its stream is not a terminal (tqdm's ``disable=None``): in a log file every redraw was kept, about 40
    per epoch (329 KB of carriage-return lines for the CT command), while the StatsHandler lines already say each
    epoch's loss and time. ``"disable": false`` in the handler's config keeps it on anyway.
    """

    def __init__(self, desc: str = "", persist: bool = False, **tqdm_kwargs: Any) -> None:
        tqdm_kwargs.setdefault("disable", None)
        super().__init__(persist=persist, desc=desc, **tqdm_kwargs)

    def attach(self, engine: Engine, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        kwargs.setdefault("output_transform", _loss_of)
        super().attach(engine, *args, **kwargs)
        # a terminated run (non-finite loss) never completes its epoch: close the bar so the next line starts clean
        engine.add_event_handler(Events.TERMINATE, self._close)
