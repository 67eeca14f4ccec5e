"""``InstanceNormCL3d``, the networks' default norm in 3D: InstanceNorm3d in training, the group-norm kernel for
inference on channels-last CPU tensors (same function, faster), same state dict."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from pipeline.networks import AttentionUNet, UNet
from pipeline.networks.blocks import InstanceNormCL3d

CL = torch.channels_last_3d
KW = dict(preset="standard", base_width=4, strides=[[2, 2, 1], [2, 2, 2], [2, 2, 2]])


def _pair(c: int = 6) -> tuple[InstanceNormCL3d, torch.nn.InstanceNorm3d]:
    gen = torch.Generator().manual_seed(0)
    ref = torch.nn.InstanceNorm3d(c, affine=True)
    with torch.no_grad():
        ref.weight.copy_(torch.rand(c, generator=gen) + 0.5)
        ref.bias.copy_(torch.randn(c, generator=gen))
    ours = InstanceNormCL3d(c, affine=True)
    ours.load_state_dict(ref.state_dict())
    return ours, ref


def _x(*shape: int) -> torch.Tensor:
    return (torch.randn(*shape, generator=torch.Generator().manual_seed(1)) * 3 + 1).contiguous(memory_format=CL)


def test_training_is_instance_norm3d_bit_for_bit(monkeypatch):
    ours, ref = _pair()
    x1, x2 = _x(2, 6, 9, 8, 5).requires_grad_(), _x(2, 6, 9, 8, 5).requires_grad_()
    monkeypatch.setattr(F, "group_norm",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("group_norm in training")))
    y1, y2 = ours(x1), ref(x2)
    assert torch.equal(y1, y2)
    (y1 * y1).sum().backward()
    (y2 * y2).sum().backward()
    assert torch.equal(x1.grad, x2.grad) and torch.equal(ours.weight.grad, ref.weight.grad)


def test_inference_on_channels_last_cpu_uses_group_norm_and_keeps_the_format(monkeypatch):
    ours, ref = _pair()
    ours.eval(), ref.eval()
    x = _x(2, 6, 9, 8, 5)
    calls = []
    group_norm = F.group_norm
    monkeypatch.setattr(F, "group_norm", lambda *a, **k: calls.append(1) or group_norm(*a, **k))
    with torch.no_grad():
        y, expected = ours(x), ref(x)
        contiguous = ours(x.contiguous())  # a contiguous input takes InstanceNorm3d's own kernel
    assert calls == [1]
    torch.testing.assert_close(y, expected, atol=1e-5, rtol=1e-5)
    assert y.is_contiguous(memory_format=CL)
    assert torch.equal(contiguous, expected)


def test_unbatched_input_as_instance_norm3d_takes_it():
    ours, ref = _pair()
    x = torch.randn(6, 5, 4, 3)
    assert torch.equal(ours(x), ref(x))


def test_default_norm_by_dimension_shares_monai_instance_norm_weights():
    net3 = AttentionUNet(3, 1, 3, **KW)
    norms3 = [m for m in net3.modules() if isinstance(m, torch.nn.modules.instancenorm._InstanceNorm)]
    assert norms3 and all(type(m) is InstanceNormCL3d for m in norms3)
    net2 = UNet(2, 1, 3, preset="standard", base_width=4)
    assert {type(m) for m in net2.modules() if isinstance(m, torch.nn.modules.instancenorm._InstanceNorm)} == {
        torch.nn.InstanceNorm2d}
    # the same state dict as a network built with MONAI's plain instance norm, and the same outputs
    torch.manual_seed(0)
    old = AttentionUNet(3, 1, 3, norm=("instance", {"affine": True}), **KW).eval()
    net3.load_state_dict(old.state_dict())
    old.load_state_dict(net3.eval().state_dict())
    x = torch.randn(2, 1, 16, 16, 8)
    with torch.no_grad():
        torch.testing.assert_close(net3.to(memory_format=CL)(x), old.to(memory_format=CL)(x), atol=1e-4, rtol=1e-4)


def test_scripted_network_gives_the_same_outputs():
    torch.manual_seed(0)
    net = AttentionUNet(3, 1, 3, **KW).eval().to(memory_format=CL)
    scripted = torch.jit.script(net)
    x = torch.randn(2, 1, 16, 16, 8)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), net(x))
