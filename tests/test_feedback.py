"""Honest verdicts and feedback: precision judged by what went into a result, hints
only where the evidence matches, the end-of-run summary, deterministic text, opt-outs."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis.vendor.pretty import pretty

from conformance.assertions import Comparison, mismatch_report
from conformance.calls import _opt_outs
from conformance.cases import make_case
from conformance.contract import PrecisionFinding, result_dtype, revealed_dtype
from conformance.diagnosis import (
    nonfinite_output_cause,
    FORWARD_BUGS,
    KNOWN_BUGS,
    diagnose,
    diagnose_forward,
    explain_exception,
    named_bugs,
)
from conformance.exact import BackwardBugs, exact_forward, exact_gradients, magnitudes
from conformance.gradcheck import precision_tolerance
from conformance.candidate import candidate_label
from conformance.summary import Shape, cross_failure_patterns

from tests.helpers import run_pytest

REPO = Path(__file__).resolve().parents[1]
TAU64 = precision_tolerance(np.float64)


# ------------------------------------------------------------------ precision of a result
def test_float32_values_in_float64_arrays_reveal_float32() -> None:
    x = np.random.default_rng(0).standard_normal((3, 4))
    assert revealed_dtype(x) == np.float64
    assert revealed_dtype(x.astype(np.float32).astype(np.float64)) == np.float32
    # Values float64 arithmetic produces exactly (zeros, small integers, halves) are no evidence.
    assert revealed_dtype(np.array([[0.0, 1.0, 0.5, 2.0], [3.0, 0.25, 0.0, 1.0]])) == np.float64
    assert revealed_dtype(np.zeros((5, 5))) == np.float64
    with pytest.warns(PrecisionFinding):
        assert result_dtype([x, x.astype(np.float32).astype(np.float64)]) == np.float32


def _comparison(error: float, allowed: float) -> Comparison:
    return Comparison("dW[0]", np.array([1.0 + error]), np.array([1.0]), np.array([allowed]))


def test_float32_rounding_in_float64_results_passes_with_a_finding() -> None:
    allowed = TAU64 * 1.0  # M = 1
    rounding = 20 * float(np.finfo(np.float32).eps)  # well above float64 tau, below 64 eps32
    with pytest.warns(PrecisionFinding):
        assert mismatch_report([_comparison(rounding, allowed)], where="w", compared="c", contract="k",
                               held_to=np.dtype(np.float64)) is None
    # The same error from a float32 result is simply within its tolerance; a bug-sized error
    # (1/64 relative) fails whatever the dtype.
    bug = mismatch_report([_comparison(1 / 64, allowed)], where="w", compared="c", contract="k",
                          held_to=np.dtype(np.float64))
    assert bug is not None and bug.startswith("dW[0][0]=")


def test_float32_rounding_bound_does_not_swallow_errors_at_huge_logits() -> None:
    """Where the float64 tolerance is already ~0.3 (saturated softmax), errors of O(1000) are not
    "float32 precision": the bound is 64 eps32 of M, not the float32 tau."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", PrecisionFinding)
        assert mismatch_report([_comparison(1000.0, 0.3)], where="w", compared="c", contract="k",
                               held_to=np.dtype(np.float64)) is not None


# ------------------------------------------------------------------ hints are evidence
def test_np_dot_shape_error_is_explained_like_matmul() -> None:
    """np.dot's text shows both shapes: W itself (untransposed) is evidence of that one bug.
    matmul's shows two sizes only, which several mistakes fit: the fix, but no bug named."""
    sizes, batch = [4, 3, 8], 3
    expected = {"dot": {"untransposed_weights"}, "matmul": set()}
    for kind, op in (("dot", lambda: np.ones((3, 8)).dot(np.ones((3, 8)))),
                     ("matmul", lambda: np.ones((3, 8)) @ np.ones((3, 8)))):
        with pytest.raises(ValueError) as info:
            op()
        hint = explain_exception(str(info.value), "backward", sizes, batch)
        assert "delta @ params[i][0].T" in hint and named_bugs(hint) == expected[kind], hint


def test_width_one_shape_error_that_two_bugs_explain_names_neither() -> None:
    # [5, 1, 3]: `delta @ W` without .T and the i-1 mask both multiply a 3-column delta by a
    # 1-row array; the message must say so rather than pick one.
    with pytest.raises(ValueError) as info:
        np.ones((2, 3)) @ np.ones((1, 3))
    hint = explain_exception(str(info.value), "backward", [5, 1, 3], 2)
    assert hint and named_bugs(hint) == set()


