import importlib
import json

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.transforms import Compose

from pipeline.errors import PipelineError
from pipeline.transforms import CTIntensityd, foreground_statistics
from tests.bundles_util import REPO


def test_ct_window_scales_hounsfield_units():
    d = CTIntensityd("image", mode="window", window=(-100, 300))(
        {"image": torch.tensor([[-1000.0, -100, 100, 300, 2000]])})
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
    # reused, not recomputed: a stored value that no recompute could give comes back as it is
    stored["statistics"]["mean"] = 12345.0
    cache.write_text(json.dumps(stored))
    assert foreground_statistics(cases, cache)["mean"] == 12345.0
    assert foreground_statistics(None, cache)["mean"] == 12345.0  # inference: no cases, the stored values
    assert foreground_statistics(cases[:1], cache)["mean"] == pytest.approx(40, abs=5)  # other cases: recomputed
    out = CTIntensityd("image", mode="zscore", stats=stats)(
        {"image": torch.tensor([[-1000.0, stats["mean"]]])})["image"]
    assert out[0, 1].abs() < 1e-5  # the mean maps to 0
    assert out[0, 0] == pytest.approx((stats["p00_5"] - stats["mean"]) / stats["std"], rel=1e-4)  # clipped first
    with pytest.raises(PipelineError, match="zscore"):
        CTIntensityd("image", mode="zscore")
    with pytest.raises(PipelineError, match="not found"):
        foreground_statistics(None, tmp_path / "elsewhere.json")


def _fragment_postprocess(name, **overrides):
    importlib.import_module("pipeline.engines")  # the bundles import it for their fragments (configs/engine/*.json)

    parser = ConfigParser(globals={"monai": "monai", "torch": "torch", "numpy": "numpy", "pipeline": "pipeline"})
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
