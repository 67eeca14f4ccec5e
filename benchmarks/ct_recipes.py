"""CT recipe comparison: validation Dice against wall-clock time for the default and alternative recipes.

Each recipe is the attn_unet bundle's train.json with a few config values changed (any config id, also inside the
data fragment, e.g. ``data#augmentation#1#ratios``), trained in a child process from the same generated phantoms
and seed. The script records every validation (epoch, seconds since the process started, Dice per class), the
best checkpoint's Dice on the held-out phantoms of the data set plus extra unseen phantoms of the same generator
(another seed), writes a CSV of every point, a PNG of the curves and a markdown table. Runs already in the CSV are
skipped, so an interrupted comparison resumes.

    python benchmarks/ct_recipes.py --recipes default sgd_poly --seeds 0
    python benchmarks/ct_recipes.py --list
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, machine_header, quoted_argv, read_summary  # noqa: E402

TRAIN = "bundles/attn_unet/train.json"
SGD = {"_target_": "torch.optim.SGD", "params": "$@network.parameters()", "lr": "@learning_rate", "momentum": 0.99,
       "nesterov": True, "weight_decay": 3e-5}
POLY = {"_target_": "torch.optim.lr_scheduler.PolynomialLR", "optimizer": "@optimizer", "total_iters": "@epochs",
        "power": 0.9}
RECIPES: dict[str, dict[str, object]] = {
    "default": {},
    # nnU-Net's optimiser: SGD, Nesterov momentum 0.99, lr 1e-2 with polynomial decay
    "sgd_poly": {"optimizer": SGD, "lr_scheduler": POLY, "learning_rate": 0.01},
    # nnU-Net's sampling: a third of the patches centred on foreground, the rest anywhere in the body
    "fg_third": {"data#augmentation#1#ratios": [2, 1, 0]},
    # a quarter of the patches on the pancreas and a quarter on the tumour, half on background anywhere in the body
    "fg_2_1_1": {"data#augmentation#1#ratios": [2, 1, 1]},
    "fg_2_1_1_65ep": {"data#augmentation#1#ratios": [2, 1, 1], "epochs": 65},
    "sgd_poly_fg_third": {"optimizer": SGD, "lr_scheduler": POLY, "learning_rate": 0.01,
                          "data#augmentation#1#ratios": [2, 1, 0]},
    # more context per voxel of compute
    "coarse_3mm": {"target_spacing": [3.0, 3.0, 4.0]},
    "patch_96": {"patch_size": [96, 96, 48], "num_samples": 1},
    "no_spatial_aug": {"data#augmentation#2#weights": [0.0, 0.0, 1.0]},
    "lr_6e3_70ep": {"learning_rate": 0.006, "epochs": 70},
    "epochs_70": {"epochs": 70},
}
VAL_LINE = re.compile(r"^(\S+ \S+) - INFO - Epoch\[(\d+)\] Metrics -- (.*val_mean_dice.*)$", re.M)
START_LINE = re.compile(r"^(\S+ \S+) - ", re.M)
DATA_WAIT = re.compile(r"data wait: ([\d.]+) s of ([\d.]+) s iteration time")
FIELDS = ["recipe", "seed", "epoch", "seconds", "val_dice_pancreas", "val_dice_tumour", "val_mean_dice"]


def run_child(recipe: str, seed: int, root: Path, dataset_dir: Path, extra: dict[str, object],
              files: list[str]) -> None:
    """Run one recipe in this process (called in a child): overrides applied after the fragments are expanded."""
    from monai.bundle import ConfigParser

    logging.basicConfig(level=logging.INFO, format="%(asctime)s - %(levelname)s - %(message)s", stream=sys.stdout)
    parser = ConfigParser()
    parser.read_config([str(REPO / f) for f in files])
    parser.resolve_macro_and_relative_ids()
    parser.update({"bundle_root": str(root), "dataset_dir": str(dataset_dir), "seed": seed,
                   **RECIPES[recipe], **extra})
    for section in ("initialize", "run", "finalize"):
        parser.get_parsed_content(section)


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


def evaluate(recipe: str, seed: int, root: Path, dataset_dir: Path, extra: dict[str, object], log: Path) -> dict[str, float]:
    """The best checkpoint on the test split of ``dataset_dir``, with the recipe's preprocessing."""
    extra = {**extra, "eval_dir": str(root / f"eval_{dataset_dir.name}")}
    cmd = child_command(recipe, seed, root, dataset_dir, extra, [TRAIN, "bundles/attn_unet/evaluate.json"])
    with log.open("w") as f:
        proc = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode:
        raise SystemExit(f"evaluation failed, see {log}")
    return read_summary(root / f"eval_{dataset_dir.name}" / "metrics_summary.csv")