def _grads_case():
    case = make_case([6, 6, 6, 6], batch=7, seed=3)
    acts, pres = exact_forward(case.X, case.params)
    return case, acts, pres, magnitudes(case.X, case.Y, case.params)


@pytest.mark.parametrize("bug", [b.key for b in KNOWN_BUGS])
def test_every_catalogued_backward_bug_is_named_as_itself(bug: str) -> None:
    case, acts, pres, mags = _grads_case()
    spec = next(b for b in KNOWN_BUGS if b.key == bug)
    grads = spec.gradients(acts, pres, case.Y, case.params)
    text = diagnose(grads, acts, pres, case.Y, case.params, mags, TAU64)
    assert named_bugs(text) == {bug}, text


def test_unknown_backward_mistake_names_no_bug_and_localises() -> None:
    case, acts, pres, mags = _grads_case()
    grads = exact_gradients(acts, pres, case.Y, case.params)
    grads[0] = (grads[0][0] * 1.5, grads[0][1])  # only the first layer's dW is off
    text = diagnose(grads, acts, pres, case.Y, case.params, mags, TAU64)
    assert named_bugs(text) == set(), text
    assert "wrong: dW[0]" in text and "layer 1 (0-based 0) is wrong" in text


def test_two_mistakes_together_are_named_as_a_pair() -> None:
    """The per-layer 1/m style with the output error divided too: dW and db are both divided
    by B again. No single mistake fits every tensor; exactly one pair does."""
    case, acts, pres, mags = _grads_case()
    grads = exact_gradients(acts, pres, case.Y, case.params, bugs=BackwardBugs(dw_mean=True, db_mean=True))
    text = diagnose(grads, acts, pres, case.Y, case.params, mags, TAU64)
    assert "two of the common mistakes" in text and named_bugs(text) == {"double_batch_mean", "db_mean"}, text
    assert "every layer" not in text  # mean_every_layer fits dW[0], db[0] only: not named


def test_a_mistake_that_fits_only_some_tensors_gets_no_line_fix() -> None:
    """db averaged plus an unknown error in dW[0]: db_mean fits the db tensors only. It is
    reported as fitting those tensors, without its line fix, and not as the cause."""
    case, acts, pres, mags = _grads_case()
    grads = exact_gradients(acts, pres, case.Y, case.params, bugs=BackwardBugs(db_mean=True))
    grads[0] = (grads[0][0] * 1.5, grads[0][1])
    text = diagnose(grads, acts, pres, case.Y, case.params, mags, TAU64)
    # Replay reproduces only some tensors: the mistake explains nothing about the call and is
    # not mentioned (nor its line fix); what is wrong and what is right is said.
    assert named_bugs(text) == set() and "averages db" not in text, text
    assert "wrong: dW[0], db[0]" in text and "No known mistake, alone or paired, reproduces them" in text, text


def test_inputs_that_cannot_tell_two_mistakes_apart_name_neither() -> None:
    """Width-1 hidden layers that are dead: only the last db is non-zero, so 'no division by B'
    and 'db not divided by B' give the same gradients. Neither is named (a grade would charge
    a mistake the evidence does not single out); the facts are."""
    case = make_case([5, 1, 1, 10], batch=3, seed=2, layout="strided")
    acts, pres = exact_forward(case.X, case.params)
    mags = magnitudes(case.X, case.Y, case.params)
    grads = exact_gradients(acts, pres, case.Y, case.params, bugs=BackwardBugs(db_times_batch=True))
    from conformance import evidence

    with evidence.recording() as found:
        text = diagnose(grads, acts, pres, case.Y, case.params, mags, TAU64)
    assert named_bugs(text) == set() and "reproduce these gradients exactly" in text and "wrong: db[2]" in text, text
    # recorded as consistent with both, so a grade can count it as the named one's symptom
    assert [(f.key, f.consistent) for f in found.findings] == [
        ("backward_wrong", ("db_no_batch_mean", "no_batch_mean"))]


