"""Numbers quoted in the README, the docs and the bundles' metadata.json agree with the result files they cite.

A quoted figure is checkable when it cites its source:
- in markdown, the figure is a link to the result file with the figure's key path as fragment:
  ``[0.8241](benchmarks/results/user_command_cpu_float32.json#figures/heldout12_pancreas_dice)``;
- in ``metadata.json``, every number in ``eval_metrics`` has an entry in ``eval_metrics.sources`` of the same form.
A key path walks the JSON's dicts; in a table (``{"columns", "rows"}``) a segment ``col=value,col=value`` picks the
row, the next one the column. The quoted figure must equal the file's value rounded to the quoted decimals.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\[(-?\d[\d.]*)\]\(([^)\s#]*benchmarks/results/[^)\s#]+\.json)(?:#([^)\s]+))?\)")


def _row(table: dict, selector: str) -> list:
    want = dict(part.split("=", 1) for part in selector.split(","))
    cols = table["columns"]
    for row in table["rows"]:
        if all(str(row[cols.index(k)]) == v for k, v in want.items()):
            return row
    raise KeyError(f"no row {selector!r}")


def resolve(ref: str, repo: Path = REPO) -> object:
    """The value ``FILE.json#a/b/c`` names (FILE relative to the repository, or ending in benchmarks/results/...)."""
    file, _, path = ref.partition("#")
    file = file[file.index("benchmarks/results/"):]
    node: object = json.loads((repo / file).read_text())
    parts = [p for p in path.split("/") if p]
    i = 0
    while i < len(parts):
        if isinstance(node, dict) and {"columns", "rows"} <= node.keys():
            row = _row(node, parts[i])
            node = row[node["columns"].index(parts[i + 1])]
            i += 2
            continue
        node = node[parts[i]]  # type: ignore[index]
        i += 1
    return node


def agrees(quoted: float | str, actual: object) -> bool:
    """Whether ``quoted`` (a number as written) equals ``actual`` rounded to the quoted decimals."""
    text = str(quoted)
    if isinstance(actual, bool) or not isinstance(actual, (int, float)) or not math.isfinite(actual):
        return False
    decimals = len(text.split(".")[1]) if "." in text else 0
    return abs(round(float(actual), decimals) - float(text)) < 0.5 * 10 ** -(decimals + 3)


def markdown_errors(text: str, repo: Path = REPO) -> list[str]:
    """One line per cited figure in ``text`` that disagrees with (or cannot be found in) its result file."""
    errors = []
    for number, file, path in LINK.findall(text):
        ref = f"{file}#{path}"
        if not path:
            errors.append(f"{number}: link to {file} names no key (#figures/...)")
            continue
        try:
            actual = resolve(ref, repo)
        except (KeyError, IndexError, ValueError, TypeError, OSError) as e:
            errors.append(f"{number}: {ref} not found ({e})")
            continue
        if not agrees(number, actual):
            errors.append(f"{number}: {ref} is {actual}")
    return errors


def metadata_errors(meta: dict, repo: Path = REPO) -> list[str]:
    """One line per number in ``eval_metrics`` without a source or disagreeing with it."""
    metrics = meta.get("eval_metrics", {})
    sources = metrics.get("sources", {})
    errors = []
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if key not in sources:
            errors.append(f"eval_metrics.{key}: no entry in eval_metrics.sources")
            continue
        try:
            actual = resolve(sources[key], repo)
        except (KeyError, IndexError, ValueError, TypeError, OSError) as e:
            errors.append(f"eval_metrics.{key}: {sources[key]} not found ({e})")
            continue
        if not agrees(repr(value), actual):
            errors.append(f"eval_metrics.{key} = {value}: {sources[key]} is {actual}")
    return errors


def _pages() -> list[Path]:
    generated = REPO / "docs" / "benchmarks.md"
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted(REPO.glob("bundles/*/docs/*.md"))]
    return [p for p in pages if p != generated and p.is_file()]


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(REPO)))
def test_cited_figures_agree(page: Path) -> None:
    assert markdown_errors(page.read_text()) == []


def test_readme_cites_figures() -> None:
    """The README's headline figures are checkable citations, not copies."""
    assert len(LINK.findall((REPO / "README.md").read_text())) >= 3


@pytest.mark.parametrize("bundle", sorted(p.name for p in (REPO / "bundles").iterdir() if p.is_dir()))
def test_metadata_eval_metrics_agree(bundle: str) -> None:
    meta = json.loads((REPO / "bundles" / bundle / "metadata.json").read_text())
    numbers = [k for k, v in meta["eval_metrics"].items() if isinstance(v, (int, float))]
    assert numbers, "eval_metrics quotes no figure"
    assert metadata_errors(meta) == []


def test_a_wrong_number_is_caught() -> None:
    ref = "benchmarks/results/user_command_cpu_float32.json#figures/heldout12_pancreas_dice"
    right = resolve(ref)
    assert markdown_errors(f"scored [{right:.4f}]({ref}) on the 12") == []
    assert markdown_errors(f"scored [{right + 0.01:.4f}]({ref}) on the 12") != []
    assert markdown_errors(f"scored [{right:.2f}]({ref})") == []  # a coarser rounding of the same figure
    assert markdown_errors(f"[{right:.4f}](benchmarks/results/user_command_cpu_float32.json#figures/nope)") != []
    assert markdown_errors(f"[{right:.4f}](benchmarks/results/user_command_cpu_float32.json)") != []


def test_a_wrong_metadata_number_is_caught() -> None:
    meta = json.loads((REPO / "bundles" / "unet" / "metadata.json").read_text())
    assert metadata_errors(meta) == []
    wrong = json.loads(json.dumps(meta))
    wrong["eval_metrics"]["final_test_iou_ellipse"] = round(wrong["eval_metrics"]["final_test_iou_ellipse"] - 0.05, 4)
    assert any("final_test_iou_ellipse" in e for e in metadata_errors(wrong))
    unsourced = json.loads(json.dumps(meta))
    unsourced["eval_metrics"]["made_up"] = 0.99
    assert any("made_up" in e for e in metadata_errors(unsourced))
