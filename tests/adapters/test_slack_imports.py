"""The Slack adapter's modules import each other without a circle (type-only imports count)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "adapters.slack"
ROOT = Path(__file__).resolve().parents[2] / "adapters" / "slack"


def import_edges(root: Path = ROOT) -> dict[str, set[str]]:
    """module → the sibling modules it imports anywhere: top level, `if TYPE_CHECKING:`, functions."""
    modules = {path.stem: path for path in root.glob("*.py")}
    edges: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from . import x / from .x import y
                    base = PACKAGE + ("." + base if base else "")
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            for target in targets:
                if target.startswith(PACKAGE + "."):
                    sibling = target.removeprefix(PACKAGE + ".").split(".")[0]
                    if sibling in modules and sibling != name:
                        edges[name].add(sibling)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (each one an import circle)."""
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        order[node] = low[node] = len(order)
        stack.append(node)
        for nxt in sorted(edges[node]):
            if nxt not in order:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], order[nxt])
        if low[node] == order[node]:
            group: list[str] = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(edges):
        if node not in order:
            visit(node)
    return found


def test_the_cycle_finder_sees_a_type_only_circle(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("from adapters.slack.b import B\n")
    (tmp_path / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from adapters.slack import a\n"
    )
    (tmp_path / "c.py").write_text("def f():\n    from adapters.slack.a import A\n")
    edges = import_edges(tmp_path)
    assert edges == {"a": {"b"}, "b": {"a"}, "c": {"a"}}
    assert cycles(edges) == [["a", "b"]]


def test_no_import_circle_in_the_slack_adapter() -> None:
    edges = import_edges()
    assert edges["platform"] >= {"conversation"} and edges["conversation"] >= {"streams"}
    assert cycles(edges) == [], edges
