"""A full disk (an injected ``OSError(ENOSPC)``) at each place a run writes a file for later use: the epoch checkpoint,
the best model, model_config.json, the plan, a predicted label map and the metric tables. Each failure leaves the
previous file in place and loadable, stops with one line naming the path and the error, and leaves no temporary
file behind. Failures are injected both while the content is written (half a file on disk) and at the rename.
A real full file system: tests/integration/test_preemption.py."""
import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from monai.data import MetaTensor
from monai.transforms import SaveImaged

from pipeline.engines import BestModelSaver, EpochCheckpointSaver
from pipeline.evaluation.case_metrics import write_tables
from pipeline.fileio import WriteError, write_text_atomic
from pipeline.inference.writing import AtomicSaveImaged
from pipeline.planning.io import write_plan

ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
SUFFIX = "could not write (OSError: [Errno 28] No space left on device); the previous file is kept"


def _one_line(err: pytest.ExceptionInfo, path: Path) -> None:
    assert str(err.value) == f"{path}: {SUFFIX}"


def _no_temporary_files(folder: Path) -> None:
    assert not [p.name for p in folder.rglob("*") if p.name.startswith(".tmp-") or p.suffix == ".tmp"]


def _fail_rename(monkeypatch):
    def replace(src, dst):
        raise ENOSPC

    monkeypatch.setattr(os, "replace", replace)


def _fail_torch_save(monkeypatch):
    def save(obj, f, **kwargs):
        f.write(b"PK\x03\x04 half of a checkpoint")
        raise ENOSPC

    monkeypatch.setattr(torch, "save", save)


