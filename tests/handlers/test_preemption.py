"""SIGTERM / SIGINT during training (pipeline.handlers.PreemptionHandler), in process: the signal is sent to this
process from inside an iteration; training stops after that iteration, the epoch never completes (so no epoch
checkpoint is written for it), one line says how to resume, and the exit code is 128 + the signal number. The signal
handlers found before the run are put back. Whole runs, resume and the time bound: tests/integration/test_preemption.py.
"""
import os
import signal

import pytest
from ignite.engine import Engine, Events

from pipeline.handlers import PreemptionHandler


def _trainer(signal_at: int | None, signum: int = signal.SIGTERM) -> tuple[Engine, list[int]]:
    completed: list[int] = []

    def step(engine, batch):
        if engine.state.iteration == signal_at:
            os.kill(os.getpid(), signum)
        return batch

    engine = Engine(step)
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: completed.append(e.state.epoch))
    return engine, completed


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_mid_epoch_stops_after_that_iteration_and_keeps_the_last_complete_epoch(tmp_path, capsys, signum,
                                                                                       code):
    before = signal.getsignal(signum)
    engine, completed = _trainer(signal_at=6, signum=signum)
    handler = PreemptionHandler(ckpt_dir=str(tmp_path))
    handler.attach(engine)
    engine.run(range(4), max_epochs=3)
    assert engine.state.iteration == 6 and completed == [1]  # epoch 2 never completed
    with pytest.raises(SystemExit) as stop:
        handler.raise_if_stopped()
    assert stop.value.code == code
    line = capsys.readouterr().err.strip()
    assert "\n" not in line
    name = signal.Signals(signum).name
    assert line.startswith(f"training stopped by {name} at epoch 2 iteration 2 of 4")
    assert f"{tmp_path / 'checkpoint_epoch=1.pt'} (epoch 1, the last complete one) is kept" in line
    assert line.endswith("resume with the same command and --resume true")
    assert signal.getsignal(signum) == before


def test_a_signal_during_the_end_of_an_epoch_stops_once_that_epoch_completed(capsys):
    engine, completed = _trainer(signal_at=None)
    engine.add_event_handler(Events.EPOCH_COMPLETED(once=1), lambda e: os.kill(os.getpid(), signal.SIGTERM))
    handler = PreemptionHandler()
    handler.attach(engine)
    engine.run(range(4), max_epochs=3)
    assert completed == [1] and engine.state.iteration == 4
    with pytest.raises(SystemExit):
        handler.raise_if_stopped()
    assert "at the end of epoch 1" in capsys.readouterr().err


def test_a_signal_in_the_first_epoch_says_there_is_nothing_to_resume(capsys):
    engine, _ = _trainer(signal_at=2)
    handler = PreemptionHandler()
    handler.attach(engine)
    engine.run(range(4), max_epochs=2)
    with pytest.raises(SystemExit):
        handler.raise_if_stopped()
    assert "no epoch was complete" in capsys.readouterr().err


def test_without_a_signal_the_run_completes_and_nothing_is_raised():
    before = signal.getsignal(signal.SIGTERM)
    engine, completed = _trainer(signal_at=None)
    handler = PreemptionHandler()
    handler.attach(engine)
    engine.run(range(3), max_epochs=2)
    handler.raise_if_stopped()
    assert completed == [1, 2] and signal.getsignal(signal.SIGTERM) == before


def test_disabled_leaves_the_default_handlers():
    engine, _ = _trainer(signal_at=None)
    PreemptionHandler(enabled=False).attach(engine)
    assert not engine.has_event_handler(PreemptionHandler.raise_if_stopped)
    assert len(engine._event_handlers[Events.ITERATION_COMPLETED]) == 0


def test_an_error_after_the_signal_stops_as_the_signal_and_other_errors_pass(tmp_path, capsys):
    """A DataLoader worker that got the scheduler's SIGTERM itself dies and the loader raises: the run stops as for
    the signal, with its one line, printed once; an error without a signal goes on to the caller."""
    def step(engine, batch):
        if engine.state.iteration == 6:
            os.kill(os.getpid(), signal.SIGTERM)
            raise RuntimeError("DataLoader worker (pid 1234) is killed by signal: Terminated.")
        return batch

    engine = Engine(step)
    handler = PreemptionHandler(ckpt_dir=str(tmp_path))
    handler.attach(engine)
    with pytest.raises(SystemExit) as stop:
        engine.run(range(4), max_epochs=3)
        handler.raise_if_stopped()
    assert stop.value.code == 143
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("training stopped by SIGTERM at epoch 2 iteration 2 of 4")

    engine = Engine(lambda e, b: (_ for _ in ()).throw(RuntimeError("a real bug")))
    handler = PreemptionHandler(ckpt_dir=str(tmp_path))
    handler.attach(engine)
    with pytest.raises(RuntimeError, match="a real bug"):
        engine.run(range(2), max_epochs=1)
    handler.restore()
