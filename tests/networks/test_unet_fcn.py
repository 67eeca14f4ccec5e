import pytest
import torch

from pipeline.errors import PipelineError
from pipeline.networks import FCN, PRESETS, UNet

SIZES = {2: [(64, 64), (50, 37)], 3: [(32, 32, 16), (21, 30, 17)]}


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("cls", [UNet, FCN])
def test_output_shape_every_preset(cls, preset, spatial_dims):
    net = cls(spatial_dims, in_channels=2, out_channels=3, preset=preset, base_width=4)
    for size in SIZES[spatial_dims]:  # the second size is not a multiple of 2**depth: padded and cropped back
        y = net(torch.randn(2, 2, *size))
        assert y.shape == (2, 3, *size)


def test_presets_set_depth_and_widths_double():
    assert {p: UNet(2, 1, 2, preset=p).depth for p in PRESETS} == {"precision": 2, "standard": 3, "context": 4}
    net = UNet(2, 1, 2, depth=3, base_width=8)
    assert net.channels == [8, 16, 32, 64]
    assert len(net.encoder.downs) == 3 and len(net.decoders) == 3


def test_unknown_preset_is_one_line_error():
    with pytest.raises(PipelineError, match="unknown U-Net preset 'huge'.*precision, standard, context"):
        UNet(2, 1, 2, preset="huge")


def test_refusing_sizes_names_the_multiple():
    net = UNet(2, 1, 2, depth=3, base_width=4, pad_input=False)
    with pytest.raises(PipelineError, match=r"not a multiple of \(8, 8\)"):
        net(torch.randn(1, 1, 60, 64))
    assert net(torch.randn(1, 1, 64, 64)).shape == (1, 2, 64, 64)


def test_padding_does_not_leak_into_the_result():
    """The cropped output for an odd size equals the output on the explicitly zero-padded input, cropped."""
    torch.manual_seed(0)
    net = UNet(2, 1, 2, depth=2, base_width=4).eval()
    x = torch.randn(1, 1, 30, 29)
    padded = torch.nn.functional.pad(x, (0, 3, 0, 2))
    assert torch.allclose(net(x), net(padded)[..., :30, :29], atol=1e-5)


def test_anisotropic_strides_keep_z_at_first_level():
    net = UNet(3, 1, 2, depth=3, base_width=4, strides=[(2, 2, 1)])
    assert net.strides == [(2, 2, 1), (2, 2, 2), (2, 2, 2)]
    assert net.multiple == (8, 8, 4)
    feats = net.encoder(torch.randn(1, 1, 32, 32, 8))
    assert [tuple(f.shape[2:]) for f in feats] == [(32, 32, 8), (16, 16, 8), (8, 8, 4), (4, 4, 2)]
    assert net(torch.randn(1, 1, 32, 32, 12)).shape == (1, 2, 32, 32, 12)


def test_interpolating_upsampling_and_learned_upsampling_both_work():
    for mode in ("deconv", "interp"):
        net = UNet(2, 1, 3, depth=2, base_width=4, upsample=mode)
        assert net(torch.randn(1, 1, 16, 16)).shape == (1, 3, 16, 16)
    with pytest.raises(PipelineError, match="upsample"):
        UNet(2, 1, 3, depth=2, upsample="nearest-ish")


def test_deep_supervision_outputs_in_training_only():
    net = UNet(3, 1, 3, depth=3, base_width=4, deep_supervision=True, num_side_outputs=2)
    out = net.train()(torch.randn(1, 1, 32, 32, 16))
    assert [tuple(o.shape) for o in out] == [(1, 3, 32, 32, 16), (1, 3, 16, 16, 8), (1, 3, 8, 8, 4)]
    assert net.eval()(torch.randn(1, 1, 32, 32, 16)).shape == (1, 3, 32, 32, 16)


def test_fused_side_outputs_change_the_main_output_path():
    net = UNet(2, 1, 3, depth=3, base_width=4, fuse_side_outputs=True)
    assert net.fuse is not None
    y = net.eval()(torch.randn(1, 1, 32, 32))
    assert y.shape == (1, 3, 32, 32)
    y.sum().backward()
    assert all(h.conv.weight.grad is not None for h in net.side_heads)


def test_fcn_has_no_skip_connections():
    net = FCN(2, 1, 3, depth=3, base_width=4)
    assert not hasattr(net, "decoders")
    x = torch.randn(1, 1, 32, 32)
    assert net(x).shape == (1, 3, 32, 32)
