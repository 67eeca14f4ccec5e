"""Rank rules without starting processes: device choice and its one-line errors, single-process no-ops, the handler
filter of ranks > 0, per-case rows put back in data-list order, switches, and the per-epoch reseed."""
import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from monai.data import DataLoader, Dataset
from monai.handlers import CheckpointSaver, StatsHandler
from monai.transforms import RandGaussianNoised

import pipeline.engines.distributed as D
from pipeline.engines import EpochSeeder, flag
from pipeline.errors import PipelineError
from pipeline.handlers import NonFiniteLossGuard, ProgressBar


def test_more_processes_than_gpus_is_one_line(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert D.distributed_device() == "cuda:1"
    monkeypatch.setenv("LOCAL_RANK", "3")
    with pytest.raises(PipelineError,
                       match=r"started 4 processes on this node but it has 2 GPU\(s\).*--nproc_per_node=2"):
        D.distributed_device()


def test_cpu_machine_uses_the_cpu_and_init_needs_torchrun(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert D.distributed_device() == "cpu"
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(PipelineError, match="runs under torchrun"):
        D.init_distributed()


def test_single_process_helpers_change_nothing():
    handlers = [StatsHandler(), None, ProgressBar()]
    assert not D.is_distributed() and D.is_main_process() and D.world_size() == 1
    assert D.distributed_sampler([1, 2, 3], shuffle=True) is None
    assert D.rank_zero_handlers(handlers) == [handlers[0], handlers[2]]
    assert D.per_process_workers(6) == 6
    net = torch.nn.Linear(2, 2)
    assert D.unwrap(net) is net
    assert D.gather_objects([1, 2]) == [[1, 2]]


def test_other_ranks_keep_only_the_handlers_that_train(monkeypatch, tmp_path):
    guard, stats, bar = NonFiniteLossGuard(), StatsHandler(), ProgressBar()
    saver = CheckpointSaver(save_dir=str(tmp_path), save_dict={"model": torch.nn.Linear(1, 1)})
    monkeypatch.setattr(D, "is_main_process", lambda: False)
    assert D.rank_zero_handlers([guard, stats, bar, saver]) == [guard]


def test_case_rows_of_all_ranks_come_back_in_data_list_order(monkeypatch):
    handler = D.DistributedCaseMetricsHandler(class_names=["a"], hd95=False)
    handler.rows = [{"case": "c0", "dice_a": 1.0}, {"case": "c2", "dice_a": 0.0}]  # rank 0 scored cases 0 and 2
    monkeypatch.setattr(D, "is_distributed", lambda: True)
    monkeypatch.setattr(D, "world_size", lambda: 2)
    monkeypatch.setattr(D, "rank", lambda: 0)
    monkeypatch.setattr(D, "gather_objects", lambda rows: [rows, [{"case": "c1", "dice_a": 0.5}]])
    engine = Engine(lambda e, b: None)
    handler.complete(engine)
    assert [r["case"] for r in handler.rows] == ["c0", "c1", "c2"]
    assert engine.state.metrics["val_dice_a"] == pytest.approx(0.5)


def test_switches():
    assert flag("true", "resume") and flag(True, "resume") and not flag("false", "resume") and not flag(False, "x")
    with pytest.raises(PipelineError, match="--resume 'maybe' is not a switch"):
        flag("maybe", "resume")


def _epoch_batches(enabled: bool, start_epoch: int, epochs: int = 3) -> dict[int, list]:
    """Batches seen per epoch by a loader with shuffling and a random transform, optionally started mid-run."""
    data = Dataset([{"x": np.full((1, 2), float(i), np.float32)} for i in range(6)],
                   transform=RandGaussianNoised(keys="x", prob=1.0))
    loader = DataLoader(data, batch_size=2, shuffle=True, generator=torch.Generator().manual_seed(0))
    seen: dict[int, list] = {}
    engine = Engine(lambda e, b: seen.setdefault(e.state.epoch, []).append(b["x"].clone()))
    engine.data_loader = loader
    EpochSeeder(seed=1, enabled=enabled).attach(engine)
    if start_epoch > 1:  # what a resumed run does: state of the last completed epoch, fresh everything else
        engine.add_event_handler(Events.STARTED, lambda e: e.load_state_dict(
            {"iteration": (start_epoch - 1) * 3, "epoch_length": 3, "max_epochs": epochs}))
        torch.manual_seed(123)
    engine.run(loader, max_epochs=epochs)
    return seen


def test_deterministic_epochs_do_not_depend_on_how_the_run_got_there():
    whole, resumed = _epoch_batches(True, 1), _epoch_batches(True, 3)
    assert all(torch.equal(a, b) for a, b in zip(whole[3], resumed[3]))
    assert not all(torch.equal(a, b) for a, b in zip(whole[2], whole[3]))  # epochs still differ from each other
    plain_whole, plain_resumed = _epoch_batches(False, 1), _epoch_batches(False, 3)  # without the switch they do not
    assert not all(torch.equal(a, b) for a, b in zip(plain_whole[3], plain_resumed[3]))
