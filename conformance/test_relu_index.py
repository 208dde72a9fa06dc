"""relu_index area (check 3): the `pre_activations[i]` vs `pre_activations[i-1]` bug and its relatives.

Networks built so that the bug is silent (equal widths: the wrong layer's mask broadcasts),
visible (signs chosen so the two layers' masks differ), delayed by a width-1 layer (broadcast
first, matmul error next), or crashes (unequal widths: numpy's broadcast error, recognised and
named). Relatives: the wrong layer's W in the propagation, W instead of W.T, gradients
returned in reverse order. The candidate's backward gets exact float64 activations and is
compared with exact backprop (either ReLU'(0) convention).
"""

from __future__ import annotations

import pytest

from conformance.assertions import assert_comparisons
from conformance.calls import run_backward
from conformance.candidate import Candidate
from conformance.cases import Case, make_case, masks_differ_case
from conformance.checks import contract_text, exact_gradient_comparisons
from conformance.diagnosis import KNOWN_BUGS, diagnose
from conformance.gradcheck import magnitudes, precision_tolerance, true_forward

BUGS = {bug.key: bug for bug in KNOWN_BUGS}


def check_exact(candidate: Candidate, case: Case, exposes: str) -> None:
    """The candidate's gradients equal exact backprop; on failure, say which bug they match."""
    __tracebackhide__ = True
    where = f"backward(case={case!r})"
    acts, pres = true_forward(case.X, case.params)
    grads, dtype = run_backward(candidate, case, acts, pres, where)
    comparisons = exact_gradient_comparisons(case, grads, dtype)
    bug = BUGS[exposes]
    assert_comparisons(
        comparisons, where=where,
        compared=f"your backward vs exact backprop on a network built to expose the bug of an "
                 f"implementation that {bug.description}",
        contract=contract_text(dtype, fd=False), held_to=dtype,
        diagnosis=diagnose(grads, acts, pres, case.Y, case.params,
                           magnitudes(case.X, case.Y, case.params), precision_tolerance(dtype)),
        reproduce=case.snippet(candidate.module_name),
        next_step=f"this network targets {bug.line_pattern}; if the diagnosis names another "
                  "bug, fix that one first.")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_relu_index_silent_equal_widths(candidate: Candidate, seed: int) -> None:
    """Equal widths: pre_activations[i] has the shape of pre_activations[i-1], nothing crashes."""
    check_exact(candidate, make_case([5, 6, 6, 6], batch=7, seed=seed), "relu_index")


def test_relu_index_visible_masks_differ(candidate: Candidate) -> None:
    check_exact(candidate, masks_differ_case(), "relu_index")


def test_relu_index_width_one_layer(candidate: Candidate) -> None:
    """A (B, 1) array broadcasts against any (B, n): the wrong layer's mask silently widens delta
    and the crash comes one layer later, as a matmul shape error."""
    check_exact(candidate, make_case([4, 5, 1, 3], batch=6, seed=8), "relu_index")


@pytest.mark.parametrize("sizes", [[3, 5, 7, 2], [6, 4, 3]])
def test_relu_index_crash_unequal_widths(candidate: Candidate, sizes: list[int]) -> None:
    """Unequal widths: the i-1 bug raises a broadcast ValueError, reported as that bug."""
    check_exact(candidate, make_case(sizes, batch=4, seed=9), "relu_index")


def test_wrong_layer_weights_square_network(candidate: Candidate) -> None:
    """All widths equal: params[i-1][0] (or W without .T) has the right shape but wrong values."""
    check_exact(candidate, make_case([4, 4, 4, 4], batch=5, seed=10), "wrong_weights")


def test_untransposed_weights_square_network(candidate: Candidate) -> None:
    check_exact(candidate, make_case([4, 4, 4, 4], batch=5, seed=11), "untransposed_weights")


def test_gradients_in_forward_order_equal_shapes(candidate: Candidate) -> None:
    """All layers shaped alike: gradients in reverse order would pass every shape check."""
    check_exact(candidate, make_case([4, 4, 4], batch=6, seed=12), "reversed_order")
