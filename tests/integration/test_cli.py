"""``python -m pipeline <command>`` as a user types it: data generation, refusals, one-line errors."""
import json
import subprocess
import sys

import pytest

from tests.bundles_util import REPO

pytestmark = pytest.mark.slow


def pipeline_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def test_help_lists_every_command():
    proc = pipeline_cli("--help")
    assert proc.returncode == 0
    for command in ("make-shapes", "make-pancreas", "check-data", "plan", "evaluate", "predict", "figures", "study"):
        assert command in proc.stdout


def test_make_shapes_writes_an_msd_layout_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "shapes"
    proc = pipeline_cli("make-shapes", "--out", str(out), "--n", "12", "--seed", "1", "--size", "32")
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((out / "dataset.json").read_text())
    n_listed = len(meta["training"]) + len(meta.get("validation", [])) + len(meta.get("test", []))
    assert n_listed == 12 and len(list(out.rglob("*.png"))) == 24  # image + label each
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    proc = pipeline_cli("make-shapes", "--out", str(out), "--n", "12", "--seed", "2", "--size", "32")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    assert pipeline_cli("check-data", str(out)).returncode == 0


def test_make_pancreas_writes_phantoms_that_pass_check_data(tmp_path):
    out = tmp_path / "ct"
    proc = pipeline_cli("make-pancreas", "--out", str(out), "--n", "2", "--n-test", "1", "--seed", "3", "--scale", "4")
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((out / "dataset.json").read_text())
    assert len(meta["training"]) == 2 and len(meta["test"]) == 1
    assert meta["labels"] == {"0": "background", "1": "pancreas", "2": "cancer"}  # MSD Task07's names
    proc = pipeline_cli("check-data", str(out))
    assert proc.returncode == 0 and "no problems found" in proc.stdout


def test_invalid_scale_is_one_line_and_touches_nothing(tmp_path):
    out = tmp_path / "ct"
    proc = pipeline_cli("make-pancreas", "--out", str(out), "--n", "2", "--scale", "-1")
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "scale" in proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()


def test_check_data_on_a_missing_folder_is_one_line(tmp_path):
    proc = pipeline_cli("check-data", str(tmp_path / "nowhere"))
    assert proc.returncode != 0 and "nowhere" in proc.stderr + proc.stdout and "Traceback" not in proc.stderr
