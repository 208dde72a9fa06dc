"""The rubric and the grade it gives (conformance/grade/score/rubric.py): fair scores and private feedback.

- the suite tells the grader what it found as data (area marker, diagnosis keys), so renaming a
  file or rewording a message changes no grade, and a candidate's own text adds no key;
- scoring by root cause: a mistake is charged once, areas are the fallback;
- feedback a student can be given (summary first, own data only, byte-identical across runs,
  hints hidden until the due date on request);
- the audit trail (graded bytes, rubric, overrides, current_grades = grades.csv) and the
  similarity report wired into the batch.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import sqlite3
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from conformance import hooks
from conformance import evidence
from conformance.diagnosis import diagnosis_keys, named
from conformance.report import JsonReport
from tests.helpers import run_pytest, run_suite
from tests.test_grade import I_BUG, REFERENCE, audit, read_csv, run_grader, t, write
from conformance.grade.score.feedback import group_output
from conformance.grade.publish.html_report import submission_page
from conformance.grade.publish.outputs import GradedSubmission, gradescope_results
from conformance.grade.score.rubric import RubricError, load_rubric, parse_rubric, score

REPO = Path(__file__).resolve().parents[1]
NO_BATCH_MEAN = REFERENCE.replace("delta = (Y_hat - Y) / B", "delta = Y_hat - Y")
assert NO_BATCH_MEAN != REFERENCE, "the 1/B patch no longer applies to conformance/reference/mlp.py"

RUBRIC = {
    "areas": {"interface": {"points": 20}, "gradients": {"points": 50}, "relu_index": {"points": 30}},
    "bugs": {"relu_index": {"points": 40, "family": "relu_mask"},
             "missing_mask": {"points": 30, "family": "relu_mask"},
             "loss_sum": {"points": 5}, "backward_wrong": {"points": 35}},
}


def failed(nodeid: str, *keys: str, message: str = "wrong") -> dict:
    return {**t(nodeid, "failed", message=message), "properties": {"diagnoses": list(keys)}}


# -- 1. the suite reports what it found as data ---------------------------------------------


def test_area_comes_from_the_module_marker_not_the_file_name(tmp_path: Path) -> None:
    module = SimpleNamespace(CONFORMANCE_AREA="gradients")
    item = SimpleNamespace(module=module, user_properties=[], nodeid="conformance/test_renamed.py::t",
                           name="t")
    hooks.pytest_collection_modifyitems(SimpleNamespace(stash={}), [item])
    assert item.user_properties == [("area", "gradients")]
    collector = JsonReport(tmp_path / "r.json", candidate=None)
    report = SimpleNamespace(nodeid=item.nodeid, duration=0.1, user_properties=item.user_properties,
                             skipped=False, failed=False, passed=True, when="call")
    collector.pytest_runtest_logreport(report)
    assert collector.tests[item.nodeid]["area"] == "gradients"  # not "renamed"


def test_the_mnist_area_runs_after_every_other_area() -> None:
    """A training loop too slow for MNIST may spend only the MNIST area's time: the checks
    that follow it would otherwise fail for the session budget it ate, not for a mistake."""
    items = [SimpleNamespace(module=SimpleNamespace(CONFORMANCE_AREA=area), user_properties=[],
                             nodeid=f"conformance/test_{area}.py::t{i}", name=f"t{i}")
             for i, area in enumerate(["efficiency", "golden", "mnist", "mnist", "relu_index", "stability"])]
    hooks.pytest_collection_modifyitems(SimpleNamespace(stash={}), items)
    assert [dict(i.user_properties)["area"] for i in items] == [
        "efficiency", "golden", "relu_index", "stability", "mnist", "mnist"]  # others keep their order
    order = run_suite(REPO / "conformance" / "reference" / "mlp.py", "--co", "-q").stdout.splitlines()
    nodes = [line for line in order if "::" in line]
    assert nodes and all("test_mnist.py" in n for n in nodes[-4:]), nodes[-6:]
    assert not any("test_mnist.py" in n for n in nodes[:-4])


def test_a_key_counts_only_when_the_suite_recorded_it_as_a_finding() -> None:
    """Keys are data recorded by the suite's checks on the running test, never read from text:
    the candidate's own text holding the same words is no diagnosis."""
    with evidence.recording() as found:
        named("relu_index", "your gradients equal those of the i-1 bug")
    assert [(f.key, f.kind, f.function) for f in found.findings] == [("relu_index", "named", "backward")]
    with evidence.recording() as found:
        text = "ValueError: your gradients equal those of the i-1 bug"  # (the candidate's words)
        assert "i-1 bug" in text
    assert found.findings == []


def test_a_failing_run_records_its_diagnosis_key(tmp_path: Path) -> None:
    impl = write(tmp_path / "mlp.py", NO_BATCH_MEAN)
    report = tmp_path / "report.json"
    run_pytest("conformance/test_gradients.py", "--impl", str(impl), "-q", "--conformance-report", str(report),
               cwd=REPO)
    tests = json.loads(report.read_text())["tests"]
    fails = [x for x in tests if x["outcome"] == "failed"]
    assert fails and all(x["area"] == "gradients" for x in tests)
    assert any(x["properties"].get("diagnoses") == ["no_batch_mean"] for x in fails)


