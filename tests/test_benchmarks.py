"""The benchmark harness: ``python -m benchmarks list`` names runnable benchmarks, the page comes from the results."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import benchmarks
from benchmarks import BENCHMARKS
from benchmarks.__main__ import list_lines, main
from benchmarks.common import md_tables, write_json
from benchmarks.page import HEADER, load_results, render, write_page

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def test_list_names_every_benchmark(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == list_lines()
    assert [line.split()[0] for line in out] == list(BENCHMARKS)


@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_each_benchmark_resolves_to_a_main(name: str) -> None:
    module = BENCHMARKS[name].module()
    assert callable(getattr(module, "main", None)), f"benchmarks.{name} has no main()"


def test_unknown_benchmark_is_one_line() -> None:
    with pytest.raises(SystemExit, match="unknown benchmark"):
        main(["run", "no_such_benchmark"])


def test_no_sys_path_manipulation() -> None:
    for path in Path(benchmarks.__file__).parent.glob("*.py"):
        assert "sys.path" not in path.read_text(), path


@pytest.mark.parametrize("path", sorted(RESULTS.glob("*.json")), ids=lambda p: p.name)
def test_result_files_are_complete(path: Path) -> None:
    result = json.loads(path.read_text())
    assert result["benchmark"] in BENCHMARKS
    for key in ("machine", "date", "commit", "command", "figures", "tables"):
        assert key in result, key
    assert {"kind", "cpu", "cores", "gpu"} <= result["machine"].keys()
    assert path.stem.endswith(result["machine"]["kind"]), "one file per benchmark and machine kind, named by it"


def test_page_is_generated_from_the_results(tmp_path: Path) -> None:
    page = write_page(tmp_path / "benchmarks.md")
    text = page.read_text()
    assert text.startswith(HEADER.splitlines()[0])
    for path in RESULTS.glob("*.json"):
        assert f"benchmarks/results/{path.name}" in text
    assert (REPO / "docs" / "benchmarks.md").read_text() == text, "run `python -m benchmarks page`"


def test_page_from_a_new_result(tmp_path: Path) -> None:
    lines = ["# A benchmark", "", "Step times:", "", "| width | s |", "|---|---|", "| 8 | 0.437 |", "| 16 | 1.057 |"]
    assert md_tables(lines) == {"Step times": {"columns": ["width", "s"], "rows": [[8, 0.437], [16, 1.057]]}}
    results = tmp_path / "results"
    out = write_json("ct_step_layout", {"step_s": 0.437}, lines=lines, path=results / "ct_step_layout_x.json",
                     command="python -m benchmarks.ct_step_layout", commit="abc1234")
    result = json.loads(out.read_text())
    assert result["figures"] == {"step_s": 0.437} and result["commit"] == "abc1234"
    assert result["machine"]["cores"] and "gpu" in result["machine"]
    text = render(load_results(results))
    assert "## ct_step_layout" in text and "| step_s | 0.437 |" in text and "| 16 | 1.057 |" in text
