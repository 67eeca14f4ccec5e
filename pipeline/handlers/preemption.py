"""Stop training cleanly on SIGTERM or SIGINT, keep a resumable checkpoint, and exit non-zero within a bound.

SLURM, cloud spot instances and Ctrl-C stop a job with SIGTERM or SIGINT and kill it a grace period later. Python's
default is to die at once (SIGTERM) or raise KeyboardInterrupt wherever the program is (SIGINT), which can leave a
traceback and no word on what to do next. This handler only records the signal; the trainer then finishes the
iteration under way and stops (``engine.terminate()``): an epoch cut short never completes, so the folder keeps the
**last complete epoch's** ``checkpoint_epoch=N.pt`` (written atomically at the end of each epoch) and ``--resume
true`` continues from the start of the interrupted epoch. Mid-epoch state is not saved because the loader's
position, the workers' random streams and the running metrics of an epoch cannot be restored exactly; a resumed
``--deterministic true`` run therefore ends with the same weights as one never interrupted. A signal that arrives
during validation or the epoch's checkpoint lets them finish, and the run stops at that epoch's end.

``raise_if_stopped`` (the bundles' ``run`` list, after ``trainer.run()``) prints one line saying where training
stopped and how to resume, and exits with 128 + the signal number (143 for SIGTERM, 130 for SIGINT), as a shell
reports a process killed by that signal. Bound: the process ends within ``grace_s`` seconds of the signal (its
default stays inside SLURM's default grace period): a watchdog exits at once if the current iteration, validation
pass or checkpoint write takes longer; nothing is lost then either, since every file is written under a temporary
name first. A second signal exits at once.

Under torch.distributed the ranks agree first (one all-reduce of the received signal per iteration and epoch, as
the non-finite-loss guard does): every rank stops at the same iteration, whichever of them received the signal.
DataLoader workers (``num_workers`` > 0) that receive the signal themselves (sent to the whole process group, as
Ctrl-C does) die of it, and the loader then ends the run with its own error; the checkpoint kept is the same.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events

SIGNALS = ("SIGTERM", "SIGINT")
CHECKPOINT = "checkpoint_epoch={}.pt"  # pipeline.engines.resume's name for the full checkpoint of an epoch


def _max_over_ranks(value: int) -> int:
    """``value`` maximised over the ranks of a torch.distributed run (itself in a single process)."""
    if idist.get_world_size() == 1:
        return value
    return int(idist.all_reduce(torch.tensor([float(value)]), op="MAX").item())


class PreemptionHandler:
    """Turns SIGTERM / SIGINT during ``trainer.run()`` into a clean stop (see the module docstring).

    Args:
        ckpt_dir: the run's checkpoint folder, to name the checkpoint a resume starts from.
        grace_s: the most seconds from the signal to the end of the process.
        signals: names of the signals to handle.
        enabled: False leaves Python's default behaviour.
    """

    def __init__(self, ckpt_dir: str | None = None, grace_s: float = 20.0, signals: tuple[str, ...] = SIGNALS,
                 enabled: bool = True) -> None:
        self.ckpt_dir = ckpt_dir
        self.grace_s = float(grace_s)
        self.signals = tuple(getattr(signal, name) for name in signals)
        self.enabled = bool(enabled)
        self.received: int = 0
        self.received_at: float | None = None
        self.stopped_at: tuple[int, int, int, bool] | None = None  # epoch, iteration in it, epoch length, complete
        self._previous: dict[int, Any] = {}
        self._watchdog: threading.Timer | None = None
        self._reported = False  # the one line is printed once, whichever path stops the run

    def attach(self, engine: Engine) -> None:
        """Install the signal handlers when the run starts, check after every iteration, restore when it ends."""
        if not self.enabled:
            return
        engine.add_event_handler(Events.STARTED, self._start)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._check, False)
        engine.add_event_handler(Events.COMPLETED, self.restore)
        engine.add_event_handler(Events.EXCEPTION_RAISED, self._on_exception)

    def _start(self, engine: Engine) -> None:
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._on_signal)
        # registered now, after the epoch checkpoint saver (attached before trainer.run()), so that a signal during
        # validation or the checkpoint write stops the run once that epoch's checkpoint is on disk
        if not engine.has_event_handler(self._check, Events.EPOCH_COMPLETED):
            engine.add_event_handler(Events.EPOCH_COMPLETED, self._check, True)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.received:  # a second signal: the user does not want to wait
            self._exit_now(f"training stopped by a second {signal.Signals(signum).name}")
        self.received, self.received_at = signum, time.monotonic()
        self._watchdog = threading.Timer(self.grace_s, self._exit_now,
                                         (f"training did not stop within {self.grace_s:g} s of the signal",))
        self._watchdog.daemon = True
        self._watchdog.start()

    def _exit_now(self, why: str) -> None:
        print(f"{why}; {self._kept()}; resume with the same command and --resume true", file=sys.stderr, flush=True)
        os._exit(128 + (self.received or signal.SIGTERM))

    def _check(self, engine: Engine, complete: bool) -> None:
        signum = _max_over_ranks(self.received)
        if not signum or self.stopped_at is not None:
            return
        if complete and engine.state.epoch >= (engine.state.max_epochs or 0):
            return  # the signal came with the last epoch's end: the run is complete, nothing to resume
        self.received = self.received or signum  # a rank that got no signal stops with the others
        length = int(engine.state.epoch_length or 0)
        within = (engine.state.iteration - 1) % length + 1 if length else engine.state.iteration
        self.stopped_at = (int(engine.state.epoch), within, length, complete)
        engine.terminate()

    def _on_exception(self, engine: Engine, e: BaseException) -> None:
        """An error after a stop signal is the signal's doing (a DataLoader worker that got the scheduler's SIGTERM
        itself dies, and the loader raises): stop as for the signal. Any other error goes on to the next handler."""
        if not self.received:
            raise e
        if self.stopped_at is None:
            length = int(engine.state.epoch_length or 0)
            within = (engine.state.iteration - 1) % length + 1 if length and engine.state.iteration else 0
            self.stopped_at = (int(engine.state.epoch), within, length, False)
        self.raise_if_stopped()

    def _kept(self) -> str:
        """Which checkpoint a resume starts from."""
        if self.stopped_at is None:
            return "the last complete epoch's checkpoint is kept"
        epoch, _, _, complete = self.stopped_at
        done = epoch if complete else epoch - 1
        if done < 1:
            return "no epoch was complete, so there is no checkpoint to resume from (start again without --resume)"
        name = CHECKPOINT.format(done)
        where = str(Path(self.ckpt_dir) / name) if self.ckpt_dir else name
        return f"{where} (epoch {done}, the last complete one) is kept"

    def restore(self, *_: Any) -> None:
        """Put back the signal handlers found at the start."""
        for sig, previous in self._previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()

    def raise_if_stopped(self) -> None:
        """After ``trainer.run()``: if a signal stopped training, print one line and exit with 128 + its number."""
        self.restore()
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self.stopped_at is None:
            return
        epoch, within, length, complete = self.stopped_at
        where = f"at the end of epoch {epoch}" if complete else \
            f"at epoch {epoch} iteration {within}" + (f" of {length}" if length else "")
        if idist.get_rank() == 0 and not self._reported:
            self._reported = True
            took = time.monotonic() - self.received_at if self.received_at is not None else 0.0
            print(f"training stopped by {signal.Signals(self.received).name} {where} ({took:.1f} s after the "
                  f"signal); {self._kept()}; resume with the same command and --resume true",
                  file=sys.stderr, flush=True)
        raise SystemExit(128 + self.received)