def test_a_submission_quoting_cheap_diagnoses_is_charged_for_what_it_does(tmp_path: Path) -> None:
    hostile = REPO / "tests" / "adversarial" / "forge_diagnosis.py"
    report = tmp_path / "report.json"
    run_pytest("conformance", "-m", "not mnist", "--impl", str(hostile), "-q", "--conformance-report", str(report),
               cwd=REPO)
    tests = json.loads(report.read_text())["tests"]
    keys = {k for x in tests for k in x["properties"].get("diagnoses", [])}
    assert keys == {"backward_crash"}  # not loss_sum, not db_mean
    grade = score(load_rubric(), "graded", tests)
    assert grade.deductions() == {"backward_crash": 50.0}


def test_rewording_messages_or_renaming_files_changes_no_grade() -> None:
    rubric = parse_rubric(RUBRIC)
    tests = [failed("test_gradients.py::test_a", "relu_index"), t("test_gradients.py::test_b", "passed"),
             failed("test_interface.py::test_c"), t("test_interface.py::test_d", "passed")]
    reworded = [{**x, "message": "entirely new words", "summary": "new",
                 "nodeid": x["nodeid"].replace("test_gradients", "test_backprop")} for x in tests]
    a, b = score(rubric, "graded", tests), score(rubric, "graded", reworded)
    assert (a.score, a.deductions(), a.area_scores()) == (b.score, b.deductions(), b.area_scores())
    # A message that quotes a diagnosis, without the suite's key, is charged nothing.
    quoted = [{**x, "properties": {}, "message": "your gradients equal those of an implementation "
               "that evaluates the ReLU derivative at the wrong layer's pre-activation"} for x in tests]
    assert score(rubric, "graded", quoted).deductions() == {}


# -- 2. scoring by root cause ---------------------------------------------------------------


def test_one_mistake_is_charged_once_and_explains_its_areas() -> None:
    rubric = parse_rubric(RUBRIC)
    tests = [failed("test_gradients.py::test_a", "relu_index"), failed("test_gradients.py::test_b", "relu_index"),
             t("test_gradients.py::test_c", "passed"),
             failed("test_relu_index.py::test_d", "missing_mask"),  # the same mistake, other name
             failed("test_interface.py::test_e"), t("test_interface.py::test_f", "passed")]
    grade = score(rubric, "graded", tests)
    assert grade.deductions() == {"relu_index": 40.0, "missing_mask": 0.0}  # one family, once
    fallback = {g.group.area: g.fallback for g in grade.groups}
    assert fallback["gradients"] == 50.0 and fallback["relu_index"] == 30.0  # explained, not charged again
    assert fallback["interface"] == 10.0  # nothing explains it: the area fallback, 1 of 2 passed
    assert grade.score == 50.0 + 30.0 + 10.0 - 40.0
    # What a reader sees: the 40 points come out of the two areas where the mistake shows, in
    # proportion to their points, so the areas add up to the score.
    assert grade.area_scores() == {"interface": 10.0, "gradients": 25.0, "relu_index": 15.0}
    gradients = next(g for g in grade.groups if g.group.area == "gradients")
    assert len(gradients.explained) == 2 and gradients.status == "failed"
    assert "1 of 3 checks passed, 2 failed" in group_output(gradients, grade=grade)
    assert "-25 points here for" in group_output(gradients, grade=grade)


def test_end_to_end_failures_are_symptoms_of_a_charged_forward_or_backward_mistake() -> None:
    """A wrong backward also fails to train MNIST and may crash the efficiency timing: those
    unkeyed failures are its symptoms, not second mistakes. Alone, they are charged."""
    rubric = parse_rubric({"areas": {"gradients": {"points": 50}, "mnist": {"points": 10},
                                     "efficiency": {"points": 5}, "interface": {"points": 35}},
                           "bugs": {"relu_index": {"points": 40}, "loss_sum": {"points": 5}}})
    end_to_end = [failed("test_mnist.py::test_sgd_loop_learns_mnist"),
                  failed("test_efficiency.py::test_backward_cost_scales_like_backprop"),
                  t("test_interface.py::test_ok", "passed")]
    with_backward_bug = [failed("test_gradients.py::a", "relu_index"), *end_to_end]
    grade = score(rubric, "graded", with_backward_bug)
    assert grade.deductions() == {"relu_index": 40.0} and grade.score == 60.0
    alone = score(rubric, "graded", end_to_end)  # nothing explains them: the areas pay
    assert alone.area_scores()["mnist"] == 0.0 and alone.area_scores()["efficiency"] == 0.0
    # Waivers never exceed what the mistake costs: a 10-point backward mistake added on
    # purpose cannot buy back the 15 points of two failing end-to-end areas.
    cheap = parse_rubric({"areas": {"mnist": {"points": 10}, "efficiency": {"points": 5},
                                    "interface": {"points": 85}}, "bugs": {"relu_index": {"points": 10}}})
    bought = score(cheap, "graded", [failed("test_interface.py::x", "relu_index"), *end_to_end])
    unbought = score(cheap, "graded", end_to_end)
    assert bought.score <= unbought.score, (bought.score, unbought.score)
    # A mistake of another function (the loss) explains nothing about training.
    with_loss_bug = score(rubric, "graded", [failed("test_interface.py::c", "loss_sum"), *end_to_end])
    assert with_loss_bug.area_scores()["mnist"] == 0.0
    assert with_loss_bug.score == 35.0 - 5.0  # interface explained by its own key; the rest unearned


