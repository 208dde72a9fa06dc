"""Files written per submission and per batch: Gradescope results.json, JUnit XML, CSV.

All writes are atomic (temporary file + rename), so a grader killed while writing leaves
the previous complete file, never half of one. Submission-derived text goes through
conformance.grade.intake.sanitize on its way into every file (no control or bidi characters, no
spreadsheet formulas). The CSV files are UTF-8 with a byte-order mark, so Excel shows
"zoë müller" as written (without one it guesses a legacy code page).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from conformance.candidate import load_headline
from conformance.grade.score.feedback import deduction_text, group_output, lead_lines
from conformance.grade.intake.lms import canvas_csv
from conformance.grade.score.rubric import Grade, Rubric
from conformance.grade.run.jobs import FINAL_STATUSES, STATUS_HELP
from conformance.grade.intake.sanitize import clean_name, clean_text, csv_cell
from conformance.grade.intake.submissions import ClassIntake, IntakeInfo

EXCEL_BOM = "\ufeff"
# Entries that are not gradable submissions (a stray notes.txt, a folder with no module, an
# archive refused as unsafe): never run, so they get no score (blank, unless the instructor
# overrides it), stay out of the class statistics and are listed apart. Whether such an entry
# is a 0 is the instructor's call, like a roster student who handed nothing in.
NOT_GRADABLE = ("unsupported", "no_module", "invalid_submission")
# The suite's test files as the grader's run names them (/…/site-packages/conformance/test_x.py
# in a venv, /…/checkout/conformance/test_x.py in a clone): the path before conformance/ is the
# grader's, differs between installs and is nobody's business in a student-facing file.
_SUITE_PATH = re.compile(r"(?<![\w.-])(?:[A-Za-z]:)?[\\/][^\s\"'<>]*?[\\/](conformance[\\/][\w./\\-]*?\w+\.py)")


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


@dataclass(frozen=True)
class Override:
    """An instructor's manual score for one submission's exact bytes, with the reason."""

    score: float
    reason: str
    computed: float  # what the rubric gave
    id: int | None = None  # its row in the gradebook's overrides table


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
    intake: IntakeInfo = field(default_factory=IntakeInfo)
    sandbox: str = "unknown"  # engaged / degraded / off / unknown: the run's protection
    run_summary: dict[str, Any] = field(default_factory=dict)  # the report's end-of-run summary
    override: Override | None = None
    grade_id: int | None = None  # its row in the gradebook's grades table

    @property
    def score(self) -> float:
        """The score that counts: the instructor's override, else the rubric's."""
        return self.override.score if self.override is not None else self.grade.score

    @property
    def ran(self) -> bool:
        """Whether the suite was started for it (a NOT_GRADABLE entry never is: no sandbox state)."""
        return self.status not in NOT_GRADABLE

    @property
    def scored(self) -> bool:
        """Whether it has a score that counts (the class statistics, grades.csv, the LMS export):
        a final status of a gradable submission, or the instructor's override of any entry."""
        return self.override is not None or (self.status in FINAL_STATUSES and self.status not in NOT_GRADABLE)

    def lead(self) -> list[str]:
        """What the student reads first (conformance.grade.score.feedback.lead_lines), override included."""
        lines = []
        if self.override is not None:
            lines.append(f"Score set by the instructor: {self.override.score:g} (the rubric gave "
                         f"{self.override.computed:g}): {self.override.reason}")
        return lines + lead_lines(self.grade, self.run_summary)

    def counts(self) -> dict[str, int]:
        out = {"passed": 0, "failed": 0, "error": 0, "skipped": 0}
        for t in self.tests:
            out[t["outcome"]] = out.get(t["outcome"], 0) + 1
        return out


AMBIGUOUS_NOTE = ("ambiguous: this entry's name or student id clashes with another entry; the "
                  "instructor checks which is yours")


def student_notes(sub: GradedSubmission) -> list[str]:
    """Intake notes a student may read: a clash names the other entries (other students,
    perhaps), so it is reduced to one neutral line; grades.csv and intake.csv keep the detail."""
    notes = [n for n in sub.intake.notes if not n.startswith("ambiguous")]
    return notes + [AMBIGUOUS_NOTE] if len(notes) < len(sub.intake.notes) else notes


def message_line(message: str) -> str:
    """A status message in one line (grades.csv, the staff table, the batch's last line), by
    the rule the suite's summary uses for a load error (``conformance.candidate.load_headline``):
    its first line, completed by its last when it ends with ":"."""
    return load_headline(message or "")


