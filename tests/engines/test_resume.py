"""Per-epoch full checkpoints and resume, in-process on a tiny MONAI trainer: what is written, what loads with
weights_only, that a resumed run continues exactly, and the one-line refusals."""
import json
import os
import random

import numpy as np
import pytest
import torch
from ignite.engine import Events
from monai.engines import SupervisedTrainer

from pipeline.engines import (
    EpochCheckpointSaver,
    RNGState,
    epoch_checkpoints,
    resume_checkpoint,
    resume_loader,
    save_run_files,
    training_state,
)
from pipeline.errors import PipelineError

MODEL_CONFIG = {
    # describes the run (resume compares it); model_config.json names networks from the allow-list only
    "network": {"_target_": "FCN", "spatial_dims": 2, "in_channels": 1, "out_channels": 2, "base_width": 4},
    "spatial_dims": 2, "in_channels": 1, "out_channels": 2, "class_names": ["fg"], "pred_ext": ".png",
}
PLAN = {"target_spacing": [1.0, 1.0], "patch_size": [8, 8], "strides": [[2, 2]], "batch_size": 2, "num_workers": 0,
        "intensity": {"mode": "window", "hu_window": [-100, 240]}}


def _trainer(epochs: int) -> SupervisedTrainer:
    torch.manual_seed(0)
    data = [{"image": torch.randn(1, 8, 8), "label": torch.randint(0, 2, (1, 8, 8))} for _ in range(6)]
    loader = torch.utils.data.DataLoader(data, batch_size=2, shuffle=False)
    net = torch.nn.Conv2d(1, 2, 3, padding=1)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    trainer = SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=epochs, train_data_loader=loader, network=net, optimizer=opt,
        loss_function=lambda pred, label: torch.nn.functional.cross_entropy(pred, label[:, 0].long()),
    )
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: sched.step())
    trainer.lr_scheduler = sched
    return trainer


def _state(trainer, ckpt_dir):
    return training_state(trainer, None, network=trainer.network, optimizer=trainer.optimizer,
                          lr_scheduler=trainer.lr_scheduler, ckpt_dir=ckpt_dir)


def _train(ckpt_dir, epochs, stop_after=None, resume=False):
    trainer = _trainer(epochs)
    save_dir = ckpt_dir
    if resume:
        resume_loader(trainer, _state(trainer, save_dir), save_dir, MODEL_CONFIG)
    else:
        save_run_files(save_dir, MODEL_CONFIG, PLAN)
    EpochCheckpointSaver(save_dir, _state(trainer, save_dir)).attach(trainer)
    if stop_after:
        trainer.add_event_handler(Events.EPOCH_COMPLETED,
                                  lambda e: e.terminate() if e.state.epoch == stop_after else None)
    trainer.run()
    return trainer


def test_one_full_checkpoint_per_epoch_kept_and_readable_with_weights_only(tmp_path):
    _train(tmp_path, epochs=3)
    assert [e for e, _ in epoch_checkpoints(tmp_path)] == [3]  # older ones deleted after the new one was written
    assert not list(tmp_path.glob(".*.tmp"))
    ckpt = torch.load(tmp_path / "checkpoint_epoch=3.pt", weights_only=True)
    assert {"network", "optimizer", "lr_scheduler", "trainer", "best_metric", "rng", "run"} <= set(ckpt)
    assert ckpt["trainer"]["iteration"] == 9 and ckpt["run"]["epoch"] == 3
    assert json.loads(ckpt["run"]["model_config"]) == json.loads((tmp_path / "model_config.json").read_text())
    assert ckpt["lr_scheduler"]["last_epoch"] == 3
    mode = os.stat(tmp_path / "checkpoint_epoch=3.pt").st_mode & 0o777
    assert mode & 0o044  # readable like any file the user writes, not mkstemp's 0600


def test_resumed_run_equals_an_uninterrupted_one(tmp_path):
    whole = _train(tmp_path / "whole", epochs=4)
    _train(tmp_path / "cut", epochs=4, stop_after=2)
    assert [e for e, _ in epoch_checkpoints(tmp_path / "cut")] == [2]
    resumed = _train(tmp_path / "cut", epochs=4, resume=True)
    assert resumed.state.epoch == 4 and resumed.state.iteration == whole.state.iteration == 12
    for a, b in zip(whole.network.parameters(), resumed.network.parameters()):
        assert torch.equal(a, b)
    assert resumed.optimizer.param_groups[0]["lr"] == whole.optimizer.param_groups[0]["lr"]


def test_rng_state_round_trip(tmp_path):
    gen = torch.Generator().manual_seed(3)
    rng = RNGState(gen)
    torch.save(rng.state_dict(), tmp_path / "rng.pt")
    first = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(3, generator=gen))
    rng.load_state_dict(torch.load(tmp_path / "rng.pt", weights_only=True))
    again = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(3, generator=gen))
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert first[2] == again[2] and torch.equal(first[3], again[3])


