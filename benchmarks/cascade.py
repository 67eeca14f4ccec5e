"""The coarse-to-fine cascade against one-stage recipes, every model scored in the scans' own space on the enlarged
CT development set (``pipeline.data.protocol.DEVELOPMENT_CT_36``: the 4 test phantoms and 32 of seed 1000).

- **Stage 1** is a one-stage run of a recipe (``python -m benchmarks run recipes``, or trained here when it is
  named only as a cascade's first stage; its best ``model.pt``): the bundle segments the whole scan on the plan's
  grid.
- **Stage 2** is trained here: ``train.json`` with its ``fine`` section applied (what ``--cascade true`` runs after
  stage 1), on top of a recipe: a grid of 2/3 of the plan's spacing (the same patch in voxels, so the same cost per
  step) on crops of every case around its pancreas (the label's bounding box plus 25 mm), so that every patch lies
  in or next to the gland and a third of the voxel size goes to small tumours. At inference (``inference.json``'s
  ``fine`` section) it crops each scan around the largest connected component of stage 1's label map (same margin)
  and segments only there; its probabilities are resampled into the scan's space, zero outside the crop.

This is the crop-and-refine of Zhou et al. 2017 (and Yu et al. 2018, RSTN) and nnU-Net's 3d_lowres ->
3d_cascade_fullres, without nnU-Net's coarse segmentation as an extra input channel. The stages are trained and
scored separately here, so that one stage 1 serves several stage 2 recipes and its label maps are computed once.

Every model is scored alike: ``inference.json`` writes label and probability maps on each scan's own grid, and
``pipeline.evaluation.folders`` scores them against the labels (Dice, HD95, lesion detection): a finer grid gains
nothing from being scored on its own grid.

    python -m benchmarks run cascade --seeds 0 --runs /tmp/ct_recipes/runs --one-stage default tumour_w3 \
        --cascades default:default epochs_40:epochs_80
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

from benchmarks.common import (REPO, ct_scores, machine_header, quoted_argv, result_path, run_checked, write_json,
                               write_result)
from benchmarks.recipes import TRAIN_FINISHED, child_command, parse_curve

CLASSES = ("pancreas", "tumour")
TRAIN = ["bundles/attn_unet/train.json"]
INFER = ["bundles/attn_unet/inference.json"]


def second_stage(bundle_file: str, **values: object) -> dict[str, object]:
    """The overrides that make ``bundle_file`` its cascade's second stage on its own: ``values`` (what the first
    stage hands over, as in the file's ``run_stage`` call), then the file's ``fine`` section (``--cascade true`` runs
    the same in one command; here the stages come from separate runs)."""
    fine = json.loads((REPO / bundle_file).read_text())["fine"]
    return {**values, **{k: v for k, v in fine.items() if not k.startswith("_")}}


# stage 2 as train.json's run_stage call makes it, with the spacing taken from the plan (a recipe may set epochs)
STAGE2_TRAIN = second_stage(TRAIN[0],
                            target_spacing="$[round(s * @cascade_factor, 3) for s in @plan['target_spacing']]")


def infer(ckpt_dir: Path, dataset_dir: Path, pred_dir: Path, extra: dict[str, object], log: Path) -> float:
    """inference.json on the test split of ``dataset_dir`` (label and probability maps) in a child process."""
    overrides = {"ckpt_dir": str(ckpt_dir), "dataset_dir": str(dataset_dir), "infer_split": "test",
                 "pred_dir": str(pred_dir), "save_probabilities": True, "progress": False, "cascade": False, **extra}
    cmd = [sys.executable, "-m", "benchmarks.cascade", "--child-infer", json.dumps(overrides)]
    return run_checked(cmd, log)


def score(pred_dir: Path, dataset_dir: Path, eval_dir: Path) -> None:
    from pipeline.evaluation.folders import evaluate_folders

    evaluate_folders(pred_dir, dataset_dir / "labelsTs", eval_dir, CLASSES, lesion_class=2,
                     image_dir=dataset_dir / "imagesTs")


def train_stage(recipe: str, seed: int, root: Path, data: Path, extra: dict[str, object]) -> dict[str, object]:
    """Train ``recipe`` (train.json; with ``extra`` = ``STAGE2_TRAIN`` its second stage) for ``seed`` in ``root``,
    skipped when a finished run is there: its wall time and validation curve."""
    log = root / "train.log"
    if not (log.is_file() and TRAIN_FINISHED in log.read_text() and (root / "models" / "model.pt").is_file()):
        root.mkdir(parents=True, exist_ok=True)
        start = dt.datetime.now()
        cmd = child_command("ct", recipe, seed, root, data, extra, TRAIN)
        print(f"seed {seed}: training {recipe} ({log})", flush=True)
        wall = run_checked(cmd, log)
        (root / "train_wall_s.txt").write_text(f"{wall:.1f}\n")
        (root / "started.txt").write_text(start.isoformat())
    start = dt.datetime.fromisoformat((root / "started.txt").read_text())
    curve = parse_curve(log.read_text(), start)
    plan = json.loads((root / "models" / "plan.json").read_text())
    return {"train_wall_s": float((root / "train_wall_s.txt").read_text()), "curve": curve,
            "target_spacing": plan["target_spacing"]}


def stage2_dir(work: Path, recipe: str, seed: int) -> Path:
    return work / (f"stage2_s{seed}" if recipe == "default" else f"stage2_{recipe}_s{seed}")


def cascade_name(stage1: str, stage2: str) -> str:
    return "cascade" if (stage1, stage2) == ("default", "default") else f"cascade_{stage1}+{stage2}"


def score_model(name: str, seed: int, work: Path, data_sets: list[Path], ckpt: Path,
                stage2: Path | None = None, stage1: str = "default") -> dict[str, object]:
    """Inference and scores of one model (``ckpt``; with ``stage2`` the cascade on top of the one-stage model
    ``stage1``, scored before) on every set."""
    out = work / "scored" / f"{name}_s{seed}"
    evals, seconds = [], 0.0
    for d in data_sets:
        done = out / d.name / "eval" / "metrics_summary.csv"
        timing = out / d.name / "infer_s.txt"
        if not done.is_file():
            (out / d.name).mkdir(parents=True, exist_ok=True)
            if stage2 is None:
                t = infer(ckpt, d, out / d.name / "pred", {}, out / d.name / "infer.log")
            else:
                coarse = work / "scored" / f"{stage1}_s{seed}" / d.name / "pred"
                if not coarse.is_dir():
                    raise SystemExit(f"{coarse}: score stage 1 (--one-stage {stage1}) before the cascade")
                t = infer(stage2, d, out / d.name / "pred", second_stage(INFER[0], coarse_dir=str(coarse)),
                          out / d.name / "infer.log")
                t += float((work / "scored" / f"{stage1}_s{seed}" / d.name / "infer_s.txt").read_text())
            timing.write_text(f"{t:.1f}\n")
            score(out / d.name / "pred", d, out / d.name / "eval")
        seconds += float(timing.read_text())
        evals.append(out / d.name / "eval")
    n = sum(len(list((d / "imagesTs").iterdir())) for d in data_sets)
    return {"model": name, "seed": seed, **ct_scores(evals), "infer_s_per_case": round(seconds / n, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", nargs="*", type=int, default=[0])
    ap.add_argument("--runs", default="/tmp/ct_recipes/runs",
                    help="the recipes benchmark's runs folder (<recipe>_s<seed>/models/model.pt)")
    ap.add_argument("--one-stage", nargs="*", default=["default"],
                    help="recipes (already trained there) scored as they are; default is stage 1 of the cascade")
    ap.add_argument("--cascades", nargs="*", default=["default:default"], metavar="STAGE1:STAGE2",
                    help="cascades to score: the recipe of each stage (stage 1 is trained in --runs when missing, "
                         "stage 2 in --work); none: the one-stage recipes only")
    ap.add_argument("--work", default="/tmp/ct_cascade")
    ap.add_argument("--train", action="store_true", help="train the one-stage recipes that --runs lacks")
    ap.add_argument("--child-infer", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_infer:
        from pipeline.apps.study.child import run_bundle

        run_bundle(INFER, json.loads(args.child_infer))
        return 0
    from pipeline.data.protocol import DEVELOPMENT_CT_36, ensure_generated

    work, runs = Path(args.work), Path(args.runs)
    data_sets = [ensure_generated(s, runs.parent) for s in DEVELOPMENT_CT_36]
    cascades = [tuple(c.split(":")) for c in args.cascades]
    one_stage = list(dict.fromkeys(["default", *args.one_stage, *(c[0] for c in cascades)]))
    rows, stage2_runs = [], {}
    for seed in args.seeds:
        for recipe in one_stage:
            if recipe not in args.one_stage and recipe != "default":  # a cascade's own stage 1: train it here
                train_stage(recipe, seed, runs / f"{recipe}_s{seed}", data_sets[0], {})
            ckpt = runs / f"{recipe}_s{seed}" / "models"
            if not (ckpt / "model.pt").is_file():
                if not args.train:
                    raise SystemExit(f"{ckpt}: no model.pt; train it here with --train, or with python -m benchmarks "
                                     f"run recipes --recipes {recipe} --seeds {seed} --work {runs.parent}")
                train_stage(recipe, seed, runs / f"{recipe}_s{seed}", data_sets[0], {})
            rows.append({"model": recipe, **score_model(recipe, seed, work, data_sets, ckpt)})
            print(json.dumps(rows[-1]), flush=True)
        for stage1, stage2_recipe in cascades:
            root = stage2_dir(work, stage2_recipe, seed)
            stage2 = train_stage(stage2_recipe, seed, root, data_sets[0], STAGE2_TRAIN)
            name = cascade_name(stage1, stage2_recipe)
            stage2_runs[f"{stage2_recipe}_s{seed}"] = stage2
            row = score_model(name, seed, work, data_sets, runs / f"{stage1}_s{seed}" / "models",
                              stage2=root / "models", stage1=stage1)
            stage1_wall = runs / f"{stage1}_s{seed}" / "train_wall_s.txt"
            rows.append({"model": name, **row, "stage2_train_wall_s": round(stage2["train_wall_s"], 1),
                         "stage1_train_wall_s": float(stage1_wall.read_text()) if stage1_wall.is_file() else None})
            print(json.dumps(rows[-1]), flush=True)
    write_report(args, rows, stage2_runs)
    return 0


def merge_earlier(rows: list[dict], stage2_runs: dict[str, dict]) -> tuple[list[dict], dict[str, list], list[str]]:
    """This run's rows after the earlier result's (this machine kind) whose model and seed it did not measure again,
    the stage-2 curves likewise, and the commands that wrote them: one seed's run adds to the table."""
    old, curves, commands = result_path("cascade", ".json"), {}, []
    if old.is_file():
        earlier = json.loads(old.read_text())
        table = earlier["tables"].get("scores", {"columns": [], "rows": []})
        measured = {(r["model"], r["seed"]) for r in rows}
        rows = [r for r in (dict(zip(table["columns"], v)) for v in table["rows"])
                if (r["model"], r["seed"]) not in measured] + rows
        commands = list(earlier.get("figures", {}).get("commands") or [earlier["command"]])
        folder = old.with_suffix("")
        if (folder / "stage2_curves.json").is_file():
            curves = {f"default_s{k}" if k.isdigit() else k: v  # the first runs named a curve by its seed alone
                      for k, v in json.loads((folder / "stage2_curves.json").read_text()).items()}
    curves.update({run: s["curve"] for run, s in stage2_runs.items()})
    return rows, curves, [*[c for c in commands if c != quoted_argv()], quoted_argv()]


