"""The layers stay visible: no import cycle between files or packages, and the layer rules
of ``pyproject.toml`` (import-linter) hold, so a deliberate upward import fails this test."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import grimp
import pytest

ROOTS = ("contracts", "policies", "broker", "connectors")
REPO = Path(__file__).resolve().parents[2]


def _graph() -> grimp.ImportGraph:
    return grimp.build_graph(*ROOTS, cache_dir=None)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        item = stack.pop()
                        on_stack.discard(item)
                        component.append(item)
                        if item == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def _package(module: str, graph: grimp.ImportGraph) -> str:
    """The package a module belongs to (a package's ``__init__`` belongs to itself)."""
    if graph.find_children(module):
        return module
    return module.rpartition(".")[0] or module


def _edges(graph: grimp.ImportGraph, name: Callable[[str], str]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for module in graph.modules:
        if not module.startswith(ROOTS):
            continue
        for imported in graph.find_modules_directly_imported_by(module):
            if not imported.startswith(ROOTS):
                continue
            a, b = name(module), name(imported)
            if a != b and not b.startswith(a + ".") and not a.startswith(b + "."):
                edges.setdefault(a, set()).add(b)
    return edges


def test_no_cycle_between_files() -> None:
    graph = _graph()
    assert _cycles(_edges(graph, lambda m: m)) == []


def test_no_cycle_between_packages() -> None:
    graph = _graph()
    assert _cycles(_edges(graph, lambda m: _package(m, graph))) == []


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.fixture
def upward_import(tmp_path: Path) -> Path:
    """A copy of the packages in which ``contracts`` imports the CLI (the top layer)."""
    for root in ROOTS:
        subprocess.run(["cp", "-r", str(REPO / root), str(tmp_path / root)], check=True)
    (tmp_path / "pyproject.toml").write_text((REPO / "pyproject.toml").read_text())
    target = tmp_path / "contracts" / "durations.py"
    target.write_text(target.read_text() + "\nimport broker.cli  # noqa\n")
    return tmp_path


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("lint-imports")
    return subprocess.run(
        [str(exe), "--no-cache"],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"},
        check=False,
    )


def test_layers_hold() -> None:
    result = _lint_imports(REPO)
    assert result.returncode == 0, result.stdout[-3000:]


def test_an_upward_import_breaks_the_layers(upward_import: Path) -> None:
    result = _lint_imports(upward_import)
    assert result.returncode != 0
    assert re.search(r"contracts(\.durations)? is not allowed to import broker", result.stdout), (
        result.stdout[-3000:]
    )


def test_wait_for_returns_or_names_what_it_waited_for() -> None:
    from broker.deadline import DeadlineExceeded, wait_for

    calls = iter([False, False, True])
    assert wait_for(lambda: next(calls), 5, "three polls", every_s=0.01) > 0
    with pytest.raises(DeadlineExceeded, match="waiting for the impossible"):
        wait_for(lambda: False, 0.05, "the impossible", every_s=0.01)
