"""Lab code stays apart from the product and the tests: tests may import ``lab``, ``lab`` never imports
``tests``, the package under ``src/`` imports neither, and only ``src/`` goes into the wheel.

Every import counts, at module level or inside a function: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

from tests.conftest import REPO


def top_level_imports(path: Path) -> set[str]:
    """The top-level package of every absolute import in the Python file PATH."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
    return found


def crossings(folder: str, forbidden: set[str]) -> list[str]:
    return sorted(f"{path.relative_to(REPO)} imports {name}" for path in sorted((REPO / folder).rglob("*.py"))
                  for name in sorted(top_level_imports(path) & forbidden))


def test_the_import_reader_sees_lazy_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from tests.conftest import REPO\n    import lab.gpu\n")
    assert top_level_imports(module) == {"tests", "lab"}


def test_lab_never_imports_tests():
    assert crossings("lab", {"tests"}) == []


def test_the_product_imports_neither_lab_nor_tests():
    assert crossings("src", {"lab", "tests"}) == []


def test_the_wheel_takes_its_packages_from_src_alone():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert pyproject["tool"]["setuptools"]["packages"]["find"]["where"] == ["src"]


@pytest.mark.parametrize("path", sorted((REPO / "tests" / "gpu").iterdir()), ids=lambda path: path.name)
def test_tests_gpu_holds_tests_only(path):
    assert path.name in {"__init__.py", "conftest.py", "__pycache__"} or (
        path.name.startswith("test_") and path.suffix == ".py"), f"{path.name}: lab code belongs under lab/gpu/"