def test_generic_findings_are_symptoms_of_a_named_mistake_of_the_same_function() -> None:
    rubric = parse_rubric(RUBRIC)
    named_too = [failed("test_gradients.py::test_a", "relu_index"),
                 failed("test_relu_index.py::test_b", "backward_wrong")]
    grade = score(rubric, "graded", named_too)
    assert grade.deductions() == {"relu_index": 40.0, "backward_wrong": 0.0}
    relu_index = next(g for g in grade.groups if g.group.area == "relu_index")
    assert relu_index.explained and relu_index.fallback == 30.0  # explained by the named mistake
    assert grade.charges[1].symptom_of == "relu_index"
    other_function = [failed("test_interface.py::test_a", "loss_sum"),
                      failed("test_gradients.py::test_b", "backward_wrong")]
    assert score(rubric, "graded", other_function).deductions() == {"backward_wrong": 35.0,
                                                                    "loss_sum": 5.0}
    alone = [failed("test_gradients.py::test_b", "backward_wrong"), t("test_interface.py::x", "passed"),
             t("test_relu_index.py::y", "passed")]
    grade = score(rubric, "graded", alone)
    assert grade.deductions() == {"backward_wrong": 35.0} and grade.score == 100 - 35


EVERY_AREA_PASSES = [t(f"test_{area}.py::passes", "passed") for area in
                     ("interface", "gradients", "stability", "relu_index", "golden", "mnist", "efficiency")]


def test_a_cheap_named_mistake_never_launders_a_generic_finding_it_does_not_account_for() -> None:
    """Red team: a backward that only does the output layer, with db averaged on purpose so
    one-layer cases name db_mean (10), must not have its other failures waived as symptoms."""
    rubric = load_rubric()
    honest = [failed("test_gradients.py::deep", "backward_wrong"),
              failed("test_relu_index.py::deep", "backward_wrong"), *EVERY_AREA_PASSES]
    laundered = [failed("test_gradients.py::one_layer", "db_mean"), *honest]
    assert score(rubric, "graded", honest).score == 60
    grade = score(rubric, "graded", laundered)
    assert grade.score <= 60, grade.deductions()
    assert grade.deductions() == {"db_mean": 10.0, "backward_wrong": 30.0}
    # the same generic finding on the test that names the mistake is its symptom: free
    symptom = [failed("test_gradients.py::a", "db_mean", "backward_wrong"), failed("test_golden.py::b", "db_mean"),
               *EVERY_AREA_PASSES]
    assert score(rubric, "graded", symptom).deductions() == {"db_mean": 10.0, "backward_wrong": 0.0}


@pytest.mark.parametrize("generic,key,price", [("backward_crash", "untransposed_weights", 35),
                                               ("backward_structure", "transposed_dw", 30)])
def test_a_crash_or_structure_is_explained_only_by_a_mistake_also_seen_in_values(
        generic: str, key: str, price: int) -> None:
    """A crash's cause is read from the exception's text, which the candidate writes, and a
    structure's from shapes it chose (red teams: forged numpy text, zeros shaped like W.T):
    named only there, the mistake explains nothing and the function costs a crash or a wrong
    structure (50); confirmed where values were compared, the failure is its symptom."""
    rubric = load_rubric()
    only_there = [failed("test_gradients.py::a", generic, key), failed("test_golden.py::b", generic, key),
                  *EVERY_AREA_PASSES]
    assert score(rubric, "graded", only_there).score == 50
    grade = score(rubric, "graded", [*only_there, failed("test_relu_index.py::square", key)])
    assert grade.deductions() == {key: float(price), generic: 0.0} and grade.score == 100 - price


def test_a_crash_the_named_mistake_would_cause_on_those_inputs_is_its_symptom() -> None:
    """The i-1 bug crashes wherever adjacent widths differ. The suite records on such a crash
    the catalogued mistakes that crash on the same inputs ("consistent_with"); a mistake named
    from values elsewhere then explains it. Without that, the crash costs what a crash costs."""
    rubric = load_rubric()

    def crash(nodeid: str, consistent: list[str]) -> dict:
        test = failed(nodeid, "backward_crash")
        test["properties"]["consistent_with"] = consistent
        return test

    values = failed("test_relu_index.py::silent", "relu_index")
    grade = score(rubric, "graded", [values, crash("test_gradients.py::a", ["relu_index", "wrong_weights"]),
                                     *EVERY_AREA_PASSES])
    assert grade.score == 60 and grade.deductions()["backward_crash"] == 0
    other = score(rubric, "graded", [values, crash("test_gradients.py::a", ["wrong_weights"]), *EVERY_AREA_PASSES])
    assert other.score == 50  # a crash the named mistake does not cause: the function costs a crash
    unconfirmed = score(rubric, "graded", [crash("test_gradients.py::a", ["relu_index"]), *EVERY_AREA_PASSES])
    assert unconfirmed.score == 50