def status_line(sub: GradedSubmission) -> str:
    if sub.status == "graded":
        return "graded"
    return f"{sub.status}: {STATUS_HELP.get(sub.status, '')}"


def gradescope_results(sub: GradedSubmission) -> dict[str, Any]:
    """results.json in Gradescope's autograder format: the summary first (what is wrong,
    where, what to change), then one test entry per scored group. It holds this submission's
    data only, and nothing that varies between two runs of the same bytes (no durations,
    times or paths): two runs give byte-identical files. With the rubric's
    ``hide_hints_until_due``, the summary and every failure's details move into one entry
    visible after the due date; the scores stay visible as the rubric says."""
    hide = sub.rubric.hide_hints
    header, lead = _results_header(sub, hide)
    tests = _group_entries(sub, hide)
    tests += _mistake_entries(sub, hide, first_number=len(tests) + 1)
    if hide and (lead or any(gs.failing for gs in sub.grade.groups)):
        tests.append(_hidden_feedback_entry(sub, lead, number=len(tests) + 1))
    return {
        "score": sub.score,
        "output": "\n".join(header),
        "visibility": sub.rubric.visibility,
        "stdout_visibility": "hidden",
        "extra_data": _extra_data(sub),
        "tests": tests,
    }


def _results_header(sub: GradedSubmission, hide: bool) -> tuple[list[str], list[str]]:
    """The top-level output's lines (status, score, the lead unless hidden, intake notes,
    versions), and the lead lines without the override's (which the header always shows)."""
    header = [f"Status: {status_line(sub)}"]
    if sub.status != "graded" and sub.message:
        header.append(clean_text(sub.message, 8000))
    header.append(f"Score: {sub.score:g}/{sub.grade.max_score:g}")
    lead = [clean_text(line) for line in sub.lead()]
    if sub.override is not None:
        header.append(lead.pop(0))
    if lead and not hide:
        header += ["", *lead, ""]
    header += [clean_text(f"Intake: {note}") for note in student_notes(sub)]
    header.append(f"Suite version {sub.suite_version}, rubric {sub.rubric.name!r} ({sub.rubric.hash}).")
    return header, lead


def _group_entries(sub: GradedSubmission, hide: bool) -> list[dict[str, Any]]:
    """One test entry per scored group, numbered from 1."""
    return [{
        "name": gs.group.title,
        "number": str(number),
        "score": gs.score,
        "max_score": gs.max_score,
        "status": gs.status,
        "output": clean_text(group_output(gs, details=not hide, grade=sub.grade)),
        "visibility": gs.group.visibility,
        "tags": [gs.group.area] if gs.group.area else [],
    } for number, gs in enumerate(sub.grade.groups, start=1)]


def _mistake_entries(sub: GradedSubmission, hide: bool, first_number: int) -> list[dict[str, Any]]:
    """One entry per charged mistake, numbered on from ``first_number``."""
    # A mistake's points are already out of the areas above; its entry says where they went and
    # scores only what no area held, so the entries add up to the score.
    return [{
        "name": f"Mistake: {charge.bug.title}" if not hide else "Deduction for a diagnosed mistake",
        "number": str(number),
        "score": 0.0 - charge.beyond_areas,  # (never -0.0)
        "max_score": 0,
        "status": "failed",
        "output": clean_text(deduction_text(charge, sub.grade)
                             + ("" if not hide else "; what it is appears after the due date")),
        "visibility": sub.rubric.visibility,
        "tags": [f"bug:{charge.bug.key}"] if not hide else [],
    } for number, charge in enumerate([c for c in sub.grade.charges if c.points], start=first_number)]


def _hidden_feedback_entry(sub: GradedSubmission, lead: list[str], number: int) -> dict[str, Any]:
    """With hints hidden until the due date: the lead and every group's details, in one entry."""
    details = lead + [""] + [group_output(gs, grade=sub.grade) for gs in sub.grade.groups]
    return {"name": "Feedback: what is wrong, where, what to change",
            "number": str(number), "score": 0, "max_score": 0,
            "output": clean_text("\n".join(details)), "visibility": "after_due_date"}


