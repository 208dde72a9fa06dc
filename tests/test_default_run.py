"""What a bare ``pytest`` runs (tests/conftest.py): the quick default deselects the tests marked
``slow``, says so, and never turns a failing test into a pass or a skip; ``--all`` and any
explicit selection run them."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ("pytester",)

CONFTEST = Path(__file__).resolve().parent / "conftest.py"
TESTS = """
import pytest

def test_quick():
    pass

@pytest.mark.slow
def test_slow_and_broken():
    assert False, "a slow test that fails"
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A project configured like this one (testpaths, the slow marker) with this conftest."""
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\ntestpaths = ["t"]\n'
                               'addopts = ["--strict-markers", "-p", "no:cacheprovider"]\n'
                               'markers = ["slow: deselected by a bare pytest"]\n')
    folder = pytester.mkdir("t")
    (folder / "conftest.py").write_text(CONFTEST.read_text())
    (folder / "test_x.py").write_text(TESTS)
    return pytester


def test_bare_run_deselects_slow_tests_and_says_so(project: pytest.Pytester) -> None:
    result = project.runpytest()
    result.assert_outcomes(passed=1, deselected=1)  # deselected: not skipped, not passed
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*1 slow self-test(s) deselected; `pytest --all` runs them too*"])


@pytest.mark.parametrize("args", [("--all",), ("t",), ("t/test_x.py",), ("-m", "slow or not slow"),
                                  ("-k", "slow")])
def test_all_or_an_explicit_selection_runs_the_slow_tests(project: pytest.Pytester, args: tuple[str, ...]) -> None:
    result = project.runpytest(*args)
    assert result.parseoutcomes()["failed"] == 1, result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "deselected; `pytest --all`" not in result.stdout.str()


def test_the_real_slow_marker_is_the_one_deselected() -> None:
    """The conftest deselects by the marker this project declares (a renamed marker would make
    the quick default silently run everything, or --strict-markers fail)."""
    from tests.conftest import SLOW

    text = (CONFTEST.parents[1] / "pyproject.toml").read_text()
    assert f'"{SLOW}: ' in text
