"""Cross-validation folds train into their own folders, so that the folds can be ensembled at inference."""
import pytest
from monai.bundle import ConfigParser

from tests.bundles_util import REPO


@pytest.mark.parametrize("bundle_name", ["unet", "attn_unet"])
@pytest.mark.parametrize(("overrides", "suffix"), [({}, ""), ({"num_folds": 5, "fold": 2}, "/fold_2")])
def test_checkpoint_and_log_folders_follow_the_fold(bundle_name, overrides, suffix):
    parser = ConfigParser()
    parser.read_config(str(REPO / f"bundles/{bundle_name}/train.json"))
    parser.update({"bundle_root": "root", **overrides})
    assert parser.get_parsed_content("ckpt_dir") == "root/models" + suffix
    assert parser.get_parsed_content("output_dir") == "root/runs" + suffix
