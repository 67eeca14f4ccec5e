"""``python -m pipeline study`` in process: refusals of a folder it must not touch, bad parts, the dry run (the
quick study end to end is in ``tests/integration/test_study_quick.py``)."""
from __future__ import annotations

import json

import pytest

from pipeline.apps.cli import main


def test_a_folder_started_with_another_budget_is_refused_in_one_line(tmp_path, capsys):
    out = tmp_path / "study"
    out.mkdir()
    (out / "study.json").write_text(json.dumps({"design": {"budget": {"name": "quick"}}}))
    assert main(["study", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "another budget (quick)" in err[0]
    assert sorted(p.name for p in out.iterdir()) == ["study.json"]  # nothing generated, nothing overwritten


def test_a_folder_with_results_but_no_study_record_is_left_alone(tmp_path, capsys):
    (tmp_path / "results.md").write_text("someone's notes")
    assert main(["study", "--out", str(tmp_path), "--quick"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds results.md but no study.json" in err[0]
    assert (tmp_path / "results.md").read_text() == "someone's notes" and not (tmp_path / "study.json").exists()


def test_unknown_part_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["study", "--out", str(tmp_path / "s"), "--parts", "4d"])
    assert exit_info.value.code != 0 and "invalid choice: '4d'" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_dry_run_lists_the_runs_and_writes_nothing(tmp_path, capsys):
    assert main(["study", "--out", str(tmp_path / "s"), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "study (full): 57 runs, 0 already in" in printed and "3d/pancreas/attention_unet/seed2" in printed
    assert not (tmp_path / "s").exists()
