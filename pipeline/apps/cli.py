"""``python -m pipeline <command>``: the jobs that are not a bundle run (make data, check a data set, plan,
score a folder of predictions, draw figures, run the study), and ``predict``, an alias that runs a bundle's
inference.json."""
from __future__ import annotations

import argparse
import logging
import sys

from pipeline.errors import PipelineError, install_excepthook


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("make-shapes", help="generate the 2D shapes data set (PNG, MSD-like layout)")
    s.add_argument("--out", required=True, help="output folder (refused if it already holds a data set)")
    s.add_argument("--n", type=int, default=1000, help="number of images (default 1000)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    s.add_argument("--overwrite", action="store_true", help="replace an existing generated set")
    s.add_argument("--variant", default="shapes", choices=("shapes", "context", "precision"),
                   help="shapes (default, the report's), context (outlines only) or precision (small, thin, touching)")
    c = sub.add_parser("make-pancreas", help="generate abdominal CT phantoms in the MSD Task07 Pancreas layout")
    c.add_argument("--out", required=True, help="output folder (refused if it already holds a data set)")
    c.add_argument("--n", type=int, default=20, help="number of training cases (default 20)")
    c.add_argument("--n-test", type=int, default=None, help="held-out cases (default max(1, n // 5))")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--scale", type=float, default=1.0, help="voxel spacing multiplier (4 = tiny test volumes)")
    c.add_argument("--overwrite", action="store_true", help="replace an existing generated set")
    c.add_argument("--tumour-contrast", default="published", choices=("published", "v1"),
                   help="tumour-pancreas contrast: the published portal-venous distribution (default) or v1 (before "
                        "2026-12-07, mostly iso-attenuating)")
    k = sub.add_parser("check-data", help="check a data set folder (dataset.json, files, shapes, affines, labels)")
    k.add_argument("dataset_dir")
    n = sub.add_parser("plan",
                       help="plan training from a data set's fingerprint and this machine (spacing, patch, batch)")
    n.add_argument("dataset_dir")
    n.add_argument("--out", default=None, help="plan file (default plans/<data set folder name>.json here)")
    n.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="plan for this device")
    n.add_argument("--spatial-dims", type=int, default=3, choices=(2, 3))
    n.add_argument("--max-cases", type=int, default=None, help="fingerprint a seeded sample of the training cases")
    n.add_argument("--preset", default="standard", choices=("precision", "standard", "context"),
                   help="the network preset the plan is for (its number of poolings sets the strides)")
    e = sub.add_parser("evaluate", help="score a folder of predicted label maps against a folder of labels")
    e.add_argument("--pred", required=True, help="folder of predicted label maps (NIfTI or PNG)")
    e.add_argument("--labels", required=True, help="folder of reference label maps, same case names")
    e.add_argument("--out", required=True, help="folder for metrics_per_case.csv and the summaries")
    e.add_argument("--classes", nargs="+", default=None,
                   help="foreground class names for labels 1..n (default: dataset.json beside the label folder)")
    e.add_argument("--nsd-tolerance", type=float, default=2.0, help="surface Dice tolerance in mm (default 2)")
    e.add_argument("--lesion-class", default="auto",
                   help="class name scored lesion by lesion (found or missed, false positives, case AUROC); default: "
                        "a class named tumour, cancer, lesion or mass if there is one; none: off")
    e.add_argument("--images", default=None,
                   help="the images, for each lesion's contrast in HU (default: imagesX beside a labelsX folder)")
    r = sub.add_parser("predict", help="segment scans with a bundle's inference.json (nnU-Net-style alias)")
    r.add_argument("-i", "--input", required=True, help="an image file, a folder of images or a DICOM series folder")
    r.add_argument("-o", "--output", required=True, help="folder for the label maps (and probabilities/attention)")
    r.add_argument("--bundle", default=None, choices=("attn_unet", "unet"),
                   help="whose inference.json (default: by the checkpoint's data, 3D attn_unet, 2D unet; either one "
                        "runs any network)")
    r.add_argument("--ckpt", nargs="+", default=None,
                   help="checkpoint folder(s) or model file(s) (model.pt / model.ts); several = an ensemble")
    r.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                   help="flip test-time augmentation on every axis (--no-tta: one pass; default: along the axes the "
                        "model's training augmentation flipped, none for the CT recipe)")
    r.add_argument("--save-probabilities", action="store_true", help="also write the softmax probabilities")
    r.add_argument("--save-attention", action="store_true", help="also write the attention maps (AttentionUNet)")
    r.add_argument("--pred-naming", default=None, choices=("pipeline", "nnunet"),
                   help="prediction file names: pipeline (default) <input>_seg.nii.gz, nnunet <case>.nii.gz (the "
                        "input's name without nnU-Net's _0000)")
    r.add_argument("--series-uid", default=None, help="DICOM: the SeriesInstanceUID to segment (default: most slices)")
    r.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:1")
    v = sub.add_parser("convert", help="convert a data set between the MSD and nnU-Net v2 raw layouts (copies; the "
                                       "source is not changed)")
    v.add_argument("--to", required=True, choices=("nnunet", "msd"), help="the layout to write")
    v.add_argument("src", help="the data set folder to convert (MSD with --to nnunet, nnU-Net v2 with --to msd)")
    v.add_argument("dst", help="the new data set folder (must not exist or be empty); with --dataset-id the folder "
                               "that receives DatasetXXX_Name")
    v.add_argument("--dataset-id", type=int, default=None,
                   help="--to nnunet: write DST/DatasetXXX_Name (nnU-Net's naming, e.g. 7 -> Dataset007_Pancreas)")
    v.add_argument("--name", default=None,
                   help="--to nnunet with --dataset-id: the Name part (default: SRC's folder name without TaskXX_)")
    t = sub.add_parser("study", help="the context-vs-precision study: models x data variants x seeds, ablations, 3D")
    t.add_argument("--out", required=True, help="results folder (runs.csv, results.md, plots); rerun to resume")
    t.add_argument("--quick", action="store_true", help="tiny data, 1 seed, 1 epoch: checks the machinery")
    t.add_argument("--work", default=None, help="data, checkpoints, predictions and logs (default OUT/work)")
    t.add_argument("--parts", nargs="+", default=("2d", "ablation", "3d"), choices=("2d", "ablation", "3d"))
    t.add_argument("--dry-run", action="store_true", help="list the runs still to train and stop")
    t.add_argument("--keep-checkpoints", action="store_true", help="keep every run's model.pt (default: deleted "
                   "once its predictions are written)")
    from pipeline.apps.figures.command import add_arguments as figure_arguments

    figure_arguments(sub.add_parser("figures", help="PNG panels per case: image, label, prediction, attention maps"))
    return p


