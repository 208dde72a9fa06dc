"""Files written per submission and per batch: Gradescope results.json, JUnit XML, CSV.

All writes are atomic (temporary file + rename), so a grader killed while writing leaves
the previous complete file, never half of one.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from tools.grade.feedback import group_output
from tools.grade.rubric import Grade, Rubric
from tools.grade.runner import STATUS_HELP


def write_atomic(path: Path, data: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class GradedSubmission:
    """Everything the outputs need about one submission's current grade."""

    name: str
    slug: str
    sha256: str
    status: str
    message: str
    grade: Grade
    duration: float
    tests: list[dict[str, Any]]
    suite_version: str
    rubric: Rubric
    junit_xml: str | None = None
    output_tail: str = ""
    source: str = ""
    sandbox: str = "unknown"  # engaged / degraded / off / unknown: the run's protection

    def counts(self) -> dict[str, int]:
        out = {"passed": 0, "failed": 0, "error": 0, "skipped": 0}
        for t in self.tests:
            out[t["outcome"]] = out.get(t["outcome"], 0) + 1
        return out


def status_line(sub: GradedSubmission) -> str:
    if sub.status == "graded":
        return "graded"
    return f"{sub.status}: {STATUS_HELP.get(sub.status, '')}"


def gradescope_results(sub: GradedSubmission) -> dict[str, Any]:
    """results.json in Gradescope's autograder format: one test entry per scored group."""
    header = [f"Status: {status_line(sub)}"]
    if sub.status != "graded" and sub.message:
        header.append(sub.message[:8000])
    header.append(f"Score: {sub.grade.score:g}/{sub.grade.max_score:g}")
    header.append(f"Suite version {sub.suite_version}, rubric {sub.rubric.name!r} ({sub.rubric.hash}).")
    tests = []
    for number, gs in enumerate(sub.grade.groups, start=1):
        tests.append({
            "name": gs.group.title,
            "number": str(number),
            "score": gs.score,
            "max_score": gs.max_score,
            "status": gs.status,
            "output": group_output(gs),
            "visibility": gs.group.visibility,
            "tags": [gs.group.area] if gs.group.area else [],
        })
    return {
        "score": sub.grade.score,
        "execution_time": round(float(sub.duration), 3),
        "output": "\n".join(header),
        "visibility": sub.rubric.visibility,
        "stdout_visibility": "hidden",
        "extra_data": {"status": sub.status, "sha256": sub.sha256, "suite_version": sub.suite_version,
                       "rubric": sub.rubric.hash, "max_score": sub.grade.max_score, "sandbox": sub.sandbox},
        "tests": tests,
    }


def status_junit(sub: GradedSubmission) -> str:
    """JUnit XML for a submission whose suite run left none (timeout, crash, no module):
    one failing test case carrying the status, so CI systems see a failure, not nothing."""
    text = f"{status_line(sub)}\n{sub.message}"
    return ('<?xml version="1.0" encoding="utf-8"?>\n<testsuites>'
            f'<testsuite name="conformance" errors="1" failures="0" skipped="0" tests="1" '
            f'time="{sub.duration:.3f}"><testcase classname="conformance.grading" '
            f'name={quoteattr(sub.status)} time="{sub.duration:.3f}">'
            f'<error message={quoteattr(status_line(sub))}>{escape(text)}</error>'
            '</testcase></testsuite></testsuites>\n')


def write_submission_files(out: Path, sub: GradedSubmission) -> Path:
    """OUT/submissions/<slug>/{results.json, junit.xml}; returns the folder."""
    folder = out / "submissions" / sub.slug
    write_atomic(folder / "results.json", json.dumps(gradescope_results(sub), indent=1))
    write_atomic(folder / "junit.xml", sub.junit_xml or status_junit(sub))
    return folder


def _cell(value: Any) -> Any:
    """Neutralise spreadsheet formulas in submission-derived text (CSV injection)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def grades_csv(subs: list[GradedSubmission], rubric: Rubric) -> str:
    areas = rubric.area_names
    rules = [g for g in rubric.rules]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["submission", "sha256", "status", "score", "max_score", *areas,
                     *[r.key for r in rules], "passed", "failed", "errors", "skipped",
                     "duration_s", "suite_version", "sandbox", "rubric", "message"])
    for sub in subs:
        by_key = {g.group.key: g.score for g in sub.grade.groups}
        counts = sub.counts()
        first_line = (sub.message or "").strip().splitlines()[:1]
        writer.writerow([_cell(sub.name), sub.sha256, sub.status, f"{sub.grade.score:g}",
                         f"{sub.grade.max_score:g}", *[f"{by_key.get(a, 0):g}" for a in areas],
                         *[f"{by_key.get(r.key, 0):g}" for r in rules], counts["passed"],
                         counts["failed"], counts["error"], counts["skipped"],
                         f"{sub.duration:.2f}", sub.suite_version, sub.sandbox, sub.rubric.hash,
                         _cell(first_line[0][:300] if first_line else "")])
    return buf.getvalue()
