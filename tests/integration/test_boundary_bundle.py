"""configs/loss/boundary_weighted.json layered on both bundles, run as processes: a 2D unet run on tiny shapes and a
3D attn_unet run (deep supervision) on tiny phantoms train with finite losses."""
import math
import re

import pytest

from tests.bundles_util import assert_ok, bundle
from tests.losses.test_boundary_bundle import ATTN_3D, UNET_2D, phantoms, shapes  # noqa: F401 - fixtures

pytestmark = pytest.mark.slow

TINY_CT = {"patch_size": "[32,32,16]", "target_spacing": "[4,4,6]"}
TRAIN_LOSS = re.compile(r"Epoch\[1\] Metrics -- .*train_loss: (\S+)")


def _assert_trained(proc, out) -> None:
    assert_ok(proc)
    assert (out / "models" / "model.pt").is_file()
    losses = [float(m.group(1).rstrip(",")) for m in map(TRAIN_LOSS.search, (proc.stdout + proc.stderr).splitlines())
              if m]
    assert losses and all(math.isfinite(v) for v in losses), (proc.stdout + proc.stderr)[-3000:]


def test_unet_2d_trains_with_the_boundary_weighted_loss(shapes, tmp_path):
    out = tmp_path / "unet"
    proc = bundle("run", UNET_2D, dataset_dir=shapes, bundle_root=out, epochs=1, val_interval=1, batch_size=4)
    _assert_trained(proc, out)


def test_attn_unet_3d_trains_with_the_boundary_weighted_loss_under_deep_supervision(phantoms, tmp_path):
    out = tmp_path / "attn"
    proc = bundle("run", ATTN_3D, dataset_dir=phantoms, bundle_root=out, epochs=1, val_interval=1, **TINY_CT)
    _assert_trained(proc, out)
