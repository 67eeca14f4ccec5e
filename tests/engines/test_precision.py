import logging

import pytest
import torch
from monai.data import MetaTensor
from monai.inferers import SimpleInferer, SlidingWindowInferer

import pipeline.engines.precision as prec
from pipeline.engines import AutocastInferer, resolve_precision
from pipeline.planning.machine import resolve_device
from pipeline.errors import PipelineError
from pipeline.networks import UNet


@pytest.mark.parametrize("amp", ["float32", "fp32", "off", False, "none"])
def test_forced_float32(amp):
    p = resolve_precision(amp, "cpu")
    assert p.mode == "float32" and p.dtype == torch.float32 and not p.grad_scaling


@pytest.mark.parametrize("native", [True, False])
def test_forced_bfloat16_runs_with_or_without_native_support(monkeypatch, native):
    monkeypatch.setattr(prec, "cpu_has_native_bf16", lambda: native)
    p = resolve_precision("bf16", "cpu")
    assert p.mode == "bfloat16" and p.dtype == torch.bfloat16


def test_auto_follows_the_cpu_capability(monkeypatch, caplog):
    monkeypatch.setattr(prec, "cpu_has_native_bf16", lambda: True)
    with caplog.at_level(logging.INFO, logger="pipeline.engines.precision"):
        assert resolve_precision("auto", "cpu").mode == "bfloat16"
    assert "bfloat16 on cpu" in caplog.text  # the log says which mode was chosen
    monkeypatch.setattr(prec, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision("auto", "cpu").mode == "float32"
    assert resolve_precision(True, "cpu").mode == "float32"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
def test_cuda_without_gpu_is_a_clear_error():
    with pytest.raises(PipelineError, match="no CUDA GPU"):
        resolve_precision("auto", "cuda")
    with pytest.raises(PipelineError, match="no CUDA GPU"):
        resolve_device("cuda:0")
    with pytest.raises(PipelineError, match="float16' needs a CUDA device"):
        resolve_precision("float16", "cpu")


def test_unknown_amp_mode_and_device():
    with pytest.raises(PipelineError, match="not a precision mode"):
        resolve_precision("int8", "cpu")
    with pytest.raises(PipelineError, match="not a valid torch device"):
        resolve_device("tpu7")
    assert resolve_device("auto").type in ("cpu", "cuda")


@pytest.mark.parametrize("mode", ["float32", "bfloat16"])
def test_autocast_inferer_outputs_float32_close_to_float32(mode):
    torch.manual_seed(0)
    net = UNet(3, 1, 3, depth=2, base_width=4).eval()
    x = torch.randn(1, 1, 24, 24, 16)
    for inner in (SimpleInferer(), SlidingWindowInferer(roi_size=(16, 16, 16), overlap=0.25)):
        with torch.no_grad():
            ref = inner(x, net)  # the inner inferer alone, float32
            out = AutocastInferer(inner, resolve_precision(mode, "cpu"))(MetaTensor(x), net)
        assert out.dtype == torch.float32 and out.shape == ref.shape
        assert isinstance(out, MetaTensor)
        tol = 1e-5 if mode == "float32" else 0.05  # bfloat16 keeps ~3 significant digits
        assert (out.as_tensor() - ref).abs().max() < tol * max(1.0, ref.abs().max().item())


def test_bfloat16_autocast_really_computes_in_bfloat16():
    seen = []
    net = torch.nn.Conv2d(1, 2, 3)
    net.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    AutocastInferer(SimpleInferer(), resolve_precision("bfloat16", "cpu"))(torch.randn(1, 1, 8, 8), net)
    AutocastInferer(SimpleInferer(), resolve_precision("float32", "cpu"))(torch.randn(1, 1, 8, 8), net)
    assert seen == [torch.bfloat16, torch.float32]
