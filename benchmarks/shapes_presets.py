"""Train the unet bundle on the 2D shapes with each preset, score the test split, write a results table.

Targets (issue: foundation): default bundle mean foreground IoU >= 0.95 on the test split within 10 minutes of
training on 2 CPU cores; each of precision / standard / context >= 0.93.

    python benchmarks/shapes_presets.py [--presets standard precision context fcn] [--epochs N]
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, machine_header, quoted_argv, read_summary, run_bundle  # noqa: E402

FRAGMENTS = {
    "standard": None,  # the bundle's default network
    "precision": "configs/net/unet_precision.json",
    "context": "configs/net/unet_context.json",
    "fcn": "configs/net/fcn.json",
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["standard", "precision", "context"], choices=list(FRAGMENTS))
    ap.add_argument("--epochs", type=int, default=None, help="override the bundle's epochs")
    ap.add_argument("--work", default="/tmp/shapes_presets", help="scratch folder for checkpoints and logs")
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/shapes_presets.md"))
    args = ap.parse_args()

    from pipeline.data.prepare import ensure_dataset

    ensure_dataset("data/shapes2d", "data/shapes2d", "shapes2d", n=1000, seed=0)  # generation is not training time
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    rows = []
    for preset in args.presets:
        files = ["bundles/unet/train.json"] + ([FRAGMENTS[preset]] if FRAGMENTS[preset] else [])
        root = work / preset
        overrides = {"bundle_root": root}
        if args.epochs:
            overrides["epochs"] = args.epochs
        train = run_bundle(files, overrides, root / "train.log")
        if train.returncode:
            print(train.log[-3000:])
            raise SystemExit(f"training {preset} failed (log {root / 'train.log'})")
        ev = run_bundle(files + ["bundles/unet/evaluate.json"], {"bundle_root": root}, root / "evaluate.log")
        if ev.returncode:
            print(ev.log[-3000:])
            raise SystemExit(f"evaluation {preset} failed (log {root / 'evaluate.log'})")
        s = read_summary(root / "runs/eval/metrics_summary.csv")
        iou = (s["iou_ellipse"] + s["iou_rectangle"]) / 2
        dice = (s["dice_ellipse"] + s["dice_rectangle"]) / 2
        rows.append((preset, train.wall_s, train.peak_rss_mb, iou, s["iou_ellipse"], s["iou_rectangle"], dice))
        print(f"{preset}: train {train.wall_s:.0f} s, test mean IoU {iou:.4f}, Dice {dice:.4f}", flush=True)

    lines = [
        "# U-Net presets on the 2D shapes (test split, 100 images)",
        "",
        machine_header(quoted_argv()),
        "",
        "Training is the whole `python -m monai.bundle run` process (data caching, validation every `val_interval`"
        " epochs and checkpointing included; data generation excluded). IoU and Dice are foreground means"
        " (ellipse, rectangle) over the test images, from `evaluate.json` with the best checkpoint.",
        "",
        "| network | training wall time (s) | peak memory (MB) | mean IoU | IoU ellipse | IoU rectangle | mean Dice | target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for preset, wall, rss, iou, ie, ir, dice in rows:
        target = 0.95 if preset == "standard" else (0.93 if preset in ("precision", "context") else None)
        verdict = "-" if target is None else (
            f"IoU >= {target} in <= 600 s: {'met' if iou >= target and wall <= 600 else 'MISSED'}"
        )
        name = preset + (" (bundle default)" if preset == "standard" else "")
        lines.append(f"| {name} | {wall:.0f} | {rss:.0f} | {iou:.4f} | {ie:.4f} | {ir:.4f} | {dice:.4f} | {verdict} |")
    lines += ["", "The report this project starts from measured mean IoU 0.79-0.82 on the same kind of data.", ""]
    Path(args.out).write_text("\n".join(lines))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
