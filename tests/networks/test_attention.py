import pytest
import torch
from monai.networks.nets import AttentionUnet as MonaiAttentionUnet  # noqa: F401  (sanity: MONAI's exists)

from pipeline.errors import PipelineError
from pipeline.networks import AttentionUNet, GridAttentionGate, UNet


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_gate_coefficients_in_unit_interval_on_skip_grid(spatial_dims):
    gate = GridAttentionGate(spatial_dims, in_channels=8, gating_channels=16, sub_sample=2)
    x = torch.randn(2, 8, *([16] * spatial_dims))
    g = torch.randn(2, 16, *([8] * spatial_dims))
    out, alpha = gate(x, g)
    assert out.shape == x.shape
    assert alpha.shape == (2, 1, *([16] * spatial_dims))
    assert alpha.min() >= 0 and alpha.max() <= 1


def test_theta_is_strided_onto_the_gating_grid():
    gate = GridAttentionGate(3, in_channels=8, gating_channels=16, sub_sample=(2, 2, 1))
    assert gate.theta.stride == (2, 2, 1) and gate.theta.kernel_size == (2, 2, 1)
    assert gate.theta(torch.randn(1, 8, 16, 16, 6)).shape[2:] == (8, 8, 6)


def test_saturated_gate_passes_x_through_W():
    """If psi drives alpha to 1 everywhere, the gate's output is W(x)."""
    torch.manual_seed(0)
    gate = GridAttentionGate(2, in_channels=4, gating_channels=8).eval()
    with torch.no_grad():
        gate.psi.weight.zero_()
        gate.psi.bias.fill_(50.0)
    x, g = torch.randn(1, 4, 12, 12), torch.randn(1, 8, 6, 6)
    out, alpha = gate(x, g)
    assert torch.allclose(alpha, torch.ones_like(alpha))
    assert torch.allclose(out, gate.W(x), atol=1e-6)


def test_closed_gate_blocks_the_skip():
    gate = GridAttentionGate(2, in_channels=4, gating_channels=8).eval()
    with torch.no_grad():
        gate.psi.weight.zero_()
        gate.psi.bias.fill_(-50.0)
    x, g = torch.randn(1, 4, 12, 12), torch.randn(1, 8, 6, 6)
    out, _ = gate(x, g)
    assert torch.allclose(out, gate.W(torch.zeros_like(x)), atol=1e-5)


@pytest.mark.parametrize("spatial_dims,size", [(2, (40, 36)), (3, (32, 32, 16))])
def test_attention_unet_maps_per_level(spatial_dims, size):
    net = AttentionUNet(spatial_dims, 1, 3, depth=3, base_width=4)
    y = net(torch.randn(1, 1, *size))
    assert y.shape == (1, 3, *size)
    assert net.attention_levels == [1, 2]  # every skip but the finest
    for level in (1, 2):
        alpha = net.attention_maps[level]
        assert alpha.shape == (1, 1, *[-(-s // 2**level) for s in size])
        assert not alpha.requires_grad


def test_attention_levels_configurable_and_checked():
    net = AttentionUNet(2, 1, 2, depth=3, base_width=4, attention_levels=[0, 1, 2])
    net(torch.randn(1, 1, 32, 32))
    assert sorted(net.attention_maps) == [0, 1, 2]
    with pytest.raises(PipelineError, match="attention_levels"):
        AttentionUNet(2, 1, 2, depth=2, attention_levels=[2])


def test_attention_unet_shares_the_unet_blocks():
    att, plain = AttentionUNet(3, 1, 3, depth=3, base_width=4), UNet(3, 1, 3, depth=3, base_width=4)
    assert isinstance(att, UNet)
    plain_keys = set(plain.state_dict())
    assert plain_keys < set(att.state_dict())  # the same encoder/decoder, plus the gates
    assert all(k.startswith("gates.") for k in set(att.state_dict()) - plain_keys)


def test_anisotropic_attention_unet_with_deep_supervision():
    net = AttentionUNet(3, 1, 3, depth=3, base_width=4, strides=[(2, 2, 1)], deep_supervision=True)
    outs = net.train()(torch.randn(1, 1, 32, 32, 8))
    assert [tuple(o.shape[2:]) for o in outs] == [(32, 32, 8), (16, 16, 8), (8, 8, 4)]
    assert net.attention_maps[1].shape[2:] == (16, 16, 8)
    loss = sum(o.mean() for o in outs)
    loss.backward()
    assert net.gates["1"].theta.weight.grad is not None