def _extra_data(sub: GradedSubmission) -> dict[str, Any]:
    """results.json ``extra_data``: what the instructor's tools read back."""
    return {"status": sub.status, "sha256": sub.sha256, "suite_version": sub.suite_version,
            "rubric": sub.rubric.hash, "max_score": sub.grade.max_score,
            "computed_score": sub.grade.score,
            "override_reason": sub.override.reason if sub.override else None,
            "mistakes": {c.bug.key: c.points for c in sub.grade.charges},
            "student_id": sub.intake.student_id, "late": sub.intake.late,
            "intake": student_notes(sub), "sandbox": sub.sandbox}


def status_junit(sub: GradedSubmission) -> str:
    """JUnit XML for a submission whose suite run left none (timeout, crash, no module):
    one failing test case carrying the status, so CI systems see a failure, not nothing.
    No times, like the suite's own file (runner.deterministic_junit)."""
    text = clean_text(f"{status_line(sub)}\n{sub.message}")
    return ('<?xml version="1.0" encoding="utf-8"?>\n<testsuites>'
            '<testsuite name="conformance" errors="1" failures="0" skipped="0" tests="1">'
            f'<testcase classname="conformance.grading" name={quoteattr(sub.status)}>'
            f'<error message={quoteattr(status_line(sub))}>{escape(text)}</error>'
            '</testcase></testsuite></testsuites>\n')


def write_submission_files(out: Path, sub: GradedSubmission) -> Path:
    """OUT/submissions/<slug>/{results.json, junit.xml}; returns the folder."""
    folder = out / "submissions" / sub.slug
    write_atomic(folder / "results.json", json.dumps(gradescope_results(sub), indent=1))
    # pytest's XML escapes C0 controls but not C1 or bidi characters of a message.
    write_atomic(folder / "junit.xml", student_junit(sub.junit_xml) if sub.junit_xml else status_junit(sub))
    return folder


def without_grader_paths(text: str) -> str:
    """``/venv/lib/python3.11/site-packages/conformance/test_gradients.py`` -> ``conformance/test_gradients.py``."""
    return _SUITE_PATH.sub(r"\1", text)


def student_junit(xml: str) -> str:
    """The suite run's JUnit XML as the student gets it: no grader path (pytest puts the test
    file's absolute path in every <skipped> element), so two grader installs write the same bytes."""
    return clean_text(without_grader_paths(xml))


def mistakes_cell(grade: Grade) -> str:
    """grades.csv ``mistakes``: each charged key with its price and the columns it was taken
    from ("wrong_sign:-40 (interface -6, gradients -14, ...)"), "beyond" for the part no
    column held; an uncharged key says why ("backward_crash:symptom of relu_index")."""
    columns = {gs.group.key: gs.group.area or gs.group.key for gs in grade.groups}
    cells = []
    for charge in grade.charges:
        if charge.points:
            parts = [f"{columns.get(k, k)} -{v:g}" for k, v in charge.taken.items()]
            parts += [f"beyond -{charge.beyond_areas:g}"] if charge.beyond_areas else []
            cells.append(f"{charge.bug.key}:-{charge.points:g} ({', '.join(parts) or 'nothing left to take'})")
        elif charge.symptom_of:
            cells.append(f"{charge.bug.key}:symptom of {charge.symptom_of}")
        else:
            cells.append(f"{charge.bug.key}:0")
    return "; ".join(cells)


