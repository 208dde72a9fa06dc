"""Fast checks of the defences against unearned credit; the hostile
submissions themselves are graded end to end, next to their honest twins, by
tests/test_adversarial.py (slow)."""

from __future__ import annotations

import numpy as np
import pytest

from conformance import sgd_loop
from conformance.assertions import mismatch_report
from conformance.calls import run_backward, run_forward
from conformance.candidate import InProcessCandidate
from conformance.cases import make_case
from conformance.checks import self_consistency_comparisons
from conformance.contract import least_precise
from conformance.reference import mlp as reference
from tests.helpers import REPO_ROOT

ADVERSARIAL = REPO_ROOT / "tests" / "adversarial"


def test_functions_are_fixed_when_the_module_loads() -> None:
    """A softmax that deletes itself (and cross_entropy) after failing is still called."""
    cand = InProcessCandidate.load(str(ADVERSARIAL / "vanishing_functions.py"))
    assert cand.load_error is None
    huge = np.array([[1000.0, 0.0, -1000.0]])
    first = cand.call("softmax", huge)
    assert "softmax" not in vars(cand.module) and "cross_entropy" not in vars(cand.module)
    assert cand.has("softmax") and cand.has("cross_entropy")
    again = cand.call("softmax", huge)  # judged like the first call, not skipped
    assert type(again) is np.ndarray and not np.isfinite(again).all() and again.shape == first.shape


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_faked_relu_kinks_cannot_hide_a_missing_mask(seed: int) -> None:
    """Check (c) against a forward that flips a mask on every perturbation: the directions it
    'kinks' are judged against exact backprop at its own activations, and fail."""
    cand = InProcessCandidate.load(str(ADVERSARIAL / "fake_relu_flips.py"))
    case = make_case([4, 6, 5, 3], batch=5, seed=seed)
    fwd = run_forward(cand, case, "test")
    grads, gdtype = run_backward(cand, case, fwd.activations, fwd.pre_activations, "test")
    comparisons = self_consistency_comparisons(case, grads, least_precise(fwd.dtype, gdtype),
                                               lambda params: run_forward(cand, case, "test", params))
    assert all(c.ignored is None for c in comparisons)
    assert mismatch_report(comparisons, where="test", compared="", contract="") is not None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_self_consistency_still_passes_correct_code_at_real_kinks(seed: int) -> None:
    """Exact zero pre-activations (zero rows, zero biases) flip masks for real: the reference
    passes check (c) under the new rule for kinked directions."""
    cand = InProcessCandidate.load("conformance.reference.mlp")
    case = make_case([4, 5, 5, 3], batch=4, seed=seed, zero_rows=2)
    fwd = run_forward(cand, case, "test")
    grads, gdtype = run_backward(cand, case, fwd.activations, fwd.pre_activations, "test")
    comparisons = self_consistency_comparisons(case, grads, least_precise(fwd.dtype, gdtype),
                                               lambda params: run_forward(cand, case, "test", params))
    assert mismatch_report(comparisons, where="test", compared="", contract="") is None


def test_mnist_checkpoints_keep_the_replay_cheap_and_their_number_bounded() -> None:
    from conformance.test_mnist import MAX_SEGMENTS, checkpoint_every

    quick = checkpoint_every(200)  # 12,800 rows, batch 64, one epoch
    assert quick == 25 and -(-200 // quick) == 8  # three replayed segments: 75 of 200 steps
    full = checkpoint_every(10 * 782)
    assert -(-7820 // full) <= MAX_SEGMENTS + 1


def test_sgd_checkpoints_are_the_parameters_every_c_steps() -> None:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((10, 4))
    Y = np.eye(3)[rng.integers(0, 3, 10)]
    params = reference.init_params([4, 5, 3], 0)
    plain = sgd_loop.sgd(reference.forward, reference.backward, X, Y, params, lr=0.5, epochs=2,
                        batch_size=3, seed=7)
    final, checkpoints = sgd_loop.sgd(reference.forward, reference.backward, X, Y, params, lr=0.5,
                                     epochs=2, batch_size=3, seed=7, checkpoint_every=3)
    assert len(checkpoints) == 4  # before steps 0, 3, 6 (8 steps) and after the last
    assert all(W is W0 and b is b0 for (W, b), (W0, b0) in zip(checkpoints[0], params))
    assert checkpoints[-1] is final
    for (W, b), (Wp, bp) in zip(final, plain):
        assert np.array_equal(W, Wp) and np.array_equal(b, bp)
    # Checkpoint 1 = three steps of the section's shuffling, replayed by hand.
    order = np.random.default_rng(7).permutation(10)
    p = params
    for start in (0, 3, 6):
        rows = order[start:start + 3]
        acts, pres = reference.forward(X[rows], p)
        grads = reference.backward(acts, pres, Y[rows], p)
        p = [(W - 0.5 * dW, b - 0.5 * db) for (W, b), (dW, db) in zip(p, grads)]
    for (W, b), (Wc, bc) in zip(p, checkpoints[1]):
        assert np.array_equal(W, Wc) and np.array_equal(b, bc)
    with pytest.raises(ValueError, match="checkpoint_every"):
        sgd_loop.sgd(reference.forward, reference.backward, X, Y, params, lr=0.5, epochs=1,
                    batch_size=3, seed=7, checkpoint_every=0)


FORWARD_BUG_WITH_FAKED_KINKS = '''
import numpy as np
_first = {}

def forward(X, params):
    acts, pres = [X], []
    for i, (W, b) in enumerate(params):
        Z = acts[-1] @ W  # bug: no bias; backward below is consistent with it
        pres.append(Z)
        if i == len(params) - 1:
            e = np.exp(Z - Z.max(axis=1, keepdims=True))
            acts.append(e / e.sum(axis=1, keepdims=True))
        else:
            acts.append(np.maximum(Z, 0))
    seen = _first.setdefault(X.tobytes(), [x.copy() for pair in params for x in pair])
    if any(not np.array_equal(x, x0) for x, x0 in zip([x for pair in params for x in pair], seen)):
        pres[0] = pres[0].copy()  # a faked kink on every perturbation
        pres[0].flat[0] = -pres[0].flat[0] or 1.0
    return acts, pres

def backward(acts, pres, Y, params):
    delta = (acts[-1] - Y) / Y.shape[0]
    grads = []
    for i in reversed(range(len(params))):
        grads.append((acts[i].T @ delta, np.zeros_like(params[i][1])))
        if i:
            delta = (delta @ params[i][0].T) * (pres[i - 1] > 0)
    return grads[::-1]
'''


def test_faked_kinks_cannot_hide_a_forward_bug(tmp_path) -> None:
    """The fallback for kinked directions also compares the forward with the exact one."""
    path = tmp_path / "forward_bug_faked_kinks.py"
    path.write_text(FORWARD_BUG_WITH_FAKED_KINKS)
    cand = InProcessCandidate.load(str(path))
    case = make_case([4, 6, 5, 3], batch=5, seed=4)
    fwd = run_forward(cand, case, "test")
    grads, gdtype = run_backward(cand, case, fwd.activations, fwd.pre_activations, "test")
    comparisons = self_consistency_comparisons(case, grads, least_precise(fwd.dtype, gdtype),
                                               lambda params: run_forward(cand, case, "test", params))
    report = mismatch_report(comparisons, where="test", compared="", contract="")
    assert report is not None and "pre_activations" in report