def test_resume_without_a_checkpoint_is_one_line(tmp_path):
    with pytest.raises(PipelineError, match="no checkpoint_epoch=N.pt to resume from"):
        resume_checkpoint(tmp_path, MODEL_CONFIG, epochs=3)


def test_truncated_checkpoint_is_one_line_and_left_alone(tmp_path):
    _train(tmp_path, epochs=2)
    path = tmp_path / "checkpoint_epoch=2.pt"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    before = path.read_bytes()
    with pytest.raises(PipelineError, match="not a readable checkpoint, perhaps truncated") as err:
        resume_checkpoint(tmp_path, MODEL_CONFIG, epochs=3)
    assert "\n" not in str(err.value) and str(path) in str(err.value)
    assert path.read_bytes() == before


def test_resume_refuses_another_network_or_data_fragment(tmp_path):
    _train(tmp_path, epochs=1)
    other_net = {**MODEL_CONFIG, "network": {**MODEL_CONFIG["network"], "out_channels": 3}}
    with pytest.raises(PipelineError, match="trained with network.out_channels = 2"):
        resume_checkpoint(tmp_path, other_net, epochs=3)
    other_plan = {**PLAN, "intensity": {"mode": "window", "hu_window": [-1000, 1000]}}
    with pytest.raises(PipelineError, match=r"plan.json: the checkpoint was trained with intensity.hu_window"):
        resume_checkpoint(tmp_path, MODEL_CONFIG, epochs=3, plan=other_plan)
    resume_checkpoint(tmp_path, MODEL_CONFIG, epochs=1, plan={**PLAN, "patch_size": [16, 16]})  # windows may differ


def test_resume_refuses_other_epochs_and_other_epoch_length_and_a_foreign_model_config(tmp_path):
    _train(tmp_path, epochs=2)
    for epochs in (1, 3):  # the cosine schedule was laid out for 2: a longer run would climb back up after it
        with pytest.raises(PipelineError, match=f"planned for --epochs 2 .*, this one for {epochs}: resume with "):
            resume_checkpoint(tmp_path, MODEL_CONFIG, epochs=epochs)
    with pytest.raises(PipelineError, match="its epochs had 3 iterations, this run's have 5"):
        resume_checkpoint(tmp_path, MODEL_CONFIG, epochs=2, epoch_length=5)
    save_run_files(tmp_path, {**MODEL_CONFIG, "out_channels": 4}, PLAN)  # a later run started here
    with pytest.raises(PipelineError, match="written by another run"):
        resume_checkpoint(tmp_path, MODEL_CONFIG, epochs=3)


def test_resume_refuses_another_split_or_learning_rate(tmp_path):
    config = {**MODEL_CONFIG, "split": {"val_fraction": 0.2, "num_folds": 0, "fold": 0, "seed": 0}}
    trainer = _trainer(2)
    save_run_files(tmp_path, config, PLAN)
    EpochCheckpointSaver(tmp_path, _state(trainer, tmp_path)).attach(trainer)
    trainer.run()
    resume_checkpoint(tmp_path, {**config, "split": {k: str(v) for k, v in config["split"].items()}}, epochs=2)
    with pytest.raises(PipelineError, match="trained on another split .*resume with its --seed"):
        resume_checkpoint(tmp_path, {**config, "split": {**config["split"], "seed": 1}}, epochs=2)
    other = _trainer(2)
    for group in other.optimizer.param_groups:
        group["lr"] = group["initial_lr"] = 5e-3
    other.lr_scheduler.base_lrs = [5e-3]
    with pytest.raises(PipelineError, match="trained with learning rate 0.01, this run asks for 0.005"):
        resume_loader(other, _state(other, tmp_path), tmp_path, config)


def test_a_fresh_run_refuses_to_replace_an_interrupted_runs_checkpoint(tmp_path):
    from pipeline.engines import check_resume

    _train(tmp_path / "cut", epochs=4, stop_after=2)
    path = tmp_path / "cut" / "checkpoint_epoch=2.pt"
    before = path.read_bytes()
    with pytest.raises(PipelineError, match="stopped at epoch 2 of 4 can be resumed .*add --resume true"):
        check_resume("false", tmp_path / "cut", epochs=4)
    assert path.read_bytes() == before
    check_resume("true", tmp_path / "cut", epochs=4)  # the resume itself is allowed
    _train(tmp_path / "done", epochs=2)
    check_resume(False, tmp_path / "done", epochs=2)  # a finished run's last checkpoint is replaced as before
    check_resume(False, tmp_path / "empty", epochs=2)
