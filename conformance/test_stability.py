"""Stability area (check 2): softmax and cross-entropy at the edges.

Logits that overflow a naive exp (±1e3, ±1e4 in float64, ±100 in float32), rows of very
different scale in one batch, equal logits, a true class whose probability is exactly 0,
single-sample batches; directly on softmax/cross_entropy when present (skipped otherwise),
and always through forward/backward. Each failure names the guard that is missing.
"""

from __future__ import annotations

import numpy as np
import pytest

from conformance.assertions import (
    Comparison,
    assert_comparisons,
    assert_finite,
    fmt,
    mismatch_report,
)
from conformance.calls import invoke, named_contract, provides, require, run_backward, run_forward
from conformance.candidate import Candidate
from conformance.cases import (
    Case,
    rows_of_different_scale_case,
    scaled_logits_case,
    true_class_underflow_case,
)
from conformance.checks import (
    nonfinite_backward,
    contract_text,
    exact_gradient_comparisons,
    forward_comparisons,
)
from conformance.contract import least_precise, validate_array, validate_loss
from conformance.diagnosis import (diagnose, diagnose_forward, log_guard_cause, loss_cause, nonfinite_output_cause,
                                   output_rows_finding, softmax_cause)
from conformance.exact import exact_forward, exact_softmax, magnitudes, softmax_conditioning
from conformance.gradcheck import allowed_error, precision_tolerance

CONFORMANCE_AREA = "stability"  # the check area graded by this module (conformance/plugin.py)



def check_softmax(candidate: Candidate, z: np.ndarray, where: str) -> None:
    __tracebackhide__ = True
    got = validate_array(invoke(candidate, "softmax", z, where=where), "softmax(z)", where, z.shape)
    assert_finite("softmax(z)", got, where=where,
                  guard=lambda: nonfinite_output_cause(got, np.asarray(z, np.float64),
                                                       least_precise(got.dtype, z.dtype)))
    tau = precision_tolerance(got.dtype)
    p = exact_softmax(z)
    # Rounding z to the result's precision moves a probability by ~2 p |z| eps.
    scale = p * softmax_conditioning(np.abs(z))
    assert_comparisons([Comparison("softmax(z)", got, p, allowed_error(scale, 1.0, tau))], where=where,
                       compared="softmax(z) vs the exact row-wise softmax",
                       contract=contract_text(got.dtype, fd=False), held_to=got.dtype,
                       diagnosis=lambda: softmax_cause(got, z, least_precise(got.dtype, z.dtype)),
                       next_step=lambda: output_rows_finding(got) if not np.allclose(got.sum(axis=1), 1.0, atol=1e-3)
                       else "softmax(z) must be exp(z - max) / sum of exp(z - max), per sample (over the classes).")


@pytest.mark.parametrize("scale", [1e3, 1e4, -1e3, -1e4])
def test_softmax_large_logits_float64(candidate: Candidate, scale: float) -> None:
    require(candidate, "softmax")
    z = np.array([[1.0, 0.5, -0.25], [0.0, 1.0, 0.9], [-1.0, 0.3, 1.0]]) * scale
    check_softmax(candidate, z, f"softmax(z), float64 logits up to |z| = {scale:g}")


def test_softmax_large_logits_float32(candidate: Candidate) -> None:
    require(candidate, "softmax")
    z = np.array([[100.0, 50.0, -100.0], [-100.0, -99.0, -98.0]], dtype=np.float32)
    check_softmax(candidate, z, "softmax(z), float32 logits of magnitude 100")


def test_softmax_rows_of_very_different_scale(candidate: Candidate) -> None:
    require(candidate, "softmax")
    z = np.array([[1e-3, 2e-3, 0.0], [1.0, 2.0, 3.0], [1e4, 0.0, -1e4], [-1e4, -1e4 + 1, -1e4 + 2]])
    check_softmax(candidate, z, "softmax(z), rows from 1e-3 to 1e4 in one batch")


@pytest.mark.parametrize("value", [0.0, 1e4, -1e4])
def test_softmax_equal_logits(candidate: Candidate, value: float) -> None:
    require(candidate, "softmax")
    check_softmax(candidate, np.full((2, 5), value), f"softmax(z), all logits equal to {value:g}")


def test_softmax_single_sample(candidate: Candidate) -> None:
    require(candidate, "softmax")
    check_softmax(candidate, np.array([[3.0, -1e3, 1e3]]), "softmax(z), one sample of shape (1, 3)")


def check_cross_entropy(candidate: Candidate, P: np.ndarray, Y: np.ndarray, where: str) -> float:
    __tracebackhide__ = True
    value, _ = named_contract("loss_structure", validate_loss, invoke(candidate, "cross_entropy", P, Y, where=where),
                              where)
    assert_finite("cross_entropy", np.array(value), where=where, guard=lambda: log_guard_cause(P, Y))
    return value


