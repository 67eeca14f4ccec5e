"""Which tumours does the CT model find? Per held-out phantom: tumour size, its contrast with the gland around it,
and the tumour Dice, recall and precision of trained runs (issue 14 a, the tumour aim of Dice 0.50).

The phantom generator makes a tumour hypodense by 10-40 HU, but the gland around it carries fatty lobulation that
lowers the gland's own mean, so some tumours differ from their surroundings mostly in texture. This script reads
the labels and images of the held-out phantoms (the 4 test phantoms and the 8 unseen ones that
``benchmarks/recipes.py --task ct`` scores) and the per-case tables its evaluations wrote
(``<work>/runs/<run>/eval_<data>/metrics_per_case.csv``), and writes one row per case with a tumour: volume, mean
HU of the tumour and of the gland within ``--shell_mm`` of it (and the gland's standard deviation there), and each
run's tumour Dice / recall / precision. Nothing is trained or predicted here.

    python benchmarks/tumour_cases.py --runs epochs_120_s0 epochs_120_s1 [--work /tmp/ct_recipes]
        [--out benchmarks/results/tumour_cases.md]
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, machine_header, quoted_argv, write_result  # noqa: E402

DATA_SETS = ("pancreas_phantom", "unseen_phantoms")  # recipes.py: the data set's test split, the unseen phantoms


def case_row(label_path: Path, shell_mm: float) -> dict[str, float] | None:
    """Tumour volume and contrast of one labelled case, or None when it has no tumour."""
    img = nib.load(label_path)
    label = np.asarray(img.dataobj)
    tumour = label == 2
    if not tumour.any():
        return None
    hu = np.asarray(nib.load(label_path.parent.parent / "imagesTs" / label_path.name).dataobj, dtype=np.float32)
    zooms = img.header.get_zooms()[:3]
    dist = ndimage.distance_transform_edt(~tumour, sampling=zooms)
    shell = (label == 1) & (dist <= shell_mm)
    return {"tumour_ml": float(tumour.sum() * np.prod(zooms) / 1000), "hu_tumour": float(hu[tumour].mean()),
            "hu_gland": float(hu[shell].mean()), "sd_gland": float(hu[shell].std()),
            "contrast": float(hu[shell].mean() - hu[tumour].mean())}


def run_scores(work: Path, run: str, data_set: str) -> dict[str, dict[str, str]]:
    table = work / "runs" / run / f"eval_{data_set}" / "metrics_per_case.csv"
    if not table.is_file():
        raise SystemExit(f"{table}: no per-case table (run benchmarks/recipes.py --task ct for {run} first)")
    with table.open() as f:
        return {r["case"]: r for r in csv.DictReader(f)}


def _f(value: str | None) -> str:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "-"
    return "-" if np.isnan(v) else f"{v:.2f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", required=True, help="run folders of benchmarks/recipes.py (recipe_sSEED)")
    ap.add_argument("--work", default="/tmp/ct_recipes")
    ap.add_argument("--shell_mm", type=float, default=5.0, help="gland within this distance of the tumour")
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/tumour_cases.md"))
    args = ap.parse_args()
    work = Path(args.work)
    scores = {(run, d): run_scores(work, run, d) for run in args.runs for d in DATA_SETS}
    head = "| set | case | tumour (ml) | HU tumour | HU gland | gland SD | contrast (HU) |"
    rule = "|---|---|---|---|---|---|---|"
    for run in args.runs:
        head += f" {run}: Dice / recall / precision |"
        rule += "---|"
    rows, contrasts = [head, rule], []
    for d in DATA_SETS:
        for label_path in sorted((work / d / "labelsTs").glob("*.nii.gz")):
            case = label_path.name[: -len(".nii.gz")]
            c = case_row(label_path, args.shell_mm)
            if c is None:
                continue
            contrasts.append(c["contrast"])
            line = (f"| {'test' if d == DATA_SETS[0] else 'unseen'} | {case} | {c['tumour_ml']:.1f} | "
                    f"{c['hu_tumour']:.0f} | {c['hu_gland']:.0f} | {c['sd_gland']:.0f} | {c['contrast']:.0f} |")
            for run in args.runs:
                s = scores[(run, d)].get(case, {})
                line += (f" {_f(s.get('dice_tumour'))} / {_f(s.get('recall_tumour'))} / "
                         f"{_f(s.get('precision_tumour'))} |")
            rows.append(line)
    lines = ["# Tumours of the held-out phantoms: size, contrast and what the model finds", "",
             machine_header(quoted_argv()), "",
             f"Contrast = mean HU of the gland (label 1) within {args.shell_mm:g} mm of the tumour minus the tumour's "
             "mean HU. Dice / recall / precision per case from each run's evaluation (`evaluate.json`, "
             "best checkpoint, "
             "on the resampled grid); `-` where the model predicted no tumour voxel (precision undefined).", "",
             *rows, "", f"{len(contrasts)} tumours; contrast median {np.median(contrasts):.0f} HU, "
             f"range {min(contrasts):.0f} to {max(contrasts):.0f} HU."]
    write_result(args.out, lines)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
