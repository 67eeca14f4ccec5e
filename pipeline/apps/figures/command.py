"""``python -m pipeline figures``: PNG panels of a few cases from a checkpoint (run through the bundle's
inference.json) or from prediction files already written.

With a checkpoint, the chosen images are segmented by the bundle's own inference (``python -m pipeline predict``'s
command, as a child process from the repository root) into ``OUT/predictions``, attention maps included for an
Attention U-Net; the figures are then drawn from those files, in each image's own space, so what they show is what
a user of the predictions gets.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError

# torch, MONAI and matplotlib are imported where used: `python -m pipeline --help` builds this parser too

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[3]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``figures`` subcommand's flags."""
    p.add_argument("--out", required=True, help="folder for <case>.png (and predictions/ when the network is run)")
    src = p.add_argument_group("predictions: run a checkpoint, or read files written before")
    src.add_argument("--ckpt", "--ckpt_dir", "--ckpt-dir", dest="ckpt", nargs="+", default=None,
                     help="checkpoint folder(s) (model.pt + model_config.json) or model file(s) such as model.ts; "
                          "several = an ensemble")
    src.add_argument("--pred", default=None,
                     help="folder of predictions <case>_seg.* (and <case>_attention.nii.gz) instead of running a "
                          "checkpoint; with --ckpt too, the checkpoint only names classes and gated levels")
    cases = p.add_argument_group("cases: a data set split, or images (+ labels)")
    cases.add_argument("--dataset", default=None, help="data set folder (MSD layout or images/labels folders)")
    cases.add_argument("--split", default="validation", choices=("training", "validation", "test"),
                       help="split of --dataset (default validation: labelled also for MSD; the checkpoint's split)")
    cases.add_argument("-i", "--input", default=None, help="an image file or a folder of images")
    cases.add_argument("--labels", default=None, help="folder of label maps for --input, same case names")
    cases.add_argument("--cases", nargs="+", default=None, help="case ids to draw (default: the first --max-cases)")
    cases.add_argument("--max-cases", type=int, default=4, help="how many cases when --cases is not given (default 4)")
    look = p.add_argument_group("look")
    look.add_argument("--slice", type=int, default=None,
                      help="3D: axial slice number in the file's own order (default: the most foreground)")
    look.add_argument("--window", type=float, nargs=2, default=None, metavar=("WIDTH", "LEVEL"),
                      help="display window (default: CT soft tissue 400 40 for 3D images in HU, else 1-99th "
                           "percentile)")
    look.add_argument("--classes", nargs="+", default=None,
                      help="foreground class names (default: the checkpoint's, else the data set's dataset.json)")
    look.add_argument("--dpi", type=int, default=100)
    p.add_argument("--device", default=None, help="for running the checkpoint: auto (default), cpu, cuda")


def _ckpt_dir(path: str) -> Path:
    p = Path(path).expanduser()
    return p.parent if p.is_file() else p


def _dataset_classes(folder: Path) -> list[str] | None:
    """Foreground class names from ``folder/dataset.json`` ("labels", MSD layout), None when there are none."""
    try:
        labels = json.loads((folder / "dataset.json").read_text())["labels"]
        return [labels[k] for k in sorted(labels, key=int) if int(k) > 0]
    except (OSError, KeyError, TypeError, ValueError, AttributeError):
        return None


def _class_names(args: argparse.Namespace, model_config: dict[str, Any] | None) -> list[str]:
    if args.classes:
        return list(args.classes)
    if model_config and model_config.get("class_names"):
        return list(model_config["class_names"])
    for folder in (args.dataset, Path(args.labels).resolve().parent if args.labels else None):
        names = _dataset_classes(Path(folder)) if folder else None
        if names:
            return names
    raise PipelineError("no class names: give --classes (or --ckpt, or a data set with a dataset.json 'labels')")


def _chosen_cases(args: argparse.Namespace, model_config: dict[str, Any] | None) -> list[dict]:
    from pipeline.data.datalist import load_datalist
    from pipeline.apps.figures.cases import image_cases, select_cases

    if (args.dataset is None) == (args.input is None):
        raise PipelineError("give the cases with --dataset DIR [--split S] or with -i/--input PATH [--labels DIR]")
    if args.dataset is not None:
        if not Path(args.dataset).is_dir():
            raise PipelineError(f"{args.dataset}: data set folder not found")
        split = dict(model_config.get("split") or {}) if model_config else {}
        cases = load_datalist(args.dataset, args.split, **split)
        if not cases:
            raise PipelineError(f"{args.dataset}: the {args.split} split is empty")
    else:
        cases = image_cases(args.input, args.labels)
    return select_cases(cases, args.cases, args.max_cases)


def run_checkpoint(images: Sequence[str], args: argparse.Namespace, model_config: dict[str, Any],
                   attention: bool, pred_dir: Path) -> int:
    """Segment ``images`` with the bundle's inference.json into ``pred_dir`` (a child process, as ``predict``);
    returns its exit status (it prints its own one-line error)."""
    from pipeline.apps.predict import bundle_command

    # inference.json rebuilds any checkpoint's network from its model_config.json; predict adds the data fragment
    # of the checkpoint's dimensionality
    with tempfile.TemporaryDirectory(prefix="figures_") as tmp:
        for image in images:  # only the chosen cases: a folder of links to them is the bundle's --input
            os.symlink(Path(image).resolve(), Path(tmp) / Path(image).name)
        cmd = bundle_command(argparse.Namespace(
            input=tmp, output=str(pred_dir), bundle=None, ckpt=args.ckpt, tta=False, save_probabilities=False,
            save_attention=attention, series_uid=None, device=args.device,
        ))
        logger.info("segmenting %d case(s) with %s into %s", len(images), cmd[cmd.index("--config_file") + 1], pred_dir)
        return subprocess.run(cmd, cwd=REPO).returncode


def make_figures(args: argparse.Namespace) -> int:
    """The ``figures`` command: choose cases, get predictions (run or read), write one PNG per case."""
    from pipeline.engines.model_config import network_from_config, read_model_config
    from pipeline.apps.figures.cases import figure_cases, image_dims
    from pipeline.apps.figures.panels import write_figures

    if not args.ckpt and not args.pred:
        raise PipelineError("give --ckpt (a checkpoint folder to run) or --pred (a folder of predictions)")
    model_config = read_model_config(_ckpt_dir(args.ckpt[0])) if args.ckpt else None
    levels: list[int] | None = None
    if model_config is not None:
        levels = list(getattr(network_from_config(model_config), "attention_levels", []) or []) or None
    cases = _chosen_cases(args, model_config)
    classes = _class_names(args, model_config)
    if args.pred:
        pred_dir = Path(args.pred)
        spatial_dims = int(model_config["spatial_dims"]) if model_config else image_dims(cases[0]["image"])
    else:
        pred_dir = Path(args.out) / "predictions"
        rc = run_checkpoint([c["image"] for c in cases], args, model_config, levels is not None, pred_dir)
        if rc:
            return rc
        spatial_dims = int(model_config["spatial_dims"])
    todo = figure_cases(cases, pred_dir, spatial_dims)
    written = write_figures(todo, args.out, classes, spatial_dims, levels, args.slice, args.window, args.dpi)
    print(f"wrote {len(written)} figure(s) to {args.out}")
    return 0


__all__ = ["add_arguments", "make_figures", "run_checkpoint"]
