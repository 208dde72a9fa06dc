"""pytest hooks of the conformance suite: candidate selection, header, load failures, markers.

Active only in runs that collect the suite. They are registered under the plugin name
``conformance.hooks`` by whichever comes first: ``conformance.plugin`` when the command line
names the suite, ``conformance/conftest.py`` when pytest collects the suite's folder, or an
explicit ``-p conformance.hooks`` (the hardened command of ``conformance.invocation``, which
runs with ``--noconftest``). The options themselves live in ``conformance.plugin``.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generator

import pytest
from hypothesis import settings

from conformance.candidate import CANDIDATE_KEY, Candidate, InProcessCandidate, load_headline
from conformance import evidence
from conformance.plugin import SUITE_DIR, impl_spec
from conformance.strategies import DEFAULT_PROFILE

if TYPE_CHECKING:
    from pluggy import Result

# Loaded at import, i.e. before hypothesis applies --hypothesis-profile (when the hooks are
# registered early); pytest_configure loads the requested profile again for late registration.
settings.load_profile(DEFAULT_PROFILE)

MARKERS = (
    "mnist: needs the MNIST data (see --mnist-dir / BACKPROP_MNIST_DIR / --require-mnist)",
    "slow: takes more than a few seconds",
)

# How hints spell "run part of the suite again": the command the user ran (set per session).
_rerun_prefix = "backprop-conformance check mymodule"
# The one test that still runs when the candidate cannot be loaded; it reports why.
LOAD_CHECK_TEST = "test_candidate_loads"


@pytest.hookimpl(trylast=True)  # after hypothesis has loaded --hypothesis-profile
def pytest_configure(config: pytest.Config) -> None:
    global _rerun_prefix
    # The suite's own markers: an installed suite runs under --strict-markers from any folder,
    # without the checkout's pyproject.toml.
    for marker in MARKERS:
        config.addinivalue_line("markers", marker)
    # Idempotent when hypothesis has applied it already; needed when these hooks were
    # registered after hypothesis's own pytest_configure ran (a conftest found late).
    settings.load_profile(config.getoption("--hypothesis-profile", None) or DEFAULT_PROFILE)
    _apply_max_examples(config)
    spec = impl_spec(config)
    from conformance.declaration import DeclarationError

    declared = config.getoption("declaration", None)
    try:
        if config.getoption("isolate"):
            from conformance.isolation.candidate import IsolatedCandidate

            candidate: Candidate = IsolatedCandidate.load(spec, config, declared)
        else:
            candidate = InProcessCandidate.load(spec, declared)
    except DeclarationError as exc:  # the declaration's fault: a usage error, never a verdict
        raise pytest.UsageError(str(exc)) from None
    config.stash[CANDIDATE_KEY] = candidate
    _rerun_prefix = rerun_prefix(config)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:  # progress lines name conformance/test_x.py, not ../../venv/lib/...
        # With --pyargs from a folder outside the suite, node ids are relative to the rootdir:
        # the reporter then starts from it, so lines read test_golden.py, not ../../hw2/test_*.py.
        inside = SUITE_DIR.resolve().is_relative_to(Path(config.rootpath).resolve())
        reporter.startpath = SUITE_DIR.parent if inside else Path(config.rootpath)
    from conformance.summary import RunSummary  # the end-of-run summary (terminal and JSON)

    summary = RunSummary(config)
    summary.declaration = getattr(candidate, "declaration", None)
    if summary.declaration is not None and not summary.declaration.is_section:
        from conformance.cases import REPRODUCER_DECLARATIONS
        from conformance.declaration import raw_keys

        REPRODUCER_DECLARATIONS[candidate.module_name] = raw_keys(summary.declaration.values)
    config.pluginmanager.register(summary, RunSummary.NAME)
    report_path = config.getoption("conformance_report")
    if report_path:
        from conformance.report import JsonReport

        config.pluginmanager.register(JsonReport(Path(report_path), candidate), "conformance-report")


def rerun_prefix(config: pytest.Config) -> str:
    """The command that judges this candidate again, as the user can type it from the folder
    of the candidate: ``backprop-conformance check`` for runs with the suite's own configuration
    (that command, the grader), else the plain pytest spelling that works with an installed
    suite too (``pytest conformance`` needs a clone). A temporary path (the grader's copy) is
    shown as the file's name."""
    from conformance.invocation import SUITE_INI

    spec = impl_spec(config)
    shown = shlex.quote(Path(spec).name if Path(spec).is_absolute() else spec)
    if config.inipath is not None and Path(config.inipath).resolve() == SUITE_INI.resolve():
        return f"backprop-conformance check {shown}"
    return f"pytest --pyargs conformance --impl={shown}"


def rerun(options: str) -> str:
    """The command that reruns part of the suite, e.g. ``rerun("-k gradients")`` in a hint."""
    return f"{_rerun_prefix} {options}"


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
    lines = [f"candidate: {candidate.module_name or candidate.spec} ({mode})"]
    if candidate.path is None:  # what was looked for, as the load error says
        why = load_headline(candidate.load_error or "") or "the module has no source file"
        lines.append(f"candidate file: none ({why})")
    else:
        lines.append(f"candidate file: {candidate.path}")
    if candidate.sha256 is not None:
        lines.append(f"candidate sha256: {candidate.sha256}")
    from conformance.declaration import summary_line

    declaration = getattr(candidate, "declaration", None)
    if declaration is not None:  # the section's interface: as before
        lines.append(summary_line(declaration))
    for note in getattr(declaration, "notes", ()):
        lines.append(f"note: {note}")
    if candidate.isolated and hasattr(candidate, "describe"):
        lines.append(f"isolation: {candidate.describe()}")
    if candidate.load_error:
        lines.append("candidate could not be loaded: every check but the load check is deselected")
    lines.append("read the conformance summary at the end first: what is wrong, where, and the "
                 "line to change")
    return lines


AREA_ATTRIBUTE = "CONFORMANCE_AREA"  # a check module's area; the grader's points follow it
# Areas run after all others: MNIST training is the long, end-to-end check, so a loop too slow
# for it can spend only its own time, never the session budget of the checks after it.
RUN_LAST = ("mnist",)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:  # the area as data on every report, so renaming a file changes no grade
        area = getattr(getattr(item, "module", None), AREA_ATTRIBUTE, None)
        if isinstance(area, str):
            item.user_properties.append(("area", area))
    items.sort(key=lambda item: dict(item.user_properties).get("area") in RUN_LAST)  # stable
    candidate = config.stash.get(CANDIDATE_KEY, None)
    if candidate is None or candidate.load_error is None:
        return
    # One clear failure instead of hundreds of cascading errors.
    keep = [item for item in items if item.name == LOAD_CHECK_TEST]
    drop = [item for item in items if item.name != LOAD_CHECK_TEST]
    if drop:
        config.hook.pytest_deselected(items=drop)
    items[:] = keep


RECORDER_KEY = pytest.StashKey[evidence.Recorder]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """Each test call records its findings (conformance.evidence) on a recorder of its own,
    kept on the item: evidence never lives in module state shared between tests."""
    with evidence.recording() as recorder:
        item.stash[RECORDER_KEY] = recorder
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                               ) -> Generator[None, Result[pytest.TestReport], None]:
    """A failing test's report carries its findings as data: the user property "evidence"
    (conformance.evidence schema), and, derived from it, "diagnoses" (every key found) and
    "consistent_with" (the mistakes whose replay reproduces a generic finding). A verdict of
    the suite is shown as its message alone (``SuiteFailure``)."""
    # hypothesis notes every exception raised in one of its examples, a skip included; on a
    # skip ("interface limit ...", "candidate defines no ...") the note would read as a failure
    # ("Failing explicit example: ..."): the skip's reason is the suite's, without it.
    skipped = call.excinfo.value if call.excinfo is not None else None
    if isinstance(skipped, pytest.skip.Exception) and getattr(skipped, "__notes__", None):
        setattr(skipped, "__notes__", [])
    outcome = yield
    report = outcome.get_result()
    recorder = item.stash.get(RECORDER_KEY, None)
    if report.skipped and call.when == "call" and recorder is not None and recorder.skip_kind:
        report.user_properties.append(("skip_kind", recorder.skip_kind))
    if report.failed and call.when == "call":
        findings = list(recorder.findings) if recorder is not None else []
        if findings:
            report.user_properties.append(("evidence", evidence.as_property(findings)))
            report.user_properties.append(("diagnoses", sorted({f.key for f in findings})))
            consistent = sorted({k for f in findings for k in f.consistent})
            if consistent:
                report.user_properties.append(("consistent_with", consistent))
    if report.failed:
        if call.excinfo is not None and _shows_message_only(item.config, call.excinfo):
            # pytest's annotation names TerminalRepr, but it only calls toterminal() and str() on
            # longrepr (SuiteFailure has both); a TerminalRepr subclass would serialize differently.
            report.longrepr = SuiteFailure.of(  # type: ignore[assignment]
                call.excinfo, getattr(report.longrepr, "reprcrash", None))


