"""The study's worker process: ``python -m pipeline.apps.study.child JOB.json`` trains, predicts and scores the runs
the job lists, one after the other, and leaves ``result.json`` in each run's folder.

Each run is the recipe's training bundle (``train_files`` + overrides), then the bundle's ``inference.json`` on the
test split with the best checkpoint, then scoring of the written label maps: ``pipeline.evaluation`` (Dice, IoU,
HD95, recall per class) and, in 2D, the study's metrics (``pipeline.apps.study.metrics``). Lines starting with
``STUDY `` tell the parent which run started and ended.
"""
from __future__ import annotations

import gc
import json
import logging
import math
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import PipelineError, install_excepthook
from pipeline.apps.study.design import END, REPO, SPAWNED_AT, START


def _finite(x: float) -> float | None:
    return x if isinstance(x, float) and math.isfinite(x) else None


def _class_mean(summary: dict[str, dict[str, float]], metric: str, classes: list[str]) -> float:
    values = [summary[f"{metric}_{c}"]["mean"] for c in classes if f"{metric}_{c}" in summary]
    values = [v for v in values if math.isfinite(v)]
    return float(np.mean(values)) if values else float("nan")


def run_bundle(files: list[str], overrides: dict[str, Any]) -> Any:
    """``python -m monai.bundle run`` in this process: MONAI's ConfigWorkflow over the repository's ``files`` (later
    files win) with ``overrides`` (any config id); returns the workflow, whose ``parser`` holds the run's objects."""
    from monai.bundle import ConfigWorkflow

    workflow = ConfigWorkflow(config_file=[str(REPO / f) for f in files], workflow_type=None, **overrides)
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    return workflow


def train(spec: dict[str, Any], run_dir: Path, dataset_dir: str) -> dict[str, Any]:
    """Train the recipe into ``run_dir``; the best validation Dice, its epoch and the class names."""
    overrides = {**spec["overrides"], "bundle_root": str(run_dir), "dataset_dir": dataset_dir, "seed": spec["seed"]}
    if "plan_file" in spec:
        overrides["plan_file"] = spec["plan_file"]
    parser = run_bundle(spec["train_files"], overrides).parser
    evaluator = parser.get_parsed_content("validate#evaluator")
    out = {"best_val_dice": float(evaluator.state.best_metric), "best_epoch": int(evaluator.state.best_metric_epoch),
           "class_names": list(parser.get_parsed_content("class_names"))}
    del parser, evaluator
    gc.collect()
    return out


def predict(spec: dict[str, Any], run_dir: Path, dataset_dir: str) -> Path:
    """The bundle's inference on the test split of ``dataset_dir`` with the run's best checkpoint, one pass per image:
    the study compares networks, so no flip TTA (the unet bundle's inference default), as in its recorded results."""
    pred_dir = run_dir / "predictions"
    workflow = run_bundle(spec["infer_files"], {
        "bundle_root": str(run_dir), "dataset_dir": dataset_dir, "infer_split": "test", "pred_dir": str(pred_dir),
        "input_dir": None, "num_workers": 0, "tta": False})
    del workflow
    gc.collect()
    return pred_dir


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.array(im)


def study_scores(pred_dir: Path, data: dict[str, Any], n_classes: int, tolerance: float) -> dict[str, float]:
    """The 2D study metrics of every test prediction; overlap regions regenerated from the data's generator."""
    from pipeline.data.shapes_variants import variant_case
    from pipeline.apps.study.metrics import pool_scores, score_case

    cases = []
    for label_path in sorted((Path(data["dir"]) / "labelsTs").glob("*.png")):
        label = _read_png(label_path)
        pred = _read_png(pred_dir / f"{label_path.stem}_seg.png")
        index = int(re.fullmatch(r"shape_(\d+)", label_path.stem).group(1))
        generated = variant_case(data["variant"], data["seed"], index, data["size"])
        if not np.array_equal(generated.label, label):
            raise PipelineError(f"{label_path}: differs from the {data['variant']} generator's case {index} "
                                f"(seed {data['seed']}, size {data['size']}); regenerate the study's data")
        cases.append(score_case(pred, label, n_classes, generated.coverage >= 2, tolerance))
    return pool_scores(cases, n_classes)


def score(spec: dict[str, Any], pred_dir: Path, run_dir: Path, data: dict[str, Any], class_names: list[str],
          tolerance: float) -> dict[str, float]:
    """Per-class means of Dice, IoU, HD95 and recall on the test split (tables in ``run_dir/eval``), the class
    means, and in 2D the study metrics."""
    from pipeline.evaluation.folders import evaluate_folders

    label_dir = Path(data["dir"]) / "labelsTs"
    summary = evaluate_folders(pred_dir, label_dir, run_dir / "eval", class_names)
    metrics: dict[str, float] = {}
    for metric in ("dice", "iou", "hd95", "recall"):
        metrics[metric] = _class_mean(summary, metric, class_names)
        for c in class_names:
            metrics[f"{metric}_{c}"] = summary[f"{metric}_{c}"]["mean"]
    if spec["part"] != "3d":
        metrics.update(study_scores(pred_dir, data, len(class_names) + 1, tolerance))
    return metrics


def run_one(spec: dict[str, Any], job: dict[str, Any], startup_s: float = 0.0) -> dict[str, Any]:
    """Train, predict and score one run; write and return its result. ``run_s`` is the run's own time plus
    ``startup_s`` (the process start, charged to the first run of a job)."""
    t_start = time.perf_counter()
    run_dir = Path(job["work"]) / "runs" / spec["run_id"]
    if run_dir.exists():  # left by an interrupted run of this study: start that run again
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    data = job["data"][spec["variant"]]
    t0 = time.perf_counter()
    trained = train(spec, run_dir, data["dir"])
    t1 = time.perf_counter()
    pred_dir = predict(spec, run_dir, data["dir"])
    t2 = time.perf_counter()
    metrics = score(spec, pred_dir, run_dir, data, trained["class_names"], job["tolerance"])
    t3 = time.perf_counter()
    if not job.get("keep_checkpoints"):
        (run_dir / "models" / "model.pt").unlink(missing_ok=True)
    result = {**{k: spec[k] for k in ("run_id", "part", "variant", "model", "arm", "seed")},
              "train_s": round(t1 - t0, 1), "infer_s": round(t2 - t1, 1), "score_s": round(t3 - t2, 1),
              "run_s": round(t3 - t_start + startup_s, 1),
              "best_epoch": trained["best_epoch"], "best_val_dice": trained["best_val_dice"],
              "classes": trained["class_names"], "metrics": {k: _finite(float(v)) for k, v in metrics.items()},
              "overrides": spec["overrides"], "files": spec["train_files"]}
    (run_dir / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    """Run every run of the job file named by the only argument."""
    install_excepthook()
    args = sys.argv[1:] if argv is None else argv
    job = json.loads(Path(args[0]).read_text())
    logging.basicConfig(level=logging.INFO, format="%(asctime)s - %(levelname)s - %(message)s", stream=sys.stdout,
                        force=True)
    spawned = float(os.environ.get(SPAWNED_AT, time.time()))
    for spec in job["runs"]:
        print(f"{START}{spec['run_id']}", flush=True)
        run_one(spec, job, startup_s=max(0.0, time.time() - spawned))
        spawned = time.time()
        print(f"{END}{spec['run_id']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
