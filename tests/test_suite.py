"""The suite's own shape: test modules share helpers through helpers.py and fixtures through conftest.py,
never by importing each other."""

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


def imported_modules(path: Path) -> set[str]:
    """The top-level name of every module path imports, at any depth of its code."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("path", sorted(TESTS.glob("test_*.py")), ids=lambda path: path.name)
def test_a_test_module_imports_no_other_test_module_and_not_conftest(path):
    wrong = sorted(name for name in imported_modules(path) if name.startswith("test_") or name == "conftest")

    assert not wrong, f"{path.name} imports {', '.join(wrong)}: move what it needs into tests/helpers.py"
