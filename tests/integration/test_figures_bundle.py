"""``python -m pipeline figures --ckpt``: the figures of a checkpoint run its bundle's inference as a child process."""
import pytest
import torch

from pipeline.apps.cli import main

pytestmark = pytest.mark.slow


def test_figures_from_a_checkpoint_run_its_bundle(tmp_path, capsys):
    """An Attention U-Net checkpoint on 2D images: the 2D inference.json (unet bundle, shapes fragment) rebuilds it
    from model_config.json and plan.json and writes predictions and attention maps; one figure per chosen case."""
    from pipeline.data.shapes2d import make_shapes
    from tests.checkpoints import write_checkpoint
    from pipeline.networks import AttentionUNet

    make_shapes(tmp_path / "data", n=10, size=48, seed=0)
    torch.manual_seed(0)
    net = AttentionUNet(2, 1, 3, depth=2, base_width=4)
    ckpt = write_checkpoint(tmp_path / "models", net, spatial_dims=2, patch_size=[48, 48])
    out = tmp_path / "figs"
    rc = main(["figures", "--ckpt", str(ckpt), "--dataset", str(tmp_path / "data"), "--split", "test",
               "--max-cases", "1", "--out", str(out), "--device", "cpu"])  # the bundle runs as a child process
    assert rc == 0
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 1 and (out / "predictions" / pngs[0].name.replace(".png", "_attention.nii.gz")).is_file()
    assert "wrote 1 figure(s)" in capsys.readouterr().out
