"""The package's import graph has no cycle: the higher floors import the lower ones, never back.

The graph is read from the source with ``ast``: an edge ``a -> b`` for every
``import`` of a ``minicnn`` module ``b`` anywhere in module ``a`` (at the top
or inside a function, since a deferred import is a dependency all the same).
The one exception is a module-level ``__getattr__`` (PEP 562), which serves an
old name from its new home and is no dependency of the module's own code.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "minicnn"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(name: str) -> str | None:
    """The package module ``name`` stands for (``minicnn.nn.Conv2d`` -> ``minicnn.nn``), or None outside it."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _lazy_alias_nodes(tree: ast.Module) -> set[int]:
    """ids of the nodes inside a module-level ``def __getattr__``."""
    return {id(node) for top in tree.body if isinstance(top, ast.FunctionDef) and top.name == "__getattr__"
            for node in ast.walk(top)}


def imports_of(module: str) -> set[str]:
    """The package modules that ``module`` imports."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _lazy_alias_nodes(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            # ``from minicnn.nn import functional`` imports the module minicnn.nn.functional (the
            # package's own __init__ only to reach it); ``from minicnn.nn import Conv2d``, the package.
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        for name in names:
            target = _resolve(name) if name.startswith("minicnn") else None
            if target and target != module:
                found.add(target)
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or None (depth-first search, three colours)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_package_has_no_import_cycle():
    graph = {m: imports_of(m) for m in MODULES}
    assert sum(len(v) for v in graph.values()) > 50  # the scan sees the package's imports
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("graph, expected", [
    ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
    ({"a": {"b", "c"}, "b": {"c"}, "c": {"b"}}, ["b", "c", "b"]),
])
def test_the_cycle_finder_finds_cycles(graph, expected):
    assert find_cycle(graph) == expected


def test_deferred_imports_count_and_lazy_aliases_do_not():
    assert "minicnn.commands.predict" in imports_of("minicnn.cli")  # imported inside a function
    assert "minicnn.inference" not in imports_of("minicnn.imaging")  # imaging is a floor below inference
    assert "minicnn.nn.functional" in imports_of("minicnn.nn.conv")  # from minicnn.nn import functional
