"""The final test: a bundle's default recipe trained from scratch per seed and scored on the final test set(s).

The final test sets are generated once from the seeds in ``pipeline.data.protocol`` (CT: 30 phantoms with the
published tumour contrast and the same 30 with the generator's earlier contrast, ``v1``; shapes: 200 images). This
is the only command that scores them, and it runs once per bundle version: it refuses when a result for the
bundle's version exists. Recipes are compared on the development sets (``python -m benchmarks run recipes``),
never here.

Per seed: the bundle's ``train.json`` as the user runs it (the default data and every default value), its
learning curve (validation Dice against seconds), training wall time, the peak resident memory of the training
process. CT: ``inference.json`` as the user runs it (the cascade's two stages when training wrote them) segments each
final set, and ``pipeline.evaluation.folders`` scores the label and probability maps on each scan's own grid:
pancreas Dice, tumour Dice over the cases with a tumour and lesion detection (sensitivity by size and contrast,
false positives per case, case-level AUROC and average precision of the maximum tumour probability). Shapes:
``evaluate.json`` (best checkpoint, flip TTA as the bundle evaluates), IoU and Dice per class. The result compares
the seeds' means with the goals of issue 37 and says by how much a goal is missed.

    python -m benchmarks run final_test --bundle attn_unet --seeds 0 1 2
    python -m benchmarks run final_test --bundle unet --seeds 0
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import math
import resource
import subprocess
import time
from pathlib import Path

from benchmarks.cascade import infer
from benchmarks.cascade import score as score_folder
from benchmarks.common import REPO, SECOND_STAGE, ct_scores, quoted_argv, read_summary, result_path, write_json
from benchmarks.recipes import TASKS, child_command, parse_curve, run_evaluation
from pipeline.data.protocol import DEVELOPMENT, FINAL_TEST, ensure_generated

BUNDLE_TASK = {"attn_unet": "ct", "unet": "shapes"}
# issue 37's goals on the published-contrast set: (figure, at least / at most, value)
CT_GOALS = (("dice_tumour_cases_with_tumour", ">=", 0.50), ("lesion_sensitivity_goal_bin", ">=", 0.80),
            ("fp_components_per_case", "<=", 0.3), ("case_auroc", ">=", 0.85), ("dice_pancreas", ">=", 0.85))


def bundle_version(bundle: str) -> str:
    return str(json.loads((REPO / "bundles" / bundle / "metadata.json").read_text())["version"])


RESULTS = REPO / "benchmarks" / "results"


def already_scored(bundle: str, version: str) -> list[Path]:
    """Final-test results of this bundle version, on any machine."""
    return sorted(RESULTS.glob(f"final_test_{bundle}_{version}_*.json"))


def train(task: str, seed: int, root: Path, data: Path) -> tuple[float, list[dict], float]:
    """The bundle's default recipe on ``data`` in a child process: wall seconds, the validation curve (each point
    with its stage, 2 for a cascade's second), and the peak resident memory (GB) of the largest child process so
    far."""
    root.mkdir(parents=True, exist_ok=True)
    log_file = root / "train.log"
    cmd = child_command(task, "default", seed, root, data, {}, [f"{TASKS[task].bundle}/train.json"])
    print(f"seed {seed}: training ({log_file})", flush=True)
    start, t0 = dt.datetime.now(), time.perf_counter()
    with log_file.open("w") as f:
        proc = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"seed {seed}: training failed, see {log_file}")
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
    first, _, second = log_file.read_text().partition(SECOND_STAGE)  # a cascade logs its second stage after this
    curve = [{**p, "stage": 1} for p in parse_curve(first, start)]
    curve += [{**p, "stage": 2} for p in parse_curve(second, start)]
    return wall, curve, peak_gb


def score(task: str, seed: int, root: Path, data: Path) -> dict[str, float]:
    eval_dir = root / f"eval_{data.name}"
    if task == "ct":  # what the user's inference writes, both stages of a cascade included, on each scan's grid
        pred_dir = root / f"pred_{data.name}"
        infer(root / "models", data, pred_dir, {"cascade": "auto"}, root / f"infer_{data.name}.log")
        score_folder(pred_dir, data, eval_dir)
        return ct_scores([eval_dir])
    run_evaluation(task, "default", seed, root, data, {}, eval_dir, root / f"eval_{data.name}.log")
    return {k: round(v, 4) for k, v in read_summary(eval_dir / "metrics_summary.csv").items()
            if k.split("_")[0] in ("dice", "iou")}


def goals(means: dict[str, float]) -> list[str]:
    out = []
    for key, sense, target in CT_GOALS:
        value = means.get(f"final_test_ct_{key}", math.nan)
        met = value >= target if sense == ">=" else value <= target
        gap = "" if met else f", missed by {abs(value - target):.3f}"
        out.append(f"- {key} {sense} {target}: {value:.3f} ({'met' if met else 'missed'}{gap})")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", choices=sorted(BUNDLE_TASK), default="attn_unet")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--work", default="/tmp/final_test", help="scratch folder: training data and runs")
    ap.add_argument("--data-root", default=str(REPO / "data"), help="where the final test sets are generated")
    args = ap.parse_args()
    task, version = BUNDLE_TASK[args.bundle], bundle_version(args.bundle)
    done = already_scored(args.bundle, version)
    if done:
        raise SystemExit(f"error: {args.bundle} {version} was scored on the final test set already ({done[0].name}); "
                         "the final test runs once per bundle version")
    work = Path(args.work) / args.bundle
    train_data = ensure_generated(DEVELOPMENT[task][0], work)
    finals = [ensure_generated(s, args.data_root) for s in FINAL_TEST[task]]
    per_seed: dict[str, dict] = {}
    curves: dict[str, dict[str, list]] = {}
    for seed in args.seeds:
        root = work / "runs" / f"s{seed}"
        wall, curve, peak_gb = train(task, seed, root, train_data)
        row: dict[str, float] = {"train_wall_s": round(wall, 1), "peak_rss_gb": round(peak_gb, 2)}
        for stage, name in ((1, "best_epoch"), (2, "best_epoch_stage2")):
            points = [p for p in curve if p["stage"] == stage]
            if points:
                row[name] = max(points, key=lambda p: p.get("val_mean_dice", -1))["epoch"]
        for data in finals:
            row.update({f"{data.name}_{k}": v for k, v in score(task, seed, root, data).items()})
        per_seed[str(seed)] = row
        curves[f"seed_{seed}"] = {k: [p.get(k) for p in curve] for k in sorted({k for p in curve for k in p})}
        print(json.dumps(row), flush=True)
    keys = list(next(iter(per_seed.values())))
    means = {k: round(sum(r[k] for r in per_seed.values()) / len(per_seed), 4) for k in keys
             if all(isinstance(r[k], (int, float)) for r in per_seed.values())}
    lines = [f"# Final test of {args.bundle} {version}", "",
             f"Seeds {', '.join(map(str, args.seeds))}; final sets {', '.join(d.name for d in finals)} "
             "(pipeline.data.protocol); means over the seeds:", ""]
    lines += [f"- {k}: {v}" for k, v in means.items()]
    if task == "ct":
        lines += ["", "Goals of issue 37 on the published-contrast set (seed mean):", *goals(means)]
    print("\n".join(lines))
    lesion_tables = {}
    if task == "ct":
        for seed in args.seeds:
            path = work / "runs" / f"s{seed}" / f"eval_{finals[0].name}" / "lesions.csv"
            with path.open() as f:
                rows = list(csv.DictReader(f))
            lesion_tables[f"lesions_seed_{seed}"] = {k: [r[k] for r in rows] for k in rows[0]} if rows else {}
    write_json("final_test", {"bundle_version": version, **{f"mean_{k}": v for k, v in means.items()},
                              **{f"seed{s}_{k}": v for s, r in per_seed.items() for k, v in r.items()}},
               lines=lines, variant=f"{args.bundle}_{version}", command=quoted_argv(),
               tables={"curves_" + k: v for k, v in curves.items()} | lesion_tables,
               path=result_path("final_test", ".json", f"{args.bundle}_{version}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