def _fail_text_write(monkeypatch):
    def write_text(self, text, *args, **kwargs):
        with open(self, "w") as f:
            f.write(text[: len(text) // 2])
        raise ENOSPC

    monkeypatch.setattr(Path, "write_text", write_text)


@pytest.mark.parametrize("inject", [_fail_torch_save, _fail_rename])
def test_epoch_checkpoint(tmp_path, monkeypatch, inject):
    net = torch.nn.Linear(3, 2)
    engine = Engine(lambda e, b: None)
    saver = EpochCheckpointSaver(tmp_path, {"network": net, "head": torch.nn.Linear(2, 1)})
    engine.state.epoch = 1
    saver(engine)
    first = tmp_path / "checkpoint_epoch=1.pt"
    saved = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        net.weight.add_(1.0)
    engine.state.epoch = 2
    inject(monkeypatch)
    with pytest.raises(WriteError) as err:
        saver(engine)
    monkeypatch.undo()
    _one_line(err, tmp_path / "checkpoint_epoch=2.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_epoch=1.pt"]
    loaded = torch.load(first, weights_only=True)["network"]
    assert all(torch.equal(loaded[k], saved[k]) for k in saved)


def _evaluate(saver: BestModelSaver, score: float) -> None:
    evaluator = Engine(lambda e, b: None)
    evaluator.add_event_handler(Events.EPOCH_COMPLETED, lambda e: e.state.metrics.update(val_mean_dice=score))
    saver.attach(evaluator)
    evaluator.run([0], max_epochs=1)


@pytest.mark.parametrize("inject", [_fail_torch_save, _fail_rename])
def test_best_model(tmp_path, monkeypatch, inject):
    net = torch.nn.Linear(3, 2)
    saver = BestModelSaver(save_dir=str(tmp_path), save_dict={"model": net}, save_key_metric=True,
                           key_metric_filename="model.pt", key_metric_name="val_mean_dice")
    _evaluate(saver, 0.5)
    saved = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        net.weight.add_(1.0)
    inject(monkeypatch)
    with pytest.raises(WriteError) as err:
        _evaluate(saver, 0.7)  # a better model: MONAI's saver would delete model.pt before writing the new one
    monkeypatch.undo()
    _one_line(err, tmp_path / "model.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]
    loaded = torch.load(tmp_path / "model.pt", weights_only=True)
    assert all(torch.equal(loaded[k], saved[k]) for k in saved)
    _evaluate(saver, 0.9)  # the disk has room again: the next better model replaces it
    assert torch.equal(torch.load(tmp_path / "model.pt", weights_only=True)["weight"], net.weight)


@pytest.mark.parametrize("inject", [_fail_text_write, _fail_rename])
def test_text_files_model_config_and_plan(tmp_path, monkeypatch, inject):
    config, plan = tmp_path / "model_config.json", tmp_path / "plan.json"
    write_text_atomic(config, '{"old": true}\n')
    write_plan({"old": True}, plan)
    inject(monkeypatch)
    for write, path in ((lambda: write_text_atomic(config, '{"new": true}\n'), config),
                        (lambda: write_plan({"new": True}, plan), plan)):
        with pytest.raises(WriteError) as err:
            write()
        _one_line(err, path)
    monkeypatch.undo()
    assert json.loads(config.read_text()) == {"old": True} and json.loads(plan.read_text()) == {"old": True}
    _no_temporary_files(tmp_path)


def _label(tmp_path: Path, value: int) -> MetaTensor:
    array = np.zeros((1, 8, 8), dtype=np.uint8)
    array[0, 2:5, 3:6] = value
    return MetaTensor(torch.from_numpy(array), meta={"filename_or_obj": str(tmp_path / "case_1.png")})


def _saver(cls, out: Path):
    return cls(keys="pred", output_dir=str(out), output_postfix="seg", output_ext=".png", output_dtype=np.uint8,
               resample=False, separate_folder=False, print_log=False)


def test_atomic_predictions_have_monai_names_and_bytes(tmp_path):
    _saver(SaveImaged, tmp_path / "monai")({"pred": _label(tmp_path, 1)})
    _saver(AtomicSaveImaged, tmp_path / "ours")({"pred": _label(tmp_path, 1)})
    monai_files = {p.name: p.read_bytes() for p in (tmp_path / "monai").iterdir()}
    assert list(monai_files) == ["case_1_seg.png"]
    assert {p.name: p.read_bytes() for p in (tmp_path / "ours").iterdir()} == monai_files


@pytest.mark.parametrize("where", ["write", "rename"])
def test_prediction(tmp_path, monkeypatch, where):
    from PIL import Image

    out = tmp_path / "pred"
    saver = _saver(AtomicSaveImaged, out)
    saver({"pred": _label(tmp_path, 1)})
    before = (out / "case_1_seg.png").read_bytes()
    if where == "rename":
        _fail_rename(monkeypatch)
    else:
        def save(self, fp, *args, **kwargs):
            Path(fp).write_bytes(b"\x89PNG half")
            raise ENOSPC

        monkeypatch.setattr(Image.Image, "save", save)
    with pytest.raises(WriteError) as err:
        saver({"pred": _label(tmp_path, 2)})
    monkeypatch.undo()
    _one_line(err, out / "case_1_seg.png")
    assert (out / "case_1_seg.png").read_bytes() == before
    assert np.array(Image.open(out / "case_1_seg.png")).max() == 1
    _no_temporary_files(out)


def test_metric_tables(tmp_path, monkeypatch):
    summary = {"dice_a": {"mean": 0.5, "std": 0.1, "median": 0.5, "n": 2}}
    paths = write_tables([{"case": "a", "dice_a": 0.5}], summary, tmp_path)
    before = {p.name: p.read_bytes() for p in paths}
    _fail_rename(monkeypatch)
    with pytest.raises(WriteError) as err:
        write_tables([{"case": "a", "dice_a": 0.9}], {"dice_a": {**summary["dice_a"], "mean": 0.9}}, tmp_path)
    monkeypatch.undo()
    _one_line(err, tmp_path / "metrics_per_case.csv")
    assert {p.name: p.read_bytes() for p in paths} == before
    _no_temporary_files(tmp_path)