def test_unpriced_keys_fall_back_to_areas_and_scores_stay_non_negative() -> None:
    rubric = parse_rubric({"areas": {"gradients": {"points": 10}}, "bugs": {"relu_index": {"points": 40}}})
    assert score(rubric, "graded", [failed("test_gradients.py::a", "relu_index")]).score == 0.0
    plain = parse_rubric({"areas": {"gradients": {"points": 10}}})
    grade = score(plain, "graded", [failed("test_gradients.py::a", "relu_index"),
                                    t("test_gradients.py::b", "passed")])
    assert grade.score == 5.0 and grade.charges == []


# -- 2b. what a reader sees adds up to the score ------------------------------------------
# A charged mistake's points are taken from the areas where it shows: no area with failing
# checks reads full or "passed", and the areas (minus what no area could hold) add up to the
# score. The score itself is the one above (tests/test_kill_matrix.py prices it).

DEFAULT_RUBRIC_DATA = load_rubric().data
WRONG_SIGN = [failed("test_interface.py::test_shapes", "wrong_sign"), t("test_interface.py::test_dtype", "passed"),
              failed("test_gradients.py::test_fd", "wrong_sign"),
              # a generic finding is explained where it is the named mistake's symptom (a failure
              # recording nothing would count in its area: tests/test_replay.py)
              failed("test_gradients.py::test_generic", "backward_wrong"),
              t("test_stability.py::test_guard", "passed"),
              failed("test_relu_index.py::test_mask", "wrong_sign"),
              failed("test_golden.py::test_values", "wrong_sign"),
              failed("test_mnist.py::test_sgd_loop_learns_mnist"),  # unkeyed: a symptom of the backward mistake
              t("test_efficiency.py::test_cost", "passed")]
# erin: the i-1 bug, and two generic findings about backward that are its symptoms (the suite
# names the i-1 bug on those tests too, as it does for the crash's broadcast error)
RELU_INDEX = [failed("test_gradients.py::test_fd", "relu_index"), t("test_interface.py::test_dtype", "passed"),
              failed("test_relu_index.py::test_crash", "backward_crash", "relu_index"),
              failed("test_relu_index.py::test_shapes", "backward_structure", "relu_index"),
              t("test_stability.py::test_guard", "passed")]
CORRECT = [t(f"test_{area}.py::test_ok", "passed") for area in
           ("interface", "gradients", "stability", "relu_index", "golden", "mnist", "efficiency")]


def adds_up(grade) -> bool:
    return round(sum(g.score for g in grade.groups) - grade.beyond_areas, 4) == grade.score


def test_a_charged_mistake_is_taken_from_the_areas_where_it_shows() -> None:
    grade = score(load_rubric(), "graded", WRONG_SIGN)
    assert grade.score == 60.0 and grade.deductions() == {"wrong_sign": 40.0, "backward_wrong": 0.0}  # as before
    assert adds_up(grade) and grade.beyond_areas == 0
    for gs in grade.groups:
        if gs.failing:  # every area with a failing check, the waived mnist one too
            assert gs.status == "failed" and gs.score < gs.max_score, gs.group.area
            assert "wrong_sign" in gs.deductions
        else:
            assert gs.status == "passed" and gs.score == gs.max_score and not gs.deductions
    charge, symptom = grade.charges
    assert symptom.symptom_of == "wrong_sign" and symptom.points == 0.0
    assert sum(charge.taken.values()) == 40.0 and set(charge.taken) == {
        "interface", "gradients", "relu_index", "golden", "mnist"}
    assert score(load_rubric(), "graded", WRONG_SIGN).area_scores() == grade.area_scores()  # deterministic


def test_a_price_above_the_areas_is_shown_apart_and_the_total_still_adds_up() -> None:
    rubric = parse_rubric({"areas": {"interface": {"points": 50}, "gradients": {"points": 10}},
                           "bugs": {"relu_index": {"points": 40}}})
    grade = score(rubric, "graded", [failed("test_gradients.py::a", "relu_index"), t("test_interface.py::b", "passed")])
    assert grade.score == 20.0 and grade.area_scores() == {"interface": 50.0, "gradients": 0.0}
    assert grade.beyond_areas == 30.0 and adds_up(grade)
    small = parse_rubric({"areas": {"interface": {"points": 10}, "gradients": {"points": 10}},
                          "bugs": {"relu_index": {"points": 40}}})
    floored = score(small, "graded", [failed("test_gradients.py::a", "relu_index"), t("test_interface.py::b", "passed")])
    assert floored.score == 0.0 and floored.beyond_areas == 10.0 and adds_up(floored)
    assert floored.charges[0].below_zero == 20.0


