import importlib

import pytest
import torch
from monai.bundle import ConfigParser
from monai.transforms import Compose

from pipeline.errors import PipelineError
from pipeline.transforms import CTIntensityd
from tests.bundles_util import REPO


def test_ct_window_scales_hounsfield_units():
    d = CTIntensityd("image", mode="window", window=(-100, 300))(
        {"image": torch.tensor([[-1000.0, -100, 100, 300, 2000]])})
    assert torch.allclose(d["image"], torch.tensor([[0.0, 0.0, 0.5, 1.0, 1.0]]))
    with pytest.raises(PipelineError, match="hu_window"):
        CTIntensityd("image", window=(300, -100))
    with pytest.raises(PipelineError, match="intensity_mode"):
        CTIntensityd("image", mode="minmax")


def test_nnunet_ct_normalisation_clips_to_the_planned_percentiles_and_z_scores():
    stats = {"p00_5": -50.0, "p99_5": 150.0, "mean": 40.0, "std": 10.0}  # a plan's intensity.zscore
    out = CTIntensityd("image", mode="zscore", stats=stats)(
        {"image": torch.tensor([[-1000.0, stats["mean"]]])})["image"]
    assert out[0, 1].abs() < 1e-5  # the mean maps to 0
    assert out[0, 0] == pytest.approx((stats["p00_5"] - stats["mean"]) / stats["std"], rel=1e-4)  # clipped first
    with pytest.raises(PipelineError, match="zscore"):
        CTIntensityd("image", mode="zscore")


def _fragment_postprocess(name, **overrides):
    importlib.import_module("pipeline.engines")  # the fragment's expressions call it

    parser = ConfigParser(globals={"monai": "monai", "torch": "torch", "numpy": "numpy", "pipeline": "pipeline"})
    parser.read_config(str(REPO / "configs/data" / f"{name}.json"))
    parser.update({"plan": {}, **overrides})  # a fresh plan: no post-processing chosen yet
    return Compose(parser.get_parsed_content("postprocess"))


def test_ct_postprocess_keeps_the_largest_pancreas_and_tumour_component():
    pred = torch.zeros(1, 24, 24, 12, dtype=torch.long)
    pred[0, 2:10, 2:10, 2:8] = 1  # the organ ...
    pred[0, 6:9, 6:9, 3:6] = 2  # ... with its tumour inside: kept together
    pred[0, 18:21, 18:21, 8:10] = 1  # a stray island of "pancreas"
    pred[0, 14:16, 2:4, 2:4] = 2  # a stray island of "tumour"
    unchanged = _fragment_postprocess("pancreas_ct", min_lesion_ml=0)({"pred": pred.clone()})["pred"]  # both off
    assert torch.equal(torch.as_tensor(unchanged), pred)
    # by default predicted tumour components under 1 ml become pancreas (1 mm voxels here: both tumours are tiny)
    default = torch.as_tensor(_fragment_postprocess("pancreas_ct")({"pred": pred.clone()})["pred"])
    assert not (default == 2).any() and default[0, 15, 3, 3] == 1 and torch.equal(default > 0, pred > 0)
    out = _fragment_postprocess("pancreas_ct", keep_largest_component=True, min_lesion_ml=0)(
        {"pred": pred.clone()})["pred"]
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