def write_report(args: argparse.Namespace, rows: list[dict], stage2_runs: dict[str, dict]) -> None:
    md = result_path("cascade", ".md")
    rows, curves, commands = merge_earlier(rows, stage2_runs)
    lines = ["# Cascade and one-stage recipes on the enlarged CT development set, scored in the scans' own space", "",
             machine_header(quoted_argv()), "",
             "Rows measured by: " + "; ".join(f"`{c}`" for c in commands) + " (a later run replaces the rows of the "
             "models and seeds it measures again).", "",
             "Development set: `pipeline.data.protocol.DEVELOPMENT_CT_36` (4 test phantoms of the default data and 32 "
             "of generator seed 1000, published tumour contrast). Every model: `inference.json` (flip TTA as the "
             "bundle infers, the plan's 1 ml tumour filter) writes label and probability maps on each scan's own "
             "grid; `pipeline.evaluation.folders` scores them. Tumour Dice over the cases with a tumour; a lesion is "
             "found at IoU > 0.1. Cascade `cascade_A+B`: stage 1 = recipe A, stage 2 = recipe B with the "
             "`fine` sections of `train.json` and `inference.json` (2/3 of the plan's spacing, crops of the gland +/- "
             "25 mm); `cascade` alone is `default:default`. Inference "
             "seconds per case include stage 1 for the cascade.", "",
             "| model | seed | pancreas Dice | tumour Dice | lesions found | found, >= 1 ml and >= 10 HU | "
             "FP components / case | case AUROC | case AP | inference s / case | training s (stage 1 + stage 2) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        walls = [r.get("stage1_train_wall_s"), r.get("stage2_train_wall_s")]
        train = " + ".join("?" if w is None else f"{w:.0f}" for w in walls) if r.get("stage2_train_wall_s") else ""
        lines.append(f"| {r['model']} | {r['seed']} | {r['dice_pancreas']:.3f} | "
                     f"{r['dice_tumour_cases_with_tumour']:.3f} | {r['lesion_sensitivity']:.3f} of {r['lesions']} | "
                     f"{r['lesion_sensitivity_goal_bin']:.3f} of {r['lesions_goal_bin']} | "
                     f"{r['fp_components_per_case']:.2f} | {r['case_auroc']:.3f} | {r['case_average_precision']:.3f} |"
                     f" {r['infer_s_per_case']} | {train} |")
    for run, curve in curves.items():
        best = max(curve, key=lambda p: p.get("val_mean_dice", -1)) if curve else {}
        dice = {c: best.get(f"val_dice_{c}", float("nan")) for c in CLASSES}
        lines += ["", f"Stage 2 `{run}`: best validation (on crops around the labelled gland, so above what stage 1's "
                  f"crops give) epoch {best.get('epoch')}, Dice pancreas {dice['pancreas']:.3f}, tumour "
                  f"{dice['tumour']:.3f}."]
    write_result(md, lines)
    cols = list(dict.fromkeys(k for r in rows for k in r))
    figures = {f"{r['model']}_s{r['seed']}_{k}": r[k] for r in rows
               for k in ("dice_pancreas", "dice_tumour_cases_with_tumour", "lesion_sensitivity", "case_auroc")}
    write_json("cascade", {**figures, "commands": commands}, lines=lines, report=md,
               tables={"scores": {"columns": cols, "rows": [[r.get(c) for c in cols] for r in rows]}},
               title="Cascade and one-stage recipes, CT development set of 36, scored in the scans' own space")
    folder = md.with_suffix("")  # beside the result: the stage-2 validation curves (result files are *.json)
    folder.mkdir(exist_ok=True)
    (folder / "stage2_curves.json").write_text(json.dumps(curves, indent=1))


if __name__ == "__main__":
    sys.exit(main())
