"""The nnU-Net side-by-side benchmark's own logic, without nnunetv2: plans side by side, goals, curves, files."""
from __future__ import annotations

import datetime as dt
import math
import subprocess

import nibabel as nib
import numpy as np
import pytest

from benchmarks import nnunet_side_by_side as sbs
from benchmarks.nnunet_report import (bundle_plan_summary, compare_goals, goal_lines, nnunet_plan_summary,
                                      parse_train_loss, plan_table)

# the shape of nnU-Net 2.5+'s plans.json, with what it planned for the default phantoms (z, y, x order)
PLANS = {
    "dataset_name": "Dataset501_PancreasPhantom", "plans_name": "nnUNetPlans",
    "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2], "image_reader_writer": "SimpleITKIO",
    "configurations": {
        "3d_fullres": {
            "batch_size": 2, "patch_size": [56, 192, 224], "spacing": [1.5, 0.84, 0.8399],
            "normalization_schemes": ["CTNormalization"],
            "architecture": {"network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                             "arch_kwargs": {"n_stages": 6, "features_per_stage": [32, 64, 128, 256, 320, 320],
                                             "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2],
                                                         [1, 2, 2]]}},
        },
        "3d_lowres": {"inherits_from": "3d_fullres", "spacing": [3.0, 1.7, 1.7], "patch_size": [48, 160, 160],
                      "next_stage": "3d_cascade_fullres"},
    },
}


def test_nnunet_plan_reads_as_x_y_z():
    p = nnunet_plan_summary(PLANS, "3d_fullres", parameters=31_000_000)
    assert p["spacing_xyz_mm"] == [0.84, 0.84, 1.5]
    assert p["patch_xyz"] == [224, 192, 56]
    assert p["strides_xyz"] == [[2, 2, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 1]]  # stage 0's [1,1,1] dropped
    assert p["stages"] == 6 and p["features"][0] == 32 and p["network"] == "PlainConvUNet"
    assert p["batch"] == "2 crops" and p["normalisation"] == "CTNormalization"


def test_nnunet_plan_follows_inheritance_and_transpose():
    low = nnunet_plan_summary(PLANS, "3d_lowres")
    assert low["patch_xyz"] == [160, 160, 48] and low["network"] == "PlainConvUNet"  # the rest from 3d_fullres
    transposed = {**PLANS, "transpose_forward": [2, 0, 1], "transpose_backward": [1, 2, 0]}
    # array order after transpose_forward [2, 0, 1] of (z, y, x) is (x, z, y); back to x, y, z
    cfg = {**PLANS["configurations"]["3d_fullres"], "spacing": [0.7, 2.5, 0.8]}
    p = nnunet_plan_summary({**transposed, "configurations": {"3d_fullres": cfg}})
    assert p["spacing_xyz_mm"] == [0.7, 0.8, 2.5]


def test_old_style_nnunet_plan():
    old = {"configurations": {"3d_fullres": {"batch_size": 2, "patch_size": [40, 96, 128], "spacing": [6, 3.7, 3.6],
                                             "UNet_class_name": "PlainConvUNet", "UNet_base_num_features": 32,
                                             "unet_max_num_features": 320,
                                             "pool_op_kernel_sizes": [[1, 1, 1], [2, 2, 2], [1, 2, 2]]}}}
    p = nnunet_plan_summary(old)
    assert p["strides_xyz"] == [[2, 2, 2], [2, 2, 1]] and p["features"] == [32, 64, 128]


def test_plans_side_by_side_table():
    plan = {"target_spacing": [1.86, 1.86, 3.72], "patch_size": [96, 96, 32], "strides": [[2, 2, 1], [2, 2, 2]],
            "batch_size": 2, "intensity": {"mode": "window"}}
    ours = bundle_plan_summary(plan, {"network": {"_target_": "AttentionUNet", "base_width": 8,
                                                  "preset": "standard"}}, num_samples=2, parameters=358_339)
    assert ours["stages"] == 3 and ours["batch"] == "2 cases x 2 crops"
    table = plan_table(nnunet_plan_summary(PLANS, parameters=31_000_000), ours)
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:4]] for line in table[2:]}
    assert rows["spacing (x, y, z) mm"] == ["0.84 x 0.84 x 1.5", "1.86 x 1.86 x 3.72"]
    assert rows["downsampling strides (x, y, z)"][1] == "2x2x1 2x2x2"
    assert rows["parameters"] == ["31,000,000", "358,339"]
    assert plan_table(None, ours)[2].split("|")[2].strip() == "-"


