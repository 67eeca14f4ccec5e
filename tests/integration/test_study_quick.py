"""``python -m pipeline study --quick`` end to end as a process: every output written, progress shown, a rerun
resumes."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.apps.study.design import QUICK, plan_runs

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _study(out, *extra) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", "study", "--out", str(out), "--quick", *extra], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def _rows(out) -> list[dict]:
    with (out / "runs.csv").open() as f:
        return list(csv.DictReader(f))


def test_quick_study_writes_every_output_and_resumes(tmp_path):
    out = tmp_path / "study"
    proc = _study(out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    expected = [r.run_id for r in plan_runs(QUICK)]
    rows = _rows(out)
    assert [r["run_id"] for r in rows] == expected
    for r in rows:  # every run scored; 2D runs also by the study's metrics
        assert 0.0 <= float(r["dice"]) <= 1.0 and float(r["train_s"]) > 0
        if r["part"] != "3d":
            assert r["bf1"] != "" and any(r[f"iou_{b}"] != "" for b in ("small", "medium", "large"))
    assert all(float(r["objects_small"]) > 0 for r in rows if r["variant"] == "precision")
    assert any(r["overlap_iou"] != "" for r in rows if r["variant"] == "shapes")
    assert any(r["gap_accuracy"] != "" for r in rows if r["variant"] == "precision")
    # progress: one line per run with its place in the study, epoch lines, and the results
    assert f"[1/{len(expected)}] {expected[0]}" in proc.stdout and "epoch 1: train loss" in proc.stdout
    assert "validation Dice" in proc.stdout
    text = (out / "results.md").read_text()
    for section in ("### Data: `shapes`", "### Data: `context`", "### Data: `precision`", "## Ablations",
                    "boundary-weighted loss", "elastic deformation off", "## 3D", "Oktay", "- machine:"):
        assert section in text
    for png in ("metrics_vs_depth.png", "panels_shapes.png", "panels_context.png", "panels_precision.png",
                "variants.png"):
        assert (out / png).stat().st_size > 10_000
    assert json.loads((out / "study.json").read_text())["design"]["budget"]["name"] == "quick"
    assert (out / "work" / ".gitignore").read_text().strip().endswith("*")
    assert not list((out / "work" / "runs").rglob("model.pt"))  # checkpoints go once the predictions are written

    # resume: a run missing from runs.csv (as after an interruption) is trained again, and only that one
    with (out / "runs.csv").open() as f:
        lines = f.readlines()
    dropped = next(i for i, line in enumerate(lines) if line.startswith("2d/precision/fcn/seed0,"))
    (out / "runs.csv").write_text("".join(lines[:dropped] + lines[dropped + 1:]))
    again = _study(out)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert f"{len(expected) - 1} already in" in again.stdout and "1 to train" in again.stdout
    assert again.stdout.count("training 1 epochs") == 1 and "2d/precision/fcn/seed0: training" in again.stdout
    kept = (out / "runs.csv").read_text().splitlines(keepends=True)
    assert kept[:dropped] == lines[:dropped] and sorted(r["run_id"] for r in _rows(out)) == sorted(expected)
