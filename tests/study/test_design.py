"""The study's design: every comparison at an equal budget, >= 3 seeds, and recipes that differ only by the network."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from monai.bundle import ConfigParser
from pipeline.apps.study.design import (
    ABLATIONS,
    FULL,
    MODELS_2D,
    MODELS_3D,
    QUICK,
    REPO,
    augmentation_prob_key,
    plan_runs,
)

BUDGET_KEYS = ("epochs", "val_interval", "batch_size", "learning_rate")
# keys the 2D data fragment never reads (the CT recipe's) or that only inference reads
UNREAD_IN_2D_TRAINING = {"ct_stats", "hu_window", "intensity_mode", "keep_largest_component", "min_lesion_ml",
                         "sw_overlap", "infer_preprocessing", "cascade_margin_mm", "fine"}  # the last two: CT cascade
INFERENCE_ONLY = {"infer_preprocessing"}


def test_full_study_trains_every_model_on_every_variant_with_three_seeds_at_one_budget():
    runs = plan_runs(FULL)
    assert len({r.run_id for r in runs}) == len(runs)
    recipe_2d = Counter((r.variant, r.model) for r in runs if r.part == "2d")
    assert set(recipe_2d) == {(v, m) for v in ("shapes", "context", "precision") for m in MODELS_2D}
    assert set(recipe_2d.values()) == {3}
    for part in ("2d", "3d"):
        budgets = {json.dumps({k: r.overrides.get(k) for k in BUDGET_KEYS}) for r in runs if r.part == part}
        assert len(budgets) == 1, budgets  # equal epochs, validation, batch and learning rate within a part
    assert Counter(r.model for r in runs if r.part == "3d") == {m: 3 for m in MODELS_3D}
    for arm, a in ABLATIONS.items():
        arms = [r for r in runs if r.arm == arm]
        assert len(arms) == 3
        for r in arms:  # the recipe run it is compared with is in the study, at the same budget
            base = next(b for b in runs if (b.part, b.variant, b.model, b.seed) == ("2d", a.variant, a.model, r.seed))
            changed = {k for k in r.overrides if r.overrides[k] != base.overrides.get(k)}
            assert changed == ({augmentation_prob_key("Rand2DElasticd")} if arm == "no_elastic" else set())
            assert r.train_files[:len(base.train_files)] == base.train_files
    assert next(r for r in runs if r.arm == "boundary_loss").train_files[-1] == "configs/loss/boundary_weighted.json"


def test_quick_study_still_trains_the_recipe_runs_its_ablations_are_compared_with():
    ids = [r.run_id for r in plan_runs(QUICK)]
    arm = "ablation/precision/unet_standard+boundary_loss/seed0"
    assert ids.index("2d/precision/unet_standard/seed0") < ids.index(arm)
    assert "2d/context/unet_context/seed0" in ids and len(plan_runs(QUICK, ("ablation",))) == 4


def test_the_elastic_switch_points_at_the_fragments_elastic_transform():
    key = augmentation_prob_key("Rand2DElasticd")
    index = int(key.split("#")[1])
    fragment = json.loads((REPO / "configs/data/shapes2d.json").read_text())
    assert fragment["augmentation"][index]["_target_"] == "Rand2DElasticd" and key.endswith("#prob")


def _config(run) -> dict:
    parser = ConfigParser()
    parser.read_config([str(REPO / f) for f in run.train_files])
    parser.update({**run.overrides, "bundle_root": "B", "dataset_dir": "D", "seed": 0})
    return json.loads(json.dumps(parser.config).replace("::", "#")), parser


def _loss_settings(parser) -> dict:
    loss = parser.get_parsed_content("segmentation_loss")
    keys = ("squared_pred", "smooth_nr", "smooth_dr", "include_background", "softmax")
    dice = {k: getattr(loss.dice, k) for k in keys}
    return {"type": type(loss).__name__, **dice, "lambda_dice": loss.lambda_dice, "lambda_ce": loss.lambda_ce}


@pytest.mark.parametrize("plain, other, unread", [
    ("2d/shapes/unet_standard/seed0", "2d/shapes/attention_unet/seed0", UNREAD_IN_2D_TRAINING),
    ("2d/shapes/unet_standard/seed0", "2d/shapes/fcn/seed0", set()),
    ("3d/pancreas/unet/seed0", "3d/pancreas/attention_unet/seed0", INFERENCE_ONLY),
])
def test_compared_recipes_differ_only_by_the_network(plain, other, unread, monkeypatch):
    monkeypatch.chdir(REPO)
    runs = {r.run_id: r for r in plan_runs(FULL)}
    (a, pa), (b, pb) = _config(runs[plain]), _config(runs[other])
    differ = {k for k in set(a) | set(b) if a.get(k) != b.get(k)} - {"_comment", "network_def"} - unread
    if "segmentation_loss" in differ:  # written differently, the same loss
        assert _loss_settings(pa) == _loss_settings(pb)
        differ.discard("segmentation_loss")
    assert differ == set()
    net_a, net_b = a["network_def"], b["network_def"]
    same = {k for k in net_a if k != "_target_" and k in net_b and net_a[k] == net_b[k]}
    assert {"spatial_dims", "in_channels", "out_channels", "preset", "base_width", "strides"} <= same
