"""Machine-readable JSON report of a conformance run (``pytest --conformance-report FILE``).

The batch grader (``conformance.grade``) turns this file into points, so it records exactly what
the verdict needs and nothing the candidate controls: per test its check area, outcome,
duration, failure text (capped) and skip reason, plus the candidate's identity and the
suite version. It is written by the pytest process that computes the verdicts (never by an
isolated worker, never by an xdist worker), after the candidate has been closed, to a
temporary file that is then renamed over FILE: a reader sees the whole report or none.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from conformance.candidate import Candidate

SCHEMA = "backprop-conformance-report/1"
OUTCOMES = ("passed", "failed", "skipped", "error")
SUITE_DIR = Path(__file__).resolve().parent
REPO_ROOT = SUITE_DIR.parent

# Caps keep one report small whatever a candidate prints into an exception message
# (a submission can raise an exception with a gigabyte of text). Head and tail are kept
# because the useful part of a failure (diagnosis, "what to do next") is often at the end.
MESSAGE_HEAD = 6000
MESSAGE_TAIL = 3000
SHORT_TEXT_CAP = 2000  # a skip reason or a crash's one-line message
PROPERTY_CAP = 20000  # characters of JSON per record_property value
# record_property names (prefixes) whose values measure this run rather than judge the
# candidate (the efficiency area's CPU-time ratios): they differ between two runs of the same
# bytes, so the grader keeps them in its gradebook but out of what a student is given.
MEASUREMENT_PROPERTIES = ("efficiency_ratio_",)

# What defines "the suite" for a recorded grade: every file of the conformance package,
# the fixtures it compares against and the reference it cross-checks with.
# What decides a verdict, and nothing else (a typo fixed in SECURITY.md, the training CLI or
# a rubric must not invalidate stored grades): the suite's code and configuration, the
# reference's algorithm and MNIST loader, the fixtures' manifest (it pins every fixture's
# sha256) and the calibrated thresholds.
SUITE_VERSION_CODE = ("*.py", "*.ini")
SUITE_VERSION_NOT_VERDICTS = ("cli.py", "fixture_files.py")  # commands that build runs or files, no verdict
SUITE_VERSION_REFERENCE = ("mlp.py", "mnist.py")
# Hashed below under their own names (fixtures, the reference) or no verdict of theirs (the grader).
SUITE_VERSION_ELSEWHERE = {"fixtures", "reference", "grade"}
SUITE_VERSION_FIXTURES = ("manifest.json", "mnist_thresholds.json")


def suite_version(root: Path = REPO_ROOT) -> str:
    """Short content hash of what decides verdicts: two runs with the same value used the
    same checks, thresholds and fixtures. The same in a checkout and an installed wheel
    (fixtures in ``fixtures/`` or ``conformance/fixtures/``, hashed under one name)."""
    suite = root / "conformance"
    files: dict[str, Path] = {}
    for pattern in SUITE_VERSION_CODE:
        for path in suite.rglob(pattern):
            rel = path.relative_to(root)
            if (path.is_file() and "__pycache__" not in rel.parts and not set(rel.parts[1:2]) & SUITE_VERSION_ELSEWHERE
                    and not (len(rel.parts) == 2 and rel.name in SUITE_VERSION_NOT_VERDICTS)):
                files[rel.as_posix()] = path
    for name in SUITE_VERSION_REFERENCE:
        files[f"reference/{name}"] = root / "conformance" / "reference" / name
    fixtures = suite / "fixtures" if (suite / "fixtures" / "manifest.json").is_file() else root / "fixtures"
    for name in SUITE_VERSION_FIXTURES:
        files[f"fixtures/{name}"] = fixtures / name
    digest = hashlib.sha256()
    for name in sorted(files):
        if files[name].is_file():
            digest.update(name.encode() + b"\0" + hashlib.sha256(files[name].read_bytes()).digest())
    return digest.hexdigest()[:16]


def area_of(nodeid: str) -> str:
    """Check area of a test: its module's file name minus ``test_`` (and ``.py``)."""
    module = nodeid.split("::", 1)[0].rsplit("/", 1)[-1]
    module = module.removesuffix(".py")
    return module.removeprefix("test_")


def cap_text(text: str, head: int = MESSAGE_HEAD, tail: int = MESSAGE_TAIL) -> str:
    if len(text) <= head + tail:
        return text
    cut = len(text) - head - tail
    end = text[len(text) - tail:]  # (not text[-tail:], which is all of it when tail is 0)
    return f"{text[:head]}\n... [{cut} characters cut] ...\n{end}"


# The summary merges into the report's "summary" object: bounded, but never turned into a string.
FIRST_SCREEN_CAP = 256 * 1024  # characters of the summary's JSON
SUMMARY_MAX_LINES = 200


