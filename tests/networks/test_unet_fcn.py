import doctest
import io
import inspect

import pytest
import torch
from monai.networks.blocks import UpSample

from pipeline.errors import PipelineError
from pipeline.networks import DEFAULT_ACT, DEFAULT_NORM, FCN, PRESETS, UNet
from pipeline.networks.blocks import ConvBlock, UpBlock

SIZES = {2: [(64, 64), (50, 37)], 3: [(32, 32, 16), (21, 30, 17)]}


def run_docstring_examples(obj: object) -> None:
    """Run the ``>>>`` examples of ``obj``'s docstring; fail with doctest's report if any example fails."""
    tests = doctest.DocTestFinder(recurse=False).find(obj, name=obj.__name__, globs={obj.__name__: obj})
    runner = doctest.DocTestRunner()
    report = io.StringIO()
    for test in tests:
        runner.run(test, out=report.write)
    assert runner.tries > 0, f"{obj.__name__} has no docstring example"
    assert runner.failures == 0, report.getvalue()


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
    assert UNet(2, 1, 2).channels == [32, 64, 128, 256]  # defaults: depth 3, base width 32
    assert UNet(2, 1, 2, channels=[4, 8, 16]).depth == 2


def test_unknown_preset_is_one_line_error():
    with pytest.raises(PipelineError, match="unknown U-Net preset 'huge'.*precision, standard, context"):
        UNet(2, 1, 2, preset="huge")
    with pytest.raises(PipelineError, match="unknown U-Net preset 'huge'"):
        FCN(2, 1, 2, preset="huge")


@pytest.mark.parametrize("given", [{"preset": "standard"}, {"depth": 3}, {"depth": 2}, {"base_width": 8}])
def test_channels_together_with_preset_depth_or_base_width_is_refused(given):
    """channels fixes depth and widths itself: another of those arguments is an error, never silently ignored."""
    (name, value), = given.items()
    with pytest.raises(PipelineError, match=rf"channels=\[8, 16, 32, 64\] and {name}={value!r} both given") as err:
        UNet(2, 1, 2, channels=[8, 16, 32, 64], **given)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("cls", [UNet, FCN])
def test_preset_and_a_different_depth_are_refused(cls):
    with pytest.raises(PipelineError, match=r"preset 'standard' \(depth 3\) and depth=2 disagree") as err:
        cls(2, 1, 2, preset="standard", depth=2)
    assert "\n" not in str(err.value)
    assert cls(2, 1, 2, preset="standard", depth=3, base_width=4).channels == [4, 8, 16, 32]  # agreeing: fine


def test_depth_below_one_and_short_channels_are_refused():
    with pytest.raises(PipelineError, match="depth must be at least 1"):
        UNet(2, 1, 2, depth=0)
    with pytest.raises(PipelineError, match="channels needs at least 2 widths"):
        UNet(2, 1, 2, channels=[8])


@pytest.mark.parametrize("cls", [UNet, FCN, ConvBlock, UpBlock])
def test_default_norm_and_act_are_the_shared_ones(cls):
    params = inspect.signature(cls.__init__).parameters
    assert params["norm"].default is DEFAULT_NORM
    assert params["act"].default is DEFAULT_ACT


@pytest.mark.parametrize("cls", [UNet, FCN])
def test_docstring_example_runs(cls):
    run_docstring_examples(cls)


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
        assert all(isinstance(d.up, UpSample) for d in net.decoders)
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


def _replace_finer_features(module: torch.nn.Module, args: tuple, feats: list[torch.Tensor]) -> list[torch.Tensor]:
    """Forward hook on an encoder: every level but the coarsest becomes noise of the same shape."""
    return [torch.randn_like(f) for f in feats[:-1]] + [feats[-1]]


@pytest.mark.parametrize("cls,has_skips", [(FCN, False), (UNet, True)])
def test_fcn_output_depends_on_the_coarsest_features_only(cls, has_skips):
    """Replacing the finer encoder levels by noise leaves an FCN's output unchanged and changes a U-Net's."""
    torch.manual_seed(0)
    net = cls(2, 1, 3, depth=3, base_width=4).eval()
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        clean = net(x)
        handle = net.encoder.register_forward_hook(_replace_finer_features)
        try:
            scrambled = net(x)
        finally:
            handle.remove()
    assert torch.equal(clean, scrambled) is not has_skips


def _second_differences_inside_cells(y: torch.Tensor, factor: int) -> torch.Tensor:
    """|second differences| along the last axis at positions whose neighbours lie between the same two centres
    of a grid ``factor`` times coarser (where linear interpolation with align_corners=False is exactly linear)."""
    d2 = (y[..., 2:] - 2 * y[..., 1:-1] + y[..., :-2]).abs()
    centre = torch.arange(1, y.shape[-1] - 1) % factor
    inside = (centre != factor // 2 - 1) & (centre != factor // 2)
    return d2[..., inside]


@pytest.mark.parametrize("cls,has_skips", [(FCN, False), (UNet, True)])
def test_fcn_output_is_a_linear_upsampling_of_a_coarse_map(cls, has_skips):
    """Without skips no full-resolution detail reaches the output: it is piecewise linear between the centres of
    the coarsest (1/8) grid along each axis. A U-Net's output is not."""
    torch.manual_seed(0)
    net = cls(2, 1, 3, depth=3, base_width=4).eval()
    with torch.no_grad():
        y = net(torch.randn(1, 1, 32, 32))
    scale = float(y.abs().max())
    worst = max(float(_second_differences_inside_cells(t, 8).max()) for t in (y, y.transpose(-1, -2)))
    if has_skips:
        assert worst > 1e-2 * scale
    else:
        assert worst <= 1e-5 * scale
