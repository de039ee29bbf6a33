"""The layout's rules, checked on the source: no import circles, layers that point one way,
small files, simple functions. Type-only and function-level imports count as edges too."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest
from radon.complexity import cc_visit

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bot", "adapters")
MAX_LINES = 600
MAX_COMPLEXITY = 15


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    return {
        _module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


MODULES = _sources()


def _resolve(name: str) -> str | None:
    """The project module `name` refers to (a module, or the package holding a name)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(module: str, path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import mod` imports the module pkg.mod; `from mod import name` imports mod.
            targets = [f"{base}.{alias.name}" for alias in node.names] or [base]
        else:
            continue
        for target in targets:
            found = _resolve(target)
            if found and found != module:
                yield found


GRAPH = {module: sorted(set(_imports(module, path))) for module, path in MODULES.items()}


def _cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(graph[start]))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph.get(child, []))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
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
    return found


def test_the_cycle_finder_finds_a_planted_circle() -> None:
    planted = {"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}
    assert _cycles(planted) == [["a", "b", "c"]]
    assert _cycles({"a": ["b"], "b": []}) == []


def test_no_import_circles_between_files() -> None:
    assert _cycles(GRAPH) == []


def _backend_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[:2] == ["bot", "backends"] else None


def test_the_core_knows_no_backend() -> None:
    wrong = [
        (module, target)
        for module, targets in GRAPH.items()
        if module.startswith("bot.core") or module.startswith("bot.store")
        for target in targets
        if target.startswith("bot.backends")
    ]
    assert wrong == []


def test_backends_meet_only_through_a_declared_hook() -> None:
    """A backend may use another only through that backend's `hooks` module."""
    wrong = [
        (module, target)
        for module, targets in GRAPH.items()
        if (mine := _backend_of(module))
        for target in targets
        if (theirs := _backend_of(target)) and theirs != mine and not target.endswith(".hooks")
    ]
    assert wrong == []


def test_adapters_only_translate() -> None:
    """Adapters talk to the core, never to a backend's insides; the core never to a platform SDK."""
    wrong = [
        (module, target)
        for module, targets in GRAPH.items()
        if module.startswith("adapters")
        for target in targets
        if target.startswith("bot.backends") or target.startswith("bot.sim")
    ]
    assert wrong == []
    sdk = ("slack_bolt", "slack_sdk", "discord")
    for module, path in MODULES.items():
        if module.startswith("bot."):
            text = path.read_text(encoding="utf-8")
            assert not any(f"import {name}" in text or f"from {name}" in text for name in sdk), (
                module
            )


@pytest.mark.parametrize("module", sorted(MODULES))
def test_files_stay_small(module: str) -> None:
    lines = MODULES[module].read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES, f"{module} has {lines} lines"


def test_functions_stay_simple() -> None:
    """Cyclomatic complexity (radon) at most 15, outside the simulators."""
    complex_ = [
        f"{module}.{block.name} = {block.complexity}"
        for module, path in MODULES.items()
        if not module.startswith("bot.sim")
        for block in cc_visit(path.read_text(encoding="utf-8"))
        if block.complexity > MAX_COMPLEXITY
    ]
    assert complex_ == []
