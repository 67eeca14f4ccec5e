"""The user's command, timed and scored (issue: Attention U-Net, target 4a), and bfloat16 vs float32 Dice.

Runs ``python -m monai.bundle run --config_file bundles/attn_unet/train.json`` with its defaults from a state
with no generated data (so data generation is counted, as for a new user), records wall time, peak memory (RSS of
the process, via wait4) and the validation Dice per class logged at each validation, then evaluates the best
checkpoint on the held-out phantoms (imagesTs/labelsTs). ``--compare-fp32`` then trains the same default recipe
again with ``--amp float32`` (same data, seed and epochs) and compares its validation Dice with the default run's,
which is bfloat16 on a CPU that runs it natively. ``--compare-epochs N`` does the same comparison with two shorter
runs of N epochs instead (bfloat16 and float32), without the default run when ``--skip-default`` is given.

    python benchmarks/attn_unet_train.py --compare-fp32
    python benchmarks/attn_unet_train.py --skip-default --keep-data --compare-epochs 20
"""
from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, machine_header, quoted_argv, read_summary, run_bundle  # noqa: E402

TRAIN = ["bundles/attn_unet/train.json"]
EPOCH_LINE = re.compile(r"Epoch\[(\d+)\] Metrics -- (.*val_dice_pancreas.*)")
TRAIN_EPOCH_TIME = re.compile(r"SupervisedTrainer - INFO - Epoch\[\d+\] Complete\. Time taken: (\d+):(\d+):([\d.]+)")


def train_seconds(log: str) -> float:
    """Sum of the trainer's epoch times (validation runs inside the epoch that triggers it)."""
    return sum(int(h) * 3600 + int(m) * 60 + float(sec) for h, m, sec in TRAIN_EPOCH_TIME.findall(log))


def scores(run) -> tuple[float, float, float]:
    """(seconds in training epochs, last validation Dice pancreas, best-checkpoint Dice pancreas)."""
    hist = val_history(run.log)
    return train_seconds(run.log), hist[-1][1].get("val_dice_pancreas", float("nan")), best_of(hist)[1]


def val_history(log: str) -> list[tuple[int, dict[str, float]]]:
    """(epoch, {metric: value}) for every validation logged by the bundle."""
    out = []
    for m in EPOCH_LINE.finditer(log):
        metrics = dict(re.findall(r"(\w+): ([-\d.]+)", m.group(2)))
        out.append((int(m.group(1)), {k: float(v) for k, v in metrics.items()}))
    return out


