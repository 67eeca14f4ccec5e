"""``--compile``: the trainer trains through torch.compile of the bundle's network, validation stays eager."""
import pytest
import torch

from pipeline.errors import PipelineError
from tests.bundles_util import shapes_parser


def _trainer(tmp_path, monkeypatch, **overrides):
    parser = shapes_parser(tmp_path, monkeypatch, **overrides)
    return parser, parser.get_parsed_content("train#trainer")


def test_compile_is_off_by_default(tmp_path, monkeypatch):
    parser, trainer = _trainer(tmp_path, monkeypatch)
    assert trainer.compile is False and trainer.network is parser.get_parsed_content("network")


def test_compile_true_trains_a_compiled_network_with_static_shapes_and_validates_the_plain_one(tmp_path, monkeypatch):
    parser, trainer = _trainer(tmp_path, monkeypatch, compile="true")  # a string, as from the command line
    network = parser.get_parsed_content("network")
    assert trainer.compile is True
    assert isinstance(trainer.network, torch._dynamo.eval_frame.OptimizedModule)
    assert trainer.network._orig_mod is network  # same parameters: the optimiser and checkpoints see the updates
    assert parser.get_parsed_content("train#trainer#compile_kwargs") == {"dynamic": False}
    assert parser.get_parsed_content("validate#evaluator").network is network
    assert parser.get_parsed_content("train#tracking_params#compile") is True


def test_compile_that_is_not_a_switch_names_the_key(tmp_path, monkeypatch):
    with pytest.raises(RuntimeError) as failed:  # monai.bundle's error line comes from this PipelineError
        _trainer(tmp_path, monkeypatch, compile="yes please")
    assert isinstance(failed.value.__cause__, PipelineError)
    assert "--compile 'yes please' is not a switch" in str(failed.value.__cause__)
