"""``python -m pipeline predict``: the nnU-Net-style alias runs the bundle's inference as a child process."""
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from tests.bundles_util import REPO, assert_ok, assert_one_line_error
from tests.inference.test_bad_input import out, setup  # noqa: F401 - the fixtures

pytestmark = pytest.mark.slow


def _predict(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", "predict", *args], capture_output=True, timeout=300,
                          cwd=REPO, encoding="utf-8", errors="replace")  # progress bars are not ASCII


def test_predict_alias_runs_the_bundle_and_fails_with_one_line(setup, out, tmp_path):  # noqa: F811
    root, hu, affine, ckpt = setup
    broken = tmp_path / "broken"
    shutil.copytree(ckpt, broken)
    (broken / "model.pt").write_bytes(b"not a checkpoint")
    proc = _predict("-i", str(root / "good"), "-o", str(out), "--ckpt", str(broken))
    assert_one_line_error(proc, str(broken / "model.pt"), "unreadable checkpoint")
    assert sorted(p.name for p in out.rglob("*")) == ["earlier_seg.nii.gz", "predictions"]

    proc = _predict("-i", str(root / "good" / "scan.nii.gz"), "-o", str(tmp_path / "new"), "--ckpt",
                    str(ckpt / "model.pt"), "--tta", "--device", "cpu")
    assert_ok(proc)
    assert "monai.bundle run" in proc.stdout and "case 1/1 scan.nii.gz" in proc.stdout + proc.stderr
    pred = nib.load(tmp_path / "new" / "scan_seg.nii.gz")
    assert pred.shape == hu.shape and np.allclose(pred.affine, affine, atol=1e-5)
