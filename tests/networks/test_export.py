"""Export: the networks script with torch.jit.script and give the eager outputs (attention maps included); a
checkpoint folder exported by MONAI's ``ckpt_export`` / ``onnx_export`` through a bundle's inference.json equals the
eager network with the checkpoint's weights, 2D (unet bundle) and 3D (attn_unet bundle), deep supervision on; and
``verify_net_in_out`` passes for both bundles' metadata."""
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ckpt_export, onnx_export, verify_net_in_out

from pipeline.networks import FCN, AttentionUNet, UNet
from tests.checkpoints import write_checkpoint

REPO = Path(__file__).resolve().parents[2]

# odd sizes on purpose: the networks pad to a multiple of their strides and crop back, also when scripted. The
# bundles' own networks (2D U-Net and 3D Attention U-Net, deep supervision) are covered through ckpt_export below.
NETS = {
    "unet_3d_interp_fused": (lambda: UNet(3, 1, 3, depth=2, base_width=4, upsample="interp", strides=[(2, 2, 1)],
                                          fuse_side_outputs=True, deep_supervision=True), (1, 1, 20, 18, 7)),
    "fcn_2d": (lambda: FCN(2, 1, 3, preset="precision", base_width=4), (1, 1, 30, 33)),
    "attn_2d_every_level": (lambda: AttentionUNet(2, 1, 3, depth=2, base_width=4, attention_levels=[0, 1]),
                            (2, 1, 26, 31)),
}


def _script_round_trip(net: torch.nn.Module) -> torch.jit.ScriptModule:
    """torch.jit.script, saved and loaded again (what a user of the exported file gets)."""
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(net), buffer)
    buffer.seek(0)
    return torch.jit.load(buffer)


@pytest.mark.parametrize("name", sorted(NETS))
def test_scripted_network_gives_the_eager_outputs(name):
    make, shape = NETS[name]
    torch.manual_seed(0)
    net = make().eval()
    scripted = _script_round_trip(net)
    x = torch.randn(shape)
    with torch.no_grad():
        expected, got = net(x), scripted(x)
    assert isinstance(got, torch.Tensor) and got.shape == (shape[0], 3, *shape[2:])
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    if isinstance(net, AttentionUNet):  # the maps are readable from the scripted module too, same keys and values
        assert sorted(scripted.attention_maps) == sorted(net.attention_maps) == net.attention_levels
        for level, alpha in net.attention_maps.items():
            torch.testing.assert_close(scripted.attention_maps[level], alpha, rtol=0, atol=1e-6)
    # training mode: the deep-supervision list (or the single output) as in eager mode
    net.train()
    scripted.train()
    expected, got = net(x), scripted(x)
    expected = expected if isinstance(expected, list) else [expected]
    got = got if isinstance(got, list) else [got]
    assert [t.shape for t in got] == [t.shape for t in expected]
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


# the networks the bundles train by default (narrower, for speed): unet = 2D U-Net standard + deep supervision,
# attn_unet = 3D Attention U-Net with the planned anisotropic strides + deep supervision
BUNDLE_NETS = {
    "unet": lambda: UNet(2, 1, 3, preset="standard", base_width=4, deep_supervision=True, num_side_outputs=2),
    "attn_unet": lambda: AttentionUNet(3, 1, 3, preset="standard", base_width=4, deep_supervision=True,
                                       strides=[[2, 2, 1], [2, 2, 2], [2, 2, 2]], num_side_outputs=2),
}
# sizes that are not multiples of the networks' strides (small, for speed)
ODD_SIZE = {"unet": (45, 38), "attn_unet": (27, 30, 13)}
def _checkpoint_folder(bundle_name: str, root: Path) -> tuple[Path, torch.nn.Module]:
    """A checkpoint folder as training leaves it: model.pt (CheckpointSaver writes the bare state dict of the
    network), model_config.json and plan.json. Returns the folder and the eager network (eval mode) holding those weights."""
    torch.manual_seed(1)
    net = BUNDLE_NETS[bundle_name]()
    folder = root / bundle_name / "models"
    folder.mkdir(parents=True)
    spatial_dims = 2 if bundle_name == "unet" else 3
    write_checkpoint(folder, net, spatial_dims, patch_size=[64] * spatial_dims, target_spacing=[2.0] * spatial_dims,
                     strides=getattr(net, "init_args", {}).get("strides"))
    return folder, net.eval()


