"""``python -m pipeline check-data`` as a process: exit status, the report on stdout, the count on stderr."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.data.test_integrity import _dataset, _nii, _with

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_check_data_command(tmp_path: Path) -> None:
    def run(root: Path) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "pipeline", "check-data", str(root)]
        return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)

    clean = run(_dataset(tmp_path / "clean"))
    assert clean.returncode == 0, clean.stderr
    assert f"{tmp_path / 'clean'}: no problems found" in clean.stdout
    root = _dataset(tmp_path / "bad")
    _nii(root / "imagesTr/case_002.nii.gz", _with(np.nan, 5))
    bad = run(root)
    assert bad.returncode != 0
    assert "case case_002 (imagesTr/case_002.nii.gz): image holds 5 NaN and 0 Inf voxels" in bad.stdout.splitlines()
    assert "1 problem(s)" in bad.stderr
