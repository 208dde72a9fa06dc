"""Machine-readable JSON report of a conformance run (``pytest --conformance-report FILE``).

The batch grader (``tools.grade``) turns this file into points, so it records exactly what
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
SUMMARY_CAP = 2000
PROPERTY_CAP = 20000  # characters of JSON per record_property value
SUMMARY_REPORT_CAP = 400000  # characters of JSON of the run summary; beyond it, kept as text

# What defines "the suite" for a recorded grade: every file of the conformance package,
# the fixtures it compares against and the reference it cross-checks with.
SUITE_VERSION_EXTRA = ("fixtures/manifest.json", "fixtures/mnist_thresholds.json")
SUITE_VERSION_SUFFIXES = (".py", ".md", ".json", ".toml", ".txt")


def suite_version(root: Path = REPO_ROOT) -> str:
    """Short content hash of the suite's sources, the fixtures manifest/thresholds and the
    reference package: two runs with the same value used the same checks."""
    digest = hashlib.sha256()
    files = [p for p in sorted((root / "conformance").rglob("*"))
             if p.is_file() and p.suffix in SUITE_VERSION_SUFFIXES and "__pycache__" not in p.parts]
    files += [p for p in sorted((root / "reference").glob("*.py")) if p.is_file()]
    files += [root / extra for extra in SUITE_VERSION_EXTRA if (root / extra).is_file()]
    for path in files:
        rel = path.relative_to(root).as_posix()
        digest.update(rel.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
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


def _json_safe(value: Any, cap: int = PROPERTY_CAP) -> Any:
    """A JSON-encodable, size-capped copy of a ``record_property`` value (or its repr)."""
    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return repr(v)  # JSON has no inf/nan
        if isinstance(v, (str, int, float, bool)) or v is None:
            return v
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if hasattr(v, "tolist"):  # numpy scalars and arrays
            return clean(v.tolist())
        return repr(v)

    try:
        cleaned = clean(value)
        text = json.dumps(cleaned, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return cap_text(repr(value), PROPERTY_CAP, 0)
    return cleaned if len(text) <= cap else cap_text(text, cap, 0)


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        reason = str(longrepr[2])
    else:
        reason = str(longrepr or "")
    return cap_text(reason.removeprefix("Skipped: "), SUMMARY_CAP, 0)


def _crash_message(report: pytest.TestReport) -> str:
    """The exception text alone (what a student reads first), without the traceback."""
    crash = getattr(report.longrepr, "reprcrash", None)
    text = getattr(crash, "message", None)
    if not text:
        lines = report.longreprtext.strip().splitlines()
        text = lines[-1] if lines else ""
    return cap_text(str(text), SUMMARY_CAP, 0)


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
                record["skip_reason"] = _skip_reason(report)
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
        # (its own caps bound it: 50 unexplained failures of 200-character headlines)
        screen = _json_safe(plugin.as_dict(), cap=SUMMARY_REPORT_CAP)
        return screen if isinstance(screen, dict) else {"lines": ["(the run summary was too large to record)"]}

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
