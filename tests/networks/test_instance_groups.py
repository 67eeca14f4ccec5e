"""``InstanceNormGroups``: the network's instance norm as GroupNorm, so that channels-last tensors stay
channels-last."""
from __future__ import annotations

import pytest
import torch
from monai.networks.layers import get_norm_layer

from pipeline.networks import AttentionUNet
from pipeline.networks.blocks import InstanceNormGroups


@pytest.mark.parametrize("dims", [2, 3])
def test_same_function_and_parameters_as_instance_norm(dims):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, *([9] * dims), generator=gen) * 3 + 1
    ref = (torch.nn.InstanceNorm2d if dims == 2 else torch.nn.InstanceNorm3d)(6, affine=True)
    with torch.no_grad():
        ref.weight.copy_(torch.rand(6, generator=gen) + 0.5)
        ref.bias.copy_(torch.randn(6, generator=gen))
    ours = get_norm_layer(("instance_groups", {"affine": True}), spatial_dims=dims, channels=6)
    assert isinstance(ours, InstanceNormGroups)
    ours.load_state_dict(ref.state_dict())  # same parameter names: a checkpoint of either loads into the other
    torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)


def test_a_channels_last_network_keeps_its_format_through_the_norm():
    x = torch.randn(1, 8, 8, 8, 4).contiguous(memory_format=torch.channels_last_3d)
    assert InstanceNormGroups(8)(x).is_contiguous(memory_format=torch.channels_last_3d)
    assert not torch.nn.InstanceNorm3d(8, affine=True)(x).is_contiguous(memory_format=torch.channels_last_3d)


def test_network_with_either_norm_loads_the_others_weights():
    kw = dict(preset="standard", base_width=4, strides=[[2, 2, 1], [2, 2, 2], [2, 2, 2]])
    torch.manual_seed(0)
    default = AttentionUNet(3, 1, 3, **kw).eval()
    groups = AttentionUNet(3, 1, 3, norm=("instance_groups", {"affine": True}), **kw).eval()
    groups.load_state_dict(default.state_dict())
    x = torch.randn(1, 1, 16, 16, 8)
    with torch.no_grad():
        torch.testing.assert_close(groups(x), default(x), atol=1e-4, rtol=1e-4)
