"""The package layout, read statically with ``ast`` (nothing is imported): no import cycle between pipeline's
packages, no oversized module, and the library does not depend on the applications in ``pipeline.apps``.

Every import counts, wherever it is written: module level, inside a function (a function-local import hides a cycle
from the interpreter, not from a reader), and ``importlib.import_module("pipeline....")`` with a literal name.
Imports under ``if TYPE_CHECKING:`` never run and are left out.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "pipeline"
MAX_LINES = 500
APPS = "pipeline.apps"


@dataclass(frozen=True)
class Edge:
    """One import of ``target`` (a module name) written in ``source`` (a file) at ``line``."""

    source: Path
    line: int
    target: str

    def __str__(self) -> str:
        return f"{self.source.relative_to(PACKAGE_DIR.parent)}:{self.line} imports {self.target}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE_DIR.rglob("*.py") if "__pycache__" not in p.parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST):
    """Every node below ``node`` except the bodies of ``if TYPE_CHECKING:`` blocks."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child):
            for other in child.orelse:
                yield other
                yield from _walk(other)
            continue
        yield child
        yield from _walk(child)


def _imports(path: Path, text: str | None = None) -> list[Edge]:
    """The pipeline modules ``path`` (or ``text`` standing at ``path``) imports; ``from pipeline.x import y`` counts
    as pipeline.x.y, which resolves to the same package either way."""
    tree = ast.parse(path.read_text() if text is None else text, filename=str(path))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    edges = []
    for node in _walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names = [f"{module}.{a.name}" for a in node.names]
        elif (
            isinstance(node, ast.Call)
            and (getattr(node.func, "attr", None) or getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names = [node.args[0].value]
        edges += [Edge(path, node.lineno, n) for n in names if n == "pipeline" or n.startswith("pipeline.")]
    return edges


def _package(module: str) -> str:
    """The unit the layering is about: ``pipeline.<name>`` (a subpackage or a top-level module such as errors)."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def _package_of_target(target: str) -> str:
    """``pipeline.errors.PipelineError`` -> pipeline.errors; ``pipeline.data`` -> pipeline.data; and ``from pipeline
    import __version__`` -> pipeline (the package's __init__)."""
    parts = target.split(".")
    if len(parts) == 1:
        return "pipeline"
    if (PACKAGE_DIR / parts[1]).is_dir() or (PACKAGE_DIR / f"{parts[1]}.py").is_file():
        return ".".join(parts[:2])
    return "pipeline"


def _package_graph() -> dict[str, dict[str, list[Edge]]]:
    graph: dict[str, dict[str, list[Edge]]] = {}
    for path in _modules():
        source = _package(_module_name(path))
        graph.setdefault(source, {})
        for edge in _imports(path):
            target = _package_of_target(edge.target)
            if target != source:
                graph[source].setdefault(target, []).append(edge)
    return graph


def _cycles(graph: dict[str, dict[str, list[Edge]]]) -> list[list[str]]:
    """The strongly connected components with more than one package (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, {}):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_scanner_sees_local_and_string_imports():
    """The rules below are only as good as the scan: function-local imports, relative imports and import_module
    strings count, TYPE_CHECKING imports do not."""
    text = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from pipeline.engines import x\n"
        "def f():\n    from pipeline.inference import y\n    import importlib\n"
        "    return importlib.import_module('pipeline.planning.plan')\n"
        "from . import datalist\n"
        "import numpy\n"
    )
    edges = _imports(PACKAGE_DIR / "data" / "_probe.py", text)
    assert {e.target for e in edges} == {"pipeline.inference.y", "pipeline.planning.plan", "pipeline.data.datalist"}
    assert {_package_of_target(e.target) for e in edges} == {"pipeline.inference", "pipeline.planning", "pipeline.data"}
    graph = {"pipeline.a": {"pipeline.b": []}, "pipeline.b": {"pipeline.a": [], "pipeline.c": []}, "pipeline.c": {}}
    assert _cycles(graph) == [["pipeline.a", "pipeline.b"]]


def test_no_import_cycle_between_packages():
    graph = _package_graph()
    problems = []
    for component in _cycles(graph):
        members = set(component)
        evidence = [str(e) for src in component for dst, edges in graph[src].items() if dst in members for e in edges]
        problems.append(f"cycle between {', '.join(component)}:\n    " + "\n    ".join(evidence))
    assert not problems, "\n".join(problems)


def test_no_module_over_the_line_limit():
    long = {str(p.relative_to(PACKAGE_DIR.parent)): n for p in _modules() if (n := len(p.read_text().splitlines()))
            > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_the_library_does_not_import_the_applications():
    apps_dir = PACKAGE_DIR / "apps"
    offending = [
        str(edge)
        for path in _modules()
        if not path.is_relative_to(apps_dir) and path != PACKAGE_DIR / "__main__.py"
        for edge in _imports(path)
        if edge.target == APPS or edge.target.startswith(APPS + ".")
    ]
    assert not offending, "the library imports pipeline.apps:\n    " + "\n    ".join(offending)


def test_the_readme_is_short_and_its_prose_lines_fit_120_characters():
    lines = (PACKAGE_DIR.parent / "README.md").read_text().splitlines()
    assert len(lines) <= 150
    in_code, long = False, []
    for number, line in enumerate(lines, 1):
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and not line.startswith("|") and len(line) > 120:
            long.append(number)
    assert not long, f"README.md lines over 120 characters: {long}"