def _bundle_files(bundle_name: str) -> dict[str, str]:
    return {"meta_file": str(REPO / "bundles" / bundle_name / "metadata.json"),
            "config_file": str(REPO / "bundles" / bundle_name / "inference.json")}


@pytest.mark.parametrize("bundle_name", ["unet", "attn_unet"])
def test_ckpt_export_of_a_checkpoint_folder_gives_the_eager_outputs(bundle_name, tmp_path):
    folder, net = _checkpoint_folder(bundle_name, tmp_path)
    ts_file = folder / "model.ts"
    # what README documents: network_def of the bundle's inference.json, built from the folder's model_config.json
    ckpt_export("network_def", filepath=str(ts_file), ckpt_file=str(folder / "model.pt"), ckpt_dir=str(folder),
                **_bundle_files(bundle_name))
    extra = {"metadata.json": "", "inference.json": ""}
    exported = torch.jit.load(str(ts_file), _extra_files=extra)
    assert not exported.training
    assert json.loads(extra["metadata.json"])["network_data_format"]["outputs"]["pred"]["num_channels"] == 3
    assert json.loads(extra["inference.json"])["network_def"]  # the config travels with the file
    x = torch.rand(1, 1, *ODD_SIZE[bundle_name], generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected, got = net(x), exported(x)
    assert isinstance(got, torch.Tensor)  # eval mode: the full-size output only, no side outputs
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    if isinstance(net, AttentionUNet):
        assert sorted(exported.attention_maps) == net.attention_levels == [1, 2]
        for level, alpha in net.attention_maps.items():
            torch.testing.assert_close(exported.attention_maps[level], alpha, rtol=0, atol=1e-6)
    # the checkpoint's weights were loaded: a freshly initialised network gives something else
    torch.manual_seed(3)
    with torch.no_grad():
        assert not torch.allclose(BUNDLE_NETS[bundle_name]().eval()(x), got, atol=1e-3)


@pytest.mark.parametrize("bundle_name", ["unet", "attn_unet"])
def test_verify_net_in_out_passes_for_both_bundles(bundle_name, tmp_path):
    folder, _ = _checkpoint_folder(bundle_name, tmp_path)
    verify_net_in_out("network_def", ckpt_dir=str(folder), device="cpu", **_bundle_files(bundle_name))
    # the check is real: metadata promising another number of output channels fails it (small input, for speed)
    wrong = {"_meta_#network_data_format#outputs#pred#num_channels": 2,
             "_meta_#network_data_format#inputs#image#spatial_shape": list(ODD_SIZE[bundle_name])}
    with pytest.raises(ValueError, match="output channel number"):
        verify_net_in_out("network_def", ckpt_dir=str(folder), device="cpu", **_bundle_files(bundle_name), **wrong)


def test_onnx_export_gives_the_eager_outputs(tmp_path):
    """ONNX has fixed input sizes here: export at the patch size that the sliding window feeds (3D bundle)."""
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")  # torch.onnx.export's default (dynamo) exporter needs it
    bundle_name, spatial = "attn_unet", [32, 32, 16]
    folder, net = _checkpoint_folder(bundle_name, tmp_path)
    onnx_file = folder / "model.onnx"
    onnx_export("network_def", filepath=str(onnx_file), ckpt_file=str(folder / "model.pt"), ckpt_dir=str(folder),
                input_shape=[1, 1, *spatial],
                converter_kwargs={"input_names": ["image"], "output_names": ["pred"], "opset_version": 18},
                **_bundle_files(bundle_name))
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    x = torch.rand(1, 1, *spatial, generator=torch.Generator().manual_seed(4))
    (got,) = session.run(["pred"], {"image": x.numpy()})
    with torch.no_grad():
        expected = net(x).numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
