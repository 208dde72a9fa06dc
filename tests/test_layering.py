"""Layering: the shipped packages (and the tools) never import the project's own tests.

``tests/`` is neither in the wheel nor in the sdist, so a module of ``reference/``,
``conformance/`` or ``tools/`` that imported it would break as soon as it is installed, and
would make the tests a dependency of what they test. The tests import the tools (the variant
catalogue and the kill matrix live in ``tools/``), never the reverse.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("reference", "conformance", "tools")
FORBIDDEN = "tests"


def imports_of(source: str, filename: str = "<source>") -> list[tuple[int, str]]:
    """(line, module) for every absolute import in ``source``, wherever it sits (top level,
    inside a function, under ``if TYPE_CHECKING``), plus ``importlib.import_module("...")`` and
    ``__import__("...")`` calls with a literal name."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name) and node.func.id in ("__import__", "import_module")))):
            found.append((node.lineno, node.args[0].value))
    return found


def imports_tests(module: str) -> bool:
    return module == FORBIDDEN or module.startswith(FORBIDDEN + ".")


def test_the_checker_sees_every_spelling() -> None:
    """The scan below can fail: each way of importing the tests is found, a lookalike is not."""
    source = ("import os\nimport tests.variants\nfrom tests import kill_matrix\n"
              "def f():\n    from tests.leftovers import processes_under\n"
              "import importlib\nimportlib.import_module('tests.helpers')\n__import__('tests')\n"
              "import testsuite\nfrom .tests import x\n")
    flagged = [line for line, module in imports_of(source) if imports_tests(module)]
    assert flagged == [2, 3, 5, 7, 8]


@pytest.mark.parametrize("layer", LAYERS)
def test_layer_never_imports_the_tests(layer: str) -> None:
    files = sorted((REPO_ROOT / layer).rglob("*.py"))
    assert files, f"{layer}/ has no Python file: the scan would prove nothing"
    offenders = [f"{path.relative_to(REPO_ROOT)}:{line}: imports {module}"
                 for path in files for line, module in imports_of(path.read_text(), str(path))
                 if imports_tests(module)]
    assert not offenders, "tests/ must import tools/, never the reverse:\n" + "\n".join(offenders)