def _class_names(label_dir: str) -> list[str]:
    """Foreground class names from the dataset.json one level above ``label_dir`` (MSD or nnU-Net v2 layout)."""
    import json
    from pathlib import Path

    from pipeline.data.nnunet import label_classes

    path = Path(label_dir).resolve().parent / "dataset.json"
    try:
        names = label_classes(json.loads(path.read_text())["labels"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        names = None
    if not names:
        raise PipelineError(f"{label_dir}: give --classes (no readable dataset.json with 'labels' naming the values "
                            f"1..n at {path})")
    return names


LESION_NAMES = ("tumour", "tumor", "cancer", "lesion", "mass")


def _lesion_class(choice: str, classes: list[str]) -> int | None:
    """Label value of the lesion class: ``auto`` picks a class with a lesion's name, ``none`` none."""
    if choice == "none":
        return None
    if choice == "auto":
        found = [i for i, c in enumerate(classes, 1) if c.lower() in LESION_NAMES]
        return found[0] if found else None
    if choice not in classes:
        raise PipelineError(f"--lesion-class {choice!r} is not one of the classes {classes}")
    return classes.index(choice) + 1


def main(argv: list[str] | None = None) -> int:
    """Run one command; bad input ends with a one-line ``error:`` message and exit code 2."""
    install_excepthook()
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.command == "make-shapes":
            from pipeline.data.shapes_variants import make_shape_variant

            out = make_shape_variant(args.out, args.variant, n=args.n, seed=args.seed, size=args.size,
                                     overwrite=args.overwrite)
            print(f"wrote {args.n} shape images to {out}")
        elif args.command == "make-pancreas":
            from pipeline.data.phantom import make_pancreas_dataset

            out = make_pancreas_dataset(
                args.out, n=args.n, seed=args.seed, n_test=args.n_test, scale=args.scale, overwrite=args.overwrite,
                tumour_contrast=args.tumour_contrast)
            print(f"wrote {args.n} training phantoms (+ held-out) to {out}")
        elif args.command == "check-data":
            from pipeline.data.integrity import check_dataset

            problems = check_dataset(args.dataset_dir)
            for line in problems:
                print(line)
            if problems:
                print(f"error: {len(problems)} problem(s) in {args.dataset_dir}", file=sys.stderr)
                return 1
            print(f"{args.dataset_dir}: no problems found")
        elif args.command == "evaluate":
            from pipeline.evaluation.case_metrics import format_summary
            from pipeline.evaluation.folders import evaluate_folders

            from pipeline.evaluation.lesions import format_lesion_summary

            classes = args.classes or _class_names(args.labels)
            summary = evaluate_folders(args.pred, args.labels, args.out, classes, nsd_tolerance=args.nsd_tolerance,
                                       lesion_class=_lesion_class(args.lesion_class, classes), image_dir=args.images)
            lesions = summary.pop("lesions", None)
            print(format_summary(summary))
            if lesions:
                print(format_lesion_summary(lesions))  # type: ignore[arg-type]
            print(f"wrote metrics_per_case.csv, metrics_summary.csv/.json/.md{', lesions.csv, lesion_summary.json/.md' if lesions else ''} to {args.out}")
        elif args.command == "convert":
            from pipeline.data.nnunet_convert import convert_dataset

            out = convert_dataset(args.src, args.dst, args.to, dataset_id=args.dataset_id, name=args.name)
            print(f"wrote the {args.to} data set {out} (dataset.json last)")
        elif args.command == "predict":
            from pipeline.apps.predict import predict

            return predict(args)
        elif args.command == "plan":
            from pathlib import Path

            from pipeline.networks.unet import preset_depth
            from pipeline.planning import format_plan, plan_dataset, write_plan

            plan = plan_dataset(args.dataset_dir, args.device, spatial_dims=args.spatial_dims, max_cases=args.max_cases,
                                poolings=preset_depth(args.preset))
            out = write_plan(plan, args.out or Path("plans") / f"{Path(args.dataset_dir).resolve().name}.json")
            print(format_plan(plan))
            print(f"wrote the plan to {out}")
        elif args.command == "figures":
            from pipeline.apps.figures.command import make_figures

            return make_figures(args)
        elif args.command == "study":
            from pipeline.apps.study import run_study

            try:
                run_study(args.out, quick=args.quick, work=args.work, parts=tuple(args.parts), dry_run=args.dry_run,
                          keep_checkpoints=args.keep_checkpoints)
            except KeyboardInterrupt as e:
                print("interrupted: the finished runs are in runs.csv; rerun the same command to resume (the run "
                      "that was training starts again)", file=sys.stderr)
                return 128 + getattr(e, "signum", 2)
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
