import inspect
import json
from pathlib import Path

import pytest
import torch

from pipeline.errors import PipelineError
from pipeline.networks import DEFAULT_ACT, DEFAULT_NORM, AttentionUNet, GridAttentionGate, UNet
from tests.networks.test_unet_fcn import run_docstring_examples

REPO = Path(__file__).resolve().parents[2]


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


def test_gates_in_the_network_are_wired_level_to_level():
    """Gate l: theta strided by strides[l]; x = the encoder's level-l features; g = the decoder output of level l + 1
    (the bottleneck for the deepest level); alpha on the skip grid, in [0, 1], and what attention_maps reports."""
    torch.manual_seed(0)
    net = AttentionUNet(3, 1, 2, depth=3, base_width=4, strides=[(2, 2, 1)], attention_levels=[0, 1, 2]).eval()
    seen: dict[str, object] = {}
    hooks = [net.encoder.register_forward_hook(lambda m, a, out: seen.__setitem__("feats", out))]
    for level, decoder in enumerate(net.decoders):
        hooks.append(decoder.register_forward_hook(lambda m, a, out, lvl=level: seen.__setitem__(f"dec{lvl}", out)))
    for name, gate in net.gates.items():
        hooks.append(
            gate.register_forward_hook(lambda m, a, out, lvl=int(name): seen.__setitem__(f"gate{lvl}", (a, out)))
        )
    with torch.no_grad():
        net(torch.randn(1, 1, 32, 32, 8))  # a multiple of net.multiple: no padding, no cropping of the maps
    for h in hooks:
        h.remove()

    feats = seen["feats"]
    for level in range(net.depth):
        gate = net.gates[str(level)]
        assert gate.theta.stride == net.strides[level] and gate.theta.kernel_size == net.strides[level]
        (x, g), (_, alpha) = seen[f"gate{level}"]
        assert x is feats[level]
        assert g is (feats[-1] if level == net.depth - 1 else seen[f"dec{level + 1}"])
        assert tuple(g.shape[2:]) == tuple(n // s for n, s in zip(x.shape[2:], net.strides[level]))
        assert alpha.shape == (1, 1, *x.shape[2:])
        assert alpha.min() >= 0 and alpha.max() <= 1
        assert torch.equal(net.attention_maps[level], alpha)


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


def test_inter_channels_one_per_gated_level():
    net = AttentionUNet(2, 1, 2, depth=3, base_width=4, inter_channels=[3, 5])
    assert [net.gates[str(lvl)].theta.out_channels for lvl in (1, 2)] == [3, 5]
    with pytest.raises(PipelineError, match="inter_channels has 1 entries but 2 levels are gated"):
        AttentionUNet(2, 1, 2, depth=3, base_width=4, inter_channels=[3])


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


def test_signature_is_explicit_and_mirrors_unet():
    params = inspect.signature(AttentionUNet.__init__).parameters
    plain = inspect.signature(UNet.__init__).parameters
    kinds = {p.kind for p in params.values()}
    assert inspect.Parameter.VAR_KEYWORD not in kinds and inspect.Parameter.VAR_POSITIONAL not in kinds
    assert list(params)[: len(plain)] == list(plain)
    assert list(params)[len(plain):] == ["attention_levels", "inter_channels"]
    assert all(params[name].default == plain[name].default for name in plain)
    assert params["norm"].default is DEFAULT_NORM and params["act"].default is DEFAULT_ACT
    assert inspect.signature(GridAttentionGate.__init__).parameters["norm"].default is DEFAULT_NORM


def test_bundle_network_arguments_are_parameters():
    """The attn_unet bundle instantiates AttentionUNet by keyword: every name it uses is in the signature."""
    config = json.loads((REPO / "bundles" / "attn_unet" / "train.json").read_text())
    names = set(config["network_def"]) - {"_target_"}
    assert names and names <= set(inspect.signature(AttentionUNet.__init__).parameters)


def test_norm_reaches_the_gates():
    net = AttentionUNet(2, 1, 2, depth=2, base_width=4, norm="batch")
    assert isinstance(net.gates["1"].W.adn.N, torch.nn.BatchNorm2d)


@pytest.mark.parametrize("given", [{"preset": "standard"}, {"depth": 3}])
def test_channels_conflicts_are_refused_for_attention_unet(given):
    with pytest.raises(PipelineError, match=f"AttentionUNet: channels=.* and {next(iter(given))}="):
        AttentionUNet(3, 1, 3, channels=[4, 8, 16, 32], **given)


@pytest.mark.parametrize("cls", [AttentionUNet, GridAttentionGate])
def test_docstring_example_runs(cls):
    run_docstring_examples(cls)