@pytest.mark.parametrize("key", [k for k, _, _ in FORWARD_BUGS])
def test_every_catalogued_forward_bug_is_named_as_itself(key: str) -> None:
    case = make_case([5, 6, 4], batch=6, seed=2)
    bugs = next(switches for k, _, switches in FORWARD_BUGS if k == key)
    with np.errstate(all="ignore"):
        acts, pres = exact_forward(case.X, case.params, bugs)
    text = diagnose_forward(acts, pres, case.X, case.params, TAU64)
    assert named_bugs(text) == {key}, text


def test_non_finite_softmax_rows_name_the_guard_whose_absence_explains_them() -> None:
    z = np.array([[1000.0, 0.0, -5.0], [1.0, 2.0, 3.0]])
    with np.errstate(all="ignore"):
        naive = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    assert named_bugs(nonfinite_output_cause(naive, z, np.dtype(np.float64))) == {"max_guard"}
    z = np.array([[1e4, 0.0, -1e4], [-1e4, -1e4 + 1, -1e4 + 2]])
    with np.errstate(all="ignore"):
        e = np.exp(z - z.max())
        global_max = e / e.sum(axis=1, keepdims=True)
    assert named_bugs(nonfinite_output_cause(global_max, z, np.dtype(np.float64))) == {"row_guard"}
    zeros_then_nan = np.full((2, 3), np.nan)  # non-finite everywhere, on logits that overflow nothing
    assert named_bugs(nonfinite_output_cause(zeros_then_nan, np.ones((2, 3)), np.dtype(np.float64))) == set()


# ------------------------------------------------------------------ first screen
def test_cross_failure_patterns_only_when_every_failure_shares_a_feature() -> None:
    one = Shape((4, 3), 5, "C")
    deep = Shape((4, 5, 5, 3), 5, "C")
    width1 = Shape((4, 1, 3), 5, "C")
    patterns = cross_failure_patterns([one, Shape((2, 5), 3, "C")], [deep, Shape((4, 5, 3), 2, "F")])
    assert patterns and "every failure is on a network with 1 layer(s)" in patterns[0]
    assert cross_failure_patterns([width1, Shape((3, 1, 1, 2), 2, "C")], [deep]) == [
        "all failures involve a width-1 hidden layer; every other case passes"]
    assert cross_failure_patterns([one, deep], [one]) == []  # a depth that also passes: no pattern


def test_cases_and_candidates_print_without_arrays_paths_or_addresses() -> None:
    case = make_case([3, 4, 2], batch=2, seed=5, layout="F")
    assert pretty(case) == repr(case) == "make_case(layer_sizes=[3, 4, 2], batch=2, seed=5, layout='F')"

    class Fake:
        path = Path("/tmp/sandbox-123/.hidden/submissions/alice/mlp.py")
        module_name = "mlp"

    assert candidate_label(Fake()) == "<candidate mlp.py>"


def test_opt_out_is_read_from_a_literal_only(tmp_path: Path) -> None:
    literal = tmp_path / "a.py"
    literal.write_text('CONFORMANCE_OPT_OUT = ("relu", "softmax")\n')
    computed = tmp_path / "b.py"
    computed.write_text('CONFORMANCE_OPT_OUT = tuple(["relu"])\n')
    single = tmp_path / "c.py"
    single.write_text('CONFORMANCE_OPT_OUT = "softmax"\n')
    assert _opt_outs(str(literal), None) == {"relu", "softmax"}
    assert _opt_outs(str(computed), None) == frozenset()
    assert _opt_outs(str(single), None) == {"softmax"}


def _run_suite(impl: Path) -> str:
    out = run_pytest("conformance", "--impl", str(impl), "-q", "-m", "not mnist")
    return re.sub(r" in [\d.]+s", " in <time>", out.stdout)


@pytest.mark.slow
def test_buggy_run_ends_with_the_summary_and_repeats_identically(tmp_path: Path) -> None:
    from tools.catalogue import materialize

    variant = next(v for v in materialize(tmp_path) if v.name == "bug_no_batch_mean")
    first, second = _run_suite(variant.path), _run_suite(variant.path)
    assert first == second
    summary = first[first.index("conformance summary"):]
    assert "<candidate bug_no_batch_mean.py>" in summary and "gradients   FAILED" in summary
    assert "does not divide by the batch size: `delta = Y_hat - Y` should be" in summary
    assert str(tmp_path) not in first and " at 0x" not in first


