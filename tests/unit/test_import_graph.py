"""The shape of the package, read from its imports: layers that only import downwards, commands that do
not import each other, and no import circle.

Every ``tpserve`` import counts, at module level or inside a function, absolute or relative: a lazy
import is still a dependency, only a later one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"

# Lowest first: a module may import its own layer and the layers before it, never one after it.
LAYERS = [
    ("fetch", ["tpserve.fetch"]),
    ("serving", ["tpserve.machine", "tpserve.gpuspecs", "tpserve.settings", "tpserve.catalog", "tpserve.launch",
                 "tpserve.plan", "tpserve.shapes", "tpserve.startup", "tpserve.axes", "tpserve.server"]),
    ("workload", ["tpserve.workload", "tpserve.data"]),
    ("measure", ["tpserve.commandlines", "tpserve.measure", "tpserve.sweep", "tpserve.tune",
                 "tpserve.presets", "tpserve.demo", "tpserve.report", "tpserve.roofline",
                 "tpserve.recommend"]),
    ("commands", ["tpserve.commands"]),
    ("cli", ["tpserve.cli", "tpserve.__main__"]),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


# The root package, tpserve/__init__.py, is empty and in no layer.
MODULES = {module_name(path): path for path in sorted((SRC / "tpserve").rglob("*.py")) if module_name(path) != "tpserve"}


def imports_of(name: str) -> set[str]:
    """The tpserve modules NAME imports; ``from tpserve.x import y`` counts as tpserve.x.y when y is a module."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join([*base, *([node.module] if node.module else [])])
            found |= {f"{target}.{alias.name}" if f"{target}.{alias.name}" in MODULES else target
                      for alias in node.names}
    return {imported for imported in found if imported in MODULES and imported != name}


GRAPH = {name: imports_of(name) for name in MODULES}


def layer_of(name: str) -> int:
    """The index in LAYERS of NAME's layer: its longest matching prefix."""
    matches = [(len(prefix), index) for index, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes
               if name == prefix or name.startswith(prefix + ".")]
    return max(matches)[1]


def is_command(name: str) -> bool:
    """A command module: ``tpserve.commands.X``; the package itself and ``_``-private helpers are not commands."""
    package, _, leaf = name.rpartition(".")
    return package == "tpserve.commands" and not leaf.startswith("_")


def test_the_graph_sees_relative_and_lazy_imports():
    assert "tpserve.fetch.errors" in GRAPH["tpserve.fetch.cache"]  # from .errors import ...
    assert "tpserve.commands.serve" in GRAPH["tpserve.cli"]


@pytest.mark.parametrize("name", MODULES)
def test_every_module_belongs_to_one_named_layer(name):
    assert any(name == prefix or name.startswith(prefix + ".") for _, prefixes in LAYERS for prefix in prefixes), (
        f"{name} is in no layer: add it to LAYERS in {Path(__file__).name}")


def test_no_layer_imports_a_higher_one():
    upward = sorted(f"{name} ({LAYERS[layer_of(name)][0]}) imports {imported} ({LAYERS[layer_of(imported)][0]})"
                    for name, imported_names in GRAPH.items() for imported in imported_names
                    if layer_of(imported) > layer_of(name))
    assert upward == []


def test_no_command_module_imports_another():
    crossing = sorted(f"{name} imports {imported}" for name, imported_names in GRAPH.items() if is_command(name)
                      for imported in imported_names if is_command(imported))
    assert crossing == []


def test_the_commands_package_itself_imports_nothing_of_tpserve():
    """The package holds the options every command may take; what only sweep and tune share is in
    ``tpserve.commands._measuring``, so the package that every command imports is no grab-bag."""
    assert GRAPH["tpserve.commands"] == set()


def test_there_is_no_import_circle():
    circles, state = [], {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for imported in sorted(GRAPH[name]):
            if state.get(imported) == "open":
                circles.append(" -> ".join([*path[path.index(imported):], imported]))
            elif imported not in state:
                visit(imported, [*path, imported])
        state[name] = "done"

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [name])
    assert circles == []