def child_command(recipe: str, seed: int, root: Path, data: Path, extra: dict[str, object], files: list[str]) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--run-child", recipe, str(seed), str(root),
            "--child-data", str(data), "--child-extra", json.dumps(extra), "--child-files", *files]


def ensure_data(work: Path) -> tuple[Path, Path]:
    """The default phantom set (as the bundle generates it) and 8 further unseen phantoms of another seed."""
    from pipeline.data.phantom import make_pancreas_dataset

    data, extra = work / "pancreas_phantom", work / "unseen_phantoms"
    if not (data / "dataset.json").is_file():
        make_pancreas_dataset(data, n=24, seed=0)
    if not (extra / "dataset.json").is_file():
        make_pancreas_dataset(extra, n=1, n_test=8, seed=1000)
    return data, extra


def plot(rows: list[dict[str, str]], out: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5))
    ax = fig.subplots()
    for key in sorted({(r["recipe"], r["seed"]) for r in rows}):
        pts = sorted((float(r["seconds"]), float(r["val_dice_pancreas"])) for r in rows if (r["recipe"], r["seed"]) == key)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"{key[0]} (seed {key[1]})")
    ax.axhline(0.80, color="grey", ls="--", lw=1)
    ax.axvline(900, color="grey", ls=":", lw=1)
    ax.set_xlabel("seconds since the training process started (data cached, no generation)")
    ax.set_ylabel("validation Dice, pancreas")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=90)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipes", nargs="*", default=["default"])
    ap.add_argument("--seeds", nargs="*", type=int, default=[0])
    ap.add_argument("--epochs", type=int, default=None, help="override every recipe's epochs")
    ap.add_argument("--work", default="/tmp/ct_recipes")
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/ct_recipes"))
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--run-child", nargs=3, metavar=("RECIPE", "SEED", "ROOT"), help=argparse.SUPPRESS)
    ap.add_argument("--child-data", help=argparse.SUPPRESS)
    ap.add_argument("--child-extra", default="{}", help=argparse.SUPPRESS)
    ap.add_argument("--child-files", nargs="*", default=[TRAIN], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.list:
        for name, overrides in RECIPES.items():
            print(f"{name}: {json.dumps(overrides)}")
        return 0
    if args.run_child:
        recipe, seed, root = args.run_child
        run_child(recipe, int(seed), Path(root), Path(args.child_data), json.loads(args.child_extra), args.child_files)
        return 0
    unknown = [r for r in args.recipes if r not in RECIPES]
    if unknown:
        ap.error(f"unknown recipe(s) {unknown}; --list shows them")
    work, out = Path(args.work), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data, unseen = ensure_data(work)
    curve_csv, final_csv = out / "curves.csv", out / "final.csv"
    rows = list(csv.DictReader(curve_csv.open())) if curve_csv.is_file() else []
    finals = list(csv.DictReader(final_csv.open())) if final_csv.is_file() else []
    done = {(r["recipe"], r["seed"]) for r in finals}
    extra = {"epochs": args.epochs} if args.epochs else {}
    for recipe in args.recipes:
        for seed in args.seeds:
            if (recipe, str(seed)) in done:
                print(f"{recipe} seed {seed}: already measured, skipped")
                continue
            root = work / "runs" / f"{recipe}_s{seed}"
            root.mkdir(parents=True, exist_ok=True)
            log_file = root / "train.log"
            cmd = child_command(recipe, seed, root, data, extra, [TRAIN])
            print(f"{recipe} seed {seed}: training ({log_file})", flush=True)
            start = dt.datetime.now()
            t0 = time.perf_counter()
            with log_file.open("w") as f:
                proc = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
            wall = time.perf_counter() - t0
            if proc.returncode:
                raise SystemExit(f"{recipe} seed {seed} failed, see {log_file}")
            curve = parse_curve(log_file.read_text(), start)
            new = [{"recipe": recipe, "seed": seed, **{k: p.get(k, float("nan")) for k in FIELDS[2:]}} for p in curve]
            test = evaluate(recipe, seed, root, data, extra, root / "eval_test.log")
            more = evaluate(recipe, seed, root, unseen, extra, root / "eval_unseen.log")
            best = max(curve, key=lambda p: p.get("val_mean_dice", -1))
            finals.append({
                "recipe": recipe, "seed": seed, "train_wall_s": round(wall, 1), "best_epoch": best["epoch"],
                "val_dice_pancreas": best.get("val_dice_pancreas"), "val_dice_tumour": best.get("val_dice_tumour", 0.0),
                "test4_dice_pancreas": test.get("dice_pancreas"), "test4_dice_tumour": test.get("dice_tumour"),
                "unseen8_dice_pancreas": more.get("dice_pancreas"), "unseen8_dice_tumour": more.get("dice_tumour"),
                "heldout12_dice_pancreas": (4 * test["dice_pancreas"] + 8 * more["dice_pancreas"]) / 12,
                "data_wait_percent": data_wait_share(log_file.read_text()),
                "overrides": json.dumps({**RECIPES[recipe], **extra}),
            })
            rows += [{k: str(v) for k, v in r.items()} for r in new]
            with curve_csv.open("w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=FIELDS)
                w.writeheader()
                w.writerows(rows)
            with final_csv.open("w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(finals[-1]), restval="")
                w.writeheader()
                w.writerows(finals)
            print(json.dumps(finals[-1]), flush=True)
            plot(rows, out / "curves.png")
            write_table(finals, out / "README.md")
    return 0


def write_table(finals: list[dict], path: Path) -> None:
    lines = ["# CT recipes: validation Dice against time (attn_unet bundle, CT phantoms)", "", machine_header(quoted_argv()),
             "", "Every run: the 24 default phantoms (19 training, 5 validation), the recipe's epochs, bfloat16 on CPU; "
             "held-out = the 4 test phantoms + 8 unseen phantoms of generator seed 1000, best checkpoint. Time is the "
             "training process (caching, training, validation), without data generation. The seed also draws the "
             "validation split, so validation Dice compares recipes within a seed; the held-out 12 compare across "
             "seeds. Curves: `curves.csv`, `curves.png`.", "",
             "| recipe | seed | train wall (s) | best epoch | val Dice pancreas | val Dice tumour | held-out 12 Dice pancreas |"
             " test 4 tumour | unseen 8 tumour | data wait (% of iteration time) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for f in finals:
        lines.append(f"| {f['recipe']} | {f['seed']} | {float(f['train_wall_s']):.0f} | {f['best_epoch']} | "
                     f"{float(f['val_dice_pancreas']):.4f} | {float(f['val_dice_tumour'] or 0):.4f} | "
                     f"{float(f['heldout12_dice_pancreas']):.4f} | {float(f['test4_dice_tumour']):.4f} | "
                     f"{float(f['unseen8_dice_tumour']):.4f} | {f.get('data_wait_percent') or 'not logged'} |")
    lines += ["", "Overrides per recipe (config ids on top of `bundles/attn_unet/train.json`):", ""]
    for name in dict.fromkeys(f["recipe"] for f in finals):
        lines.append(f"- `{name}`: `{RECIPES.get(name, {})}`")
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