def test_a_property_failure_is_explained_once_on_the_minimal_example() -> None:
    """Hypothesis tries many failing examples while shrinking; the (expensive) diagnosis is
    built for the one it reports, not for each."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from conformance.assertions import Comparison, assert_comparisons

    diagnosed: list[int] = []

    @settings(max_examples=50, derandomize=True, database=None, deadline=None)
    @given(st.integers(0, 1000))
    def prop(n: int) -> None:
        def diagnosis() -> str:
            diagnosed.append(n)
            return f"n is {n}"

        assert_comparisons([Comparison("x", np.array([float(n)]), np.array([0.0]), 0.5)],
                           where=f"n={n}", compared="n vs 0", contract="|n| <= 0.5",
                           diagnosis=diagnosis)

    with pytest.raises(AssertionError) as info:
        prop()
    assert diagnosed == [1], diagnosed  # shrunk to the minimal failing n, explained once
    assert "finding: n is 1" in str(info.value) and "[n=1]" in str(info.value)


def test_an_opted_out_function_is_never_called(tmp_path: Path) -> None:
    """Red team: a correct submission whose cross_entropy is a helper taking integer labels,
    opted out, lost points because the stability and golden areas still called it."""
    from tests.helpers import REPO_ROOT, run_suite

    source = (REPO_ROOT / "conformance" / "reference" / "mlp.py").read_text()
    helper = '''

def cross_entropy(Y_hat, labels):  # integer labels: a helper with its own conventions
    return -np.mean(np.log(Y_hat[np.arange(len(labels)), labels] + 1e-12))


CONFORMANCE_OPT_OUT = ("cross_entropy",)
'''
    impl = tmp_path / "int_labels.py"
    impl.write_text(source + helper)
    proc = run_suite(impl, "-m", "not mnist", "-k", "stability or golden", "-q")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "opts out of cross_entropy" in proc.stdout


def test_a_shape_crash_hint_says_only_what_the_shapes_show() -> None:
    """Students F6: transposed shapes and a one-dimension difference got the generic 'arrays of
    different layers' hint."""
    transposed = "operands could not be broadcast together with shapes (6,8) (8,6) "
    assert "transposed shapes, (6, 8) and (8, 6)" in explain_exception(transposed, "backward", [8, 6, 3], 4)
    width = "operands could not be broadcast together with shapes (10,2) (9,2) "
    hint = explain_exception(width, "backward", [4, 5, 10], 2)
    assert "differ in one dimension" in hint and "same layer" not in hint and named_bugs(hint) == set()


def test_the_mistakes_consistent_with_a_crash_or_a_structure_are_computed_from_the_inputs() -> None:
    from conformance.diagnosis import bugs_consistent_with

    case = make_case([4, 6, 5, 3], batch=3, seed=1)  # adjacent hidden widths differ
    acts, pres = exact_forward(case.X, case.params)
    args = (acts, pres, case.Y, case.params)
    crashing = bugs_consistent_with(args)
    assert "relu_index" in crashing and "db_mean" not in crashing and "wrong_sign" not in crashing
    transposed = [(dW.T, db) for dW, db in exact_gradients(*args)]
    assert "transposed_dw" in bugs_consistent_with(args, result=transposed)
    assert bugs_consistent_with(args, result=exact_gradients(*args)) == []  # right shapes: no claim
    assert bugs_consistent_with(("not", "inputs")) == []


def test_only_the_last_hypothesis_example_registers_evidence() -> None:
    """Red team: a constant exception text made a crash inherit the keys computed on an
    earlier example's inputs (where the i-1 bug does crash). Findings are data on the test's
    recorder, and a new hypothesis example starts them afresh."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from conformance import evidence
    from conformance.diagnosis import named

    seen: list[int] = []

    @settings(max_examples=6, database=None, derandomize=True)
    @given(st.integers(0, 1000))
    def examples(n: int) -> None:
        seen.append(n)
        named("backward_crash", "your backward raised ValueError: constant", consistent=[f"k{n}"])
        named(f"key{n}", "constant sentence")

    with evidence.recording() as found:
        examples()
    assert len(set(seen)) > 1
    assert [(f.key, f.consistent) for f in found.findings] == [
        ("backward_crash", (f"k{seen[-1]}",)), (f"key{seen[-1]}", ())]