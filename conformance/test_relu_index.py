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

from conformance.assertions import assert_comparisons, mismatch_report
from conformance.calls import interface_limit, run_backward
from conformance.candidate import Candidate
from conformance.cases import Case, make_case, masks_differ_case
from conformance.checks import contract_text, exact_gradient_comparisons
from conformance.diagnosis import diagnose
from conformance.exact import exact_forward, magnitudes
from conformance.gradcheck import precision_tolerance

CONFORMANCE_AREA = "relu_index"  # the check area graded by this module (conformance/plugin.py)


def check_exact(candidate: Candidate, case: Case, built: str) -> None:
    """The candidate's gradients equal exact backprop; on failure, say what the evidence shows:
    the known bug they equal, if any, else which tensors are wrong and where to look.
    ``built``: what the network is built to expose, in neutral words (no bug is named unless
    the candidate's gradients match it)."""
    __tracebackhide__ = True
    interface_limit(candidate, "backward_alone")  # fed the exact activations
    where = f"backward(case={case!r})"
    activations, pre_activations = exact_forward(case.X, case.params)
    grads, dtype = run_backward(candidate, case, activations, pre_activations, where)
    comparisons = exact_gradient_comparisons(case, grads, dtype)
    if mismatch_report(comparisons, where=where, compared="", contract="", held_to=dtype) is None:
        return
    diagnosis = diagnose(grads, activations, pre_activations, case.Y, case.params,
                         magnitudes(case.X, case.Y, case.params), precision_tolerance(dtype))
    if "equal those of" in diagnosis:
        next_step = "change the line the diagnosis shows, then run the suite again."
    else:
        next_step = ("the diagnosis lists the wrong and the right tensors; the first wrong one in "
                     "backprop's order (last layer first) is where the recursion goes off.")
    assert_comparisons(
        comparisons, where=where,
        compared=f"your backward vs exact backprop on {built}",
        contract=contract_text(dtype, fd=False), held_to=dtype, diagnosis=diagnosis,
        reproduce=case.snippet(candidate.module_name), next_step=next_step)


EQUAL_WIDTHS = "a network of equal hidden widths (another layer's mask or weights fit every shape)"
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_relu_index_silent_equal_widths(candidate: Candidate, seed: int) -> None:
    """Equal widths: pre_activations[i] has the shape of pre_activations[i-1], nothing crashes."""
    check_exact(candidate, make_case([5, 6, 6, 6], batch=7, seed=seed), EQUAL_WIDTHS)


def test_relu_index_visible_masks_differ(candidate: Candidate) -> None:
    check_exact(candidate, masks_differ_case(), "a network whose consecutive layers have different ReLU masks")


def test_relu_index_width_one_layer(candidate: Candidate) -> None:
    """A (B, 1) array broadcasts against any (B, n): the wrong layer's mask silently widens delta
    and the crash comes one layer later, as a matmul shape error."""
    check_exact(candidate, make_case([4, 5, 1, 3], batch=6, seed=8), "a network with a width-1 layer")


@pytest.mark.parametrize("sizes", [[3, 5, 7, 2], [6, 4, 3]])
def test_relu_index_crash_unequal_widths(candidate: Candidate, sizes: list[int]) -> None:
    """Unequal widths: the i-1 bug raises a broadcast ValueError, reported as that bug."""
    check_exact(candidate, make_case(sizes, batch=4, seed=9), "a network of unequal widths")


def test_wrong_layer_weights_square_network(candidate: Candidate) -> None:
    """All widths equal: params[i-1][0] (or W without .T) has the right shape but wrong values."""
    check_exact(candidate, make_case([4, 4, 4, 4], batch=5, seed=10), "a square network (every W is 4 x 4)")


def test_untransposed_weights_square_network(candidate: Candidate) -> None:
    check_exact(candidate, make_case([4, 4, 4, 4], batch=5, seed=11), "a square network (every W is 4 x 4)")


def test_untransposed_weights_one_hidden_layer(candidate: Candidate) -> None:
    """The most common student network, one hidden layer: with as many hidden units as classes
    the output layer's W is square, so `delta @ W` fits where `delta @ W.T` belongs."""
    check_exact(candidate, make_case([6, 4, 4], batch=5, seed=13),
                "a one-hidden-layer network whose output layer's W is square (4 x 4)")


def test_gradients_in_forward_order_equal_shapes(candidate: Candidate) -> None:
    """All layers shaped alike: gradients in reverse order would pass every shape check."""
    check_exact(candidate, make_case([4, 4, 4], batch=6, seed=12), "a network whose layers all have the same shapes")