def test_two_mistakes_sharing_an_area_both_fit_when_they_can() -> None:
    """The mistake with the least room goes first: the log(0) guard (only in stability) is not
    pushed beyond the areas by the i-1 bug taking its share of stability first."""
    tests = [failed("test_stability.py::test_log", "log_guard"), failed("test_stability.py::test_relu", "relu_index"),
             failed("test_gradients.py::test_fd", "relu_index"), failed("test_relu_index.py::test_mask", "relu_index")]
    grade = score(load_rubric(), "graded", tests)
    assert grade.deductions() == {"relu_index": 40.0, "log_guard": 10.0}
    assert grade.beyond_areas == 0 and adds_up(grade)
    stability = next(g for g in grade.groups if g.group.area == "stability")
    assert stability.deductions["log_guard"] == 10.0


def test_points_are_split_exactly_in_proportion_and_never_above_a_holding() -> None:
    from conformance.grade.score.rubric import split_points

    holdings = {"interface": 14.25, "gradients": 33.25, "stability": 14.25, "golden": 9.5}
    shares = split_points(40, holdings)
    assert round(sum(shares.values()), 4) == 40 and all(shares[k] <= v for k, v in holdings.items())
    assert all(round(v, 2) == v for v in shares.values())  # whole cents: the pages add up too
    assert shares["gradients"] > shares["interface"] > shares["golden"]
    assert split_points(50, {"a": 10, "b": 20}) == {"a": 10, "b": 20}  # all of it, no more
    assert split_points(1, {"a": 1 / 3, "b": 2 / 3}) == {"a": 0.3333, "b": 0.6667}
    assert split_points(0.03, {"b": 1, "a": 1}) == split_points(0.03, {"a": 1, "b": 1})  # order-free
    assert split_points(5, {"a": 0}) == {}


def test_gradescope_areas_fail_with_the_mistake_and_the_entries_add_up() -> None:
    sub = graded(DEFAULT_RUBRIC_DATA, "carol", tests=WRONG_SIGN)
    results = gradescope_results(sub)
    gradients = next(x for x in results["tests"] if x["tags"] == ["gradients"])
    assert gradients["status"] == "failed" and gradients["score"] < gradients["max_score"]
    assert "2 failed" in gradients["output"] and "(wrong_sign)" in gradients["output"]
    assert all(x["status"] == "failed" for x in results["tests"] if x["tags"] and x["tags"][0] in
               ("interface", "gradients", "relu_index", "golden", "mnist"))
    (mistake,) = [x for x in results["tests"] if x["tags"] == ["bug:wrong_sign"]]
    assert mistake["score"] == 0 and "-40 points, charged once: interface -" in mistake["output"]
    assert round(sum(x["score"] for x in results["tests"]), 4) == results["score"] == 60
    beyond = graded({"areas": {"interface": {"points": 50}, "gradients": {"points": 10}},
                     "bugs": {"relu_index": {"points": 40}}},
                    tests=[failed("test_gradients.py::a", "relu_index"), t("test_interface.py::b", "passed")])
    entries = gradescope_results(beyond)["tests"]
    assert [x["score"] for x in entries] == [50.0, 0.0, -30.0]
    assert "-30 from the total beyond those areas" in entries[-1]["output"]


def test_the_page_counts_explained_failures_as_failed() -> None:
    page = submission_page(graded(DEFAULT_RUBRIC_DATA, "carol", tests=WRONG_SIGN))
    row = re.search(r"<tr><td>Gradients:.*?</tr>", page).group(0)
    assert '<td class="num">2 (2 explained by wrong_sign)</td>' in row and "wrong_sign -" in row
    assert "33.25 / 33.25" not in row and "<th>Total</th><th class=\"num\">60 / 100</th>" in page


def test_staff_pass_rate_counts_failing_checks_and_symptoms_carry_no_price() -> None:
    from conformance.grade.publish.html_report import overview

    subs = [graded(DEFAULT_RUBRIC_DATA, "alice", tests=CORRECT), graded(DEFAULT_RUBRIC_DATA, "carol", tests=WRONG_SIGN),
            graded(DEFAULT_RUBRIC_DATA, "erin", tests=RELU_INDEX)]
    page = overview(subs)
    rate = dict(re.findall(r"<tr><td>(\w+)</td><td>[^<]*</td><td class=\"num\">[\d.]+</td>"
                           r"<td class=\"num\">(\d+)%</td>", page))
    assert rate["gradients"] == "33" and rate["relu_index"] == "33" and rate["stability"] == "100"
    crash = re.search(r"<tr><td>[^<]*</td><td>backward_crash</td>.*?</tr>", page).group(0)
    assert "not charged" in crash and "-50" not in crash and "symptom of relu_index" in crash
    assert page.index("<td>relu_index</td><td class=\"num\">-40") < page.index("<td>backward_crash</td>")


def test_grades_csv_areas_are_points_earned_and_add_up_to_the_score() -> None:
    from conformance.grade.publish.outputs import grades_csv

    rubric = load_rubric()
    subs = [graded(DEFAULT_RUBRIC_DATA, name, tests=tests)
            for name, tests in (("alice", CORRECT), ("carol", WRONG_SIGN), ("erin", RELU_INDEX))]
    rows = {r["submission"]: r for r in csv.DictReader(io.StringIO(grades_csv(subs, rubric)))}
    for name, row in rows.items():
        areas = sum(float(row[a]) for a in rubric.area_names)
        assert round(areas - float(row["deducted_beyond_areas"]), 4) == float(row["score"]), name
    assert float(rows["carol"]["gradients"]) < 33.25 and rows["carol"]["score"] == "60"
    assert rows["carol"]["mistakes"].startswith("wrong_sign:-40 (interface -")
    assert "backward_crash:symptom of relu_index" in rows["erin"]["mistakes"]
    assert rows["alice"]["gradients"] == "33.25"


