"""model_config.json and plan.json: a checkpoint folder carries what inference needs, names its network from an
allow-list only, and refuses differently prepared data."""
import json

import pytest
import torch

from pipeline.engines import (
    check_model_config,
    network_config,
    network_from_config,
    read_model_config,
    register_network,
    save_run_files,
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
    args = network_config(original)
    config = {"network": args, "spatial_dims": args["spatial_dims"], "in_channels": 1,
              "out_channels": args["out_channels"], "class_names": [f"c{i}" for i in range(1, args["out_channels"])],
              "pred_ext": ".nii.gz"}
    save_run_files(tmp_path, config, PLAN)
    rebuilt = network_from_config(read_model_config(tmp_path)).eval()
    assert type(rebuilt) is type(original)
    rebuilt.load_state_dict(original.state_dict())  # same parameters, same names
    x = torch.rand((1, 1, 16, 16) if network_config(original)["spatial_dims"] == 2 else (1, 1, 16, 16, 8))
    with torch.no_grad():
        assert torch.equal(rebuilt(x), original(x))


PLAN = {"target_spacing": [2.0, 2.0, 3.0], "patch_size": [64, 64, 32], "strides": [[2, 2, 1]], "batch_size": 2,
        "num_workers": 0, "intensity": {"mode": "window", "hu_window": [-175, 250], "zscore": None},
        "postprocessing": {"keep_largest_component": False}}


def _saved(tmp_path):
    config = {"network": {"_target_": "UNet", "spatial_dims": 3}, "spatial_dims": 3, "in_channels": 1,
              "out_channels": 3, "class_names": ["pancreas", "tumour"], "pred_ext": ".nii.gz"}
    save_run_files(tmp_path, config, PLAN)
    return config


def test_matching_run_passes_and_post_processing_and_windows_may_differ(tmp_path):
    config = _saved(tmp_path)
    check_model_config(tmp_path, config, PLAN)
    plan = json.loads(json.dumps(PLAN))
    plan["postprocessing"]["keep_largest_component"] = True  # a post-processing choice
    plan["patch_size"] = [96, 96, 48]  # sliding-window size: free at inference
    plan["target_spacing"] = [2, 2, 3]  # ints equal to the saved floats
    check_model_config(tmp_path, config, plan)


def test_different_preprocessing_is_one_line_naming_the_key_and_the_trained_value(tmp_path):
    config = _saved(tmp_path)
    plan = {**PLAN, "target_spacing": [1.5, 1.5, 2.0]}
    with pytest.raises(PipelineError, match=r"target_spacing = \[2.0, 2.0, 3.0\].*--target_spacing") as e:
        check_model_config(tmp_path, config, plan)
    assert "\n" not in str(e.value) and "plan.json" in str(e.value)
    with pytest.raises(PipelineError, match="out_channels") as e:
        check_model_config(tmp_path, {**config, "out_channels": 2})
    assert "model_config.json" in str(e.value)


@pytest.mark.parametrize("target", ["os.system", "subprocess.run", "builtins.eval", "pipeline.networks.blocks.ConvBlock",
                                    "torch.nn.Conv2d", None, 3])
def test_a_network_outside_the_allow_list_is_refused_without_importing_anything(tmp_path, target):
    with pytest.raises(PipelineError, match="is not one of AttentionUNet, FCN, .*UNet.*register_network") as e:
        network_from_config({"network": {"_target_": target, "args": ["touch", str(tmp_path / "PWNED")]}},
                            tmp_path / "model_config.json")
    assert "\n" not in str(e.value) and str(tmp_path / "model_config.json") in str(e.value)
    assert not (tmp_path / "PWNED").exists()


def test_a_registered_network_can_be_named(tmp_path):
    class Tiny(torch.nn.Conv2d):
        def __init__(self, channels: int = 2) -> None:
            super().__init__(1, channels, 3)
            self.init_args = {"channels": channels}

    register_network(Tiny, "TinyForTest")
    try:
        config = {"network": network_config(Tiny(3))}
        assert config["network"] == {"_target_": "TinyForTest", "channels": 3}
        assert network_from_config(config).out_channels == 3
        with pytest.raises(PipelineError, match="do not fit TinyForTest"):
            network_from_config({"network": {"_target_": "TinyForTest", "width": 3}})
    finally:
        from pipeline.engines.model_config import NETWORKS

        NETWORKS.pop("TinyForTest")


def test_missing_or_broken_model_config_is_one_line(tmp_path):
    with pytest.raises(PipelineError, match="model_config.json not found"):
        read_model_config(tmp_path)
    (tmp_path / "model_config.json").write_text("{not json")
    with pytest.raises(PipelineError, match="invalid JSON"):
        read_model_config(tmp_path)
    (tmp_path / "model_config.json").write_text("{}")
    with pytest.raises(PipelineError, match="model_config.json: network: missing"):
        read_model_config(tmp_path)
