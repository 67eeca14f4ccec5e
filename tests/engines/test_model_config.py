"""model_config.json: a checkpoint folder carries what inference needs, and refuses differently prepared data."""
import json

import pytest
import torch

from pipeline.engines import (
    check_model_config,
    network_config,
    network_from_config,
    read_model_config,
    save_model_config,
)
from pipeline.errors import PipelineError
from pipeline.networks import FCN, AttentionUNet, UNet


@pytest.mark.parametrize(
    "net",
    [
        lambda: UNet(2, 1, 3, preset="precision", base_width=4),
        lambda: FCN(3, 1, 2, preset="standard", base_width=4, strides=[[2, 2, 1]]),
        lambda: AttentionUNet(3, 1, 3, preset="standard", base_width=4, strides=[[2, 2, 1]], deep_supervision=True),
    ],
)
def test_network_rebuilt_from_the_saved_config_loads_the_same_weights(net, tmp_path):
    torch.manual_seed(0)
    original = net().eval()
    save_model_config(tmp_path, {"network": network_config(original), "spatial_dims": 0, "out_channels": 0, "data": {}})
    rebuilt = network_from_config(read_model_config(tmp_path)).eval()
    assert type(rebuilt) is type(original)
    rebuilt.load_state_dict(original.state_dict())  # same parameters, same names
    x = torch.rand((1, 1, 16, 16) if network_config(original)["spatial_dims"] == 2 else (1, 1, 16, 16, 8))
    with torch.no_grad():
        assert torch.equal(rebuilt(x), original(x))


def _saved(tmp_path, **data):
    config = {"network": {"_target_": "pipeline.networks.UNet", "spatial_dims": 3}, "spatial_dims": 3,
              "in_channels": 1, "out_channels": 3, "patch_size": [64, 64, 32],
              "data": {"target_spacing": [2.0, 2.0, 3.0], "hu_window": [-175, 250], "keep_largest_component": False,
                       **data}}
    save_model_config(tmp_path, config)
    return config


def test_matching_run_passes_and_post_processing_may_differ(tmp_path):
    config = _saved(tmp_path)
    check_model_config(tmp_path, config)
    other = json.loads(json.dumps(config))
    other["data"]["keep_largest_component"] = True  # a post-processing choice
    other["patch_size"] = [96, 96, 48]  # sliding-window size: free at inference
    other["data"]["target_spacing"] = [2, 2, 3]  # ints equal to the saved floats
    check_model_config(tmp_path, other)


def test_different_preprocessing_is_one_line_naming_the_key_and_the_trained_value(tmp_path):
    config = _saved(tmp_path)
    other = json.loads(json.dumps(config))
    other["data"]["target_spacing"] = [1.5, 1.5, 2.0]
    with pytest.raises(PipelineError, match=r"target_spacing = \[2.0, 2.0, 3.0\].*--target_spacing") as e:
        check_model_config(tmp_path, other)
    assert "\n" not in str(e.value) and "model_config.json" in str(e.value)
    other = json.loads(json.dumps(config))
    other["out_channels"] = 2
    with pytest.raises(PipelineError, match="out_channels"):
        check_model_config(tmp_path, other)


def test_missing_or_broken_model_config_is_one_line(tmp_path):
    with pytest.raises(PipelineError, match="model_config.json not found"):
        read_model_config(tmp_path)
    (tmp_path / "model_config.json").write_text("{not json")
    with pytest.raises(PipelineError, match="unreadable"):
        read_model_config(tmp_path)
    (tmp_path / "model_config.json").write_text("{}")
    with pytest.raises(PipelineError, match="missing network"):
        read_model_config(tmp_path)
