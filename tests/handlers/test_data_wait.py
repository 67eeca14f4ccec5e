"""The data-wait report tells a run that waits for its data from one that computes."""
import logging
import time

from ignite.engine import Engine

from pipeline.handlers import DataWaitReport


def _slow_batches(n: int, delay: float):
    for i in range(n):
        time.sleep(delay)
        yield i


def test_share_of_time_waiting_for_data_is_reported(caplog):
    report = DataWaitReport()
    engine = Engine(lambda e, batch: time.sleep(0.01))
    report.attach(engine)
    with caplog.at_level(logging.INFO):
        engine.run(_slow_batches(6, 0.03), max_epochs=1, epoch_length=6)
    data, step = report.shares()
    assert 0.12 < data < 0.6 and 0.04 < step < 0.3  # 6 x 30 ms fetching, 6 x 10 ms stepping
    assert data > 2 * step
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("data wait:"))
    assert "%" in line and float(line.split("(")[1].split(" %")[0]) > 60


def test_an_epoch_longer_than_one_pass_over_the_loader_is_profiled():
    # epoch_length on CUDA runs more iterations per epoch than the loader has batches: ignite sizes its arrays by
    # len(loader) and overran them (IndexError) before DataWaitReport sized them by the epoch length
    report = DataWaitReport()
    engine = Engine(lambda e, batch: None)
    report.attach(engine)
    engine.run([0, 1], max_epochs=2, epoch_length=5)
    assert engine.state.iteration == 10
    assert len(report.processing_times) == 10
