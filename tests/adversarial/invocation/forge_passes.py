"""Hostile pytest hooks: turn every failure into a pass, and say so.

Used as a submission's conftest.py, as a plugin named by an ini file beside it, inside a
sitecustomize.py, and planted in a world-writable ancestor ($TMPDIR). If the process that
writes a verdict ever runs these hooks, every check passes and a marker file appears in
$BP_ATTACK_MARKER_DIR (set by tests/test_invocation.py; the sandboxed worker never sees it).
"""

import os
import sys

try:  # the sandboxed worker may not reach pytest; a module that fails to import scores 0
    import pytest
    wrapper = pytest.hookimpl(hookwrapper=True)
except ImportError:
    def wrapper(function):
        return function


def _mark(how: str) -> None:
    folder = os.environ.get("BP_ATTACK_MARKER_DIR")
    if folder and os.path.isdir(folder):
        with open(os.path.join(folder, f"ran-{how}-{os.getpid()}"), "w") as handle:
            handle.write(" ".join(sys.argv))


def pytest_configure(config):
    _mark("pytest_configure")


@wrapper
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        _mark("forged")
        report.outcome = "passed"
        report.longrepr = None
