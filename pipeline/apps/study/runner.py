"""``python -m pipeline study``: run the context-vs-precision study, resumably, and write its tables and plots.

The runs (``pipeline.apps.study.design``) are trained in a child process each (``pipeline.apps.study.child``;
the quick study runs them all in one) so that a long study holds no state from one run to the next. One CSV row
per finished run is appended to ``runs.csv`` as the run ends; a rerun with the same ``--out`` skips the runs
already there, so an interrupted study resumes where it stopped, in as many sittings as needed. ``study.json``
records the budget the folder was started with, and a rerun with another budget is refused rather than mixed in.
"""
from __future__ import annotations

import csv
import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError
from pipeline.apps.study.design import END, FULL, PARTS, QUICK, REPO, SPAWNED_AT, START, Budget, RunSpec, plan_runs
from pipeline.apps.study.report import write_markdown, write_report

BASE_COLUMNS = ["run_id", "part", "variant", "model", "arm", "seed", "train_s", "infer_s", "score_s", "run_s",
                "best_epoch", "best_val_dice"]
GENERIC_METRICS = ["iou", "dice", "bf1", "hd95", "recall", "overlap_iou", "gap_accuracy", "iou_small", "iou_medium",
                   "iou_large", "objects_small", "objects_medium", "objects_large"]
TAIL_COLUMNS = ["finished", "overrides", "files"]
TOLERANCE_PX = 2.0  # boundary F1 tolerance
CHILD_GRACE_S = 25.0  # a stopped child gets this long to end before it is killed: inside SLURM's default grace
OUTPUTS = ("runs.csv", "results.md", "metrics_vs_depth.png", "variants.png")  # and panels_<variant>.png
VAL_LINE = re.compile(r"Epoch\[(\d+)\] Metrics -- .*val_mean_dice: ([-\d.]+)")
TRAIN_LINE = re.compile(r"Epoch\[(\d+)\] Metrics -- train_loss: ([-\d.eE+]+)")


def _class_names(fragment: str) -> list[str]:
    return list(json.loads((REPO / fragment).read_text())["class_names"])


def csv_columns() -> list[str]:
    """The columns of ``runs.csv``: run identity and times, class-mean metrics, per-class metrics, provenance."""
    per_class = [f"{m}_{c}" for c in _class_names("configs/data/shapes2d.json") + _class_names(
        "configs/data/pancreas_ct.json") for m in ("dice", "iou", "hd95", "recall")]
    return BASE_COLUMNS + GENERIC_METRICS + per_class + TAIL_COLUMNS


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of an existing ``runs.csv`` (none when absent); a header that is not this study's is refused."""
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != csv_columns():
            raise PipelineError(f"{path}: its columns are not this study's; give another --out")
        return list(reader)


def _append_row(path: Path, row: dict[str, Any]) -> None:
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=csv_columns(), restval="", extrasaction="ignore")
        if new:
            w.writeheader()
        w.writerow(row)
        f.flush()
        os.fsync(f.fileno())


def result_row(result: dict[str, Any]) -> dict[str, Any]:
    """A ``runs.csv`` row from a child's ``result.json``."""
    row = {k: result[k] for k in BASE_COLUMNS if k in result}
    for k, v in result["metrics"].items():
        row[k] = "" if v is None else round(float(v), 5)
    row["finished"] = dt.datetime.now().isoformat(timespec="seconds")
    row["overrides"] = json.dumps(result["overrides"], sort_keys=True)
    row["files"] = json.dumps(result["files"])
    return row


def _check_design(out: Path, budget: Budget) -> None:
    """Record the budget in ``study.json``; refuse a folder started with another one."""
    record = out / "study.json"
    design = {"budget": budget.fingerprint(), "boundary_f1_tolerance_px": TOLERANCE_PX}
    if not record.exists():
        ours = [p.name for p in sorted(out.glob("*")) if p.name in OUTPUTS or re.fullmatch(r"panels_\w+\.png", p.name)]
        if ours:
            raise PipelineError(f"{out}: holds {', '.join(ours)} but no study.json, so it is not a study's folder; "
                                "give another --out (nothing was overwritten)")
    if record.is_file():
        try:
            old = json.loads(record.read_text())
        except ValueError:
            raise PipelineError(f"{record}: unreadable; give another --out") from None
        if old.get("design") != json.loads(json.dumps(design)):
            raise PipelineError(f"{record}: this folder holds a study made with another budget "
                                f"({old.get('design', {}).get('budget', {}).get('name', '?')}); give another --out")
        return
    record.write_text(json.dumps({"design": design, "started": dt.datetime.now().isoformat(timespec="seconds")},
                                 indent=1) + "\n")


