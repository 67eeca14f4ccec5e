import json

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.transforms import Compose

from pipeline.errors import PipelineError
from pipeline.losses import BoundaryWeightedDiceCELoss
from pipeline.transforms import CTIntensityd, boundary_weight_map, foreground_statistics
from tests.bundles_util import REPO


def _square_label(size=32, lo=8, hi=20):
    t = torch.zeros(1, 1, size, size, dtype=torch.long)
    t[..., lo:hi, lo:hi] = 1
    return t


def test_boundary_weights_peak_at_borders_and_fade_to_one():
    w = boundary_weight_map(_square_label(), num_classes=2, w0=5.0, sigma=2.0)[0, 0]
    assert w.shape == (32, 32)
    assert w[14, 8] == pytest.approx(6.0, abs=0.05)  # on the border
    assert w[0, 0] == pytest.approx(1.0, abs=1e-3)  # far outside
    assert w[14, 14] < 3.0  # the square's centre is 6 px from the border
    assert w[14, 8] > w[14, 11] > w[14, 14]


def test_boundary_weighted_loss_weights_border_errors_more():
    target = _square_label()
    loss = BoundaryWeightedDiceCELoss(w0=10.0, lambda_dice=0.0)
    good = torch.where(torch.nn.functional.one_hot(target[:, 0], 2).movedim(-1, 1).bool(), 4.0, -4.0)
    border_err, far_err = good.clone(), good.clone()
    border_err[0, :, 14, 8] = border_err[0, :, 14, 8].flip(0)  # one wrong pixel on the border
    far_err[0, :, 1, 1] = far_err[0, :, 1, 1].flip(0)  # one wrong pixel far away
    assert loss(border_err, target) > 3 * loss(far_err, target)
    x = torch.randn(1, 2, 32, 32, requires_grad=True)
    BoundaryWeightedDiceCELoss()(x, target).backward()
    assert torch.isfinite(x.grad).all()


def test_ct_window_scales_hounsfield_units():
    d = CTIntensityd("image", mode="window", window=(-100, 300))({"image": torch.tensor([[-1000.0, -100, 100, 300, 2000]])})
    assert torch.allclose(d["image"], torch.tensor([[0.0, 0.0, 0.5, 1.0, 1.0]]))
    with pytest.raises(PipelineError, match="hu_window"):
        CTIntensityd("image", window=(300, -100))
    with pytest.raises(PipelineError, match="intensity_mode"):
        CTIntensityd("image", mode="minmax")


def test_nnunet_ct_normalisation_statistics_stored_and_reused(tmp_path):
    rng = np.random.default_rng(0)
    cases = []
    for i in range(2):
        img = rng.normal(40, 10, (16, 16, 8)).astype(np.float32)
        img[:4] = -1000
        lab = np.zeros((16, 16, 8), np.uint8)
        lab[6:10, 6:10] = 1
        ip, lp = tmp_path / f"img{i}.nii.gz", tmp_path / f"lab{i}.nii.gz"
        nib.save(nib.Nifti1Image(img, np.eye(4)), ip)
        nib.save(nib.Nifti1Image(lab, np.eye(4)), lp)
        cases.append({"image": str(ip), "label": str(lp)})
    cache = tmp_path / "ckpt" / "ct_stats.json"
    stats = foreground_statistics(cases, cache)
    assert 35 < stats["mean"] < 45 and 7 < stats["std"] < 13 and stats["p00_5"] < stats["p99_5"]
    stored = json.loads(cache.read_text())
    assert stored["statistics"] == stats and len(stored["cases"]) == 2
    assert foreground_statistics(cases, cache) == stats  # reused, not recomputed
    out = CTIntensityd("image", mode="zscore", stats=stats)({"image": torch.tensor([[-1000.0, stats["mean"]]])})["image"]
    assert out[0, 1].abs() < 1e-5  # the mean maps to 0
    assert out[0, 0] == pytest.approx((stats["p00_5"] - stats["mean"]) / stats["std"], rel=1e-4)  # clipped first
    with pytest.raises(PipelineError, match="zscore"):
        CTIntensityd("image", mode="zscore")


def _fragment_postprocess(name, **overrides):
    parser = ConfigParser()
    parser.read_config(str(REPO / "configs/data" / f"{name}.json"))
    parser.update(overrides)
    return Compose(parser.get_parsed_content("data#postprocess"))


def test_ct_postprocess_keeps_the_largest_pancreas_and_tumour_component():
    pred = torch.zeros(1, 24, 24, 12, dtype=torch.long)
    pred[0, 2:10, 2:10, 2:8] = 1  # the organ ...
    pred[0, 6:9, 6:9, 3:6] = 2  # ... with its tumour inside: kept together
    pred[0, 18:21, 18:21, 8:10] = 1  # a stray island of "pancreas"
    pred[0, 14:16, 2:4, 2:4] = 2  # a stray island of "tumour"
    unchanged = _fragment_postprocess("pancreas_ct")({"pred": pred.clone()})["pred"]  # off by default
    assert torch.equal(torch.as_tensor(unchanged), pred)
    out = _fragment_postprocess("pancreas_ct", keep_largest_component=True)({"pred": pred.clone()})["pred"]
    expected = pred.clone()
    expected[0, 18:21, 18:21, 8:10] = 0
    expected[0, 14:16, 2:4, 2:4] = 0
    assert torch.equal(torch.as_tensor(out), expected)


def test_shapes_postprocess_keeps_every_shape():
    pred = torch.zeros(1, 16, 16, dtype=torch.long)
    pred[0, 1:4, 1:4] = 1
    pred[0, 9:12, 9:12] = 1
    pred[0, 5:7, 12:15] = 2
    out = _fragment_postprocess("shapes2d")({"pred": pred.clone()})["pred"]
    assert torch.equal(torch.as_tensor(out), pred)
