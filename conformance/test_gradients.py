"""Gradients area (check 1): finite-difference agreement, with three cross-checks.

(a) forward: the candidate's forward vs the suite's exact float64 forward;
(b) backward: the candidate's backward fed the REFERENCE's activations vs central differences
    of the exact loss (which never touches the candidate);
(c) self-consistency: the candidate's backward on its own forward vs central differences of
    the loss computed through the candidate's own forward.
A forward bug fails (a) and (c); a backward bug fails (b) and (c). See SPEC.md, "gradients".
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given

from conformance import strategies
from conformance.assertions import assert_comparisons
from conformance.calls import run_backward, run_forward
from conformance.candidate import Candidate
from conformance.cases import Case, make_case
from conformance.checks import (contract_text, forward_comparisons, gradient_comparisons,
                                self_consistency_comparisons)
from conformance.contract import least_precise
from conformance.diagnosis import diagnose, diagnose_forward
from conformance.exact import magnitudes
from conformance.gradcheck import precision_tolerance
from conformance.assertions import mismatch_report
from reference import mlp as reference

CONFORMANCE_AREA = "gradients"  # the check area graded by this module (conformance/plugin.py)

FD_NEXT = ("fix the first tensor listed (the deepest layer usually comes first in the recursion); "
           "run the reproduce snippet and compare that tensor with a finite difference of the loss.")


def _reference_activations(case: Case) -> tuple[list[np.ndarray], list[np.ndarray]]:
    activations, pre_activations = reference.forward(case.X, case.params)
    return list(activations), list(pre_activations)


def check_backward_against_fd(candidate: Candidate, case: Case, every_entry: bool = False) -> None:
    __tracebackhide__ = True
    where = f"backward(case={case!r})"
    activations, pre_activations = _reference_activations(case)
    grads, dtype = run_backward(candidate, case, activations, pre_activations, where)
    comparisons = gradient_comparisons(case, grads, dtype, every_entry)
    if mismatch_report(comparisons, where=where, compared="", contract="") is None:
        return
    assert_comparisons(
        comparisons, where=where,
        compared="your backward, fed the reference's activations, vs central differences of the "
                 "exact mean cross-entropy (check b: backward alone)",
        contract=contract_text(dtype), held_to=dtype,
        diagnosis=lambda: diagnose(grads, activations, pre_activations, case.Y, case.params,
                                   magnitudes(case.X, case.Y, case.params), precision_tolerance(dtype)),
        reproduce=case.snippet(candidate.module_name), next_step=FD_NEXT)


@given(case=strategies.cases())
def test_forward_matches_exact_forward(candidate: Candidate, case: Case) -> None:
    """(a) activations and pre-activations equal the exact float64 forward pass."""
    where = f"forward(case={case!r})"
    fwd = run_forward(candidate, case, where)
    comparisons = forward_comparisons(case, fwd)
    if mismatch_report(comparisons, where=where, compared="", contract="") is None:
        return
    assert_comparisons(
        comparisons, where=where,
        compared="your forward vs the exact float64 forward pass (check a: forward alone)",
        contract=contract_text(fwd.dtype, fd=False), held_to=fwd.dtype,
        diagnosis=lambda: diagnose_forward(fwd.activations, fwd.pre_activations, case.X, case.params,
                                           precision_tolerance(fwd.dtype)),
        reproduce=case.snippet(candidate.module_name),
        next_step="Z = A_prev @ W + b for every layer, ReLU on hidden layers, a row-wise softmax "
                  "on the last one; activations start with X itself.")


@given(case=strategies.cases())
@example(case=make_case([3, 2], batch=1, seed=1))  # one layer, one sample
@example(case=make_case([5, 1, 1, 10], batch=3, seed=2, layout="strided"))  # width 1, 10 classes
@example(case=make_case([4, 6, 5, 4, 3, 2], batch=4, seed=3, layout="F"))  # five layers
def test_backward_matches_finite_differences(candidate: Candidate, case: Case) -> None:
    """(b) every gradient entry of a small network vs central differences of the exact loss."""
    check_backward_against_fd(candidate, case)


@given(case=strategies.large_cases())
def test_backward_matches_finite_differences_large(candidate: Candidate, case: Case) -> None:
    """(b) up to 5 layers x 64 units: each tensor along random directions."""
    check_backward_against_fd(candidate, case)


FD_FULL_BATCH = 32  # rows of the --fd-full case: a realistic mini-batch, seconds for 100k parameters


def test_every_entry_of_your_network(candidate: Candidate, request: pytest.FixtureRequest) -> None:
    """--fd-full SIZES: (b) on every entry of every tensor of a network of the developer's own
    size (e.g. the section's 784,128,10: 101,770 entries), not only along random directions."""
    sizes = request.config.getoption("fd_full")
    if not sizes:
        pytest.skip("every-entry check of a full-size network not requested (--fd-full 784,128,10)")
    check_backward_against_fd(candidate, make_case(sizes, batch=FD_FULL_BATCH, seed=0), every_entry=True)


def test_exact_zero_pre_activations_accept_both_relu_conventions(candidate: Candidate) -> None:
    """Zero input rows and zero biases give exactly-zero pre-activations in every layer:
    ReLU'(0) = 0 and ReLU'(0) = 1 are both correct there and both must pass."""
    for case in (make_case([4, 5, 5, 3], batch=4, seed=11, zero_rows=2),
                 make_case([3, 4, 3], batch=3, seed=12, zero_rows=3)):
        check_backward_against_fd(candidate, case)


@given(case=strategies.cases(max_layers=3, max_width=6, max_batch=6))
def test_forward_backward_self_consistent(candidate: Candidate, case: Case) -> None:
    """(c) your backward on your own forward is the derivative of your own forward's loss."""
    where = f"backward(*forward(case={case!r}))"
    fwd = run_forward(candidate, case, where)
    grads, gdtype = run_backward(candidate, case, fwd.activations, fwd.pre_activations, where)
    dtype = least_precise(fwd.dtype, gdtype)
    comparisons = self_consistency_comparisons(
        case, grads, dtype, lambda params: run_forward(candidate, case, where, params))

    def blame() -> str:  # which half is to blame: does backward pass on the reference's activations?
        activations, pre_activations = _reference_activations(case)
        ref_grads, rdtype = run_backward(candidate, case, activations, pre_activations, where)
        if mismatch_report(gradient_comparisons(case, ref_grads, rdtype), where=where, compared="",
                           contract="") is not None:
            return "your backward is also wrong on the reference's activations (see check b)"
        return ("your backward is right when fed the reference's activations, so your forward's "
                "outputs are what is off (see the forward check); "
                + diagnose_forward(fwd.activations, fwd.pre_activations, case.X, case.params,
                                   precision_tolerance(fwd.dtype)))

    assert_comparisons(
        comparisons, where=where,
        compared="your backward on your own forward, along a random direction per tensor, vs "
                 "central differences of the mean cross-entropy of your forward's logits (check c)",
        contract=contract_text(dtype), held_to=dtype, diagnosis=blame, reproduce=case.snippet(candidate.module_name),
        next_step=FD_NEXT)
