"""Batch grading (tools/grade): discovery, rubric, scoring, outputs, resume, parallel, Dask.

Unit tests use hand-built data; integration tests run the real grader (the real suite in
subprocesses, isolated) on small classes built in tmp dirs. To keep those affordable they
grade with a restricted rubric and test selection; what they check is the grader's
machinery, not the suite's verdicts (tests/test_kill_matrix.py does that).
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tools.catalogue import CORRECT_DIR
from conformance.grade import cli, gradescope
from conformance.grade.score.feedback import curves, mnist_results
from conformance.grade.publish.html_report import overview, page_key, submission_page
from conformance.grade.publish.outputs import GradedSubmission, grades_csv, gradescope_results, message_line
from conformance.grade.score.rubric import (DEFAULT_RUBRIC, KNOWN_AREAS, Baseline, RubricError, load_rubric, parse_rubric,
                                score)
from conformance.grade.run.jobs import GradeConfig, Job
from conformance.grade.run.runner import ReportError, classify, deterministic_junit, read_report, run_independent, run_job
from conformance.grade.publish.screenshot import find_browser, rendered_dom, screenshot
from conformance.grade.intake.submissions import SubmissionsError, discover, slugify

REPO = Path(__file__).resolve().parents[1]
REFERENCE = (REPO / "conformance" / "reference" / "mlp.py").read_text()
I_BUG = REFERENCE.replace("pre_activations[i - 1]", "pre_activations[i]")
assert I_BUG != REFERENCE, "the i-1 patch no longer applies to conformance/reference/mlp.py"
MINIMAL = CORRECT_DIR / "ok_minimal_forward_backward.py"
HOSTILE_NAME = '<img src=x onerror=alert(1)>&"=cmd|'
MNIST_DIR = os.environ.get("BACKPROP_MNIST_DIR")

# What the integration tests grade: fast areas only, MNIST deselected (its own tests cover it).
FAST_RUBRIC = """
name = "test rubric"
[areas.interface]
points = 40
[areas.gradients]
points = 60
partial_credit = "all_or_nothing"
"""
FAST_ARGS = ["--no-require-mnist", "--pytest-arg=-m", "--pytest-arg=not mnist",
             "--pytest-arg=-k", "--pytest-arg=interface or gradients", "--no-progress"]
# The machinery tests (resume, interrupt, Dask) need only a handful of checks per run.
TINY_RUBRIC = '[areas.interface]\npoints = 10\n'
TINY_ARGS = ["--no-require-mnist", "--pytest-arg=-m", "--pytest-arg=not mnist",
             "--pytest-arg=-k", "--pytest-arg=test_candidate_loads", "--no-progress"]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def run_grader(*args: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "conformance.grade", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout,
                          env=None if env is None else {**os.environ, **env})


def read_csv(path: Path) -> dict[str, dict[str, str]]:
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))  # Excel's BOM
    return {row["submission"].lstrip("'"): row for row in rows}


def db_rows(out: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(out / "grades.sqlite") as db:
        return db.execute(sql).fetchall()


# -- submissions --------------------------------------------------------------------------


def test_discover_both_layouts(tmp_path: Path) -> None:
    write(tmp_path / "alice.py", REFERENCE)
    write(tmp_path / "bob" / "mlp.py", REFERENCE)
    write(tmp_path / "bob" / "helpers.py", "X = 1\n")
    write(tmp_path / "bob" / "__pycache__" / "mlp.cpython-311.pyc", "junk")
    write(tmp_path / "carol" / "solution.py", REFERENCE)
    write(tmp_path / "notes.txt", "not a submission")
    write(tmp_path / ".hidden.py", "ignored")
    subs = {s.name: s for s in discover(tmp_path)}
    assert sorted(subs) == [".hidden.py", "alice", "bob", "carol", "notes"]  # every entry: a row
    assert subs["notes"].problem_status == subs[".hidden.py"].problem_status == "unsupported"
    assert subs["alice"].module == "alice.py" and not subs["alice"].problem
    assert subs["bob"].module == "mlp.py" and not subs["bob"].problem  # the assignment's module name
    assert subs["carol"].module == "solution.py"
    with_module = {s.name: s for s in discover(tmp_path, module="mlp.py")}
    assert with_module["bob"].module == "mlp.py" and set(with_module["bob"].files) == {"mlp.py", "helpers.py"}
    assert with_module["carol"].problem == "the folder has no mlp.py (found: solution.py)"
    assert with_module["carol"].problem_status == "no_module"


def test_sha256_is_of_the_graded_bytes(tmp_path: Path) -> None:
    import hashlib
    write(tmp_path / "a.py", REFERENCE)
    write(tmp_path / "b" / "mlp.py", REFERENCE)
    write(tmp_path / "b" / "util.py", "")
    a, b = discover(tmp_path, module="mlp.py")
    assert a.sha256 == hashlib.sha256(REFERENCE.encode()).hexdigest()  # = the suite's candidate sha256
    before = b.sha256
    write(tmp_path / "b" / "util.py", "# changed")
    assert discover(tmp_path, module="mlp.py")[1].sha256 != before


def test_name_clash_and_hostile_names(tmp_path: Path) -> None:
    write(tmp_path / "alice.py", REFERENCE)
    write(tmp_path / "alice" / "mlp.py", REFERENCE)
    write(tmp_path / f"{HOSTILE_NAME}.py", REFERENCE)
    subs = discover(tmp_path, module="mlp.py")
    assert sorted(s.name for s in subs) == sorted(["alice.py", "alice/", HOSTILE_NAME])  # no takeover
    slugs = [s.slug for s in subs]
    assert len(set(slugs)) == 3
    assert all(set(slug) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
               for slug in slugs)
    assert slugify("a b") != slugify("a_b")  # sanitising never merges two students


def test_symlinks_in_folders_are_not_followed_and_big_files_refused(tmp_path: Path) -> None:
    secret = write(tmp_path / "secret.txt", "answers")
    write(tmp_path / "subs" / "eve" / "mlp.py", REFERENCE)
    (tmp_path / "subs" / "eve" / "stolen.txt").symlink_to(secret)
    write(tmp_path / "subs" / "huge.py", "#" * (3 * 1024 * 1024))
    subs = {s.name: s for s in discover(tmp_path / "subs")}
    assert set(subs["eve"].files) == {"mlp.py"}
    assert subs["huge"].problem_status == "invalid_submission" and "limit" in subs["huge"].problem


@pytest.mark.parametrize("setup, message", [
    (lambda p: p / "missing", "no such directory"),
    (lambda p: write(p / "file.py", ""), "not a directory"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "no .py files"),
])
def test_discover_rejects_bad_submissions_argument(tmp_path: Path, setup, message) -> None:
    with pytest.raises(SubmissionsError, match=message):
        discover(setup(tmp_path))


# -- rubric and scoring -------------------------------------------------------------------


def test_default_rubric_is_valid_and_covers_every_area() -> None:
    rubric = load_rubric(DEFAULT_RUBRIC)
    assert rubric.max_score == 100
    assert rubric.area_names == list(KNOWN_AREAS)
    assert len(rubric.hash) == 16 and rubric.hash == load_rubric(DEFAULT_RUBRIC).hash


@pytest.mark.parametrize("text, message", [
    ("[areas.gradient]\npoints = 1", "not a check area"),
    ("[areas.interface]\npoints = -1", "points must be a number >= 0"),
    ("[areas.interface]\npoints = 'ten'", "points must be a number"),
    ("[areas.interface]\npoints = 1\nvisibility = 'secret'", "visibility = 'secret'"),
    ("[areas.interface]\npoints = 1\npartial_credit = 'half'", "partial_credit"),
    ("total = 5\n[areas.interface]\npoints = 1", "total = 5 but the points add up to 1"),
    ("color = 1\n[areas.interface]\npoints = 1", "unknown key"),
    ("[areas.interface]\npoints = 1\nweight = 2", "unknown key"),
    ("name = 'x'", "needs an \\[areas.<name>\\] table"),
    ("[areas.interface]\npoints = 1\n[[tests]]\npoints = 1", "needs match"),
    ("[areas.interface\npoints = 1", "not valid TOML"),
])
def test_rubric_errors_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path / "r.toml", text)
    with pytest.raises(RubricError, match=message) as info:
        load_rubric(path)
    assert str(path) in str(info.value)


def test_missing_rubric_file() -> None:
    with pytest.raises(RubricError, match="cannot read"):
        load_rubric(Path("/nonexistent/rubric.toml"))


def t(nodeid: str, outcome: str, area: str | None = None, message: str = "") -> dict:
    area = area or nodeid.split("test_", 1)[1].split(".py")[0]
    return {"nodeid": f"conformance/{nodeid}", "area": area, "outcome": outcome, "summary": message,
            "message": message, "skip_reason": "optional" if outcome == "skipped" else "",
            "properties": {}, "duration": 0.1}


RUBRIC_DATA = {
    "areas": {"interface": {"points": 10}, "gradients": {"points": 20, "partial_credit": "all_or_nothing"},
              "stability": {"points": 6}},
    "tests": [{"match": "conformance/test_interface.py::test_special*", "points": 4,
               "visibility": "hidden"}],
}


def test_scoring_fraction_all_or_nothing_skips_and_rules() -> None:
    rubric = parse_rubric(RUBRIC_DATA)
    tests = [t("test_interface.py::test_a", "passed"), t("test_interface.py::test_b", "failed"),
             t("test_interface.py::test_c", "skipped"), t("test_interface.py::test_special_x", "passed"),
             t("test_gradients.py::test_a", "passed"), t("test_gradients.py::test_b", "error"),
             t("test_stability.py::test_a", "skipped")]
    grade = score(rubric, "graded", tests)
    by_key = {g.group.key: g for g in grade.groups}
    assert by_key["interface"].score == 5.0  # 1 of 2 counted (the skip is neutral)
    assert by_key["gradients"].score == 0.0  # all or nothing
    assert by_key["stability"].score == 6.0  # only neutral skips: the omission is allowed
    rule = by_key["test:conformance/test_interface.py::test_special*"]
    assert rule.score == 4.0 and rule.group.visibility == "hidden"
    assert [x["nodeid"] for x in by_key["interface"].passed] == ["conformance/test_interface.py::test_a"]
    assert grade.score == 15.0 and grade.max_score == 40.0


def test_scoring_skips_as_failures_and_missing_tests() -> None:
    rubric = parse_rubric({**RUBRIC_DATA, "skipped": "failed"})
    tests = [t("test_interface.py::test_a", "passed"), t("test_interface.py::test_c", "skipped")]
    assert score(rubric, "graded", tests).groups[0].score == 5.0
    expected = Baseline.from_tests([t("test_interface.py::test_a", "passed"),
                                    t("test_interface.py::test_z", "passed"),
                                    t("test_gradients.py::test_a", "passed")])
    grade = score(parse_rubric(RUBRIC_DATA), "graded", [t("test_interface.py::test_a", "passed")], expected)
    by_key = {g.group.key: g for g in grade.groups}
    assert by_key["interface"].score == 5.0  # test_z missing: failed
    assert by_key["gradients"].score == 0.0 and by_key["gradients"].failed[0]["outcome"] == "missing"
    assert by_key["stability"].score == 0.0 and by_key["stability"].note == "no check of this group ran"


def test_only_allowed_skips_are_neutral() -> None:
    rubric = parse_rubric(RUBRIC_DATA)
    baseline = Baseline.from_tests([t("test_interface.py::test_a", "passed"),
                                    t("test_interface.py::test_b", "passed"),
                                    t("test_interface.py::test_env", "skipped"),
                                    t("test_interface.py::test_c", "passed")])
    optional = {**t("test_interface.py::test_b", "skipped"), "properties": {"skip_kind": "optional_absent"},
                "skip_reason": "candidate defines no relu() (optional): its checks are skipped"}
    # A skip raised from the candidate's own code has no kind the suite recorded, whatever it says.
    sneaky = {**t("test_interface.py::test_c", "skipped"),
              "skip_reason": "candidate defines no relu() (optional): I feel like skipping"}
    tests = [t("test_interface.py::test_a", "passed"), optional, sneaky,
             t("test_interface.py::test_env", "skipped")]
    interface = score(rubric, "graded", tests, baseline).groups[0]
    assert [x["nodeid"][-6:] for x in interface.skipped] == ["test_b", "st_env"]
    assert [x["nodeid"][-6:] for x in interface.failed] == ["test_c"]
    assert "skipped, which earns nothing" in interface.failed[0]["summary"]
    assert interface.score == 5.0


def test_not_graded_earns_nothing() -> None:
    rubric = parse_rubric(RUBRIC_DATA)
    tests = [t("test_interface.py::test_a", "passed")]
    for status in ("import_error", "timeout", "crashed", "no_module", "error"):
        grade = score(rubric, status, tests, status_message="why")
        assert grade.score == 0 and all(g.note == "why" for g in grade.groups)


def test_scoring_is_deterministic_and_order_free() -> None:
    rubric = load_rubric(DEFAULT_RUBRIC)
    tests = [t(f"test_{a}.py::test_{i}", "passed" if i % 3 else "failed")
             for a in KNOWN_AREAS for i in range(7)]
    first = score(rubric, "graded", tests)
    again = score(rubric, "graded", list(reversed(tests)))
    assert first.score == again.score and first.area_scores() == again.area_scores()


# -- what only one run has stays out of the files (finding 4) ------------------------------

PYTEST_JUNIT = ('<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests"><testsuite name="pytest" '
                'errors="0" failures="1" skipped="0" tests="1" time="6.490" timestamp="2026-11-29T11:35:18+00:00" '
                'hostname="vm"><properties><property name="hypothesis-statistics-t" value="MC4yMSBzZWNvbmRz" />'
                '</properties><testcase classname="conformance.test_efficiency" name="test_cost" time="0.261">'
                '<properties><property name="area" value="efficiency" /><property name="efficiency_ratio_small" '
                'value="0.87" /></properties><failure message="f">record_property = &lt;function f at '
                '0x7fadad171ee0&gt;</failure></testcase></testsuite></testsuites>')


def test_run_specific_paths_addresses_and_timings_are_left_out(tmp_path: Path) -> None:
    workdir = tmp_path / "grade-x1y2z3a4"
    text = f'File "{workdir}/submission/frank.py", line 2\nrecord_property = <function f at 0x7fadad171ee0>'
    assert run_independent({"tests": [{"message": text}], "n": 3}, workdir) == {
        "tests": [{"message": 'File "submission/frank.py", line 2\nrecord_property = <function f at 0x...>'}],
        "n": 3}
    junit = deterministic_junit(run_independent(PYTEST_JUNIT, workdir))
    for gone in ("time=", "timestamp=", "hostname=", "hypothesis-statistics", "efficiency_ratio", "0x7fad"):
        assert gone not in junit, gone
    case = ET.fromstring(junit).find("testsuite/testcase")
    assert case is not None and case.find("failure") is not None
    assert [p.get("name") for p in case.iter("property")] == ["area"]  # the verdict's data stays
    assert deterministic_junit("<not xml") == "<not xml"


def test_page_key_ignores_the_runs_measurements() -> None:
    def with_ratio(ratio: float) -> GradedSubmission:
        tests = [{**t("test_efficiency.py::test_cost", "passed"),
                  "properties": {"efficiency_ratio_small": ratio, "diagnoses": []}}]
        return graded_submission("alice", tests=tests)

    assert page_key(with_ratio(0.87)) == page_key(with_ratio(0.98))
    changed = with_ratio(0.87)
    changed.tests[0]["properties"]["diagnoses"] = ["relu_index"]
    assert page_key(changed) != page_key(with_ratio(0.87))


# -- the report reader treats the file as hostile -----------------------------------------

GOOD_REPORT = {"schema": "backprop-conformance-report/1", "suite_version": "x", "exitstatus": 0,
               "candidate": {"module": "m", "sha256": "", "isolated": True, "load_error": None},
               "tests": [t("test_interface.py::test_a", "passed")], "collect_errors": []}


@pytest.mark.parametrize("mutate, message", [
    (lambda r: "not json", "not JSON"),
    (lambda r: [], "not a JSON object"),
    (lambda r: {**r, "schema": "other"}, "unknown schema"),
    (lambda r: {**r, "tests": [{**r["tests"][0], "outcome": "PASSED!"}]}, "outcome"),
    (lambda r: {**r, "tests": r["tests"] * 2}, "nodeid"),
    (lambda r: {**r, "tests": [{**r["tests"][0], "duration": "fast"}]}, "duration"),
    (lambda r: {**r, "exitstatus": True}, "exitstatus"),
    (lambda r: {**r, "candidate": None}, "candidate"),
])
def test_read_report_rejects_malformed_reports(tmp_path: Path, mutate, message) -> None:
    data = mutate(json.loads(json.dumps(GOOD_REPORT)))
    path = write(tmp_path / "r.json", data if isinstance(data, str) else json.dumps(data))
    with pytest.raises(ReportError, match=message):
        read_report(path)


def test_read_report_keeps_only_known_fields(tmp_path: Path) -> None:
    data = json.loads(json.dumps(GOOD_REPORT))
    data["tests"][0]["score_override"] = 100
    data["bonus"] = 1
    report = read_report(write(tmp_path / "r.json", json.dumps(data)))
    assert "bonus" not in report and "score_override" not in report["tests"][0]
    with pytest.raises(ReportError, match="no report"):
        read_report(tmp_path / "absent.json")


def test_classify_detects_inconsistent_runs() -> None:
    report = json.loads(json.dumps(GOOD_REPORT))
    report["candidate"]["sha256"] = "f" * 64
    job = Job(name="a", sha256="0" * 64, files={"a.py": b""}, module="a.py", config=GradeConfig())
    assert classify(report, 0, job)[0] == "crashed"  # another file was judged
    report["candidate"]["sha256"] = job.sha256
    assert classify(report, 0, job) == ("graded", "")
    assert classify(report, 1, job)[0] == "crashed"  # exit status contradicts the report
    report["candidate"]["load_error"] = "SyntaxError"
    assert classify(report, 0, job) == ("import_error", "SyntaxError")


def process_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_timeout_kills_the_whole_process_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The isolated worker runs in its own session: killing pytest's group alone would leave
    it running. A stand-in for the suite's interpreter starts such a detached grandchild."""
    pidfile = tmp_path / "grandchild.pid"
    fake = write(tmp_path / "fake_python", '#!/bin/sh\nsetsid sleep 1000 &\necho $! > "$PIDFILE"\n'
                                           'exec sleep 1000\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PIDFILE", str(pidfile))
    # The stand-in never runs the suite, so MNIST is not required: the preflight would otherwise
    # refuse the job on a machine without the data (a fresh clone) before the timeout is tried.
    job = Job(name="x", sha256="0" * 64, files={"x.py": b""}, module="x.py",
              config=GradeConfig(timeout=3, python=str(fake), require_mnist=False))
    result = run_job(job)
    assert result.status == "timeout" and "3 s" in result.message
    pid = int(pidfile.read_text())
    deadline = time.time() + 5
    while process_alive(pid) and time.time() < deadline:
        time.sleep(0.1)
    assert not process_alive(pid), "the detached grandchild survived the timeout"


# -- feedback, outputs, HTML --------------------------------------------------------------

I_BUG_MESSAGE = ("AssertionError: dW[0] is wrong\nyour gradients equal those of an implementation "
                 "that evaluates the ReLU derivative at the wrong layer's pre-activation (the i-1 bug): "
                 "`* (pre_activations[i] > 0)` should be `* (pre_activations[i-1] > 0)`.")


def test_curves_from_recorded_properties() -> None:
    test = t("test_mnist.py::test_quick", "passed")
    test["properties"] = {"curve": [0.2, 0.9], "acc": {"epoch": [1, 2, 3], "accuracy": [0.5, 0.8, 0.9]},
                          "junk": {"a": "b"}, "scalar": 0.97}
    found = curves([test])
    assert [(name.split(": ")[1], xs, ys) for name, xs, ys in found] == [
        ("acc", [1, 2, 3], [0.5, 0.8, 0.9]), ("curve", [1, 2], [0.2, 0.9])]


def test_mnist_accuracy_is_shown_per_submission_and_for_the_class() -> None:
    loop = t("test_mnist.py::test_sgd_loop_learns_mnist[quick]", "passed")
    loop["properties"] = {"mnist_accuracy": 0.9512, "mnist_threshold": 0.93}
    own = t("test_mnist.py::test_own_train_learns_mnist[quick]", "failed")
    own["properties"] = {"mnist_accuracy": "nan", "mnist_threshold": 0.93}  # not a number: ignored
    sub = graded_submission("ann", tests=[loop, own])
    assert mnist_results(sub.tests) == [("test_mnist.py::test_sgd_loop_learns_mnist[quick]", 0.9512, 0.93)]
    page = audit(submission_page(sub))
    assert "0.9512" in "".join(page.text) and len(page.images) == 1 and not page.bad
    assert len(audit(overview([sub])).images) == 3  # scores, areas, MNIST accuracies


def graded_submission(name: str, status: str = "graded", tests: list | None = None,
                      message: str = "") -> GradedSubmission:
    rubric = parse_rubric(RUBRIC_DATA)
    tests = tests if tests is not None else [
        t("test_interface.py::test_a", "passed"),
        {**t("test_gradients.py::test_a", "failed", message=I_BUG_MESSAGE + f"\n<script>{name}</script>"),
         "properties": {"diagnoses": ["relu_index"]}}]
    return GradedSubmission(name=name, slug=slugify(name), sha256="a" * 64, status=status, message=message,
                            grade=score(rubric, status, tests, status_message=message), duration=1.5,
                            tests=tests, suite_version="v1", rubric=rubric)


def test_gradescope_results_follow_the_spec() -> None:
    results = gradescope_results(graded_submission("alice"))
    assert "execution_time" not in results and results["score"] == 10.0  # (varies between runs)
    assert results["visibility"] in ("hidden", "after_due_date", "after_published", "visible")
    for test in results["tests"]:
        assert set(test) >= {"name", "score", "max_score", "status", "output", "visibility"}
        assert test["status"] in ("passed", "failed")
        assert test["visibility"] in ("hidden", "after_due_date", "after_published", "visible")
    gradients = next(x for x in results["tests"] if x["tags"] == ["gradients"])
    assert "diagnosis: your backward evaluates the ReLU derivative" in gradients["output"]
    assert json.loads(json.dumps(results)) == results


def test_csv_neutralises_formulas() -> None:
    subs = [graded_submission("=HYPERLINK(\"http://x\")"), graded_submission("bob")]
    rows = list(csv.reader(io.StringIO(grades_csv(subs, subs[0].rubric))))
    assert rows[0][:5] == ["submission", "sha256", "status", "score", "max_score"]
    assert {"interface", "gradients", "stability"} <= set(rows[0])
    assert rows[1][0].startswith("'=")


IMPORT_FAILURE = ("importing candidate 'submission/frank.py' failed (in the isolated worker):\n"
                  "Traceback (most recent call last):\n  File \"submission/frank.py\", line 2, in <module>\n"
                  "    from mlp_helpers import softmax_stable\nModuleNotFoundError: No module named 'mlp_helpers'\n")


def test_an_import_failure_says_why_in_the_csv_and_the_staff_table() -> None:
    """Finding 7: the reason is the traceback's last line, not the first line's colon."""
    why = ("importing candidate 'submission/frank.py' failed (in the isolated worker): "
           "ModuleNotFoundError: No module named 'mlp_helpers'")
    assert message_line(IMPORT_FAILURE) == why
    assert message_line("the suite did not finish within 300 s\nand was killed") == "the suite did not finish within 300 s"
    assert message_line("") == ""
    frank = graded_submission("frank", status="import_error", tests=[], message=IMPORT_FAILURE)
    rows = list(csv.DictReader(io.StringIO(grades_csv([frank], frank.rubric))))
    assert rows[0]["message"] == why
    assert html.escape(why) in overview([frank])


class PageAudit(HTMLParser):
    """Collects what matters for a page that must be inert and self-contained."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.bad: list[str] = []
        self.images: list[str] = []
        self.links: list[str] = []
        self.text: list[str] = []
        self.csp = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append(tag)
        attrs = dict(attrs)
        if tag in ("script", "iframe", "object", "embed", "link", "base", "form"):
            self.bad.append(tag)
        self.bad += [f"{tag}[{k}]" for k in attrs if k.startswith("on")]
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        if tag == "a":
            self.links.append(attrs.get("href", ""))
        if tag == "meta" and attrs.get("http-equiv") == "Content-Security-Policy":
            self.csp = "default-src 'none'" in attrs.get("content", "")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def audit(html: str) -> PageAudit:
    page = PageAudit()
    page.feed(html)
    return page


def test_html_is_inert_self_contained_and_escaped() -> None:
    subs = [graded_submission(HOSTILE_NAME), graded_submission("bob"),
            graded_submission("carol", status="timeout", tests=[], message="<b>hung</b>")]
    index = audit(overview(subs))
    assert not index.bad and index.csp
    assert index.images and all(src.startswith("data:image/png;base64,") for src in index.images)
    assert all(link.startswith("../submissions/") and link.endswith("/report.html") and ":" not in link
               for link in index.links)
    text = "".join(index.text)
    assert HOSTILE_NAME in text  # shown as text, not markup
    assert "evaluates the ReLU derivative at the wrong layer's pre-activation (the i-1 bug)" in text
    page = audit(submission_page(subs[0]))
    assert not page.bad and page.csp
    assert "<script>" + HOSTILE_NAME + "</script>" in "".join(page.text)
    timeout_page = "".join(audit(submission_page(subs[2])).text)
    assert "<b>hung</b>" in timeout_page and "timeout" in timeout_page


# -- integration: the grader on real classes ----------------------------------------------


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("class")
    subs = root / "subs"
    write(subs / "alice.py", REFERENCE)
    write(subs / "bob.py", I_BUG)
    write(subs / "carol" / "mlp.py", "from helpers import *  # noqa\n")
    write(subs / "carol" / "helpers.py", REFERENCE)
    write(subs / "dave.py", "def forward(:\n")
    write(subs / "erin" / "README.md", "forgot the code")
    write(subs / f"{HOSTILE_NAME}.py", REFERENCE)
    write(subs / "frank.py", MINIMAL.read_text())  # forward and backward only: optional skips
    rubric = write(root / "rubric.toml", FAST_RUBRIC)
    out = root / "out"
    proc = run_grader(subs, "--out", out, "-j", "2", "--module", "mlp.py", "--rubric", rubric, *FAST_ARGS)
    return {"root": root, "subs": subs, "out": out, "rubric": rubric, "proc": proc}


def test_unchanged_pages_are_not_redrawn(tmp_path: Path) -> None:
    from conformance.grade.publish.html_report import write_report

    subs = [graded_submission("ann"), graded_submission("ben")]
    write_report(tmp_path, subs)
    ann, ben = (tmp_path / "submissions" / name / "report.html" for name in ("ann", "ben"))
    stamp = {p: p.stat().st_mtime_ns for p in (ann, ben)}
    time.sleep(0.02)
    changed = graded_submission("ben", status="timeout", tests=[], message="hung")
    write_report(tmp_path, [subs[0], changed])
    assert ann.stat().st_mtime_ns == stamp[ann]
    assert ben.stat().st_mtime_ns != stamp[ben]
    assert "hung" in ben.read_text()


@pytest.mark.slow
def test_every_submission_gets_one_row_with_its_status(graded_class: dict) -> None:
    proc, out = graded_class["proc"], graded_class["out"]
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "7 submissions" in proc.stdout and "7 run" in proc.stdout
    rows = read_csv(out / "grades.csv")
    assert sorted(rows) == sorted(["alice", "bob", "carol", "dave", "erin", "frank", HOSTILE_NAME])
    status = {name: row["status"] for name, row in rows.items()}
    assert status == {"alice": "graded", "bob": "graded", "carol": "graded", "dave": "import_error",
                      "erin": "no_module", "frank": "graded", HOSTILE_NAME: "graded"}
    assert rows["alice"]["score"] == rows["carol"]["score"] == rows[HOSTILE_NAME]["score"] == "100"
    # Correct code without the optional functions loses nothing (its skips say "(optional)").
    assert rows["frank"]["score"] == "100" and int(rows["frank"]["skipped"]) > 0
    assert rows["bob"]["gradients"] == "0" and float(rows["bob"]["score"]) < 100
    # An import error is the student's 0; a folder with no code is not a gradable submission: no score.
    assert rows["dave"]["score"] == "0" and rows["erin"]["score"] == "" and rows["erin"]["sandbox"] == ""
    assert all(row["max_score"] == "100" for row in rows.values())
    assert len({row["suite_version"] for row in rows.values()}) == 1


@pytest.mark.slow
def test_gradebook_holds_runs_tests_and_grades(graded_class: dict) -> None:
    out = graded_class["out"]
    assert len(db_rows(out, "SELECT name, sha256 FROM submissions")) == 7
    assert db_rows(out, "SELECT count(*) FROM runs WHERE name='(reference)'") == [(1,)]
    per_test = db_rows(out, "SELECT r.name, t.outcome, t.duration, t.message FROM test_results t "
                            "JOIN runs r ON r.id = t.run_id WHERE r.name='bob' AND t.outcome='failed'")
    assert per_test and all(d >= 0 and m for _, _, d, m in per_test)
    grades = db_rows(out, "SELECT name, rubric_hash, suite_version, score FROM grades")
    assert len(grades) == 7 and all(r and s for _, r, s, _ in grades)


@pytest.mark.slow
def test_per_submission_results_json_and_junit(graded_class: dict) -> None:
    out = graded_class["out"]
    folders = sorted((out / "submissions").iterdir())
    assert len(folders) == 7
    for folder in folders:
        results = json.loads((folder / "results.json").read_text())
        assert "execution_time" not in results
        assert sum(x["max_score"] for x in results["tests"]) == 100
        assert abs(sum(x["score"] for x in results["tests"]) - results["score"]) < 1e-9
        ET.parse(folder / "junit.xml")  # well-formed for CI systems
    bob = json.loads((out / "submissions" / "bob" / "results.json").read_text())
    gradients = next(x for x in bob["tests"] if x["tags"] == ["gradients"])
    assert gradients["status"] == "failed" and "FAILED" in gradients["output"]
    dave = ET.parse(out / "submissions" / "dave" / "junit.xml").getroot()
    assert dave.iter("failure") or dave.iter("error")


@pytest.mark.slow
def test_html_report_of_the_class(graded_class: dict) -> None:
    out = graded_class["out"]
    index = audit((out / "staff" / "index.html").read_text())
    assert not index.bad and index.csp and len(index.images) == 2  # histogram + area pass rates
    pages = sorted(f"../submissions/{p.parent.name}/report.html"
                   for p in (out / "submissions").glob("*/report.html"))
    assert sorted(set(index.links)) == pages and len(pages) == 7
    assert HOSTILE_NAME in "".join(index.text)
    bob = (out / "submissions" / "bob" / "report.html").read_text()
    assert "Failing checks" in bob and not audit(bob).bad and not audit(bob).links  # hand-out page
    assert "alice" not in bob and not (out / "report").exists()


@pytest.mark.slow
def test_unchanged_rerun_skips_everything(graded_class: dict) -> None:
    out = graded_class["out"]
    runs_before = db_rows(out, "SELECT count(*) FROM runs")
    proc = run_grader(graded_class["subs"], "--out", out, "-j", "2", "--module", "mlp.py",
                      "--rubric", graded_class["rubric"], *FAST_ARGS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "(0 run, 0 re-scored, 7 unchanged)" in proc.stdout
    assert db_rows(out, "SELECT count(*) FROM runs") == runs_before  # the suite never ran


@pytest.mark.slow
def test_changed_rubric_rescores_without_running(graded_class: dict, tmp_path: Path) -> None:
    out = graded_class["out"]
    runs_before = db_rows(out, "SELECT count(*) FROM runs")
    rubric = write(tmp_path / "r.toml", FAST_RUBRIC.replace("points = 60", "points = 10"))
    proc = run_grader(graded_class["subs"], "--out", out, "--module", "mlp.py", "--rubric", rubric,
                      *FAST_ARGS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "(0 run, 7 re-scored, 0 unchanged)" in proc.stdout
    assert db_rows(out, "SELECT count(*) FROM runs") == runs_before
    assert read_csv(out / "grades.csv")["alice"]["score"] == "50"


@pytest.mark.slow
def test_a_changed_submission_alone_is_rerun(graded_class: dict) -> None:
    out = graded_class["out"]
    write(graded_class["subs"] / "bob.py", REFERENCE)  # bob fixed his bug
    proc = run_grader(graded_class["subs"], "--out", out, "--module", "mlp.py",
                      "--rubric", graded_class["rubric"], *FAST_ARGS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "(1 run, 0 re-scored, 6 unchanged)" in proc.stdout
    assert read_csv(out / "grades.csv")["bob"]["score"] == "100"


@pytest.mark.slow
def test_hanging_submission_times_out_without_stalling_others(tmp_path: Path) -> None:
    write(tmp_path / "subs" / "hang.py", "import time\nwhile True:\n    time.sleep(0.5)\n")
    write(tmp_path / "subs" / "ok.py", REFERENCE)
    rubric = write(tmp_path / "r.toml", TINY_RUBRIC)
    # The isolation's own budget would end the hang first (an import error); lift it so the
    # grader's hard wall-clock limit is what stops this run.
    proc = run_grader(tmp_path / "subs", "--out", tmp_path / "out", "-j", "2", "--timeout", "20",
                      "--no-baseline", "--rubric", rubric, *TINY_ARGS,
                      env={"BACKPROP_ISOLATE_SESSION_TIMEOUT": "1000"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = read_csv(tmp_path / "out" / "grades.csv")
    assert rows["hang"]["status"] == "timeout" and rows["hang"]["score"] == "0"
    assert "20 s" in rows["hang"]["message"]
    assert rows["ok"]["status"] == "graded" and rows["ok"]["score"] == "10"


def slow_class(root: Path, n: int, tag: str) -> Path:
    """n correct submissions whose import sleeps, so a run can be interrupted mid-batch."""
    for i in range(n):
        write(root / "subs" / f"{tag}_{i}.py", REFERENCE + "\nimport time\ntime.sleep(2)\n")
    return root / "subs"


def wait_for_runs(out: Path, count: int, proc: subprocess.Popen, limit: float = 300) -> None:
    deadline = time.time() + limit
    while time.time() < deadline:
        assert proc.poll() is None, "the grader ended before it could be interrupted"
        try:
            if db_rows(out, "SELECT count(*) FROM runs")[0][0] >= count:
                return
        except sqlite3.OperationalError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"no {count} finished runs after {limit} s")


def live_suite_processes(tag: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if f"{tag}_".encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_interrupted_batch_keeps_finished_rows_and_resumes(tmp_path: Path, sig: signal.Signals) -> None:
    tag = f"slow{os.getpid()}{sig.name}"
    subs = slow_class(tmp_path, 4, tag)
    rubric = write(tmp_path / "r.toml", TINY_RUBRIC)
    out = tmp_path / "out"
    args = [subs, "--out", out, "-j", "1", "--no-baseline", "--rubric", rubric, *TINY_ARGS]
    # A test run started in the background inherits an ignored SIGINT; the grader (like any
    # program) keeps it ignored then. Give it the default disposition, as in a terminal.
    proc = subprocess.Popen([sys.executable, "-m", "conformance.grade", *map(str, args)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        wait_for_runs(out, 1, proc)
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    finished = {name for (name,) in db_rows(out, "SELECT name FROM runs WHERE status='graded'")}
    assert 1 <= len(finished) < 4
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "run the same command again" in stderr
        time.sleep(1)
        assert not live_suite_processes(tag), "the interrupted grader left suite processes running"
        assert read_csv(out / "grades.csv").keys() == finished  # class files reflect what finished
    done = subprocess.run([sys.executable, "-m", "conformance.grade", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"({4 - len(finished)} run, 0 re-scored, {len(finished)} unchanged)" in done.stdout
    rows = read_csv(out / "grades.csv")
    assert len(rows) == 4 and all(r["status"] == "graded" and r["score"] == "10" for r in rows.values())


@pytest.mark.slow
def test_dask_local_cluster_gives_the_same_outputs(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed", reason="the optional extra 'dask' is not installed")
    from conformance.grade.batch import BatchOptions, grade_batch

    write(tmp_path / "subs" / "alice.py", REFERENCE)
    write(tmp_path / "subs" / "bob.py", I_BUG)
    write(tmp_path / "subs" / "dave.py", "raise SystemExit(0)\n")
    rubric = write(tmp_path / "r.toml", TINY_RUBRIC)
    config = GradeConfig(require_mnist=False, extra_args=("-m", "not mnist", "-k", "test_candidate_loads"))
    local = grade_batch(BatchOptions(tmp_path / "subs", tmp_path / "local", config=config, jobs=2,
                                     rubric=rubric, baseline=False, progress=False), log=lambda s: None)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, protocol="tcp://",
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        remote = grade_batch(BatchOptions(tmp_path / "subs", tmp_path / "dask", config=config,
                                          dask=cluster.scheduler_address, rubric=rubric, baseline=False,
                                          progress=False), log=lambda s: None)
    assert remote.ran == local.ran == 3

    def comparable(path: Path) -> list[dict]:
        rows = read_csv(path / "grades.csv")
        return [{k: v for k, v in row.items() if k != "message"} for row in rows.values()]

    assert comparable(tmp_path / "dask") == comparable(tmp_path / "local")
    assert {r["status"] for r in comparable(tmp_path / "dask")} == {"graded", "import_error"}


@pytest.mark.slow
def test_baseline_must_earn_full_marks(tmp_path: Path) -> None:
    write(tmp_path / "subs" / "alice.py", REFERENCE)
    rubric = write(tmp_path / "r.toml", TINY_RUBRIC + "[areas.golden]\npoints = 5\n")
    proc = run_grader(tmp_path / "subs", "--out", tmp_path / "out", "--rubric", rubric, *TINY_ARGS)
    assert proc.returncode == 2
    assert "the reference implementation scores 10/15" in proc.stderr
    assert "golden: 0/5 (no check of this group ran)" in proc.stderr
    assert not (tmp_path / "out" / "grades.csv").exists()  # nobody was graded unfairly


@pytest.mark.parametrize("args, message", [
    (["{tmp}/missing", "--out", "{tmp}/out"], "no such directory"),
    (["{tmp}/subs", "--out", "{tmp}/subs/out"], "must not be inside SUBMISSIONS"),
    (["{tmp}/subs", "--out", "{tmp}/subs/a.py"], "must not be inside SUBMISSIONS"),
    (["{tmp}/subs", "--out", "{tmp}/file"], "exists and is not a directory"),
    (["{tmp}/subs", "--out", "{tmp}/out", "--module", "../x.py"], "expected a file name like mlp.py"),
    (["{tmp}/subs", "--out", "{tmp}/out", "--rubric", "{tmp}/nope.toml"], "cannot read"),
])
def test_cli_argument_errors(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    write(tmp_path / "subs" / "a.py", REFERENCE)
    write(tmp_path / "file", "")
    assert cli.main([a.format(tmp=tmp_path) for a in args] + ["--no-baseline"]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["-j", "0"], "must be > 0"),
    (["--retry", "sometimes"], "unknown status"),
    (["-j", "2", "--dask", "tcp://127.0.0.1:1"], "exclude each other"),
    (["--mnist-dir", "/nonexistent"], "no such directory"),
])
def test_cli_option_errors(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main([str(tmp_path), "--out", str(tmp_path / "out"), *args])
    assert info.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.slow
def test_gradescope_entry_writes_results_json(tmp_path: Path) -> None:
    write(tmp_path / "submission" / "mlp.py", I_BUG)
    results = tmp_path / "results" / "results.json"
    rubric = write(tmp_path / "r.toml", FAST_RUBRIC)
    code = gradescope.main(["--submission", str(tmp_path / "submission"), "--results", str(results),
                            "--rubric", str(rubric), "--pytest-arg=-m", "--pytest-arg=not mnist",
                            "--pytest-arg=-k", "--pytest-arg=interface or gradients",
                            "--no-require-mnist"])  # the rubric scores no MNIST check: none is needed
    assert code == 0
    data = json.loads(results.read_text())
    assert data["extra_data"]["status"] == "graded" and data["score"] < 100
    assert "failed" in {x["status"] for x in data["tests"]}
    # An empty upload still gets a results.json that says why.
    (tmp_path / "empty").mkdir()
    assert gradescope.main(["--submission", str(tmp_path / "empty"), "--results", str(results),
                            "--rubric", str(rubric), "--no-require-mnist"]) == 0
    data = json.loads(results.read_text())
    assert data["score"] == 0 and "no_module" in data["output"]


@pytest.mark.skipif(find_browser() is None, reason="no Chromium installed (Debian: apt-get install -y "
                    "chromium); the structural HTML checks above still run")
def test_report_renders_in_a_headless_browser(tmp_path: Path) -> None:
    from conformance.grade.publish.html_report import write_report

    index = write_report(tmp_path / "report", [graded_submission(HOSTILE_NAME), graded_submission("bob")])
    png = screenshot(index, tmp_path / "index.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    dom = audit(rendered_dom(index))
    assert not dom.bad  # the hostile name did not become an element
    assert HOSTILE_NAME in "".join(dom.text)
    assert all(src.startswith("data:image/png") for src in dom.images) and len(dom.images) == 2