def _jsonable(value: Any) -> Any:
    """A JSON-encodable copy of ``value``: non-finite floats and unknown objects as their repr."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # JSON has no inf/nan
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(x) for k, x in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(x) for x in value]
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return _jsonable(value.tolist())
    return repr(value)


def _json_safe(value: Any) -> Any:
    """A JSON-encodable, size-capped copy of a ``record_property`` value (or its repr)."""
    try:
        cleaned = _jsonable(value)
        text = json.dumps(cleaned, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return cap_text(repr(value), PROPERTY_CAP, 0)
    return cleaned if len(text) <= PROPERTY_CAP else cap_text(text, PROPERTY_CAP, 0)


def skip_reason(report: pytest.TestReport) -> str:
    """Why a test was skipped (capped), for the JSON report."""
    from conformance.evidence import skip_text

    return cap_text(skip_text(report.longrepr), SHORT_TEXT_CAP, 0)


def _crash_message(report: pytest.TestReport) -> str:
    """The exception text alone (what a student reads first), without the traceback."""
    crash = getattr(report.longrepr, "reprcrash", None)
    text = getattr(crash, "message", None)
    if not text:
        lines = report.longreprtext.strip().splitlines()
        text = lines[-1] if lines else ""
    return cap_text(str(text), SHORT_TEXT_CAP, 0)


def _conventions_of(candidate: Candidate) -> dict[str, Any]:
    from conformance.declaration import record

    return record(getattr(candidate, "declaration", None))


def sandbox_of(candidate: Candidate) -> dict[str, Any]:
    """Which isolation protected this run: ``state`` is ``engaged`` / ``degraded`` / ``off``
    (conformance.isolation.process.sandbox_record); in-process runs are ``off``."""
    record = getattr(candidate, "sandbox_record", None)
    if not candidate.isolated or record is None:
        return {"state": "off", "mode": "in-process", "started": False, "protections": {},
                "missing": [], "why": "in-process run (no --isolate): the candidate ran inside the grader"}
    return _json_safe(record())


class JsonReport:
    """pytest plugin collecting one record per test and writing FILE at the very end."""

    def __init__(self, path: Path, candidate: Candidate):
        self.path = Path(path)
        self.candidate = candidate
        self.tests: dict[str, dict[str, Any]] = {}
        self.collect_errors: list[dict[str, Any]] = []
        self.deselected: list[str] = []
        self.exitstatus: int | None = None
        self.started = time.time()
        self.is_xdist_worker = False
        self.config: pytest.Config | None = None

    # -- collection -------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_configure(self, config: pytest.Config) -> None:
        self.is_xdist_worker = hasattr(config, "workerinput")
        self.config = config

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.collect_errors.append({
                "nodeid": report.nodeid,
                "area": area_of(report.nodeid),
                "message": cap_text(report.longreprtext),
            })

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        self.deselected.extend(item.nodeid for item in items)

    # -- results ----------------------------------------------------------------------

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        record = self.tests.setdefault(report.nodeid, {
            "nodeid": report.nodeid,
            "area": area_of(report.nodeid),
            "outcome": "passed",
            "duration": 0.0,
            "message": "",
            "summary": "",
            "skip_reason": "",
            "properties": {},
        })
        record["duration"] += float(report.duration)
        for name, value in getattr(report, "user_properties", ()):
            record["properties"][str(name)] = _json_safe(value)
        area = record["properties"].get("area")  # the module's CONFORMANCE_AREA (plugin.py)
        if isinstance(area, str) and area:
            record["area"] = area
        xfail = hasattr(report, "wasxfail")
        if report.skipped:
            if xfail:  # the suite uses no xfail; if one appears, it earned nothing
                record["outcome"] = "skipped"
                record["skip_reason"] = f"xfail: {report.wasxfail}"
            elif record["outcome"] == "passed":
                record["outcome"] = "skipped"
                record["skip_reason"] = skip_reason(report)
        elif report.failed:
            # A failure in setup/teardown is an error of the test, not a verdict on the code
            # path it checks; the first problem wins, later phases do not overwrite it.
            if record["outcome"] in ("passed", "skipped"):
                record["outcome"] = "failed" if report.when == "call" else "error"
                record["message"] = cap_text(report.longreprtext)
                record["summary"] = _crash_message(report)
                record["skip_reason"] = ""

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        self.exitstatus = int(exitstatus)

    @pytest.hookimpl(trylast=True)
    def pytest_unconfigure(self, config: pytest.Config) -> None:
        # trylast: the suite's own unconfigure has closed the candidate (and its worker)
        # by now, so nothing the candidate runs can still race this write.
        if self.is_xdist_worker:
            return
        self.write()

    # -- output -----------------------------------------------------------------------

    def as_dict(self) -> dict[str, Any]:
        cand = self.candidate
        tests = list(self.tests.values())
        counts = {outcome: sum(t["outcome"] == outcome for t in tests) for outcome in OUTCOMES}
        counts["collect_errors"] = len(self.collect_errors)
        counts["deselected"] = len(self.deselected)
        return {
            "schema": SCHEMA,
            "suite_version": suite_version(),
            "created": time.time(),
            "duration": time.time() - self.started,
            "exitstatus": self.exitstatus,
            "candidate": {
                "spec": str(cand.spec),
                "module": str(cand.module_name),
                "path": str(cand.path) if cand.path is not None else None,
                "sha256": cand.sha256,
                "isolated": bool(cand.isolated),
                "load_error": cap_text(cand.load_error) if cand.load_error else None,
            },
            "sandbox": sandbox_of(cand),
            # the conventions the candidate was judged with, and what they limit
            "conventions": _conventions_of(cand),
            "summary": {**counts, **self._first_screen()},
            "tests": tests,
            "collect_errors": self.collect_errors,
            "deselected": self.deselected,
        }

    def _first_screen(self) -> dict[str, Any]:
        """The end-of-run summary (conformance/summary.py): per-area outcomes, root causes,
        cross-failure patterns, findings and the text lines the terminal shows."""
        from conformance.summary import NAME

        plugin = self.config.pluginmanager.get_plugin(NAME) if self.config is not None else None
        if plugin is None:
            return {}
        data = _jsonable(plugin.as_dict())
        if len(json.dumps(data)) > FIRST_SCREEN_CAP:  # a flood of distinct failures: the text alone
            lines = data.get("lines") if isinstance(data.get("lines"), list) else []
            data = {"lines": [cap_text(str(line), 400, 0) for line in lines[:SUMMARY_MAX_LINES]],
                    "truncated": True}
        return data

    def write(self) -> None:
        """Write the report atomically: a temporary file in the same directory, renamed."""
        data = json.dumps(self.as_dict(), indent=1, allow_nan=False)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