@pytest.mark.parametrize("batch", [1, 3])
def test_cross_entropy_true_class_probability_zero(candidate: Candidate, batch: int) -> None:
    """Finite, and larger than a uniform guess's loss (the model is confidently wrong)."""
    require(candidate, "cross_entropy")
    P = np.tile([[1.0, 0.0, 0.0]], (batch, 1))
    Y = np.tile([[0.0, 1.0, 0.0]], (batch, 1))
    where = f"cross_entropy(Y_hat, Y), true class has probability exactly 0, batch {batch}"
    value = check_cross_entropy(candidate, P, Y, where)
    if not value > np.log(3):
        raise AssertionError(f"cross_entropy={fmt(value)}, but should be large (> log(3) = "
                             f"{fmt(np.log(3))}) [{where}]\n  contract: the loss of a confidently "
                             "wrong prediction is large; -log(guard) with a tiny guard such as 1e-12"
                             f"\n  diagnosis: {loss_cause(value, P, Y)}")


def test_cross_entropy_tiny_probabilities(candidate: Candidate) -> None:
    require(candidate, "cross_entropy")
    P = np.array([[1.0 - 1e-300, 1e-300], [0.5, 0.5]])
    Y = np.array([[0.0, 1.0], [1.0, 0.0]])
    check_cross_entropy(candidate, P, Y, "cross_entropy(Y_hat, Y), true-class probability 1e-300")


# ------------------------------------------------------------ through forward and backward
def check_network(candidate: Candidate, case: Case) -> None:
    """forward gives finite, row-stochastic probabilities; backward finite, correct gradients."""
    __tracebackhide__ = True
    where = f"forward(case={case!r})"
    fwd = run_forward(candidate, case, where)
    P = fwd.activations[-1]
    _, exact_pre_activations = exact_forward(case.X, case.params)
    assert_finite("activations[-1]", P, where=where,
                  guard=lambda: nonfinite_output_cause(P, exact_pre_activations[-1], fwd.dtype))
    tau = precision_tolerance(fwd.dtype)
    assert_comparisons([Comparison("activations[-1].sum(axis=1)", P.sum(axis=1), np.ones(case.batch), 8 * tau)],
                       where=where, compared="the output probabilities' row sums vs 1",
                       contract=contract_text(fwd.dtype, fd=False), held_to=fwd.dtype,
                       next_step=lambda: output_rows_finding(P))
    where = f"backward(*forward(case={case!r}))"
    grads, dtype = run_backward(candidate, case, fwd.activations, fwd.pre_activations, where)
    # the logits replayed on: the candidate's own, or (a forward that keeps none) the exact ones
    logits_at = fwd.pre_activations if fwd.pre_activations is not None else exact_pre_activations
    for l, (dW, db) in enumerate(grads):
        for name, g in ((f"dW[{l}]", dW), (f"db[{l}]", db)):
            assert_finite(name, g, where=where,
                          guard=lambda: "none of the output guards: your forward's output is finite here; "
                                + nonfinite_backward(grads, fwd.activations, logits_at, case.Y,
                                                     case.params, least_precise(fwd.dtype, dtype)))
    dtype = least_precise(fwd.dtype, dtype)
    comparisons = exact_gradient_comparisons(case, grads, dtype)
    if mismatch_report(comparisons, where=where, compared="", contract="", held_to=dtype) is None:
        return
    forward_off = mismatch_report(forward_comparisons(case, fwd), where=where, compared="",
                                  contract="", held_to=fwd.dtype) is not None
    if forward_off:
        diagnosis = ("your forward's outputs already differ from the exact ones at these logits "
                     "(finite, so overflow is not the cause): "
                     + diagnose_forward(fwd.activations, fwd.pre_activations, case.X, case.params, tau))
    else:
        activations, pre_activations = exact_forward(case.X, case.params)
        diagnosis = ("your forward is right here and the gradients are finite; "
                     + diagnose(grads, activations, pre_activations, case.Y, case.params,
                                magnitudes(case.X, case.Y, case.params), precision_tolerance(dtype)))
    assert_comparisons(comparisons, where=where,
                       compared="your gradients vs exact backprop at huge logits (the softmax saturates; "
                                "delta = (Y_hat - Y) / B stays well defined)",
                       contract=contract_text(dtype, fd=False), held_to=dtype, diagnosis=diagnosis,
                       reproduce=case.snippet(candidate.module_name),
                       next_step="fix what the diagnosis shows; the gradients area checks the same "
                                 "functions on ordinary logits.")


@pytest.mark.parametrize("scale", [1e3, 1e4])
def test_network_with_huge_logits(candidate: Candidate, scale: float) -> None:
    check_network(candidate, scaled_logits_case(scale, seed=1))


def test_network_single_sample_huge_logits(candidate: Candidate) -> None:
    check_network(candidate, scaled_logits_case(1e3, seed=2, batch=1))


def test_network_rows_of_very_different_scale(candidate: Candidate) -> None:
    check_network(candidate, rows_of_different_scale_case(seed=3))


def test_network_true_class_probability_zero(candidate: Candidate) -> None:
    """The true class's probability underflows to exactly 0: still finite everywhere, and the
    candidate's cross_entropy (if any) of its own forward output is finite."""
    case = true_class_underflow_case(seed=4)
    check_network(candidate, case)
    if provides(candidate, "cross_entropy"):
        fwd = run_forward(candidate, case, f"forward(case={case!r})")
        check_cross_entropy(candidate, fwd.activations[-1], case.Y,
                            f"cross_entropy(forward(case={case!r})[0][-1], Y)")