def test_the_gradebook_stores_points_earned_and_rescores_older_grades(tmp_path: Path) -> None:
    from conformance.grade.publish.gradebook import Gradebook
    from conformance.grade.run.jobs import JobResult

    rubric = parse_rubric(RUBRIC)
    book = Gradebook(tmp_path / "grades.sqlite")
    try:
        book.add_rubric(rubric)
        run_id = book.add_run(JobResult(name="bob", sha256="b", status="graded"), "v", "k")
        grade = score(rubric, "graded", [failed("test_gradients.py::a", "relu_index")])
        grade_id = book.add_grade(run_id, "bob", rubric, "v", "graded", grade)
        assert book.grade_for(run_id, rubric.hash) == grade_id
        (areas,) = book.db.execute("SELECT areas FROM grades WHERE id=?", (grade_id,)).fetchone()
        assert json.loads(areas)["gradients"] == 10.0  # 50 - the mistake's 40
        book.db.execute("UPDATE grades SET areas_meaning=NULL")  # stored before: areas at fallback
        assert book.grade_for(run_id, rubric.hash) is None
    finally:
        book.close()


@pytest.mark.parametrize("bugs,message", [
    ({"no_such_bug": {"points": 5}}, "[bugs.no_such_bug]: not a diagnosis key"),
    ({"relu_index": {"points": -1}}, "[bugs.relu_index]: points must be a number >= 0"),
    ({"relu_index": {"points": 5, "cost": 1}}, "[bugs.relu_index]: unknown key(s) cost"),
])
def test_rubric_bug_errors_name_the_key(bugs: dict, message: str) -> None:
    with pytest.raises(RubricError, match=re.escape(message)):
        parse_rubric({"areas": {"gradients": {"points": 10}}, "bugs": bugs})


def test_default_rubric_prices_every_key_between_5_and_50() -> None:
    rubric = load_rubric()
    assert set(rubric.bugs) == set(diagnosis_keys())
    assert all(5 <= b.points <= 50 for b in rubric.bugs.values())
    assert rubric.max_score == 100 and not rubric.hide_hints


# -- 3. feedback a student can be given -----------------------------------------------------


def graded(rubric_data: dict, name: str = "bob", tests: list[dict] | None = None) -> GradedSubmission:
    rubric = parse_rubric(rubric_data)
    if tests is None:
        tests = [failed("test_gradients.py::test_a", "relu_index", message="dW[0]=1, but should be 2"),
                 t("test_interface.py::test_b", "passed")]
    summary = {"lines": ["<candidate bob.py>: 1 of 2 check areas that ran FAILED (gradients)"]}
    return GradedSubmission(name=name, slug=name, sha256="b" * 64, status="graded", message="",
                            grade=score(rubric, "graded", tests), duration=3.25, tests=tests,
                            suite_version="v1", rubric=rubric, run_summary=summary)


def test_results_and_page_lead_with_the_summary() -> None:
    sub = graded(RUBRIC)
    results = gradescope_results(sub)
    output = results["output"]
    assert output.index("What to change") < output.index("1 of 2 check areas") < output.index("Suite version")
    assert "-40 points" in output and "ReLU derivative" in output
    # The mistake's 40 points are out of the gradients area where it shows, not a second deduction.
    assert any(x["score"] == 0 and x["tags"] == ["bug:relu_index"] and "gradients -40" in x["output"]
               for x in results["tests"])
    assert any(x["score"] == 10 and x["tags"] == ["gradients"] for x in results["tests"])
    page = submission_page(sub)
    assert page.index("Summary: what is wrong") < page.index("Failing checks")
    assert not audit(page).links and "3.2" not in page  # no link out, no run duration


def test_hints_can_be_hidden_until_the_due_date() -> None:
    sub = graded({**RUBRIC, "hide_hints_until_due": True})
    results = gradescope_results(sub)
    visible = results["output"] + "".join(x["output"] for x in results["tests"]
                                          if x["visibility"] != "after_due_date")
    assert "ReLU" not in visible and "dW[0]" not in visible and "What to change" not in visible
    later = [x for x in results["tests"] if x["visibility"] == "after_due_date"]
    assert len(later) == 1 and "What to change" in later[0]["output"] and "dW[0]" in later[0]["output"]
    assert results["score"] == sub.grade.score  # the score itself stays visible
    assert "ReLU" not in submission_page(sub) and "dW[0]" not in submission_page(sub)


# -- 3, 4, 5 on a real class: determinism, privacy, similarity, audit -----------------------

