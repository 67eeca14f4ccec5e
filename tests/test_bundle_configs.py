"""The bundles as config files, in this process: complete configs whose every id is reachable, data fragments that
replace exactly the data keys, evaluation/inference overlaps, and valid metadata."""
import json

import pytest
from monai.bundle import ConfigParser, verify_metadata

from tests.bundles_util import REPO

BUNDLES = {"unet": "configs/data/shapes2d.json", "attn_unet": "configs/data/pancreas_ct.json"}
# what differs between the two bundles besides the data: the recipe
RECIPE_KEYS = {"_comment", "bundle_root", "epochs", "val_interval", "learning_rate", "base_width", "network_def",
               "segmentation_loss"}


def _json(path: str) -> dict:
    return json.loads((REPO / path).read_text())


def _parser(files: list[str], **overrides) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(REPO / f) for f in files])
    parser.update(overrides)
    return parser


@pytest.mark.parametrize("bundle", BUNDLES)
def test_no_section_arrives_by_macro_so_every_id_is_reachable(bundle):
    for name in ("train", "evaluate", "inference", "multi_gpu_train"):
        text = (REPO / f"bundles/{bundle}/{name}.json").read_text()
        assert '"%' not in text, f"{bundle}/{name}.json copies a section from another file"
        assert "configs/" not in text.replace("configs/data/", "").replace("configs/loss/", ""), name
    config = _json(f"bundles/{bundle}/train.json")
    for section in ("train", "validate", "optimizer", "lr_scheduler", "network_def", "prepare"):
        assert isinstance(config[section], dict), section


@pytest.mark.parametrize("bundle", BUNDLES)
def test_nested_ids_and_path_id_files_override(bundle, tmp_path):
    fragment = tmp_path / "frag.json"
    fragment.write_text(json.dumps({"train#dataset#cache_rate": 0.5, "validate#case_metrics#hd95": True}))
    parser = _parser([f"bundles/{bundle}/train.json", str(fragment)],
                     **{"train#trainer#max_epochs": 1, "validate#dataset#cache_rate": 0, "network_def#base_width": 16,
                        "optimizer#lr": 0.001})
    assert parser["train"]["trainer"]["max_epochs"] == 1 and parser["epochs"] != 1
    assert parser["validate"]["dataset"]["cache_rate"] == 0 and parser["train"]["dataset"]["cache_rate"] == 0.5
    assert parser["network_def"]["base_width"] == 16 and parser["optimizer"]["lr"] == 0.001
    assert parser["validate"]["case_metrics"]["hd95"] is True


@pytest.mark.parametrize("bundle, fragment", BUNDLES.items())
def test_the_default_data_is_the_data_fragment_and_the_wiring_is_shared(bundle, fragment):
    """Each bundle is complete (it stands alone), so the data keys and the engine wiring are written in both:
    a fragment's keys equal the bundle's where it is the default data, and the two bundles differ only by recipe
    and data."""
    config, data = _json(f"bundles/{bundle}/train.json"), _json(fragment)
    data_keys = set(data) - {"_comment", "infer_preprocessing"}
    assert {k: config[k] for k in data_keys} == {k: data[k] for k in data_keys}
    inference = _json(f"bundles/{bundle}/inference.json")
    assert inference["infer_preprocessing"] == data["infer_preprocessing"]
    other_bundle, other_fragment = next((b, f) for b, f in BUNDLES.items() if b != bundle)
    other = _json(f"bundles/{other_bundle}/train.json")
    engine = set(config) - data_keys - set(_json(other_fragment)) - RECIPE_KEYS
    assert engine and {k: config[k] for k in engine} == {k: other.get(k) for k in engine}
    assert _json(f"bundles/{bundle}/evaluate.json").keys() == _json(f"bundles/{other_bundle}/evaluate.json").keys()


@pytest.mark.parametrize("bundle, fragment", BUNDLES.items())
def test_a_data_fragment_turns_the_other_bundle_to_its_data(bundle, fragment):
    other = next(b for b in BUNDLES if b != bundle)
    parser = _parser([f"bundles/{other}/train.json", fragment])
    ours = _json(f"bundles/{bundle}/train.json")
    for key in ("spatial_dims", "class_names", "dataset_dir", "preprocessing", "augmentation", "val_inferer"):
        assert parser[key] == ours[key], key
    assert parser["network_def"]["_target_"] == _json(f"bundles/{other}/train.json")["network_def"]["_target_"]


@pytest.mark.parametrize("bundle", BUNDLES)
def test_metadata_is_valid(bundle):
    verify_metadata(meta_file=str(REPO / f"bundles/{bundle}/metadata.json"),
                    filepath=str(REPO / "tests/assets/meta_schema_20220324.json"))


def test_ct_validation_window_overlap_is_cheaper_than_evaluation_and_inference():
    """Training validates with a quarter-patch overlap (12 validations inside the time budget); evaluate.json and
    inference.json score with half a patch, nnU-Net's overlap (docs/decisions.md), and each
    stays overridable by its key."""
    def overlap(files, key, **overrides):
        parser = ConfigParser()
        parser.read_config([str(REPO / f) for f in files])
        parser.update({"patch_size": [32, 32, 16], **overrides})
        inferer = parser.get_parsed_content(key)
        while not hasattr(inferer, "overlap"):  # AutocastInferer -> the sliding window it wraps
            inferer = inferer.inferer
        return inferer.overlap

    evaluate = ["bundles/attn_unet/train.json", "bundles/attn_unet/evaluate.json"]
    assert overlap(["bundles/attn_unet/train.json"], "validate#inferer") == 0.25
    assert overlap(evaluate, "validate#inferer") == 0.5
    assert overlap(["bundles/attn_unet/inference.json"], "infer#inferer") == 0.5
    assert overlap(["bundles/attn_unet/train.json"], "validate#inferer", **{"val_inferer#overlap": 0.5}) == 0.5
    assert overlap(evaluate, "validate#inferer", sw_overlap=0.75) == 0.75