def _data_dirs(budget: Budget, work: Path, runs: Sequence[RunSpec]) -> dict[str, dict[str, Any]]:
    """Generate (once) the data every run needs; returns variant -> {dir, variant, seed, size}."""
    from pipeline.data.phantom import make_pancreas_dataset
    from pipeline.data.shapes_variants import make_shape_variant

    data: dict[str, dict[str, Any]] = {}
    for variant in dict.fromkeys(r.variant for r in runs):
        folder = work / "data" / variant
        if variant == "pancreas":
            if not (folder / "dataset.json").is_file():
                print(f"generating {budget.ct_cases} + {budget.ct_test_cases} CT phantoms in {folder}", flush=True)
                make_pancreas_dataset(folder, n=budget.ct_cases, n_test=budget.ct_test_cases, seed=0,
                                      scale=budget.ct_scale, overwrite=folder.exists())
            data[variant] = {"dir": str(folder), "variant": variant, "seed": 0, "size": None}
            continue
        size = budget.variants[variant]
        if not (folder / "dataset.json").is_file():
            print(f"generating {budget.n_images} '{variant}' images of {size} x {size} in {folder}", flush=True)
            make_shape_variant(folder, variant, n=budget.n_images, seed=0, size=size, val_fraction=0.1,
                               test_fraction=0.2, overwrite=folder.exists())
        data[variant] = {"dir": str(folder), "variant": variant, "seed": 0, "size": size}
    return data


def _job(budget: Budget, work: Path, data: dict, runs: Sequence[RunSpec], keep_checkpoints: bool) -> dict[str, Any]:
    """The child's job: the runs, their data, and one plan file per data set and network depth (planned once)."""
    specs = [{**r.to_json(), "plan_file": str(work / "plans" / f"{r.variant}_{r.overrides.get('preset', 'standard')}"
                                                                ".json")} for r in runs]
    return {"work": str(work), "tolerance": TOLERANCE_PX, "data": data, "runs": specs,
            "keep_checkpoints": keep_checkpoints, "threads": 1 if budget.name == "quick" else None}


@dataclass
class Progress:
    """What the parent knows while children run: the runs still to go, the rows so far, where rows go."""

    budget: Budget
    total: int
    pending: list[RunSpec]
    rows: list[dict[str, Any]]
    csv_path: Path
    epochs: dict[str, int]

    def eta(self) -> str:
        """Runs left and the time they should take, from the mean run time of each part so far."""
        times: dict[str, list[float]] = {}
        for r in self.rows:
            if r.get("run_s") not in (None, ""):
                times.setdefault(r["part"], []).append(float(r["run_s"]))
        every = [v for vs in times.values() for v in vs]
        if not every or not self.pending:
            return ""
        mean = {part: sum(vs) / len(vs) for part, vs in times.items()}
        left = sum(mean.get(p.part, sum(every) / len(every)) for p in self.pending)
        return f"; {len(self.pending)} runs left, about {left / 60:.0f} min"


def _short(metrics: dict[str, Any]) -> str:
    keys = ("iou", "dice", "bf1", "hd95") if metrics.get("bf1") is not None else ("dice", "hd95", "recall")
    return ", ".join(f"{k} {metrics[k]:.3f}" for k in keys if isinstance(metrics.get(k), float))


