"""Memory format of a placed network: channels-last-3d for narrow 3D networks on CPU, contiguous otherwise."""
import pytest
import torch

from pipeline.engines import place, resolve_memory_format
from pipeline.errors import PipelineError
from pipeline.networks import AttentionUNet, UNet

STRIDES = [[2, 2, 1], [2, 2, 2]]


def _attn3d(width: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return AttentionUNet(3, 1, 3, preset="precision", base_width=width, strides=STRIDES, deep_supervision=True,
                         num_side_outputs=1)


def _channels_last(net: torch.nn.Module) -> bool:
    convs = [m.weight for m in net.modules() if isinstance(m, torch.nn.Conv3d)
             and m.weight.shape[1] > 1 and m.weight.shape[2:].numel() > 1]
    return all(w.is_contiguous(memory_format=torch.channels_last_3d) and not w.is_contiguous() for w in convs)


@pytest.mark.parametrize("width, device, expected", [
    (8, "cpu", torch.channels_last_3d),  # 8-channel convolutions: the slow contiguous backward
    (16, "cpu", torch.contiguous_format),  # from 16 channels on, contiguous is as fast or faster
    (8, "cuda", torch.contiguous_format),  # the rule is for the CPU's convolutions only
])
def test_auto_rule(width, device, expected):
    fmt, why = resolve_memory_format(_attn3d(width), device)
    assert fmt is expected and why


def test_2d_networks_stay_contiguous_and_cannot_be_forced():
    net = UNet(2, 1, 3, preset="precision", base_width=8)
    assert resolve_memory_format(net, "cpu")[0] is torch.contiguous_format
    with pytest.raises(PipelineError, match="3D networks"):
        resolve_memory_format(net, "cpu", "channels_last")
    with pytest.raises(PipelineError, match="memory_format 'nhwc'"):
        resolve_memory_format(net, "cpu", "nhwc")


def test_place_converts_the_weights_and_the_step_matches_contiguous():
    """Placing changes the layout, not the function: loss and gradients equal the contiguous network's."""
    x = torch.randn(2, 1, 32, 32, 16, generator=torch.Generator().manual_seed(1))
    nets = {fmt: place(_attn3d(8), "cpu", fmt) for fmt in ("auto", "contiguous")}
    assert _channels_last(nets["auto"]) and not _channels_last(nets["contiguous"])
    grads = {}
    for fmt, net in nets.items():
        loss = sum(o.square().mean() for o in net(x))
        loss.backward()
        grads[fmt] = (loss.detach(), net.encoder.stem.conv0.conv.weight.grad.clone())
    torch.testing.assert_close(grads["auto"][0], grads["contiguous"][0], rtol=1e-4, atol=1e-5)
    scale = grads["contiguous"][1].abs().max().item()
    # summation order differs
    torch.testing.assert_close(grads["auto"][1], grads["contiguous"][1], rtol=0, atol=1e-2 * scale)
