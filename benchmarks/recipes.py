"""Recipe comparison: validation Dice (and IoU) against wall-clock time for a bundle's default and alternative recipes.

Each recipe is a bundle's train.json with a few config values changed (any config id, also inside the data
fragment, e.g. ``augmentation#2#ratios``), trained in a child process from the same generated data and seed.
The script records every validation (epoch, seconds since the process started, metrics per class), the best
checkpoint's scores on held-out data (CT: the test phantoms of the data set plus extra unseen phantoms of the same
generator with another seed; shapes: the test split), writes a CSV of every point, a PNG of the curves and a
markdown table. Runs already in the CSV are skipped, so an interrupted comparison resumes.

    python -m benchmarks run recipes --task ct --recipes default sgd_poly --seeds 0
    python -m benchmarks run recipes --task shapes --recipes default bs8 --seeds 0 1
    python -m benchmarks run recipes --task shapes --list
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import logging
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import REPO, ct_scores, machine_header, quoted_argv, read_summary, result_path, write_json, write_result

SGD = {"_target_": "torch.optim.SGD", "params": "$@network.parameters()", "lr": "@learning_rate", "momentum": 0.99,
       "nesterov": True, "weight_decay": 3e-5}
POLY = {"_target_": "torch.optim.lr_scheduler.PolynomialLR", "optimizer": "@optimizer", "total_iters": "@epochs",
        "power": 0.9}
CT_RECIPES: dict[str, dict[str, object]] = {
    # the bundle as it is: target spacing, patch, strides, batch size and workers planned from the data
    "default": {},
    # the values the bundle had by hand before it followed the plan (2 x 2 x 3 mm; no z pooling at the first level)
    "hand_set": {"target_spacing": [2.0, 2.0, 3.0], "patch_size": [64, 64, 32], "strides": [[2, 2, 1]],
                 "batch_size": 2, "num_workers": 0},
    # nnU-Net's optimiser: SGD, Nesterov momentum 0.99, lr 1e-2 with polynomial decay
    "sgd_poly": {"optimizer": SGD, "lr_scheduler": POLY, "learning_rate": 0.01},
    # nnU-Net's sampling: a third of the patches centred on foreground, the rest anywhere in the body
    "fg_third": {"target_spacing": [2.0, 2.0, 3.0], "strides": [[2, 2, 1]], "augmentation#2#ratios": [2, 1, 0]},
    # a quarter of the patches on the pancreas and a quarter on the tumour, half on background anywhere in the body
    "fg_2_1_1": {"target_spacing": [2.0, 2.0, 3.0], "strides": [[2, 2, 1]], "augmentation#2#ratios": [2, 1, 1]},
    # more context per voxel of compute
    "coarse_3mm": {"target_spacing": [3.0, 3.0, 4.0], "strides": [[2, 2, 1]]},
    "patch_96": {"patch_size": [96, 96, 48], "num_samples": 1},
    "lr_6e3_70ep": {"learning_rate": 0.006, "epochs": 70},
    # the planned default with the epochs that still fit the user's 15 minutes (the fresh-clone run took 742 s)
    "epochs_60": {"epochs": 60},
    # the plan's intensity normalisation, recorded but not followed by default: its CT window (the foreground's
    # 0.5/99.5 HU percentiles, much narrower than the soft-tissue window) or nnU-Net's clip + z-score
    "plan_window": {"epochs": 60, "hu_window": [-51, 89]},  # what the plan chooses on the default phantoms
    "zscore": {"epochs": 60, "intensity_mode": "zscore"},
    # four poolings instead of three (the report's UNetContext): a receptive field wider than the patch, against the
    # false positives far from the pancreas that the standard depth leaves (HD95 40-130 mm on some held-out cases)
    "ct_context": {"preset": "context"},
    # half the width (8..64 channels): a train step costs 0.62 s instead of 1.14 s (width 12 is no faster than 16 in
    # bfloat16 on this CPU), so the same wall time buys 100 epochs instead of 60
    "width8_100ep": {"base_width": 8, "epochs": 100, "memory_format": "contiguous"},
    # the same in channels-last-3d memory (0.56 s per step instead of 0.74 s): the default since it was measured
    "width8_100ep_cl": {"base_width": 8, "epochs": 100, "memory_format": "channels_last"},
    # Dice over the whole batch (nnU-Net's batch Dice): a crop without tumour no longer scores a predicted tumour
    # voxel as a total loss, which may keep the narrow network from giving the tumour up (seed 1 never learned it)
    "width8_cl_batchdice": {"base_width": 8, "epochs": 100, "memory_format": "channels_last",
                            "segmentation_loss#batch": True},
    # half of the crops centred on the tumour (instead of a quarter), a quarter each on pancreas and background
    "width8_cl_tumour_half": {"base_width": 8, "epochs": 100, "memory_format": "channels_last",
                              "augmentation#2#ratios": [1, 1, 2]},
    # the width-8 default with the budget the user's command still leaves (718 s of 900 s on a fresh clone)
    "epochs_120": {"epochs": 120},
    # the tumour class weighted 3x in the cross-entropy and the Dice: the default under-segments the tumours it finds
    # (precision 0.58-1.00, recall 0.03-0.32 on the test and unseen phantoms, ../tumour_cases.md) and finds none on
    # seed 1
    "tumour_w3": {"segmentation_loss#weight": "$torch.tensor([1.0, 1.0, 3.0])"},
    # twice the learning rate of the width-8 default (0.003 came with the first scaffold and was never varied for
    # CT): seed 1 ends its 120 epochs still rising (best checkpoint the last), so does it learn faster? The bundle's
    # default since 0.5.0, so now the same run as "default"; the "default" rows written before then used 0.003
    "lr6e3": {"learning_rate": 0.006},
    # the default before bundle 0.5.0, to compare the two rates on seeds measured after the change
    "lr3e3": {"learning_rate": 0.003},
    # the step further: nnU-Net's initial rate, with AdamW and the same cosine; 0.006 learnt faster early on both
    # seeds and found the tumour on seed 1, whose validation pancreas still stops near 0.74 (5 cases 0.68-0.82)
    "lr1e2": {"learning_rate": 0.01},
    # nnU-Net's Dice term: foreground classes only (MONAI's DiceCELoss include_background=False drops the background
    # channel from the Dice, the cross-entropy keeps every class); measured before only together with batch Dice,
    # one crop per case and the largest component (bs1_batchdice_lcc)
    "dice_fg": {"segmentation_loss#include_background": False},
    # the train step through torch.compile (MONAI's SupervisedTrainer(compile=True), static shapes: one graph for the
    # 4-crop batches, one for the epoch's last 2-crop batch): 0.81x the eager float32 step on this CPU, against a cold
    # compile of about 80 s per graph (../compile_step.md). Does the whole run gain, and are the scores the same?
    "compile": {"compile": True},
    # an exponential moving average of the weights (ignite's EMAHandler, --ema true, momentum 0.01 after a warm-up over
    # a tenth of the iterations so far) is validated and kept as model.pt: does averaging the last ~100 noisy
    # two-case steps lift the end of the cosine schedule, or steady the seed spread?
    "ema": {"ema": True},
    # twice the updates for the same time (2 crops of one case per step), nnU-Net's batch Dice over the foreground
    # classes (a crop without tumour no longer adds a noisy per-sample tumour Dice), and the largest connected
    # foreground component kept (removes far false positives); measured on the hand-set grid
    # region-based training, nnU-Net's for pancreas + tumour: one sigmoid per nested region (the gland with its
    # tumour, the tumour) and Dice + BCE per region, instead of a softmax over three classes (issue 37's levers)
    "regions": {"network_def#nested_regions": True,
                "segmentation_loss": {"_target_": "pipeline.losses.NestedRegionDiceBCELoss"}},
    # tumour-aware sampling: half of the crops centred on the tumour, a quarter on the pancreas, a quarter anywhere
    # (default: a quarter, a half, a quarter)
    "tumour_half": {"augmentation#2#ratios": [1, 1, 2]},
    # a loss for small structures: the focal term (gamma 2) instead of the cross-entropy beside the Dice, so that the
    # many easy background and gland voxels weigh less than the hard ones at the tumour's edge (Lin et al. 2017;
    # MONAI's DiceFocalLoss, as in Zhu et al. 2019, AnatomyNet)
    "dice_focal": {"segmentation_loss": {"_target_": "DiceFocalLoss", "to_onehot_y": True, "softmax": True,
                                         "gamma": 2.0, "smooth_nr": 1e-05, "smooth_dr": 1e-05}},
    # the cascade within the user's 15 minutes (issue 37): stage 1 only has to find the gland, so a third of the
    # default's epochs, and stage 2 the other two thirds (cascade_train.json on top; a stage-2 epoch costs what a
    # stage-1 epoch does: the same patch in voxels), with the Dice + CE or the Dice + focal loss
    "epochs_40": {"epochs": 40},
    "epochs_80": {"epochs": 80},
    "dice_focal_80": {"epochs": 80, "segmentation_loss": {"_target_": "DiceFocalLoss", "to_onehot_y": True,
                                                          "softmax": True, "gamma": 2.0, "smooth_nr": 1e-05,
                                                          "smooth_dr": 1e-05}},
    "bs1_batchdice_lcc": {"target_spacing": [2.0, 2.0, 3.0], "strides": [[2, 2, 1]], "batch_size": 1,
                          "segmentation_loss#batch": True, "segmentation_loss#include_background": False,
                          "keep_largest_component": True},
}
PLAIN_LOSS = {"deep_supervision": False, "loss": "@segmentation_loss"}
# Ronneberger's boundary-weighted DiceCE, the keys of configs/loss/boundary_weighted.json given as overrides
BOUNDARY_LOSS = {k: v for k, v in json.loads((REPO / "configs/loss/boundary_weighted.json").read_text()).items()
                 if not k.startswith("_")}
SHAPES_RECIPES: dict[str, dict[str, object]] = {
    # the bundle as it is: deep supervision (side outputs at 1/2 and 1/4 resolution), plan = 128 x 128, batch 8 on a
    # CPU (batch 16 before 11-28: the rows named default measured before then used it)
    "default": {},
    # the bundle before deep supervision: one output, plain DiceCE
    "no_deep_sup": PLAIN_LOSS,
    # per-image cost is flat in the batch size on CPU: half the batch gives twice the updates for the same time
    "bs8": {**PLAIN_LOSS, "batch_size": 8},
    # twice the learning rate (batch 8 since 11-28): does it shorten the plateau before ellipses are told apart?
    "lr4e3": {"learning_rate": 0.004},
    # twice the updates in the same time, now that deep supervision ends the plateau that stopped bs8
    "ds_bs8": {"batch_size": 8},
    # the same, its cosine schedule ending within the 10-minute budget (24 epochs of batch 8 took 627 s)
    "ds_bs8_e22": {"batch_size": 8, "epochs": 22},
    # the deeper preset's epochs cost more: 24 took 641 s; 22 end its schedule inside the budget
    "context_e22": {"preset": "context", "epochs": 22},
    "precision": {"preset": "precision"},
    # the precision preset finished 24 batch-8 epochs in 468 s, still rising: the epochs that fill its 10 minutes
    "precision_e30": {"preset": "precision", "epochs": 30},
    "context": {"preset": "context"},
    # the precision preset sat on the plateau (val IoU ~0.40) for 20 of its 24 float32 epochs on seed 0: does
    # weighting the pixels between nearby shapes (where its small receptive field can tell them apart) end it sooner?
    "precision_boundary": {"preset": "precision", **BOUNDARY_LOSS},
    # the same loss on the default (standard) preset: would it cost the default anything?
    "boundary": BOUNDARY_LOSS,
}


@dataclass(frozen=True)
class Task:
    """A bundle, its recipes, the metric its curves show and the data it is scored on."""

    bundle: str
    recipes: dict[str, dict[str, object]]
    classes: tuple[str, ...]
    curve_metric: str  # per-class metric prefix in the validation log and the summaries: dice or iou
    budget_s: float  # the issue's time budget, drawn on the plot
    target: float
    work: str
    notes: str = ""
    held_out: tuple[str, ...] = field(default=("test",))
    tta: bool = False  # also score the held-out data with flip test-time augmentation (the bundle's evaluate default)


TASKS = {
    "ct": Task("bundles/attn_unet", CT_RECIPES, ("pancreas", "tumour"), "dice", 900, 0.80,
               "/tmp/ct_recipes", held_out=("test", "unseen"),
               notes="Every run: the 24 default phantoms (19 training, 5 validation), the recipe's epochs, bfloat16 "
               "on a CPU with native bfloat16 and float32 on one without (amp auto; the machine line says which); "
               "held-out = the development set of pipeline.data.protocol (the 4 test phantoms + 8 unseen phantoms of "
               "generator seed 1000), best checkpoint; dev12_* columns: those 12 as one set, tumour Dice over the "
               "cases with a tumour, lesion detection (pipeline.evaluation.lesions). Phantoms generated before "
               "2026-12-07 had the v1 tumour contrast, later ones the published one (the result's folder says). "
               "Time is the training process (caching, training, validation), without data generation. The seed "
               "also draws the validation split, so validation Dice compares recipes within a seed; the held-out 12 "
               "compare across seeds. Held-out scores come from the bundle's evaluate.json as it is: rows written "
               "before 2026-11-29 (bundle < 0.5.3) slid its window with a quarter-patch overlap, later ones with "
               "half a patch (docs/decisions.md, the sliding-window overlap, scores the default's three seeds "
               "both ways)."),
    "shapes": Task("bundles/unet", SHAPES_RECIPES, ("ellipse", "rectangle"), "iou", 600, 0.95,
                   "/tmp/shapes_recipes", tta=True,
                   notes="Every run: the default shapes (1000 images, 800 training / 100 validation / 100 test, "
                   "generator seed 0), the recipe's epochs, bfloat16 on a CPU with native bfloat16 and float32 on "
                   "one without (amp auto; the machine "
                   "line says which); held-out = the 100 test images, best "
                   "checkpoint. Time is the training process (caching, training, validation), without data "
                   "generation."),
}
VAL_LINE = re.compile(r"^(\S+ \S+) - INFO - Epoch\[(\d+)\] Metrics -- (.*val_mean_dice.*)$", re.M)
STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+) - ", re.M)
TRAIN_FINISHED = "data wait: "  # the trainer's last line (DataWaitReport at COMPLETED)
DATA_WAIT = re.compile(r"data wait: ([\d.]+) s of ([\d.]+) s iteration time")


def curve_fields(task: Task) -> list[str]:
    return ["recipe", "seed", "epoch", "seconds"] + [f"val_{m}_{c}" for m in ("dice", "iou") for c in task.classes] + [
        "val_mean_dice", "val_mean_iou"]


def run_child(task: Task, recipe: str, seed: int, root: Path, dataset_dir: Path, extra: dict[str, object],
              files: list[str]) -> None:
    """Run one recipe in this process (called in a child): any config id can be overridden."""
    from pipeline.apps.study.child import run_bundle

    logging.basicConfig(level=logging.INFO, format="%(asctime)s - %(levelname)s - %(message)s", stream=sys.stdout)
    run_bundle(files, {"bundle_root": str(root), "dataset_dir": str(dataset_dir), "seed": seed,
                       **task.recipes[recipe], **extra})


def parse_curve(log: str, start: dt.datetime) -> list[dict[str, float]]:
    points = []
    for stamp, epoch, text in VAL_LINE.findall(log):
        t = dt.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f")
        metrics = {k: float(v) for k, v in re.findall(r"(\w+): ([-\d.]+)", text)}
        points.append({"epoch": int(epoch), "seconds": (t - start).total_seconds(), **metrics})
    return points


def data_wait_share(log: str) -> float | None:
    """Percent of the trainer's iteration time spent fetching batches (the bundle's DataWaitReport line)."""
    m = DATA_WAIT.search(log)
    return round(100 * float(m.group(1)) / float(m.group(2)), 1) if m and float(m.group(2)) > 0 else None


def child_command(task_name: str, recipe: str, seed: int, root: Path, data: Path, extra: dict[str, object],
                  files: list[str]) -> list[str]:
    return [sys.executable, "-m", "benchmarks.recipes", "--task", task_name, "--run-child", recipe, str(seed),
            str(root), "--child-data", str(data), "--child-extra", json.dumps(extra), "--child-files", *files]


def run_evaluation(task_name: str, recipe: str, seed: int, root: Path, dataset_dir: Path,
                   extra: dict[str, object], eval_dir: Path, log: Path) -> None:
    """``evaluate.json`` on top of the recipe's ``train.json`` (its overrides, then ``extra``) for the best
    checkpoint of the run in ``root``, in a child process; tables into ``eval_dir``, output into ``log``."""
    task = TASKS[task_name]
    files = [f"{task.bundle}/train.json", f"{task.bundle}/evaluate.json"]
    cmd = child_command(task_name, recipe, seed, root, dataset_dir, {**extra, "eval_dir": str(eval_dir)}, files)
    with log.open("w") as f:
        proc = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode:
        raise SystemExit(f"evaluation failed, see {log}")


def evaluate(task_name: str, recipe: str, seed: int, root: Path, dataset_dir: Path, extra: dict[str, object],
             tta: bool = False) -> dict[str, float]:
    """The best checkpoint on the test split of ``dataset_dir``, with the recipe's preprocessing, with or without
    flip test-time augmentation; the log goes to ``root/eval_<data>[_tta].log``."""
    name = f"eval_{dataset_dir.name}{'_tta' if tta else ''}"
    run_evaluation(task_name, recipe, seed, root, dataset_dir, {**extra, "tta": tta}, root / name,
                   root / f"{name}.log")
    return read_summary(root / name / "metrics_summary.csv")


def ensure_data(task_name: str, work: Path) -> list[Path]:
    """The development sets of ``pipeline.data.protocol`` (generated as the bundle would): the data set the bundle
    trains on first (its test split is scored), then any extra held-out sets."""
    from pipeline.data.protocol import DEVELOPMENT, ensure_generated

    return [ensure_generated(s, work) for s in DEVELOPMENT[task_name]]


def plot(task: Task, rows: list[dict[str, str]], out: Path) -> None:
    import matplotlib
    from matplotlib.figure import Figure

    first = task.classes[0]
    column = f"val_{task.curve_metric}_{first}" if task.curve_metric == "dice" else f"val_mean_{task.curve_metric}"
    shown = "Dice, " + first if task.curve_metric == "dice" else "mean IoU (" + ", ".join(task.classes) + ")"
    label = f"validation {shown}"
    fig = Figure(figsize=(10, 5))
    ax = fig.subplots()
    keys = sorted({(r["recipe"], r["seed"]) for r in rows})
    recipes = sorted({k[0] for k in keys})
    colours = {name: matplotlib.colormaps["tab20"](i % 20) for i, name in enumerate(recipes)}
    curves = {key: sorted((float(r["seconds"]), float(r[column])) for r in rows
                          if (r["recipe"], r["seed"]) == key and r.get(column) not in (None, "", "nan"))
              for key in keys}
    # wide enough for the typical run (float32 runs on a CPU without bfloat16 take about 2x the budget), while one run
    # slowed by other jobs is clipped rather than squeezing the others
    ends = sorted(pts[-1][0] for pts in curves.values() if pts)
    x_max = max(1.6 * task.budget_s, 1.05 * ends[len(ends) // 2]) if ends else 1.6 * task.budget_s
    for key, pts in curves.items():
        clipped = f" (clipped: ends at {pts[-1][0]:.0f} s)" if pts and pts[-1][0] > x_max else ""
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, color=colours[key[0]],
                ls="-" if key[1] == "0" else "--" if key[1] == "1" else ":", label=f"{key[0]} (seed {key[1]}){clipped}")
    ax.axhline(task.target, color="grey", ls="--", lw=1)
    ax.axvline(task.budget_s, color="grey", ls=":", lw=1)
    ax.set_xlabel("seconds since the training process started (data cached, no generation); dotted: the budget")
    ax.set_ylabel(label)
    ax.set_xlim(0, x_max)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(out, dpi=90, bbox_inches="tight")


def final_row(task: Task, recipe: str, seed: int, wall: float, curve: list[dict], scores: list[dict], log: str,
              extra: dict, scores_tta: list[dict] | None = None) -> dict[str, object]:
    best = max(curve, key=lambda p: p.get("val_mean_dice", -1))
    row: dict[str, object] = {"recipe": recipe, "seed": seed, "train_wall_s": round(wall, 1),
                              "best_epoch": best["epoch"]}
    for c in task.classes:
        row[f"val_{task.curve_metric}_{c}"] = best.get(f"val_{task.curve_metric}_{c}", 0.0)
    if task.held_out == ("test",):  # shapes: the test split
        for c in task.classes:
            row[f"test_iou_{c}"] = scores[0][f"iou_{c}"]
            row[f"test_dice_{c}"] = scores[0][f"dice_{c}"]
        row["test_mean_iou"] = sum(scores[0][f"iou_{c}"] for c in task.classes) / len(task.classes)
        if scores_tta:
            row["test_mean_iou_tta"] = sum(scores_tta[0][f"iou_{c}"] for c in task.classes) / len(task.classes)
    else:  # CT: 4 test phantoms + 8 unseen ones
        test, more = scores
        row.update({"test4_dice_pancreas": test["dice_pancreas"], "test4_dice_tumour": test["dice_tumour"],
                    "unseen8_dice_pancreas": more["dice_pancreas"], "unseen8_dice_tumour": more["dice_tumour"],
                    "heldout12_dice_pancreas": (4 * test["dice_pancreas"] + 8 * more["dice_pancreas"]) / 12})
        if scores_tta:
            test, more = scores_tta
            row.update({"heldout12_dice_pancreas_tta": (4 * test["dice_pancreas"] + 8 * more["dice_pancreas"]) / 12,
                        "test4_dice_tumour_tta": test["dice_tumour"], "unseen8_dice_tumour_tta": more["dice_tumour"]})
    row["data_wait_percent"] = data_wait_share(log)
    row["overrides"] = json.dumps({**task.recipes[recipe], **extra})
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=sorted(TASKS), default="ct")
    ap.add_argument("--recipes", nargs="*", default=["default"])
    ap.add_argument("--seeds", nargs="*", type=int, default=[0])
    ap.add_argument("--epochs", type=int, default=None, help="override every recipe's epochs")
    ap.add_argument("--work", default=None, help="scratch folder (default: the task's folder under /tmp)")
    ap.add_argument("--out", default=None,
                    help="results folder (default benchmarks/results/recipes_<task>_<kind>, beside its .json)")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--rerun", action="store_true", help="measure again, replacing the recipe's rows for the seeds")
    ap.add_argument("--tta", action="store_true",
                    help="also score the held-out data with flip TTA (always for shapes, whose bundle evaluates so)")
    ap.add_argument("--reuse-training", action="store_true",
                    help="a run whose training finished (model.pt, a complete train.log) but whose evaluation failed "
                         "is evaluated again without retraining; its time comes from the log's timestamps")
    ap.add_argument("--run-child", nargs=3, metavar=("RECIPE", "SEED", "ROOT"), help=argparse.SUPPRESS)
    ap.add_argument("--child-data", help=argparse.SUPPRESS)
    ap.add_argument("--child-extra", default="{}", help=argparse.SUPPRESS)
    ap.add_argument("--child-files", nargs="*", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    task = TASKS[args.task]
    if args.list:
        for name, overrides in task.recipes.items():
            print(f"{name}: {json.dumps(overrides)}")
        return 0
    if args.run_child:
        recipe, seed, root = args.run_child
        run_child(task, recipe, int(seed), Path(root), Path(args.child_data), json.loads(args.child_extra),
                  args.child_files)
        return 0
    unknown = [r for r in args.recipes if r not in task.recipes]
    if unknown:
        ap.error(f"unknown recipe(s) {unknown}; --list shows them")
    work = Path(args.work or task.work)
    out = Path(args.out) if args.out else result_path("recipes", "", variant=args.task)
    out.mkdir(parents=True, exist_ok=True)
    data_sets = ensure_data(args.task, work)
    fields = curve_fields(task)
    curve_csv, final_csv = out / "curves.csv", out / "final.csv"
    rows = list(csv.DictReader(curve_csv.open())) if curve_csv.is_file() else []
    finals = list(csv.DictReader(final_csv.open())) if final_csv.is_file() else []
    done = {(r["recipe"], r["seed"]) for r in finals}
    extra = {"epochs": args.epochs} if args.epochs else {}
    for recipe in args.recipes:
        for seed in args.seeds:
            if (recipe, str(seed)) in done and args.rerun:
                finals = [r for r in finals if (r["recipe"], r["seed"]) != (recipe, str(seed))]
                rows = [r for r in rows if (r["recipe"], r["seed"]) != (recipe, str(seed))]
            elif (recipe, str(seed)) in done:
                print(f"{recipe} seed {seed}: already measured, skipped")
                continue
            root = work / "runs" / f"{recipe}_s{seed}"
            root.mkdir(parents=True, exist_ok=True)
            log_file = root / "train.log"
            cmd = child_command(args.task, recipe, seed, root, data_sets[0], extra, [f"{task.bundle}/train.json"])
            print(f"{recipe} seed {seed}: training ({log_file})", flush=True)
            finished = log_file.is_file() and TRAIN_FINISHED in log_file.read_text()
            if args.reuse_training and finished and (root / "models" / "model.pt").is_file():
                stamps = [dt.datetime.strptime(m, "%Y-%m-%d %H:%M:%S,%f") for m in STAMP.findall(log_file.read_text())]
                start, wall = stamps[0], (stamps[-1] - stamps[0]).total_seconds()
                print(f"{recipe} seed {seed}: training found finished in {log_file}, evaluating it", flush=True)
            else:
                start = dt.datetime.now()
                t0 = time.perf_counter()
                with log_file.open("w") as f:
                    proc = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
                wall = time.perf_counter() - t0
                if proc.returncode:
                    raise SystemExit(f"{recipe} seed {seed} failed, see {log_file}")
            log = log_file.read_text()
            curve = parse_curve(log, start)
            scores = [evaluate(args.task, recipe, seed, root, d, extra) for d in data_sets]
            scores_tta = ([evaluate(args.task, recipe, seed, root, d, extra, tta=True) for d in data_sets]
                          if task.tta or args.tta else None)
            finals.append(final_row(task, recipe, seed, wall, curve, scores, log, extra, scores_tta))
            if args.task == "ct":  # the 12 development cases as one set, lesion detection included
                finals[-1].update({f"dev12_{k}": v for k, v in
                                   ct_scores([root / f"eval_{d.name}" for d in data_sets]).items()})
            rows += [{k: str(p.get(k, "")) for k in fields} | {"recipe": recipe, "seed": str(seed)} for p in curve]
            with curve_csv.open("w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=fields, restval="", extrasaction="ignore")
                w.writeheader()
                w.writerows(rows)
            with final_csv.open("w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(finals[-1]), restval="", extrasaction="ignore")
                w.writeheader()
                w.writerows(finals)
            print(json.dumps(finals[-1]), flush=True)
            plot(task, rows, out / "curves.png")
            write_table(task, finals, out / "README.md")
            write_json("recipes", {}, variant=args.task, title=task_title(task), report=out / "README.md",
                       tables={"final": csv_table(final_csv)}, path=out.with_suffix(".json") if args.out else None)
    return 0


def csv_table(path: Path) -> dict[str, list]:
    """final.csv as a result table: one row per recipe and seed, numbers as numbers, empty cells as None."""
    with path.open() as f:
        header, *body = list(csv.reader(f))

    def cell(v: str) -> object:
        if v == "":
            return None
        for kind in (int, float):
            try:
                return kind(v)
            except ValueError:
                pass
        return v

    return {"columns": header, "rows": [[cell(v) for v in r] for r in body]}


def task_title(task: Task) -> str:
    return ("CT recipes: validation Dice against time (attn_unet bundle, CT phantoms)" if task.held_out != ("test",)
            else "Shapes recipes: validation IoU against time (unet bundle, 2D shapes)")


def _f(value: object, digits: int = 4) -> str:
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return "-"


def write_table(task: Task, finals: list[dict], path: Path) -> None:
    lines = [f"# {task_title(task)}", "", machine_header(quoted_argv()), "",
             task.notes + " Curves: `curves.csv`, `curves.png`.", ""]
    if task.held_out == ("test",):
        a, b = task.classes
        lines += [f"| recipe | seed | train wall (s) | best epoch | val IoU {a} | val IoU {b} | test mean IoU | "
                  f"test IoU {a} |"
                  f" test IoU {b} | test mean IoU, flip TTA | data wait (% of iteration time) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for f in finals:
            lines.append(f"| {f['recipe']} | {f['seed']} | {float(f['train_wall_s']):.0f} | {f['best_epoch']} | "
                         f"{_f(f.get(f'val_iou_{a}'))} | {_f(f.get(f'val_iou_{b}'))} | {_f(f['test_mean_iou'])} | "
                         f"{_f(f[f'test_iou_{a}'])} | {_f(f[f'test_iou_{b}'])} | {_f(f.get('test_mean_iou_tta'))} | "
                         f"{f.get('data_wait_percent') or '-'} |")
    else:
        tta = any(f.get("heldout12_dice_pancreas_tta") for f in finals)
        lines += ["| recipe | seed | train wall (s) | best epoch | val Dice pancreas | val Dice tumour | "
                  "held-out 12 Dice pancreas |"
                  " test 4 tumour | unseen 8 tumour | data wait (% of iteration time) |"
                  + (" held-out 12 pancreas / test 4 tumour / unseen 8 tumour, flip TTA |" if tta else ""),
                  "|---|---|---|---|---|---|---|---|---|---|" + ("---|" if tta else "")]
        for f in finals:
            lines.append(f"| {f['recipe']} | {f['seed']} | {float(f['train_wall_s']):.0f} | {f['best_epoch']} | "
                         f"{_f(f['val_dice_pancreas'])} | {_f(f.get('val_dice_tumour') or 0)} | "
                         f"{_f(f['heldout12_dice_pancreas'])} | {_f(f['test4_dice_tumour'])} | "
                         f"{_f(f['unseen8_dice_tumour'])} | {f.get('data_wait_percent') or 'not logged'} |"
                         + (f" {_f(f.get('heldout12_dice_pancreas_tta'))} / {_f(f.get('test4_dice_tumour_tta'))} / "
                            f"{_f(f.get('unseen8_dice_tumour_tta'))} |" if tta else ""))
    lines += ["", f"Overrides per recipe (config ids on top of `{task.bundle}/train.json`):", ""]
    for name in dict.fromkeys(f["recipe"] for f in finals):
        lines.append(f"- `{name}`: `{task.recipes.get(name, {})}`")
    write_result(path, lines)  # the hand-written reading of the results survives reruns


if __name__ == "__main__":
    sys.exit(main())