def grades_csv(subs: list[GradedSubmission], rubric: Rubric) -> str:
    """grades.csv without the byte-order mark (``write_class_csvs`` adds it). An area column
    (and a test rule's) holds the points earned there, a charged mistake's share taken out;
    ``deducted_beyond_areas`` is what a mistake's price exceeds the columns where it shows by.
    So computed_score = the area and rule columns - deducted_beyond_areas (docs/instructors.md, "Grading a
    class"); ``mistakes`` says which mistake took what from where."""
    areas = rubric.area_names
    rules = [g for g in rubric.rules]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["submission", "sha256", "status", "score", "max_score", *areas,
                     *[r.key for r in rules], "deducted_beyond_areas", "passed", "failed", "errors", "skipped",
                     "suite_version", "sandbox", "rubric", "message", "student_id",
                     "student_name", "email", "late", "entry", "superseded", "intake",
                     "mistakes", "computed_score", "override_reason"])
    for sub in subs:
        by_key = {g.group.key: g.score for g in sub.grade.groups}
        counts = sub.counts()
        info = sub.intake
        # A NOT_GRADABLE entry: blank points (no score, not a 0) and no sandbox (nothing ran).
        def points(value: float, ran: bool = sub.ran) -> str:
            return f"{value:g}" if ran else ""

        score_cell = f"{sub.score:g}" if sub.ran or sub.override is not None else ""
        writer.writerow([csv_cell(sub.name), sub.sha256, csv_cell(sub.status), score_cell,
                         f"{sub.grade.max_score:g}", *[points(by_key.get(a, 0)) for a in areas],
                         *[points(by_key.get(r.key, 0)) for r in rules],
                         points(sub.grade.beyond_areas), counts["passed"],
                         counts["failed"], counts["error"], counts["skipped"], sub.suite_version,
                         csv_cell(sub.sandbox) if sub.ran else "", sub.rubric.hash,
                         csv_cell(message_line(sub.message), 300), csv_cell(info.student_id),
                         csv_cell(info.student_name), csv_cell(info.email), "yes" if info.late else "",
                         csv_cell(info.entry), csv_cell("; ".join(info.superseded), 1000),
                         csv_cell(" | ".join(info.notes), 2000),
                         csv_cell(mistakes_cell(sub.grade), 2000),
                         f"{sub.grade.score:g}" if sub.ran else "",
                         csv_cell(sub.override.reason, 1000) if sub.override else ""])
    return buf.getvalue()


def intake_csv(intake: ClassIntake, statuses: dict[str, str] | None = None) -> str:
    """intake.csv: one line per entry of the class folder and what became of it; the raw
    name's bytes (hex) recover the exact original of a cleaned name. An entry sent to the
    suite says how its run ended (``statuses``: row -> status), not just that it was sent:
    ``import_error`` is not ``graded``."""
    statuses = statuses or {}
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["entry", "raw_name_hex", "kind", "outcome", "row", "detail"])
    for r in intake.records:
        outcome = statuses.get(r.row, r.outcome) if r.outcome == "graded" else r.outcome
        writer.writerow([csv_cell(r.entry), r.raw_hex, r.kind, outcome, csv_cell(r.row),
                         csv_cell(r.detail, 300)])
    return buf.getvalue()


def lms_rows(subs: list[GradedSubmission]) -> list[tuple[str, str, float | None, Any]]:
    """Rows for the LMS import: students with an id; a grader error exports no score."""
    return [(sub.intake.student_name or sub.name, sub.intake.student_id,
             sub.score if sub.scored else None, sub.intake.student)
            for sub in subs if sub.intake.student_id]


def write_class_csvs(out: Path, subs: list[GradedSubmission], rubric: Rubric,
                     intake: ClassIntake | None = None) -> list[str]:
    """grades.csv, canvas_import.csv (rows with a student id, and roster students without a
    row, their score blank) and intake.csv, Excel-ready.
    Returns warnings for the log (rows left out of the LMS export)."""
    write_atomic(out / "grades.csv", EXCEL_BOM + grades_csv(subs, rubric))
    rows = lms_rows(subs)
    absent = []
    if intake is not None and intake.roster is not None:
        found = {s.intake.student_id for s in subs}
        absent = [s for s in intake.roster.students if s.id not in found]
        # Listed with a blank score, like a grader error: the export names the whole class,
        # and whether "nothing handed in" is a 0 stays the instructor's call (Canvas leaves a
        # blank cell as it is).
        rows += [(s.name, s.id, None, s) for s in absent]
    warnings = []
    if rows:
        write_atomic(out / "canvas_import.csv", canvas_csv(rows, rubric.name or "backprop conformance",
                                                           rubric.max_score))
        missing = [clean_name(s.name) for s in subs if not s.intake.student_id]
        if missing:
            warnings.append(f"{len(missing)} rows have no student id and are not in canvas_import.csv: "
                            + ", ".join(missing[:20]) + (" ..." if len(missing) > 20 else ""))
    else:  # no row has an id (any more): an older export would be imported by mistake
        (out / "canvas_import.csv").unlink(missing_ok=True)
    if absent:
        names = [clean_name(f"{s.name} ({s.id})") for s in absent]
        warnings.append(f"{len(absent)} roster students have no row (nothing handed in, or an ambiguous "
                        "name); canvas_import.csv lists them with a blank score: "
                        + ", ".join(names[:20]) + (" ..." if len(names) > 20 else ""))
    if intake is not None:
        write_atomic(out / "intake.csv", EXCEL_BOM + intake_csv(intake, {s.name: s.status for s in subs}))
    return warnings
