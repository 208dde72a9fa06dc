"""Unit tests of the conformance suite's own helpers: finite differences and kinks, tolerance
formula, failure-message format, contract validation against rigged objects, the bug catalogue,
and the plugin's options (load failure, --max-examples, profiles)."""

from __future__ import annotations

import collections
import hashlib
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings

from conformance import strategies
from conformance.assertions import Comparison, assert_unchanged, mismatch_report
from conformance.candidate import private_copy
from conformance.cases import make_case, scaled_logits_case, true_class_underflow_case
from conformance.checks import gradient_comparisons
from conformance.contract import ContractError, validate_array, validate_backward, validate_forward, validate_loss
from conformance.diagnosis import FORWARD_BUGS, KNOWN_BUGS, diagnose, diagnose_forward, explain_exception
from conformance.exact import (ForwardBugs, Magnitudes, backpropagate, exact_forward, exact_gradients, exact_loss,
                              magnitudes, output_error)
from conformance.plugin import impl_spec
from conformance.gradcheck import EPS64, allowed_error, central_differences, fd_tensor, precision_tolerance
from tests.helpers import run_pytest
from conformance.reference import mlp as reference

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- gradcheck
def test_exact_forward_matches_reference() -> None:
    case = make_case([5, 7, 3], batch=4, seed=1)
    acts, pres = exact_forward(case.X, case.params)
    ref_acts, ref_pres = reference.forward(case.X, case.params)
    for a, b in zip(acts + pres, list(ref_acts) + list(ref_pres)):
        np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-15)


def test_exact_loss_is_exact_where_the_section_guard_skews() -> None:
    case = true_class_underflow_case(seed=0)
    loss = exact_loss(case.X, case.Y, case.params)
    assert np.isfinite(loss) and loss > 900  # exact: the logit gap, not -log(1e-12) = 27.6
    guarded = reference.cross_entropy(exact_forward(case.X, case.params)[0][-1], case.Y)
    assert guarded == pytest.approx(-np.log(1e-12))


