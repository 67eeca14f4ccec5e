"""``--ema``: ignite's EMAHandler with a warm-up taken from the trainer's iteration, scored by validation, written
as model.pt and carried by the full checkpoint so that a resumed run averages exactly as an uninterrupted one."""
import pytest
import torch
from ignite.engine import Events

from pipeline.engines import (
    EMAWeights,
    EpochCheckpointSaver,
    ema_weights,
    resume_loader,
    save_run_files,
    training_state,
)
from pipeline.engines.ema import warmup_momentum
from pipeline.errors import PipelineError
from tests.bundles_util import shapes_parser
from tests.engines.test_resume import MODEL_CONFIG, PLAN, _trainer


def test_warmup_spans_a_tenth_of_the_iterations_until_the_momentum_is_reached():
    assert warmup_momentum(1, 0.01) == pytest.approx(10 / 11)
    assert warmup_momentum(90, 0.01) == pytest.approx(0.1)
    assert warmup_momentum(990, 0.01) == pytest.approx(0.01)
    assert warmup_momentum(5000, 0.01) == 0.01


def test_the_average_follows_the_recurrence_over_the_online_weights():
    trainer = _trainer(epochs=3)
    seen = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED,
                              lambda e: seen.append([p.detach().clone() for p in e.network.parameters()]))
    ema = EMAWeights(trainer.network, momentum=0.2)
    ema.attach(trainer)
    start = [p.detach().clone() for p in trainer.network.parameters()]
    trainer.run()
    assert len(seen) == 9
    expected = start
    for t, weights in enumerate(seen, start=1):
        m = warmup_momentum(t, 0.2)
        expected = [e.mul(1.0 - m).add(w, alpha=m) for e, w in zip(expected, weights)]
    for got, want, online in zip(ema.ema_model.parameters(), expected, trainer.network.parameters()):
        assert torch.allclose(got, want, atol=1e-7)
        assert not torch.equal(got, online)  # an average, not a copy
    assert trainer.state.ema_momentum == pytest.approx(warmup_momentum(9, 0.2))


def _train_with_ema(ckpt_dir, epochs, stop_after=None, resume=False, ema=True):
    trainer = _trainer(epochs)
    handler = EMAWeights(trainer.network, momentum=0.05) if ema else None
    state = training_state(trainer, None, network=trainer.network, optimizer=trainer.optimizer,
                           lr_scheduler=trainer.lr_scheduler, ckpt_dir=ckpt_dir, ema=handler)
    if resume:
        resume_loader(trainer, state, ckpt_dir, MODEL_CONFIG)
    else:
        save_run_files(ckpt_dir, MODEL_CONFIG, PLAN)
    if handler is not None:
        handler.attach(trainer)
    EpochCheckpointSaver(ckpt_dir, state).attach(trainer)
    if stop_after:
        trainer.add_event_handler(Events.EPOCH_COMPLETED,
                                  lambda e: e.terminate() if e.state.epoch == stop_after else None)
    trainer.run()
    return trainer, handler


def test_a_resumed_run_averages_exactly_as_an_uninterrupted_one(tmp_path):
    _, whole = _train_with_ema(tmp_path / "whole", epochs=4)
    _train_with_ema(tmp_path / "cut", epochs=4, stop_after=2)
    ckpt = torch.load(tmp_path / "cut" / "checkpoint_epoch=2.pt", weights_only=True)
    assert set(ckpt["ema_network"]) == set(ckpt["network"])
    _, resumed = _train_with_ema(tmp_path / "cut", epochs=4, resume=True)
    for a, b in zip(whole.ema_model.parameters(), resumed.ema_model.parameters()):
        assert torch.equal(a, b)


def test_resume_refuses_a_checkpoint_trained_with_the_other_ema_setting(tmp_path):
    _train_with_ema(tmp_path / "on", epochs=3, stop_after=1)
    with pytest.raises(PipelineError, match=r"trained with --ema true, this run asks for --ema false"):
        _train_with_ema(tmp_path / "on", epochs=3, resume=True, ema=False)
    _train_with_ema(tmp_path / "off", epochs=3, stop_after=1, ema=False)
    with pytest.raises(PipelineError, match=r"trained with --ema false, this run asks for --ema true"):
        _train_with_ema(tmp_path / "off", epochs=3, resume=True)