CLASS_RUBRIC = """
name = "test rubric"
[areas.interface]
points = 40
[areas.gradients]
points = 60
[bugs.no_batch_mean]
points = 25
"""
CLASS_ARGS = ["--no-require-mnist", "--pytest-arg=-m", "--pytest-arg=not mnist",
              "--pytest-arg=-k", "--pytest-arg=interface or gradients", "--no-progress"]


@pytest.mark.slow
def test_class_outputs_are_private_deterministic_and_audited(tmp_path: Path) -> None:
    subs = tmp_path / "subs"
    write(subs / "alice.py", REFERENCE)
    write(subs / "bob.py", NO_BATCH_MEAN)
    # carol copied bob and renamed a few things: flagged as similar, on staff pages only
    write(subs / "carol.py", NO_BATCH_MEAN.replace("delta", "d_err").replace("grads", "gradient_list"))
    rubric = write(tmp_path / "rubric.toml", CLASS_RUBRIC)
    outs = [tmp_path / "out1", tmp_path / "out2"]
    for out in outs:
        proc = run_grader(subs, "--out", out, "--rubric", rubric, *CLASS_ARGS,
                          "--override", "alice=90,late penalty: two days", "--similarity-threshold", "0.5")
        assert proc.returncode == 0, proc.stderr[-3000:]
    # 3. byte-identical student files across two runs; own data only; staff overview apart
    for name in ("alice", "bob", "carol"):
        first, second = (out / "submissions" / name for out in outs)
        assert (first / "results.json").read_bytes() == (second / "results.json").read_bytes()
        assert (first / "report.html").read_bytes() == (second / "report.html").read_bytes()
    bob_files = b"".join(p.read_bytes() for p in (outs[0] / "submissions" / "bob").iterdir())
    assert b"alice" not in bob_files and b"carol" not in bob_files and b"staff" not in bob_files
    bob = json.loads((outs[0] / "submissions" / "bob" / "results.json").read_text())
    assert bob["output"].index("What to change") < bob["output"].index("Suite version")
    assert bob["score"] == 75 and bob["extra_data"]["mistakes"] == {"no_batch_mean": 25}
    staff = (outs[0] / "staff" / "index.html").read_text()
    assert "does not divide by the batch size" in staff and staff.count("no_batch_mean") == 1
    # bob's and carol's gradient checks fail: the area is not 100 % passed, nor full in the CSV
    assert re.search(r"<td>gradients</td><td>[^<]*</td><td class=\"num\">60</td><td class=\"num\">33%</td>", staff)
    bob_row = read_csv(outs[0] / "grades.csv")["bob"]
    assert float(bob_row["gradients"]) < 60 and float(bob_row["interface"]) + float(bob_row["gradients"]) == 75
    assert next(x for x in bob["tests"] if x["tags"] == ["gradients"])["status"] == "failed"
    # 4. similarity: the copied pair flagged, its side-by-side page staff-only
    assert "bob ~ carol" in staff and (outs[0] / "staff" / "similarity" / "pair-0001.html").is_file()
    # 5. audit trail: override everywhere, bytes kept, rubric kept, current_grades == grades.csv
    rows = read_csv(outs[0] / "grades.csv")
    assert rows["alice"]["score"] == "90" and rows["alice"]["computed_score"] == "100"
    assert rows["alice"]["override_reason"] == "late penalty: two days"
    alice = json.loads((outs[0] / "submissions" / "alice" / "results.json").read_text())
    assert alice["score"] == 90 and "late penalty: two days" in alice["output"]
    assert "late penalty: two days" in (outs[0] / "submissions" / "alice" / "report.html").read_text()
    with sqlite3.connect(outs[0] / "grades.sqlite") as db:
        view = db.execute("SELECT submission, status, score, override_reason FROM current_grades").fetchall()
        assert [(n, s, f"{p:g}") for n, s, p, _ in view] == [
            (n, r["status"], r["score"]) for n, r in rows.items()]
        (blob,) = db.execute("SELECT g.data FROM graded_bytes g JOIN submissions s "
                               "ON s.sha256 = g.sha256 WHERE s.name='bob'").fetchone()
        assert zipfile.ZipFile(io.BytesIO(blob)).read("bob.py").decode() == NO_BATCH_MEAN
        text = db.execute("SELECT r.text FROM grades g JOIN rubrics r ON r.hash = g.rubric_hash "
                          "WHERE g.name='bob'").fetchone()[0]
        assert text == CLASS_RUBRIC


# A student whose backward kills its own worker process (a crash the isolation survives).
KILLS_ITS_WORKER = REFERENCE.replace(
    "def backward(", "def backward(*args, **kwargs):\n    import os, signal\n    os.kill(os.getpid(), signal.SIGKILL)\n\n\n"
    "def unused_backward(", 1)
RUN_SPECIFIC = re.compile(r"/grade-[a-z0-9_]{8}/|timestamp=|hostname=| at 0x[0-9a-f]{6,}")


def files_of(out: Path) -> dict[str, bytes]:
    """What the README says is byte-identical: the student files and the class CSVs."""
    paths = sorted((out / "submissions").rglob("*")) + [out / "grades.csv", out / "intake.csv"]
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in paths if p.is_file()}