def _shows_message_only(config: pytest.Config, excinfo: pytest.ExceptionInfo[BaseException]) -> bool:
    """A failed check (the suite's AssertionError, which says what is wrong, where and what to
    change) under the default traceback style; an error of the suite itself, or --tb/--fulltrace
    asked for, keeps pytest's traceback."""
    return (isinstance(excinfo.value, AssertionError) and config.getoption("tbstyle", "auto") == "auto"
            and not config.getoption("fulltrace", False))


@dataclass
class SuiteFailure:
    """A failed check as the student reads it: the suite's message (headline first, then what
    was compared, the diagnosis, a reproducer, what to do next), hypothesis' falsifying
    example, and the candidate's own frames when its exception caused the failure. Not the
    suite's source: its test functions are no help to a student. ``reprcrash`` stays pytest's,
    so the JSON report's and JUnit's one-line message are unchanged."""

    text: str
    reprcrash: Any = None

    @classmethod
    def of(cls, excinfo: pytest.ExceptionInfo[BaseException], reprcrash: Any) -> "SuiteFailure":
        from conformance.calls import candidate_frames

        error = excinfo.value
        lines = [str(error)] + [str(note) for note in getattr(error, "__notes__", ())]
        cause = error.__cause__
        while cause is not None:  # the first exception of the chain raised in the candidate's code
            frames = candidate_frames(cause)
            if frames:
                lines.append(f"  raised in your code by {type(cause).__name__}:{frames}")
                break
            cause = cause.__cause__
        return cls("\n".join(lines), reprcrash)

    def toterminal(self, tw: Any) -> None:
        for line in self.text.splitlines():
            tw.line(line)

    def __str__(self) -> str:
        return self.text


@pytest.fixture(scope="session")
def candidate(request: pytest.FixtureRequest) -> Candidate:
    """The implementation under test (in-process or isolated; tests must not care)."""
    return request.config.stash[CANDIDATE_KEY]
