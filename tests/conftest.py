"""Fixtures shared by the project's own tests, and which tests a bare ``pytest`` runs.

A bare ``pytest`` (no path, no ``-m``, no ``-k``) is the quick default: it deselects the tests
marked ``slow`` (the kill matrix, whole-class grading, every hostile submission, ...) and says
how many it left out. ``pytest --all`` runs everything (CI does); naming a file, ``-m`` or
``-k`` runs exactly what was asked for, slow or not. Deselected, never skipped: a slow test
that fails cannot pass for a skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conformance.reference import mnist

SLOW = "slow"
ALL_OPTION = "--all"
_DESELECTED = pytest.StashKey[int]()  # how many slow tests this run left out


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(ALL_OPTION, action="store_true", dest="run_all",
                     help="run every self-test, the slow ones too (a bare pytest deselects the tests "
                          "marked slow; CI runs --all)")


def quick_default(config: pytest.Config) -> bool:
    """True for a bare ``pytest``: no test path of its own (the ini's testpaths), no ``-m``, no
    ``-k``, no ``--all``. Any explicit selection is honoured as given."""
    return (not config.getoption("run_all")
            and config.args_source == pytest.Config.ArgsSource.TESTPATHS
            and not config.getoption("markexpr") and not config.getoption("keyword"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not quick_default(config):
        return
    slow = [item for item in items if item.get_closest_marker(SLOW)]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker(SLOW)]
    config.stash[_DESELECTED] = len(slow)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    count = config.stash.get(_DESELECTED, 0)
    if count:
        terminalreporter.write_line(f"quick default run: {count} slow self-test(s) deselected; "
                                    f"`pytest {ALL_OPTION}` runs them too (CI does)", yellow=True)


# Read before any test touches the environment (several tests point it at temp dirs).
REAL_MNIST_DIR_AT_START = os.environ.get(mnist.DIR_ENV)


@pytest.fixture(scope="session")
def real_dir() -> Path:
    """The real MNIST files: skip without them, fail under CI (which always has them)."""
    start = REAL_MNIST_DIR_AT_START
    found = mnist.find_mnist_dir(start) if start else mnist.find_mnist_dir()
    if found is None:
        where = f"${mnist.DIR_ENV}={start}" if start else \
            f"${mnist.DIR_ENV} unset and nothing in {mnist.cache_dir()}"
        message = f"real MNIST files not found ({where}); run 'backprop-conformance fetch-mnist'"
        if os.environ.get("CI"):
            pytest.fail("CI must provide MNIST: " + message, pytrace=False)
        pytest.skip(message)
    return found
