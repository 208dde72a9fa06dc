"""Gradients area (check 1): finite-difference agreement, with three cross-checks.

(a) forward: the candidate's forward vs the suite's exact float64 forward;
(b) backward: the candidate's backward fed the REFERENCE's activations vs central differences
    of the exact loss (which never touches the candidate);
(c) self-consistency: the candidate's backward on its own forward vs central differences of
    the loss computed through the candidate's own forward.
A forward bug fails (a) and (c); a backward bug fails (b) and (c). See SPEC.md, "gradients".
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pytest
from hypothesis import example, given

from conformance import strategies
from conformance.assertions import assert_comparisons
from conformance.calls import interface_limit, run_backward, run_forward
from conformance.candidate import Candidate
from conformance.cases import Case, make_case
from conformance.checks import (contract_text, exact_gradient_comparisons, forward_comparisons,
                                gradient_comparisons, self_consistency_comparisons)
from conformance.contract import least_precise
from conformance.diagnosis import diagnose, diagnose_forward
from conformance.exact import magnitudes
from conformance.gradcheck import precision_tolerance
from conformance.assertions import mismatch_report
from conformance.reference import mlp as reference

CONFORMANCE_AREA = "gradients"  # the check area graded by this module (conformance/plugin.py)

FD_NEXT = ("fix the first tensor listed (the deepest layer usually comes first in the recursion); "
           "run the reproduce snippet and compare that tensor with a finite difference of the loss.")


def _reference_activations(case: Case) -> tuple[list[np.ndarray], list[np.ndarray]]:
    activations, pre_activations = reference.forward(case.X, case.params)
    return list(activations), list(pre_activations)


def check_backward_against_fd(candidate: Candidate, case: Case, every_entry: bool = False) -> None:
    __tracebackhide__ = True
    interface_limit(candidate, "backward_alone")  # fed the reference's activations
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
            # Replayed on this test's own inputs (the reference's forward values: a right forward
            # gives the same), so the finding belongs to this failure too.
            return ("your backward is also wrong on the reference's activations (see check b): "
                    + diagnose(ref_grads, activations, pre_activations, case.Y, case.params,
                               magnitudes(case.X, case.Y, case.params), precision_tolerance(rdtype)))
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


# ------------------------------------------------------------------ the fixed grid
# Every graded run judges backward on these networks in full (SPEC.md, "No failure hidden by
# another"): depths 1 to 5, narrow and wide layers (up to 25k parameters), batches of 1 to 200.
# A property test reports one shrunk example, which may show only a cheap mistake; here every
# failing case is diagnosed on its own inputs, so what the code does on one network never
# stands in for what it does on another. Deterministic: the same cases in every run.
GRID: tuple[Case, ...] = (
    make_case([4, 3], batch=1, seed=41),
    make_case([5, 4, 3], batch=7, seed=42),
    make_case([6, 5, 4, 3], batch=3, seed=43, layout="F"),
    make_case([4, 6, 5, 4, 3], batch=16, seed=44),
    make_case([3, 5, 4, 6, 5, 2], batch=5, seed=45),
    make_case([50, 100, 10], batch=1, seed=46),
    make_case([64, 64, 10], batch=32, seed=47),
    make_case([32, 128, 64, 10], batch=64, seed=48),
    make_case([20, 64, 64, 64, 64, 10], batch=16, seed=49),
    make_case([784, 32, 10], batch=8, seed=50),
    make_case([12, 16, 10], batch=200, seed=51),  # past any mini-batch size: "batch size 1 and up"
    make_case([6, 8, 8, 3], batch=129, seed=52),
)
GRID_SHOWN = 6  # failing cases listed one line each; the count covers the rest


def _grid_case(candidate: Candidate, case: Case) -> tuple[str, str] | None:
    """(headline, diagnosis) of backward on one grid case, None when it is right. A crash or a
    wrong structure is that case's failure (recorded on it), not the end of the check."""
    where = f"backward(case={case!r})"
    activations, pre_activations = _reference_activations(case)
    try:
        grads, dtype = run_backward(candidate, case, activations, pre_activations, where)
    except AssertionError as exc:
        return str(exc).splitlines()[0], ""
    comparisons = exact_gradient_comparisons(case, grads, dtype)
    report = mismatch_report(comparisons, where=where, compared="", contract="", held_to=dtype)
    if report is None:
        return None
    diagnosis = diagnose(grads, activations, pre_activations, case.Y, case.params,
                         magnitudes(case.X, case.Y, case.params), precision_tolerance(dtype))
    return report.splitlines()[0], diagnosis


def restriction_pattern(cases: Sequence[Case], crashed: Sequence[bool], passed: Sequence[bool]) -> str:
    """One line when the cases backward cannot run (it raised or returned the wrong structure)
    are exactly those of some depths or batch sizes, and it runs every other one correctly: a
    restriction of the code, stated as the fact it is (empty otherwise)."""
    if not all(c or p for c, p in zip(crashed, passed)):
        return ""  # some case ran and gave wrong values: no restriction explains the failures

    def split(name: str, value: Callable[[Case], int], unit: str) -> str:
        bad = {value(c) for c, f in zip(cases, crashed) if f}
        good = {value(c) for c, f in zip(cases, crashed) if not f}
        if not bad or not good or bad & good:
            return ""
        return (f"backward fails to run on every case with {name} {', '.join(map(str, sorted(bad)))} and "
                f"is right on every case with {name} {', '.join(map(str, sorted(good)))}: your code only "
                f"handles {unit}")
    return (split("layers", lambda c: len(c.params), "some numbers of layers (loop over all of params)")
            or split("batch", lambda c: c.batch, "some batch sizes (B = Y.shape[0], sums over axis 0)"))


def test_backward_on_every_grid_case(candidate: Candidate) -> None:
    """backward vs exact backprop on every case of a fixed grid; every failing case is
    diagnosed and listed, the first one with a named cause leads."""
    interface_limit(candidate, "backward_alone")
    results = [(case, _grid_case(candidate, case)) for case in GRID]
    failing = [(case, r) for case, r in results if r is not None]
    if not failing:
        return
    named_first = sorted(failing, key=lambda cr: "equal those of" not in cr[1][1])
    lead_case, (lead_headline, lead_diagnosis) = named_first[0]
    pattern = restriction_pattern(GRID, [r is not None and not r[1] for _, r in results],
                                  [r is None for _, r in results])
    lines = [pattern or lead_headline,
             "  compared: your backward, fed the reference's activations, vs exact backprop on a fixed "
             f"grid of {len(GRID)} networks (depths 1-5, up to 25k parameters, batches 1-200)",
             f"  failing cases: {len(failing)} of {len(GRID)}, each diagnosed on its own inputs:"]
    for case, (headline, diagnosis) in failing[:GRID_SHOWN]:
        cause = (diagnosis.splitlines()[0] if diagnosis else headline).replace(f" [backward(case={case!r})]", "")
        lines.append(f"    {case!r}: {cause[:300]}")
    if len(failing) > GRID_SHOWN:
        lines.append(f"    ... and {len(failing) - GRID_SHOWN} more")
    if lead_diagnosis:
        lines.append(f"  diagnosis: {lead_diagnosis}")
    lines.append(f"  reproduce:\n{lead_case.snippet(candidate.module_name)}")
    lines.append("  next: fix the cause shown first, then rerun: every case must pass, small and large.")
    raise AssertionError("\n".join(lines))