def _run_job(job_file: Path, job: dict[str, Any], log_dir: Path, progress: Progress) -> None:
    """Start a child on ``job_file``, echo its progress, append a row per finished run; raise if it fails."""
    env = dict(os.environ, **{SPAWNED_AT: repr(time.time())})
    if job.get("threads"):
        env["OMP_NUM_THREADS"] = str(job["threads"])
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.apps.study.child", str(job_file)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    log, log_path, current, started = None, None, None, 0.0
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            if line.startswith(START):
                current, started = line[len(START):].strip(), time.perf_counter()
                log_path = log_dir / (current.replace("/", "__") + ".log")
                log = log_path.open("w")
                n = progress.total - len(progress.pending) + 1
                epochs = progress.epochs.get(current.split("/")[0], "?")
                print(f"[{n}/{progress.total}] {current}: training {epochs} epochs (log {log_path})", flush=True)
            elif line.startswith(END):
                run_id = line[len(END):].strip()
                result = json.loads((Path(job["work"]) / "runs" / run_id / "result.json").read_text())
                row = result_row(result)
                _append_row(progress.csv_path, row)
                progress.rows.append(row)
                write_markdown(progress.csv_path.parent, progress.budget, progress.rows)  # partial results
                progress.pending[:] = [p for p in progress.pending if p.run_id != run_id]
                print(f"    done in {row['run_s']:.0f} s (training {result['train_s']:.0f} s): "
                      f"{_short(result['metrics'])}{progress.eta()}", flush=True)
                if log:
                    log.close()
                log, current = None, None
            else:
                if log:
                    log.write(line)
                train, val = TRAIN_LINE.search(line), VAL_LINE.search(line)
                if current and (train or val):
                    what = f"train loss {float(train.group(2)):.4f}" if train else \
                        f"validation Dice {float(val.group(2)):.3f}"
                    print(f"    epoch {(train or val).group(1)}: {what} ({time.perf_counter() - started:.0f} s)",
                          flush=True)
        rc = proc.wait()
    except BaseException:
        proc.terminate()  # the child's training stops at the end of its iteration (pipeline.handlers.preemption)
        try:
            proc.wait(timeout=CHILD_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise
    finally:
        if log:
            log.close()
    if rc != 0:
        tail = log_path.read_text().strip().splitlines()[-15:] if log_path and log_path.is_file() else []
        print("\n".join(tail), file=sys.stderr)
        raise PipelineError(f"{current or job_file}: the run failed (exit code {rc}; log {log_path}); the finished "
                            f"runs are kept in {progress.csv_path}, rerun the same command to resume")


class StudyInterrupted(KeyboardInterrupt):
    """SIGTERM (or SIGINT) reached the study: the running child was stopped; ``signum`` gives the exit code."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum


def _interrupt(signum: int, frame: Any) -> None:
    raise StudyInterrupted(signum)


def run_study(out: str | Path, quick: bool = False, work: str | Path | None = None,
              parts: Sequence[str] = PARTS, dry_run: bool = False, keep_checkpoints: bool = False) -> Path:
    """Run (or resume) the study into ``out``; returns the path of the markdown results. See the module docstring."""
    budget = QUICK if quick else FULL
    bad = [p for p in parts if p not in PARTS]
    if bad:
        raise PipelineError(f"unknown study part(s) {bad}: choose from {', '.join(PARTS)}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise PipelineError(f"{out}: exists and is not a folder")
    work = Path(work) if work else out / "work"
    runs = plan_runs(budget, tuple(parts))
    csv_path = out / "runs.csv"
    rows: list[dict[str, Any]] = read_rows(csv_path)
    done = {r["run_id"] for r in rows}
    pending = [r for r in runs if r.run_id not in done]
    print(f"study ({budget.name}): {len(runs)} runs, {len(runs) - len(pending)} already in {csv_path}, "
          f"{len(pending)} to train", flush=True)
    if dry_run:
        for r in pending:
            print(f"  {r.run_id}: {' + '.join(r.train_files)} {json.dumps(r.overrides)}")
        return out / "results.md"
    out.mkdir(parents=True, exist_ok=True)
    _check_design(out, budget)
    work.mkdir(parents=True, exist_ok=True)
    if work.resolve().is_relative_to(out.resolve()):
        (work / ".gitignore").write_text("# checkpoints, predictions and logs of the study's runs\n*\n")
    for sub in ("logs", "jobs"):
        (work / sub).mkdir(exist_ok=True)
    data = _data_dirs(budget, work, runs)
    previous = signal.signal(signal.SIGTERM, _interrupt)  # a kill stops the running child as Ctrl-C does
    try:
        progress = Progress(budget, len(runs), list(pending), rows, csv_path,
                            {"2d": budget.epochs_2d, "ablation": budget.epochs_2d, "3d": budget.epochs_3d})
        groups = [pending] if budget.name == "quick" else [[r] for r in pending]
        for i, group in enumerate(g for g in groups if g):
            job = _job(budget, work, data, group, keep_checkpoints)
            job_file = work / "jobs" / f"job_{i}.json"
            job_file.write_text(json.dumps(job, indent=1))
            _run_job(job_file, job, work / "logs", progress)
    finally:
        signal.signal(signal.SIGTERM, previous)
    path = write_report(out, budget, read_rows(csv_path), data, work)
    print(f"wrote {path}, {csv_path.name} and the plots in {out}", flush=True)
    return path