def test_central_differences_on_a_smooth_function() -> None:
    """f(t) = sum(sin(t)): the estimate is within its own error estimate of cos(theta)."""
    theta = np.array([0.3, -1.2, 2.0])

    def losses(deltas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.sin(theta + deltas).sum(axis=1), np.zeros(len(deltas), bool)

    steps = EPS64 ** (1 / 3) * np.maximum(1, np.abs(theta))
    est = central_differences(losses, np.eye(3), steps, loss_scale=3.0)
    assert np.all(np.abs(est.value - np.cos(theta)) <= est.error)
    assert np.all(est.error < 1e-8) and not est.excluded.any()


def test_kinks_are_retried_then_excluded_never_failed() -> None:
    """|x| at 0 straddles the kink at every step: excluded. At 1e-6 the 64x smaller step clears it."""
    theta = np.array([0.0, 1e-6, 1.0])

    def losses(deltas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        moved = theta + deltas
        return np.abs(moved).sum(axis=1), (np.sign(moved) != np.sign(theta)).any(axis=1)

    est = central_differences(losses, np.eye(3), np.full(3, 6e-6), loss_scale=1.0)
    assert est.excluded.tolist() == [True, False, False]
    assert est.retried == 2
    assert est.value[1:] == pytest.approx([1.0, 1.0])


def test_fd_of_exact_loss_agrees_with_exact_backprop() -> None:
    case = make_case([4, 5, 3], batch=6, seed=3)
    acts, pres = exact_forward(case.X, case.params)
    grads = exact_gradients(acts, pres, case.Y, case.params)
    mags = magnitudes(case.X, case.Y, case.params)
    for l in range(2):
        for t, kind in enumerate("Wb"):
            est = fd_tensor(case.X, case.Y, case.params, l, kind, mags)
            err = np.abs(est.value - grads[l][t].reshape(-1))
            assert np.all(err[~est.excluded] <= 1e-8), (l, kind, err.max())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_one_backward_rounds_as_the_reference_in_the_inputs_dtype(dtype: type) -> None:
    """conformance/fixture_files.py builds its ReLU'(0) intervals with ``backpropagate`` in the fixture's
    dtype: on the reference's own forward values it must give the reference's gradients bit
    for bit (float32 stays float32), and ReLU'(0) given as 0, as 1 or as a mask function
    agree where they should."""
    case = make_case([5, 6, 6, 3], batch=4, seed=12, zero_rows=2)
    X, Y = case.X.astype(dtype), case.Y.astype(dtype)
    params = [(W.astype(dtype), b.astype(dtype)) for W, b in case.params]
    acts, pres = reference.forward(X, params)
    expected = reference.backward(acts, pres, Y, params)
    delta = output_error(acts[-1], Y)
    at_zero = backpropagate(delta, acts, pres, params, 0.0)
    at_one = backpropagate(delta, acts, pres, params, lambda z: z >= 0)
    for (dW, db), (eW, eb), (oW, ob) in zip(at_zero, expected, at_one):
        assert dW.dtype == db.dtype == np.dtype(dtype)
        assert np.array_equal(dW, eW) and np.array_equal(db, eb)
    flat = lambda grads: [g for pair in grads for g in pair]  # noqa: E731
    assert not all(np.array_equal(a, b) for a, b in zip(flat(at_zero), flat(at_one)))  # zeros matter
    assert all(np.array_equal(a, b) for a, b in zip(flat(at_one), flat(backpropagate(delta, acts, pres, params, 1.0))))


def test_exact_zero_pre_activations_are_excluded_or_accepted_both_ways() -> None:
    """Zero rows and zero biases: the check accepts ReLU'(0) = 0 and = 1 alike."""
    case = make_case([4, 5, 5, 3], batch=4, seed=11, zero_rows=2)
    acts, pres = exact_forward(case.X, case.params)
    assert any((z == 0).any() for z in pres[:-1])
    for convention in (0.0, 1.0):
        grads = exact_gradients(acts, pres, case.Y, case.params, convention)
        assert mismatch_report(gradient_comparisons(case, grads, np.dtype(np.float64)),
                               where="x", compared="", contract="") is None


def test_gradient_check_accepts_float32_results_with_float32_tolerance() -> None:
    case = make_case([6, 8, 4], batch=5, seed=4)
    acts, pres = exact_forward(case.X, case.params)
    grads32 = [(dW.astype(np.float32), db.astype(np.float32))
               for dW, db in exact_gradients(acts, pres, case.Y, case.params)]
    assert mismatch_report(gradient_comparisons(case, grads32, np.dtype(np.float32)),
                           where="x", compared="", contract="") is None
    # ... and the same float32 rounding is too coarse for a float64 claim: tolerances follow dtype.
    noisy = [(dW * (1 + 1e-5), db) for dW, db in grads32]
    assert mismatch_report(gradient_comparisons(case, noisy, np.dtype(np.float64)),
                           where="x", compared="", contract="") is not None


def test_large_networks_use_random_directions() -> None:
    case = make_case([40, 30, 10], batch=3, seed=5)
    acts, pres = exact_forward(case.X, case.params)
    grads = exact_gradients(acts, pres, case.Y, case.params)
    comps = gradient_comparisons(case, grads, np.dtype(np.float64))
    assert all(c.name.endswith("·v") for c in comps)
    assert mismatch_report(comps, where="x", compared="", contract="") is None
    bad = [(dW * 1.01, db) for dW, db in grads]
    assert mismatch_report(gradient_comparisons(case, bad, np.dtype(np.float64)),
                           where="x", compared="", contract="") is not None


# ----------------------------------------------------------------------- tolerance formula
def test_precision_tolerance_is_sqrt_eps_of_the_result_dtype() -> None:
    assert precision_tolerance(np.float64) == pytest.approx(1.49e-8, rel=1e-2)
    assert precision_tolerance(np.float32) == pytest.approx(3.45e-4, rel=1e-2)


def test_allowed_error_scales_with_entry_and_tensor_magnitude() -> None:
    allowed = allowed_error(np.array([0.0, 1.0, 100.0]), 100.0, tau=1e-8)
    assert allowed.tolist() == pytest.approx([1e-8, 2e-8, 1.01e-6])


def test_magnitude_bounds_dominate_gradients() -> None:
    case = scaled_logits_case(50.0, seed=6)
    acts, pres = exact_forward(case.X, case.params)
    mags: Magnitudes = magnitudes(case.X, case.Y, case.params)
    for (dW, db), (mW, mb) in zip(exact_gradients(acts, pres, case.Y, case.params), mags.gradients):
        assert np.all(np.abs(dW) <= mW + 1e-15) and np.all(np.abs(db) <= mb + 1e-15)


# ------------------------------------------------------------------------ message format
def test_mismatch_report_format() -> None:
    expected = np.arange(24.0).reshape(4, 6)
    actual = expected.copy()
    actual[1:3] += 1.0  # 12 bad entries
    actual[3, 5] = np.nan
    report = mismatch_report([Comparison("dW[1]", actual, expected, 1e-6),
                              Comparison("db[1]", np.ones(3), np.ones(3), 1e-6)],
                             where="backward(case=X)", compared="C", contract="K",
                             diagnosis="D equal those of X", reproduce="    R", next_step="N")
    assert report is not None
    lines = report.splitlines()
    assert re.fullmatch(r"dW\[1\]\[3, 5\]=nan, but should be 23 \[backward\(case=X\)\]", lines[0])
    assert "mismatched entries: dW[1]: 13/24; agree: db[1]" in report
    assert "(10 of 13 shown)" in report
    assert report.count("dW[1][") == 1 + 1 + 10  # headline, worst row, capped table
    assert lines[-1] == "  next: N" and "  diagnosis: D equal those of X" in lines
    other = mismatch_report([Comparison("x", np.ones(1), np.zeros(1), 0.0)], where="w", compared="",
                            contract="", diagnosis="wrong: x")
    assert other is not None and "  finding: wrong: x" in other


def test_mismatch_report_none_when_within_tolerance_and_ignored_entries() -> None:
    c = Comparison("x", np.array([1.0, 5.0]), np.array([1.0, 1.0]), 0.0, ignored=np.array([False, True]))
    assert mismatch_report([c], where="w", compared="", contract="") is None


def test_alternative_expectation_is_accepted() -> None:
    c = Comparison("x", np.array([2.0]), np.array([1.0]), 0.0, expected_alt=np.array([2.0]))
    assert not c.bad.any()


def test_assert_unchanged_names_the_mutated_entry() -> None:
    X = np.zeros((2, 3))
    after = X.copy()
    after[1, 2] = 5.0
    with pytest.raises(AssertionError, match=r"X\[1, 2\] was 0 before the call and 5 after"):
        assert_unchanged((X,), (after,), ("X",), where="forward")


def test_private_copy_keeps_layouts() -> None:
    strided = np.zeros((3, 8))[:, ::2]
    f_order = np.asfortranarray(np.ones((2, 3)))
    copied = private_copy([strided, (f_order,)])
    assert not copied[0].flags.c_contiguous and not copied[0].flags.f_contiguous
    assert copied[1][0].flags.f_contiguous and isinstance(copied[1], tuple)
    assert copied[0].base is not strided.base


# ------------------------------------------------------------------ contract vs rigged objects
class AlwaysEqual(np.ndarray):
    def __eq__(self, other):  # type: ignore[override]
        return True


class ArrayImpostor:
    def __array__(self, dtype=None, copy=None):
        return np.zeros((2, 2))

    def __eq__(self, other):
        return True

    def __float__(self):
        return 0.0


@pytest.mark.parametrize("value", [np.zeros((2, 2)).view(AlwaysEqual), ArrayImpostor(), [[0.0, 0.0]] * 2,
                                   np.zeros((2, 2), np.float16), np.zeros((2, 2), np.int64),
                                   np.zeros((2, 2), np.complex128), np.ma.zeros((2, 2))])
def test_rigged_or_imprecise_arrays_are_rejected(value: object) -> None:
    with pytest.raises(ContractError):
        validate_array(value, "dW[0]", "t", (2, 2))


def test_float16_rejection_says_precision() -> None:
    with pytest.raises(ContractError, match="not enough precision"):
        validate_array(np.zeros(2, np.float16), "x", "t")


@pytest.mark.parametrize("value", [1.5, np.float64(1.5), np.float32(1.5), np.array(1.5), np.array([1.5])])
def test_loss_forms_accepted(value: object) -> None:
    assert validate_loss(value, "t")[0] == 1.5


@pytest.mark.parametrize("value", [ArrayImpostor(), np.array([1.0, 2.0]), np.float16(1.5), 2, "1.5"])
def test_loss_forms_rejected(value: object) -> None:
    with pytest.raises(ContractError):
        validate_loss(value, "t")


def test_any_sequence_of_two_arrays_is_a_gradient_pair() -> None:
    params = [(np.zeros((2, 3)), np.zeros(3))]
    Pair = collections.namedtuple("Pair", "dW db")
    for pair in ([np.zeros((2, 3)), np.zeros(3)], Pair(np.zeros((2, 3)), np.zeros(3))):
        grads, dtype = validate_backward((pair,), params, "t")
        assert dtype == np.float64 and grads[0][0].shape == (2, 3)


def test_backward_shape_messages_say_what_the_shapes_show() -> None:
    params = [(np.zeros((2, 3)), np.zeros(3)), (np.zeros((3, 4)), np.zeros(4))]
    rev = [(np.zeros((3, 4)), np.zeros(4)), (np.zeros((2, 3)), np.zeros(3))]
    with pytest.raises(ContractError, match="reversed order"):
        validate_backward(rev, params, "t")
    with pytest.raises(ContractError, match="the shape of W.T"):
        validate_backward([(np.zeros((3, 2)), np.zeros(3)), (np.zeros((3, 4)), np.zeros(4))], params, "t")
    with pytest.raises(ContractError, match="keepdims"):
        validate_backward([(np.zeros((2, 3)), np.zeros((1, 3))), (np.zeros((3, 4)), np.zeros(4))], params, "t")


def test_forward_result_validation() -> None:
    X = np.zeros((2, 3))
    params = [(np.zeros((3, 4)), np.zeros(4))]
    ok = validate_forward(([X, np.zeros((2, 4), np.float32)], (np.zeros((2, 4)),)), X, params, "t")
    assert ok.dtype == np.float32  # the least precise result sets the tolerance
    with pytest.raises(ContractError, match=r"activations has 1 arrays, but should have 2 \(X, then one per layer"):
        validate_forward(([X], [np.zeros((2, 4))]), X, params, "t")
    with pytest.raises(ContractError, match="numpy.ndarray"):
        validate_forward(([X, np.zeros((2, 4)).view(AlwaysEqual)], [np.zeros((2, 4))]), X, params, "t")


# --------------------------------------------------------------------------- bug catalogue
@pytest.mark.parametrize("bug", KNOWN_BUGS, ids=lambda b: b.key)
def test_every_known_bug_is_diagnosed_as_itself(bug) -> None:
    case = make_case([4, 4, 4, 4], batch=5, seed=13)
    acts, pres = exact_forward(case.X, case.params)
    grads = bug.gradients(acts, pres, case.Y, case.params)
    text = diagnose(grads, acts, pres, case.Y, case.params, magnitudes(case.X, case.Y, case.params), 1.5e-8)
    assert bug.description in text.splitlines()[0], text


@pytest.mark.parametrize("description,bugs", [(d, b) for _, d, b in FORWARD_BUGS],
                         ids=[key for key, _, _ in FORWARD_BUGS])
def test_every_known_forward_bug_is_diagnosed_as_itself(description: str, bugs: ForwardBugs) -> None:
    case = make_case([4, 5, 5, 3], batch=6, seed=15)
    acts, pres = exact_forward(case.X, case.params, bugs)
    assert description in diagnose_forward(acts, pres, case.X, case.params, 1.5e-8)
    acts, pres = exact_forward(case.X, case.params)
    assert "equal none of the" in diagnose_forward(acts, pres, case.X, case.params, 1.5e-8)


def test_correct_gradients_are_diagnosed_correct() -> None:
    case = make_case([4, 5, 3], batch=5, seed=14)
    acts, pres = exact_forward(case.X, case.params)
    grads = exact_gradients(acts, pres, case.Y, case.params)
    assert "equal the correct ones" in diagnose(grads, acts, pres, case.Y, case.params,
                                                magnitudes(case.X, case.Y, case.params), 1.5e-8)


def test_broadcast_error_of_the_index_bug_is_recognised() -> None:
    text = "ValueError: operands could not be broadcast together with shapes (4,7) (4,2) "
    assert "i-1 bug" in explain_exception(text, "backward", [3, 5, 7, 2], 4)
    assert "i-1 bug" not in explain_exception(text, "backward", [3, 5, 6, 2], 4)


# ------------------------------------------------------------------------ profiles / plugin
def test_grading_profile_draws_the_same_cases_every_time() -> None:
    """Every submission of a class sees the same cases: two runs draw the same sequence."""
    grading = settings.get_profile(strategies.GRADING_PROFILE)
    assert grading.derandomize and grading.database is None and grading.deadline is None
    drawn: list[str] = []

    @settings(parent=grading)
    @given(case=strategies.cases())
    def draw(case) -> None:
        drawn.append(case.recipe)

    draw()
    first = list(drawn)
    drawn.clear()
    draw()
    assert drawn == first and len(set(first)) >= 5, first


def _run_suite(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("BACKPROP_IMPL", None)
    return run_pytest(*args, env=env, timeout=300)


def test_unloadable_candidate_gives_one_clear_failure(tmp_path: Path) -> None:
    broken = tmp_path / "broken_impl.py"
    broken.write_text("import numpy as np\nraise RuntimeError('boom at import')\n")
    no_backward = tmp_path / "half_impl.py"
    no_backward.write_text("def forward(X, params):\n    return [X], []\n")
    for path, needle in ((broken, "boom at import"), (no_backward, "backward")):
        run = _run_suite("conformance", "--impl", str(path), tmp_path=tmp_path)
        assert run.returncode == 1, run.stdout[-2000:]
        assert re.search(r"\b1 failed\b", run.stdout) and "passed" not in run.stdout.splitlines()[-1]
        assert needle in run.stdout and "test_candidate_loads" in run.stdout
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert f"candidate file: {path}" in run.stdout and f"candidate sha256: {digest}" in run.stdout


def test_impl_option_then_env_var_then_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    class Config:
        def __init__(self, impl: str | None) -> None:
            self.impl = impl

        def getoption(self, name: str) -> str | None:
            return self.impl

    monkeypatch.setenv("BACKPROP_IMPL", "from_env")
    assert impl_spec(Config("given")) == "given" and impl_spec(Config(None)) == "from_env"
    monkeypatch.delenv("BACKPROP_IMPL")
    assert impl_spec(Config(None)) == "conformance.reference.mlp"


def test_max_examples_option_overrides_the_profile(tmp_path: Path) -> None:
    run = _run_suite("conformance/test_gradients.py::test_forward_matches_exact_forward", "-q",
                     "--max-examples", "3", "--hypothesis-profile", "grading",
                     "--hypothesis-show-statistics", tmp_path=tmp_path)
    assert run.returncode == 0, run.stdout[-2000:]
    assert "3 passing" in run.stdout and "max_examples=3" in run.stdout


def test_float32_errors_in_float64_results_pass_with_a_finding() -> None:
    """float32 rounding in float64 results is not a bug (SPEC.md, dtype policy): the check
    passes and says so; a bug-sized error still fails, without that finding."""
    from conformance.contract import PrecisionFinding

    expected = np.linspace(1.0, 2.0, 5) / 3
    cast = expected.astype(np.float32).astype(np.float64)
    tau = precision_tolerance(np.float64)
    with pytest.warns(PrecisionFinding):
        assert mismatch_report([Comparison("x", cast, expected, tau)], where="w", compared="c",
                               contract="", held_to=np.dtype(np.float64)) is None
    wrong = mismatch_report([Comparison("x", expected * 1.01, expected, tau)], where="w", compared="",
                            contract="", held_to=np.dtype(np.float64))
    assert wrong is not None and "float32" not in wrong


def test_values_are_shown_with_enough_digits_to_differ() -> None:
    from conformance.assertions import fmt_pair

    assert fmt_pair(0.1234567891, 0.1234567) == ("0.123456789", "0.1234567")
    assert fmt_pair(1.0, 2.0) == ("1", "2")