def best_of(history, key="val_dice_pancreas") -> tuple[int, float]:
    epoch, metrics = max(history, key=lambda em: em[1].get("val_mean_dice", -1))
    return epoch, metrics.get(key, float("nan"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/attn_unet_bench")
    ap.add_argument("--compare-epochs", type=int, default=0, help="bf16 vs fp32 runs of this many epochs (0: skip)")
    ap.add_argument("--compare-fp32", action="store_true",
                    help="after the default run, the same run in float32, and compare Dice")
    ap.add_argument("--skip-default", action="store_true", help="only the precision comparison")
    ap.add_argument("--keep-data", action="store_true", help="do not delete data/pancreas_phantom first")
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/attn_unet_train.md"))
    args = ap.parse_args()
    if args.compare_fp32 and args.skip_default:
        ap.error("--compare-fp32 compares against the default run: drop --skip-default (or use --compare-epochs N)")
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    lines = ["# Attention U-Net: the user's command on CT phantoms", "", machine_header(quoted_argv()), ""]

    if not args.skip_default:
        generated = REPO / "data/pancreas_phantom"
        if not args.keep_data and generated.is_dir():
            import json

            if json.loads((generated / "dataset.json").read_text()).get("name") != "Pancreas phantom":
                raise SystemExit(f"{generated} does not hold generated phantoms: not deleting it (use --keep-data)")
            shutil.rmtree(generated)
        root = work / "default"
        run = run_bundle(TRAIN, {"bundle_root": root}, root / "train.log")
        if run.returncode:
            print(run.log[-4000:])
            raise SystemExit(f"the default run failed (log {root / 'train.log'})")
        hist = val_history(run.log)
        epoch, dice = best_of(hist)
        ev = run_bundle(TRAIN + ["bundles/attn_unet/evaluate.json"], {"bundle_root": root}, root / "evaluate.log")
        test = read_summary(root / "runs/eval/metrics_summary.csv") if ev.returncode == 0 else {}
        ok = lambda c: "met" if c else "MISSED"  # noqa: E731
        lines += [
            "## Defaults: `python -m monai.bundle run --config_file bundles/attn_unet/train.json`",
            "",
            "Started with no generated data: phantom generation, caching, training, validation and checkpointing are"
            " all inside the measured wall time.",
            "",
            "| target | measured | verdict |",
            "|---|---|---|",
            f"| finishes within 15 min on 2 CPU cores | {run.wall_s:.0f} s | {ok(run.wall_s <= 900)} |",
            f"| pancreas Dice >= 0.80 on phantom validation cases | best checkpoint (epoch {epoch}): {dice:.4f} |"
            f" {ok(dice >= 0.80)} |",
            f"| peak memory <= 4 GB | {run.peak_rss_mb / 1024:.2f} GB (max RSS) | {ok(run.peak_rss_mb <= 4096)} |",
            "",
            "Validation history (sliding window on the validation phantoms, resampled space):",
            "",
            "| epoch | Dice pancreas | Dice tumour | HD95 pancreas (mm) | mean Dice |",
            "|---|---|---|---|---|",
        ]
        for ep, m in hist:
            lines.append(f"| {ep} | {m.get('val_dice_pancreas', float('nan')):.4f} | "
                         f"{m.get('val_dice_tumour', float('nan')):.4f} | "
                         f"{m.get('val_hd95_pancreas', float('nan')):.1f} |"
                         f" {m.get('val_mean_dice', float('nan')):.4f} |")
        if test:
            lines += ["", "Held-out phantoms (imagesTs/labelsTs, `evaluate.json`, best checkpoint): "
                      + ", ".join(f"{k} {v:.4f}" for k, v in test.items()), ""]
        print("\n".join(lines), flush=True)

    compare = args.compare_epochs or (args.compare_fp32 and not args.skip_default)
    if compare:
        results = {}
        if not args.compare_epochs:
            if "precision: bfloat16" not in run.log:
                raise SystemExit("the default run did not choose bfloat16 on this machine: nothing to compare")
            results["bfloat16"] = scores(run)
        for amp in ("bfloat16", "float32"):
            if amp in results:
                continue
            root = work / f"compare_{amp}"
            overrides = {"bundle_root": root, "amp": amp}
            if args.compare_epochs:
                overrides.update(epochs=args.compare_epochs, val_interval=max(1, args.compare_epochs // 4))
            run = run_bundle(TRAIN, overrides, root / "train.log")
            if run.returncode:
                print(run.log[-4000:])
                raise SystemExit(f"the {amp} run failed")
            results[amp] = scores(run)
            print(amp, results[amp], flush=True)
        (tb, db, bb), (tf, df, bf) = results["bfloat16"], results["float32"]
        budget = f"{args.compare_epochs} epochs each" if args.compare_epochs else \
            "the default run (bfloat16) and the same command" \
            " with `--amp float32`"
        lines += [
            f"## bfloat16 vs float32, same recipe, data and seed: {budget}",
            "",
            "| precision | time in training epochs incl. validation (s) | final validation Dice pancreas |"
            " best-checkpoint Dice pancreas |",
            "|---|---|---|---|",
            f"| bfloat16 | {tb:.0f} | {db:.4f} | {bb:.4f} |",
            f"| float32 | {tf:.0f} | {df:.4f} | {bf:.4f} |",
            "",
            f"Difference (bfloat16 - float32): final {db - df:+.4f}, best {bb - bf:+.4f}; target |diff| <= 0.01:"
            f" {'met' if abs(bb - bf) <= 0.01 else 'MISSED'} (best checkpoint). Speed-up {tf / tb:.2f}x.",
            "",
        ]
    Path(args.out).write_text("\n".join(lines))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
