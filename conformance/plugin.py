"""pytest hooks of the conformance suite: options, candidate selection, header, load failures.

``conformance/conftest.py`` re-exports these hooks; keeping them here keeps that file a shim.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hypothesis import settings

from conformance.candidate import DEFAULT_IMPL, Candidate, InProcessCandidate
from conformance.diagnosis import named_in, reset_named
from conformance.strategies import DEFAULT_PROFILE

# Registered and loaded at import, i.e. before hypothesis applies --hypothesis-profile.
settings.load_profile(DEFAULT_PROFILE)

CANDIDATE_KEY = pytest.StashKey[Candidate]()
# The one test that still runs when the candidate cannot be loaded; it reports why.
LOAD_CHECK_TEST = "test_candidate_loads"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("conformance", "backprop conformance suite")
    group.addoption(
        "--impl",
        default=None,
        help="candidate to judge: a dotted module name importable from the current directory, "
        f"or a path to a .py file (fallback: $BACKPROP_IMPL, then {DEFAULT_IMPL!r})",
    )
    group.addoption(
        "--isolate",
        action="store_true",
        help="run the candidate in a locked-down worker process (use for untrusted code)",
    )
    group.addoption(
        "--golden",
        metavar="DIR",
        default=None,
        help="also check the candidate against outputs pinned by 'tools.fixtures record' in DIR",
    )
    group.addoption(
        "--golden-rtol",
        type=float,
        default=0.0,
        help="relative tolerance for --golden comparisons (default 0: bit-exact)",
    )
    group.addoption(
        "--golden-atol",
        type=float,
        default=0.0,
        help="absolute tolerance for --golden comparisons (default 0: bit-exact)",
    )
    group.addoption(
        "--mnist-dir",
        metavar="DIR",
        default=None,
        help="directory holding the four MNIST IDX files (fallback: $BACKPROP_MNIST_DIR, cache)",
    )
    group.addoption(
        "--require-mnist",
        action="store_true",
        help="fail (instead of reporting 'not run') when MNIST data cannot be found",
    )
    group.addoption(
        "--mnist-full",
        action="store_true",
        help="also run the section's full 10-epoch MNIST recipe against its calibrated threshold",
    )
    group.addoption(
        "--max-examples",
        type=int,
        default=None,
        help="override the hypothesis profile's number of examples per property test",
    )
    group.addoption(
        "--conformance-report",
        metavar="FILE",
        default=None,
        help="write a machine-readable JSON report (per test: check area, outcome, message)",
    )
    from conformance.isolation.options import add_isolation_options

    add_isolation_options(parser)  # --isolate-timeout, --isolate-memory, ... (SECURITY.md)


def impl_spec(config: pytest.Config) -> str:
    return config.getoption("impl") or os.environ.get("BACKPROP_IMPL") or DEFAULT_IMPL


@pytest.hookimpl(trylast=True)  # after hypothesis has loaded --hypothesis-profile
def pytest_configure(config: pytest.Config) -> None:
    _apply_max_examples(config)
    spec = impl_spec(config)
    if config.getoption("isolate"):
        from conformance.isolation import IsolatedCandidate

        candidate: Candidate = IsolatedCandidate.load(spec, config)
    else:
        candidate = InProcessCandidate.load(spec)
    config.stash[CANDIDATE_KEY] = candidate
    from conformance.summary import RunSummary  # the end-of-run summary (terminal and JSON)

    config.pluginmanager.register(RunSummary(config), RunSummary.NAME)
    report_path = config.getoption("conformance_report")
    if report_path:
        from conformance.report import JsonReport

        config.pluginmanager.register(JsonReport(Path(report_path), candidate), "conformance-report")


def _apply_max_examples(config: pytest.Config) -> None:
    """--max-examples N: the current hypothesis profile with N examples per property test."""
    n = config.getoption("max_examples")
    if n is None:
        return
    if n < 1:
        raise pytest.UsageError(f"--max-examples must be >= 1, got {n}")
    current = settings.get_current_profile_name()
    name = f"{current}-max-examples-{n}"
    settings.register_profile(name, parent=settings.get_profile(current), max_examples=n)
    settings.load_profile(name)


def pytest_unconfigure(config: pytest.Config) -> None:
    candidate = config.stash.get(CANDIDATE_KEY, None)
    if candidate is not None:
        candidate.close()


def pytest_report_header(config: pytest.Config) -> list[str]:
    candidate = config.stash.get(CANDIDATE_KEY, None)
    if candidate is None:
        return []
    mode = "isolated worker" if candidate.isolated else "in-process"
    lines = [
        f"candidate: {candidate.module_name} ({mode})",
        f"candidate file: {candidate.path}",
        f"candidate sha256: {candidate.sha256}",
    ]
    if candidate.isolated and hasattr(candidate, "describe"):
        lines.append(f"isolation: {candidate.describe()}")
    if candidate.load_error:
        lines.append("candidate could not be loaded: every check but the load check is deselected")
    return lines


AREA_ATTRIBUTE = "CONFORMANCE_AREA"  # a check module's area; the grader's points follow it


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:  # the area as data on every report, so renaming a file changes no grade
        area = getattr(getattr(item, "module", None), AREA_ATTRIBUTE, None)
        if isinstance(area, str):
            item.user_properties.append(("area", area))
    candidate = config.stash.get(CANDIDATE_KEY, None)
    if candidate is None or candidate.load_error is None:
        return
    # One clear failure instead of hundreds of cascading errors.
    keep = [item for item in items if item.name == LOAD_CHECK_TEST]
    drop = [item for item in items if item.name != LOAD_CHECK_TEST]
    if drop:
        config.hook.pytest_deselected(items=drop)
    items[:] = keep


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    reset_named()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):  # type: ignore[no-untyped-def]
    """A failing test's report carries the keys of the catalogued mistakes its message names
    (conformance/diagnosis.py ``named``), as the user property "diagnoses"."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        crash = getattr(getattr(report.longrepr, "reprcrash", None), "message", "")
        keys = named_in(f"{report.longreprtext}\n{crash}")  # (the traceback prefixes lines with "E")
        if keys:
            report.user_properties.append(("diagnoses", keys))


@pytest.fixture(scope="session")
def candidate(request: pytest.FixtureRequest) -> Candidate:
    """The implementation under test (in-process or isolated; tests must not care)."""
    return request.config.stash[CANDIDATE_KEY]