@pytest.mark.slow
def test_the_same_bytes_give_byte_identical_files(tmp_path: Path, real_dir: Path) -> None:
    """Finding 4: grading the same bytes again (a fresh OUT, or --force) gives the same files.

    The class has what made text run-specific: a traceback from the student's own file (erin's
    i-1 bug raises inside backward), a worker killed mid-call (hank), an import failure (frank),
    a folder without a module; graded as an instructor does (default rubric, every area: the
    efficiency area's CPU-time ratios and the MNIST area, whose failures show the test's
    arguments). The second run is a --force re-run into a copy of the first OUT with its pages
    deleted, so every file is written again (a page is otherwise redrawn only when its key
    changes, which the comparison also covers: the key is in the page)."""
    subs = tmp_path / "subs"
    write(subs / "alice.py", REFERENCE)
    write(subs / "erin.py", I_BUG)
    write(subs / "frank.py", "import numpy as np\nfrom mlp_helpers import softmax_stable  # not handed in\n")
    write(subs / "hank.py", KILLS_ITS_WORKER)
    (subs / "emptydir").mkdir()
    first, again = tmp_path / "out1", tmp_path / "out2"
    env = {"BACKPROP_MNIST_DIR": str(real_dir)}
    proc = run_grader(subs, "--out", first, "-j", "2", "--no-progress", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    shutil.copytree(first, again)
    for page in again.rglob("report.html"):
        page.unlink()
    proc = run_grader(subs, "--out", again, "-j", "2", "--no-progress", "--force", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    before, after = files_of(first), files_of(again)
    assert sorted(before) == sorted(after) and len(before) == 5 * 3 + 2
    assert [name for name in before if before[name] != after[name]] == []
    rows = read_csv(first / "grades.csv")
    assert {n: r["status"] for n, r in rows.items()} == {
        "alice": "graded", "emptydir": "no_module", "erin": "graded", "frank": "import_error", "hank": "graded"}
    assert rows["alice"]["score"] == "100" and float(rows["erin"]["score"]) < 100
    assert rows["frank"]["message"] == ("importing candidate 'submission/frank.py' failed (in the isolated "
                                        "worker): ModuleNotFoundError: No module named 'mlp_helpers'")
    leaks = {name: RUN_SPECIFIC.findall(data.decode("utf-8", "replace")) for name, data in before.items()}
    assert {name: found for name, found in leaks.items() if found} == {}
    assert b"File \\\"submission/erin.py\\\", line" in before["submissions/erin/results.json"]


def test_a_name_clash_note_names_no_other_entry_in_student_files() -> None:
    sub = graded(RUBRIC)
    sub.intake.notes = ["late: the canvas file name carries the late marker",
                        "ambiguous: the entries 'carol.py', 'carol/' all map to the row 'carol'"]
    shown = json.dumps(gradescope_results(sub)) + submission_page(sub)
    assert "late marker" in shown and "carol" not in shown and "clashes with another entry" in shown


# -- a train that crashes because backward does ------------------------------------------------

TRAIN_OWN_CRASH = REFERENCE.replace("X_b, Y_b = X[rows], Y[rows]",
                                    "X_b, Y_b = X[rows].reshape(len(rows), 28 * 28 + 1), Y[rows]")


def _catalogued(name: str) -> str:
    from tools.catalogue import apply_patch
    from tools.catalogue.buggy import BUGGY

    return apply_patch(REFERENCE, next(spec for spec in BUGGY if spec.name == name))


# The i-1 bug crashes inside backward; transposed dW crash train's update W - lr * dW.
@pytest.mark.parametrize("source, train_charged", [(I_BUG, False), (_catalogued("dw_transposed"), False),
                                                   (TRAIN_OWN_CRASH, True)])
def test_a_train_crash_on_mnist_is_backwards_when_its_own_step_crashes_so(
        tmp_path: Path, real_dir: Path, source: str, train_charged: bool) -> None:
    """The i-1 bug makes the student's own train crash on MNIST (hidden width 128, 10 classes),
    and so do transposed gradients (in train's update): one step of its own forward and backward
    on the first batch crashes exactly so, so the crash is the backward mistake's, charged once
    (not again, 30 more, as a crash of train). A train that crashes in its own code while its
    forward and backward are right is charged as train's."""
    from tests.helpers import suite_env

    impl = write(tmp_path / "mlp.py", source)
    report = tmp_path / "report.json"
    env = dict(suite_env(), BACKPROP_MNIST_DIR=str(real_dir))
    run = run_suite(impl, "-k", "own_train_learns_mnist or relu_index", "--conformance-report", str(report),
                    env=env)
    assert run.returncode == 1, run.stdout[-3000:]
    tests = json.loads(report.read_text())["tests"]
    own = [x for x in tests if "test_own_train_learns_mnist[quick]" in x["nodeid"]]
    assert own and own[0]["outcome"] == "failed", run.stdout[-3000:]
    keys = set(own[0]["properties"].get("diagnoses", []))
    assert ("train_crash" in keys) == train_charged, keys
    charged = {k for k, v in score(load_rubric(), "graded", tests).deductions().items() if v}
    assert ("train_crash" in charged) == train_charged, charged