def _bundle(tmp_path, monkeypatch, config_files=("bundles/unet/train.json",), **overrides):
    return shapes_parser(tmp_path, monkeypatch, config_files, preset="precision", base_width=4, epochs=1,
                         val_interval=1, num_workers=0, **overrides)


def test_ema_is_off_by_default(tmp_path, monkeypatch):
    parser = _bundle(tmp_path, monkeypatch)
    assert parser.get_parsed_content("train#ema") is None
    assert parser.get_parsed_content("validate#evaluator").network is parser.get_parsed_content("network")
    assert "ema_network" not in parser.get_parsed_content("train#state")
    assert parser.get_parsed_content("train#tracking_params#ema") is False


def test_ema_true_validates_saves_and_checkpoints_the_average(tmp_path, monkeypatch):
    parser = _bundle(tmp_path, monkeypatch, ema="true")  # a string, as from the command line
    network = parser.get_parsed_content("network")
    ema = parser.get_parsed_content("train#ema")
    assert isinstance(ema, EMAWeights) and ema.momentum == 0.01
    assert parser.get_parsed_content("validate#evaluator").network is ema.ema_model
    assert parser.get_parsed_content("train#state")["ema_network"] is ema.ema_model
    assert parser.get_parsed_content("train#tracking_params#ema") is True
    parser.get_parsed_content("initialize")
    parser.get_parsed_content("run")
    saved = torch.load(tmp_path / "b" / "models" / "model.pt", weights_only=True)
    averaged, online = ema.ema_model.state_dict(), network.state_dict()
    assert all(torch.equal(saved[k], averaged[k]) for k in averaged)  # one epoch, one validation: its average
    assert any(not torch.equal(saved[k], online[k]) for k in online)
    ckpt = torch.load(tmp_path / "b" / "models" / "checkpoint_epoch=1.pt", weights_only=True)
    assert all(torch.equal(ckpt["ema_network"][k], averaged[k]) for k in averaged)


def test_bad_ema_values_name_their_key(tmp_path, monkeypatch):
    with pytest.raises(PipelineError, match=r"--ema 'often' is not a switch"):
        ema_weights(torch.nn.Linear(1, 1), "often", 0.01)
    with pytest.raises(PipelineError, match=r"--ema_momentum 1.5 must be a number between 0 and 1"):
        ema_weights(torch.nn.Linear(1, 1), True, 1.5)
    parser = _bundle(tmp_path, monkeypatch, ema="true", ema_momentum="fast")
    with pytest.raises(RuntimeError) as failed:  # monai.bundle's error line comes from this PipelineError
        parser.get_parsed_content("validate#evaluator")
    assert "--ema_momentum 'fast' must be a number" in str(failed.value.__cause__)


def test_train_then_evaluate_with_ema_true_scores_the_saved_average(tmp_path, monkeypatch):
    """``--config_file "['train.json','evaluate.json']" --ema true`` (the training command's keys reused): the
    checkpoint loads into the network the evaluator scores, so the evaluation repeats the training's validation."""
    trained = _bundle(tmp_path, monkeypatch, ema="true")
    trained.get_parsed_content("initialize")
    trained.get_parsed_content("run")
    best = trained.get_parsed_content("validate#evaluator").state.best_metric
    evaluation = _bundle(tmp_path, monkeypatch, ("bundles/unet/train.json", "bundles/unet/evaluate.json"),
                         ema="true", eval_split="validation", tta="false", eval_dir=str(tmp_path / "eval"))
    evaluation.get_parsed_content("initialize")
    evaluation.get_parsed_content("run")
    evaluator = evaluation.get_parsed_content("validate#evaluator")
    saved = torch.load(tmp_path / "b" / "models" / "model.pt", weights_only=True)
    scored = evaluator.network.state_dict()
    assert all(torch.equal(saved[k], scored[k]) for k in saved)
    assert evaluator.state.metrics["val_mean_dice"] == pytest.approx(best, abs=1e-6)
