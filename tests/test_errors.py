"""One-line errors: the hook prints PipelineErrors as ``error: ...``, also from DataLoader workers; importing the
package changes nothing global."""
import subprocess
import sys

import pytest
from torch.utils.data import DataLoader, Dataset

from pipeline.errors import PipelineError, _find_pipeline_error


class _BrokenCase(Dataset):
    def __len__(self) -> int:
        return 1

    def __getitem__(self, i: int):
        raise PipelineError("/data/case_7.nii.gz: image holds 3 NaN and 0 Inf voxels")


def test_error_from_a_dataloader_worker_comes_back_as_its_one_line():
    with pytest.raises(Exception) as info:
        list(DataLoader(_BrokenCase(), num_workers=1))
    assert str(_find_pipeline_error(info.value)) == "/data/case_7.nii.gz: image holds 3 NaN and 0 Inf voxels"


def test_wrapped_error_is_found_through_the_chain():
    try:
        try:
            raise PipelineError("dataset_dir 'x' does not exist")
        except PipelineError as inner:
            raise RuntimeError("Failed to evaluate ConfigExpression") from inner
    except RuntimeError as outer:
        assert str(_find_pipeline_error(outer)) == "dataset_dir 'x' does not exist"
    assert _find_pipeline_error(RuntimeError("something else")) is None


def test_importing_the_package_has_no_side_effects():
    code = (
        "import sys, matplotlib; hook = sys.excepthook; backend = matplotlib.get_backend();"
        "import pipeline, pipeline.handlers, pipeline.networks, pipeline.engines, pipeline.transforms;"
        "assert sys.excepthook is hook, 'excepthook changed';"
        "assert matplotlib.get_backend() == backend, 'backend changed'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"MPLBACKEND": "svg"})
    assert proc.returncode == 0, proc.stderr


def test_installed_hook_prints_one_line_and_exits_non_zero():
    code = ("from pipeline.errors import PipelineError, install_excepthook; install_excepthook(); "
            "raise PipelineError('bad x')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stderr == "error: bad x\n"
