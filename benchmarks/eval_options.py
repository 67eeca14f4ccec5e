"""Evaluation-time options scored on trained CT recipe runs: post-processing and sliding-window overlap.

``recipes.py --task ct`` leaves each trained run in ``<work>/runs/<recipe>_s<seed>`` (best checkpoint, plan). This
script scores each run's best checkpoint again through ``evaluate.json``, once per option, on the run's own
validation cases (the seed draws them), the 4 test phantoms and the 8 unseen phantoms of generator seed 1000, and
writes the mean Dice per class and, per option, how many cases it made better or worse than the bundle's
evaluation defaults. No training happens, so an option that only changes evaluation is compared on the very same
weights; the choice of default is then shown, not asserted.

    python benchmarks/recipes.py --task ct --recipes lr6e3 --seeds 0 1 2       # the trained runs
    python benchmarks/eval_options.py --runs lr6e3_s0 lr6e3_s1 lr6e3_s2 --options default lcc overlap_0.5
"""
from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, machine_header, quoted_argv, write_result  # noqa: E402
from recipes import TASKS, ensure_data, run_evaluation  # noqa: E402

# evaluate.json keys per option; "default" is the bundle's evaluation as it ships (no TTA for CT: its training
# augmentation flips no axis)
OPTIONS: dict[str, dict[str, object]] = {
    "default": {},
    # MONAI's KeepLargestConnectedComponentd over pancreas and tumour together (the bundle's keep_largest_component)
    "lcc": {"keep_largest_component": True},
    # the sliding-window overlap: a quarter of a patch (the bundle's before 0.5.3) or half (nnU-Net's, the bundle's
    # since 0.5.3, chosen by the run of 2026-11-29 in ../results/ct_eval_options.md)
    "overlap_0.25": {"sw_overlap": 0.25},
    "overlap_0.5": {"sw_overlap": 0.5},
    # the same windows blended with equal weights, or with a Gaussian twice as wide (MONAI's sigma_scale 0.125 by
    # default): does a flatter blending keep the small tumours that the centre-weighted average loses?
    "overlap_0.5_constant": {"sw_overlap": 0.5, "data#inferer#mode": "constant"},
    "overlap_0.5_sigma_0.25": {"sw_overlap": 0.5, "data#inferer#sigma_scale": 0.25},
}
SETS = (("validation", "pancreas_phantom", "validation"), ("test4", "pancreas_phantom", "test"),
        ("unseen8", "unseen_phantoms", "test"))
CLASSES = ("pancreas", "tumour")


def per_case(csv_path: Path) -> dict[str, dict[str, float]]:
    """case -> {dice_<class>: value} from a metrics_per_case.csv (empty cells, a class absent from the case, are
    left out)."""
    with csv_path.open() as f:
        return {row["case"]: {k: float(v) for k, v in row.items() if k.startswith("dice_") and v not in ("", "nan")}
                for row in csv.DictReader(f)}


def recipe_and_seed(run: Path) -> tuple[str, int]:
    """The recipe and seed of a trained run folder ``<recipe>_s<seed>``; one line naming the folder otherwise."""
    m = re.fullmatch(r"(.+)_s(\d+)", run.name)
    if not m:
        raise SystemExit(f"{run}: run folders are named <recipe>_s<seed>, as recipes.py writes them")
    if m.group(1) not in TASKS["ct"].recipes:
        raise SystemExit(f"{run}: unknown recipe {m.group(1)!r} (recipes.py --list)")
    if not (run / "models" / "model.pt").is_file():
        raise SystemExit(f"{run}: no models/model.pt; train it first with recipes.py")
    return m.group(1), int(m.group(2))