def _row(system, budget, budget_s, pancreas, tumour, mode="m"):
    return {"system": system, "budget": budget, "budget_s": budget_s, "mode": mode, "dice_pancreas": pancreas,
            "dice_tumour": tumour}


def test_goals_at_equal_wall_clock_and_in_a_tenth_of_the_time():
    rows = [_row("nnunet", "15 min", 900, 0.70, 0.30, "no mirroring"), _row("nnunet", "15 min", 900, 0.72, 0.28),
            _row("bundle", "15 min", 900, 0.80, 0.25), _row("bundle", "1.5 min (a tenth)", 90, 0.71, 0.10)]
    goals = compare_goals(rows)
    pancreas, tumour, tenth = goals
    assert pancreas["met"] and pancreas["margin"] == pytest.approx(0.08)  # nnU-Net's best prediction mode counts
    assert not tumour["met"] and tumour["margin"] == pytest.approx(-0.05)
    assert tenth["nnunet"] == 0.72 and tenth["bundle"] == 0.71 and tenth["met"]  # 0.71 >= 0.72 - 0.02
    assert tenth["margin"] == pytest.approx(0.01)
    lines = goal_lines(goals)
    assert "behind by 0.050" in lines[3] and lines[2].endswith("| +0.080 | yes |")


def test_tenth_goal_without_a_short_run_says_so():
    goals = compare_goals([_row("nnunet", "1 min", 60, 0.1, 0.0), _row("bundle", "1 min", 60, math.nan, 0.0)])
    assert not goals[0]["met"] and math.isnan(goals[0]["margin"])
    assert "not measured" in goal_lines(goals)[-1] and "no bundle run" in goal_lines(goals)[-1]


def test_a_tie_is_not_ahead():
    goals = compare_goals([_row("nnunet", "1 min", 60, 0.5, 0.0), _row("bundle", "1 min", 60, 0.5, 0.0)])
    assert not goals[0]["met"] and goals[0]["margin"] == 0
    assert goal_lines(goals)[2].endswith("| +0.000 | tied, not ahead |")


def test_bundle_training_loss_against_seconds():
    log = ("2026-12-07 13:00:43,268 - INFO - Epoch[1] Metrics -- train_loss: 2.8634 \n"
           "2026-12-07 13:00:43,293 - ignite.engine.engine.SupervisedTrainer - INFO - Epoch[1] Complete.\n"
           "2026-12-07 13:00:48,340 - INFO - Epoch[2] Metrics -- train_loss: 2.0482 \n")
    pts = parse_train_loss(log, dt.datetime(2026, 12, 7, 13, 0, 40))
    assert [(p["epoch"], round(p["seconds"], 3), p["train_loss"]) for p in pts] == [(1, 3.268, 2.8634),
                                                                                    (2, 8.34, 2.0482)]


def test_bundle_epochs_fit_the_budget():
    assert sbs.bundle_epochs(900, cuda=False) == 120  # the default recipe's 120 epochs in 15 CPU minutes
    assert sbs.bundle_epochs(90, cuda=False) == 12
    assert sbs.bundle_epochs(300, cuda=True) == 51 and sbs.bundle_epochs(10, cuda=True) == 2


def test_nnunet_probabilities_become_the_prob_map_evaluation_reads(tmp_path):
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    nib.save(nib.Nifti1Image(np.zeros((4, 3, 2), np.uint8), affine), str(tmp_path / "case_1.nii.gz"))
    probs = np.zeros((3, 2, 3, 4), np.float16)  # nnU-Net: channels, then z, y, x
    probs[2, 1, 2, 3] = 0.9  # z=1, y=2, x=3
    np.savez_compressed(tmp_path / "case_1.npz", probabilities=probs)
    assert sbs.npz_to_prob_nifti(tmp_path) == 1
    out = nib.load(str(tmp_path / "case_1_prob.nii.gz"))
    assert out.shape == (4, 3, 2, 3) and np.allclose(out.affine, affine)
    data = np.asarray(out.dataobj)
    assert data[3, 2, 1, 2] == pytest.approx(0.9, abs=1e-3) and data.sum() == pytest.approx(0.9, abs=1e-3)
    assert not (tmp_path / "case_1.npz").exists()


def test_missing_nnunet_is_one_line(monkeypatch):
    monkeypatch.setattr(sbs.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 1, "", "no"))
    with pytest.raises(SystemExit, match="cannot import nnunetv2.*pip install") as e:
        sbs.find_nnunet_python("/nowhere/python")
    assert "\n" not in str(e.value)
