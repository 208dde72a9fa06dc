"""What the grader's outputs say is true: no grader path in a student's
file, entries that are not gradable submissions get no score and stay out of the statistics,
a clear module in a multi-file submission is graded, intake.csv says how a run ended, and the
staff page counts sandboxes as grades.csv records them."""

from __future__ import annotations

import csv
import io
import re
import sqlite3
from pathlib import Path

import pytest

from tests.test_grade import REFERENCE, TINY_ARGS, TINY_RUBRIC, graded_submission, read_csv, write
from tests.test_preflight import fake_runs
from conformance.grade import batch, cli
from conformance.grade.run import preflight
from conformance.grade.publish.html_report import overview
from conformance.grade.publish.outputs import grades_csv, intake_csv, lms_rows, student_junit
from conformance.grade.intake.submissions import discover, scan_class

# What pytest writes into a <skipped> element: the test file's absolute path on the grader.
SKIPPED = ('<testcase classname="conformance.test_gradients" name="test_fd_full">'
           '<skipped type="pytest.skip" message="not requested">{root}/conformance/test_gradients.py:102: '
           'not requested</skipped></testcase>')


def test_junit_holds_no_grader_path_and_is_the_same_from_any_install() -> None:
    venv_a = SKIPPED.format(root="/home/ta/grader/lib/python3.11/site-packages")
    venv_b = SKIPPED.format(root="/opt/other-venv/lib/python3.12/site-packages")
    clone = SKIPPED.format(root="/work/backprop-conformance")
    cleaned = {student_junit(xml) for xml in (venv_a, venv_b, clone)}
    assert len(cleaned) == 1
    [text] = cleaned
    assert ">conformance/test_gradients.py:102: not requested<" in text
    assert "site-packages" not in text and "/home/" not in text and "/work/" not in text


def test_entries_that_are_not_gradable_have_no_score_and_stay_out_of_the_statistics() -> None:
    ann, ben = graded_submission("ann"), graded_submission("ben")
    notes = graded_submission("notes", status="unsupported", tests=[],
                              message="notes.txt: .txt is not a Python module")
    empty = graded_submission("erin", status="no_module", tests=[], message="the folder has no mlp.py")
    for sub in (ann, ben):
        sub.sandbox = "engaged"
    subs = [ann, notes, ben, empty]
    rows = {r["submission"]: r for r in csv.DictReader(io.StringIO(grades_csv(subs, ann.rubric)))}
    assert rows["notes"]["score"] == rows["erin"]["score"] == ""  # no score, not a 0
    assert rows["notes"]["interface"] == rows["notes"]["computed_score"] == ""
    assert rows["ann"]["score"] == f"{ann.score:g}"
    assert [score for _, _, score, _ in lms_rows(subs)] == []  # (no ids): nothing exported either way
    page = overview(subs)
    text = re.sub(r"<[^>]+>", " ", page)
    assert f"Mean score {ann.score:.2f}" in text and "(over the 2 scored)" in text
    assert "Not gradable (no score, not in the statistics)" in text
    assert "notes.txt: .txt is not a Python module" in text
    # The sandbox line counts the runs grades.csv records a sandbox for: never-run entries in neither.
    csv_sandboxes = [r["sandbox"] for r in rows.values() if r["sandbox"]]
    assert csv_sandboxes == ["engaged", "engaged"]
    assert re.search(r"Sandbox of the runs:\s*engaged\s*:\s*2\s*\.", text), text


def test_lms_export_leaves_a_not_gradable_entry_blank() -> None:
    notes = graded_submission("notes", status="unsupported", tests=[], message="not a module")
    notes.intake.student_id = "1001"
    ann = graded_submission("ann")
    ann.intake.student_id = "1002"
    assert [(sid, score) for _, sid, score, _ in lms_rows([notes, ann])] == [("1001", None), ("1002", ann.score)]


def test_a_clear_module_among_several_files_is_graded(tmp_path: Path) -> None:
    write(tmp_path / "dave" / "mlp.py", REFERENCE)  # the assignment's module name
    write(tmp_path / "dave" / "helpers.py", "def helper():\n    return 1\n")
    write(tmp_path / "gus" / "solution.py", REFERENCE)  # the only file defining forward and backward
    write(tmp_path / "gus" / "util.py", "def forward_helper():\n    return 1\n")
    write(tmp_path / "two" / "a.py", REFERENCE)  # two candidates: not clear
    write(tmp_path / "two" / "b.py", REFERENCE)
    subs = {s.name: s for s in discover(tmp_path)}
    assert subs["dave"].module == "mlp.py" and not subs["dave"].problem
    assert any("the assignment's module name" in note for note in subs["dave"].intake.notes)
    assert subs["gus"].module == "solution.py" and not subs["gus"].problem
    assert any("the only file defining forward and backward" in note for note in subs["gus"].intake.notes)
    assert subs["two"].problem_status == "no_module" and "a.py, b.py" in subs["two"].problem


def test_intake_csv_says_how_the_run_of_a_graded_entry_ended(tmp_path: Path) -> None:
    write(tmp_path / "alice.py", REFERENCE)
    write(tmp_path / "bob.py", "raise ImportError('boom')\n")
    intake = scan_class(tmp_path)
    rows = {r["row"]: r["outcome"] for r in csv.DictReader(io.StringIO(intake_csv(
        intake, {"alice": "graded", "bob": "import_error"})))}
    assert rows == {"alice": "graded", "bob": "import_error"}


def test_a_class_with_a_stray_file_is_averaged_over_its_submissions(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """The newcomer's class: a stray notes.txt counted as 0 in the printed and staff mean."""
    write(tmp_path / "subs" / "alice.py", REFERENCE)
    write(tmp_path / "subs" / "dave" / "mlp.py", REFERENCE)
    write(tmp_path / "subs" / "dave" / "helpers.py", "X = 1\n")
    write(tmp_path / "subs" / "notes.txt", "remember to submit")
    rubric = write(tmp_path / "r.toml", TINY_RUBRIC)
    monkeypatch.setattr(batch, "run_job", fake_runs({"alice": "graded", "dave": "graded"}))
    monkeypatch.setattr(preflight, "mnist_problem", lambda mnist_dir: None)  # runs are faked
    out = tmp_path / "out"
    assert cli.main([str(tmp_path / "subs"), "--out", str(out), "--rubric", str(rubric), "--no-baseline",
                     *TINY_ARGS]) == 0
    printed = capsys.readouterr().out
    assert "mean score 10.00/10 over 2 scored; not gradable, no score: notes" in printed
    rows = read_csv(out / "grades.csv")
    assert {n: (r["status"], r["score"], r["sandbox"]) for n, r in rows.items()} == {
        "alice": ("graded", "10", "engaged"), "dave": ("graded", "10", "engaged"), "notes": ("unsupported", "", "")}
    with sqlite3.connect(out / "grades.sqlite") as db:
        view = dict(db.execute("SELECT submission, score FROM current_grades").fetchall())
    assert {n: "" if v is None else f"{v:g}" for n, v in view.items()} == {n: r["score"] for n, r in rows.items()}


def test_grade_help_states_the_exit_statuses_and_the_no_score_rule(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "Exit status: 0 every submission has a final status; 3 some ended in a grader error" in text
    assert "2 nothing was graded" in text and "get no score and stay out of the mean" in text