def score(run: Path, option: str, data: Path, split: str, out: Path) -> tuple[dict[str, dict[str, float]], float]:
    """Per-case Dice of ``run``'s best checkpoint on ``split`` of ``data`` with ``option``; (cases, seconds)."""
    recipe, seed = recipe_and_seed(run)
    eval_dir = out / f"{option}_{data.name}_{split}"
    start = time.perf_counter()
    run_evaluation("ct", recipe, seed, run, data, {**OPTIONS[option], "tta": False, "eval_split": split}, eval_dir,
                   out / f"{option}_{data.name}_{split}.log")
    return per_case(eval_dir / "metrics_per_case.csv"), time.perf_counter() - start


def mean(cases: dict[str, dict[str, float]], key: str) -> float | None:
    values = [c[key] for c in cases.values() if key in c]
    return sum(values) / len(values) if values else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", required=True, help="run folders under <work>/runs (recipe_s<seed>)")
    ap.add_argument("--options", nargs="+", default=list(OPTIONS), choices=list(OPTIONS))
    ap.add_argument("--work", default=TASKS["ct"].work, help="recipes.py's scratch folder (data and runs)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "ct_eval_options.md"))
    args = ap.parse_args()
    work = Path(args.work)
    data_sets = {d.name: d for d in ensure_data("ct", work)}
    options = ["default", *[o for o in args.options if o != "default"]]
    rows = []
    for name in args.runs:
        run = work / "runs" / name
        scores: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
        recipe_and_seed(run)  # a bad folder stops here, before anything is written into it
        out = run / "eval_options"
        out.mkdir(exist_ok=True)
        for option in options:
            scores[option] = {}
            seconds = 0.0
            for label, data_name, split in SETS:
                scores[option][label], s = score(run, option, data_sets[data_name], split, out)
                seconds += s
            base, this = scores["default"], scores[option]
            diffs = [this[label][case].get("dice_pancreas", 0.0) - base[label][case].get("dice_pancreas", 0.0)
                     for label in base for case in base[label]]
            row = {"run": name, "option": option, "seconds": seconds,
                   "better": sum(d > 0.005 for d in diffs), "worse": sum(d < -0.005 for d in diffs)}
            for label, _, _ in SETS:
                for c in CLASSES:
                    row[f"{label}_{c}"] = mean(this[label], f"dice_{c}")
            cases = {**{f"t{k}": v for k, v in this["test4"].items()},
                     **{f"u{k}": v for k, v in this["unseen8"].items()}}
            row["heldout12_pancreas"] = mean(cases, "dice_pancreas")
            rows.append(row)
            print(json.dumps(row), flush=True)

    def f(v: float | None) -> str:
        return "-" if v is None else f"{v:.4f}"

    lines = ["# CT evaluation options on trained runs: post-processing and sliding-window overlap", "",
             machine_header(quoted_argv()), "",
             "Each run's best checkpoint (`<work>/runs/<run>/models/model.pt`, trained by `recipes.py --task ct`) "
             "scored through `evaluate.json` with the option's keys; validation = the run's own 5 validation "
             "phantoms (the seed draws them), held-out 12 = the 4 test phantoms + 8 unseen phantoms of generator "
             "seed 1000. Better / worse: held-out and validation cases whose pancreas Dice moved by more than 0.005 "
             "against `default` (the bundle's evaluation as it ships). Seconds: the three evaluation processes.", "",
             "| run | option | val pancreas | val tumour | held-out 12 pancreas | test 4 pancreas | unseen 8 pancreas "
             "| test 4 tumour | unseen 8 tumour | cases better / worse | seconds |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['run']} | {r['option']} | {f(r['validation_pancreas'])} | {f(r['validation_tumour'])} | "
                     f"{f(r['heldout12_pancreas'])} | {f(r['test4_pancreas'])} | {f(r['unseen8_pancreas'])} | "
                     f"{f(r['test4_tumour'])} | {f(r['unseen8_tumour'])} | {r['better']} / {r['worse']} | "
                     f"{r['seconds']:.0f} |")
    lines += ["", "Options (keys on top of `bundles/attn_unet/train.json` + `evaluate.json`):", ""]
    lines += [f"- `{o}`: `{OPTIONS[o]}`" for o in options]
    write_result(args.out, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
