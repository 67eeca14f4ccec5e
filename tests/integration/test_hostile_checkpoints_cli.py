"""The user's commands on hostile checkpoint folders (issue 36, item 1): ``monai.bundle run`` of inference.json,
``monai.bundle ckpt_export`` and ``python -m pipeline figures`` exit non-zero with exactly one ``error:`` line
naming the file, no traceback, no payload run and nothing written."""
import pytest

from benchmarks.trust import check_hostile_cli, cli_problems, good_checkpoint, scan

# two folders keep the suite short: every one of the hostile folders is checked in process
# (tests/test_hostile_checkpoints.py), and `python -m benchmarks run trust --cli` runs more through the commands
NAMES = ["target_subprocess", "model_pt_pickle_payload"]


@pytest.mark.slow
def test_hostile_folders_through_the_real_commands(tmp_path):
    good = good_checkpoint(tmp_path / "good")
    image = scan(tmp_path / "scan" / "scan.nii.gz")
    problems = [p for name in NAMES for p in cli_problems(check_hostile_cli(name, tmp_path / "cli", good, image))]
    assert problems == []
