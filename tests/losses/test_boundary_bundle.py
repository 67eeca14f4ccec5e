"""configs/loss/boundary_weighted.json layered on both bundles, resolved in process: where the weight map lands
(training labels only) and the loss it reaches (the training runs are in ``tests/integration/``)."""
import pytest
import torch
from monai.bundle import ConfigParser
from monai.losses import DeepSupervisionLoss

from pipeline.data.phantom import make_pancreas_dataset
from pipeline.data.shapes2d import make_shapes
from pipeline.losses import BoundaryWeightedDiceCELoss
from tests.bundles_util import REPO

FRAGMENT = "configs/loss/boundary_weighted.json"
UNET_2D = ["bundles/unet/train.json", FRAGMENT]
ATTN_3D = ["bundles/attn_unet/train.json", FRAGMENT]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("bw_shapes")
    make_shapes(root / "data", n=16, seed=3, size=32)
    return root / "data"


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    root = tmp_path_factory.mktemp("bw_ct")
    make_pancreas_dataset(root / "data", n=2, n_test=1, seed=5, scale=4)
    return root / "data"


def _first_sample(dataset) -> dict:
    item = dataset[0]
    return item[0] if isinstance(item, list) else item


@pytest.mark.parametrize("files, data, overrides", [
    (UNET_2D, "shapes", {}),
    (ATTN_3D, "phantoms", {"patch_size": [32, 32, 16], "target_spacing": [4, 4, 6]}),
])
def test_weights_reach_training_labels_and_the_loss_but_not_validation(files, data, overrides, request, tmp_path,
                                                                       monkeypatch):
    monkeypatch.chdir(REPO)
    parser = ConfigParser()
    parser.read_config([str(REPO / f) for f in files])
    parser.update({"dataset_dir": str(request.getfixturevalue(data)), "bundle_root": str(tmp_path),
                   "train#dataset#cache_rate": 0.0, "validate#dataset#cache_rate": 0.0, **overrides})
    parser.get_parsed_content("prepare").run()  # the initialize step's planning
    loss = parser.get_parsed_content("loss")
    inner = loss.loss if isinstance(loss, DeepSupervisionLoss) else loss
    # both deep-supervised
    assert isinstance(inner, BoundaryWeightedDiceCELoss) and isinstance(loss, DeepSupervisionLoss)
    train_label = _first_sample(parser.get_parsed_content("train#dataset"))["label"]
    assert train_label.shape[0] == 2 and train_label.dtype == torch.float32 and torch.all(train_label[1] > 0)
    val_label = _first_sample(parser.get_parsed_content("validate#dataset"))["label"]
    assert val_label.shape[0] == 1
