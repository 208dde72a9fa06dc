"""Replay of train from the candidate's own forward and backward.

A check of train fails; is that failure forward's or backward's? Only if replaying full-batch
steps ``W - lr * dW`` with the candidate's own forward and backward outputs, exactly as numpy
computes them (broadcasting, crashes and all), reproduces what train did: the same exception
text, or parameters of the same shapes and values. Then the findings about forward and
backward on the same inputs belong to train's failure too (SPEC.md, "Replay").
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from conformance import evidence
from conformance.candidate import failure_text
from conformance.gradcheck import precision_tolerance


def _outcome(run: Any) -> tuple[Any, str]:
    """(result, "") or (None, "ExceptionType: text") of ``run()``."""
    try:
        with np.errstate(all="ignore"):
            return run(), ""
    except Exception as exc:  # noqa: BLE001 - the candidate's code, or numpy on its results
        # The same reading in-process and isolated ("raised ValueError: ..."), first line only.
        return None, failure_text(exc).split("\n", 1)[0]


def _steps(candidate: Any, X: np.ndarray, Y: np.ndarray, params: Sequence[tuple], lr: float,
           steps: int, step: float = 1.0) -> tuple[Any, str]:
    """``steps`` full-batch updates W - step * lr * dW with the candidate's own functions, as a
    train of the contract takes them: the params backward leaves behind (it may change them in
    place) are the ones updated, and each epoch ends with a forward pass on the test set (here
    X itself), which is where a train that reports its test accuracy meets broken params."""
    def run() -> list:
        current = [(np.asarray(W), np.asarray(b)) for W, b in params]
        for _ in range(steps):
            (activations, pre_activations), after_forward = candidate.call_and_inspect("forward", X, current)
            grads, after = candidate.call_and_inspect("backward", activations, pre_activations, Y, after_forward[1])
            current = [(W - step * lr * np.asarray(dW), b - step * lr * np.asarray(db))
                       for (W, b), (dW, db) in zip(after[3], grads)]
            candidate.call("forward", X, current)
        return current
    return _outcome(run)


def _trained(candidate: Any, X: np.ndarray, Y: np.ndarray, params: Sequence[tuple], lr: float,
             steps: int) -> tuple[Any, str]:
    """train(X, Y, X, Y, params, lr, steps, len(X)): its params (the list it was given, when it
    updates that in place and returns None), or the error it raised."""
    def run() -> Any:
        result, after = candidate.call_and_inspect("train", X, Y, X, Y, list(params), lr, steps, len(X))
        return after[4] if result is None else result
    return _outcome(run)


def train_follows_own_functions(candidate: Any, X: np.ndarray, Y: np.ndarray, params: Sequence[tuple],
                                lr: float, steps: int) -> bool:
    """Does train(X, Y, X, Y, params, lr, steps, len(X)) (full batch: one step per epoch) do
    exactly what ``steps`` steps with the candidate's own forward and backward do? Calls run
    outside the test's evidence: only the caller decides what to keep."""
    return _follows(candidate, X, Y, params, lr, steps) or (
        # One sample: no order to shuffle. Only for a backward whose gradients depend on the
        # order of the samples (only the last one kept, say), whose steps a shuffling train
        # cannot be replayed in: an order-free backward gives a shuffling train's steps exactly.
        len(X) > 1 and _order_dependent(candidate, X, Y, params)
        and _follows(candidate, X[:1], Y[:1], params, lr, steps))


def _backward_mutates(candidate: Any, X: np.ndarray, Y: np.ndarray, params: Sequence[tuple]) -> bool:
    """The candidate's backward changes an array it is given, on these inputs."""
    def run() -> bool:
        activations, pre_activations = candidate.call("forward", X, list(params))
        given = (activations, pre_activations, Y, list(params))
        _, after = candidate.call_and_inspect("backward", *given)
        flat = lambda x: [np.asarray(a) for a in _leaves(x)]  # noqa: E731
        before_arrays, after_arrays = flat(given), flat(after)
        return len(before_arrays) != len(after_arrays) or any(
            b.shape != a.shape or not np.array_equal(b, a, equal_nan=True) for b, a in zip(before_arrays, after_arrays))
    with evidence.tentative():
        changed, error = _outcome(run)
    return bool(changed) and not error


def _leaves(value: Any) -> list:
    if isinstance(value, (list, tuple)):
        return [leaf for item in value for leaf in _leaves(item)]
    return [value]


def _order_dependent(candidate: Any, X: np.ndarray, Y: np.ndarray, params: Sequence[tuple]) -> bool:
    """The candidate's backward gives other gradients when the batch's samples come in reverse
    order (a correct backward sums over them: the order changes nothing beyond rounding)."""
    def gradients(Xs: np.ndarray, Ys: np.ndarray) -> list:
        activations, pre_activations = candidate.call("forward", Xs, list(params))
        return [tuple(np.asarray(t, np.float64) for t in pair)
                for pair in candidate.call("backward", activations, pre_activations, Ys, list(params))]
    with evidence.tentative():
        forward_order, error = _outcome(lambda: gradients(X, Y))
        reversed_order, error2 = _outcome(lambda: gradients(X[::-1], Y[::-1]))
    if error or error2:
        return False
    try:
        return not all(np.allclose(a, b, rtol=1e-6, atol=1e-9) for pa, pb in zip(forward_order, reversed_order)
                       for a, b in zip(pa, pb))
    except (TypeError, ValueError):
        return False


def _follows(candidate: Any, X: np.ndarray, Y: np.ndarray, params: Sequence[tuple], lr: float,
             steps: int) -> bool:
    with evidence.tentative():
        replayed, replay_error = _steps(candidate, X, Y, params, lr, steps)
        trained, train_error = _trained(candidate, X, Y, params, lr, steps)
    if replay_error or train_error:
        return bool(replay_error) and replay_error == train_error
    return _same(trained, replayed)


# Update mistakes replayed with the candidate's own gradients: (key, multiple of lr * dW taken).
UPDATE_MISTAKES = (("train_ascent", -1.0), ("train_ignores_lr", None))


def train_update_mistake(candidate: Any, X: np.ndarray, Y: np.ndarray, params: Sequence[tuple],
                         lr: float, steps: int) -> str:
    """The catalogued update mistake whose replay, with the candidate's own forward and
    backward, gives exactly what its train returns ("" when none does): W + lr * dW (ascent),
    W - dW (lr ignored), or the initial params (no update)."""
    with evidence.tentative():
        trained, train_error = _trained(candidate, X, Y, params, lr, steps)
        correct, correct_error = _steps(candidate, X, Y, params, lr, steps)
        if train_error or (not correct_error and _same(trained, correct)):
            return ""  # train does what its own forward and backward give: no update mistake
        initial = [(np.asarray(W), np.asarray(b)) for W, b in params]
        if _same(trained, initial, telling=True) and (correct_error or not _same(initial, correct)):
            return "train_no_update"
        for key, step in UPDATE_MISTAKES:
            replayed, error = _steps(candidate, X, Y, params, lr, steps, step if step is not None else 1.0 / lr)
            # (a replay that the correct update would give as well tells nothing)
            if not error and _same(trained, replayed, telling=True) and (correct_error or not _same(replayed, correct)):
                return key
    return ""


def _same(trained: Any, replayed: Sequence[tuple], *, telling: bool = False) -> bool:
    """``trained`` equals ``replayed``: same shapes, the same non-finite entries, the finite ones
    within sqrt(eps). ``telling``: also some finite entry (an all-NaN result equals every replay
    alike, so it can tell no update mistake from another)."""
    try:
        pairs = [(np.asarray(g), np.asarray(e)) for got, exp in zip(trained, replayed) for g, e in zip(got, exp)]
        if len(pairs) != 2 * len(replayed):
            return False
    except TypeError:
        return False
    for got, expected in pairs:
        if got.shape != expected.shape or not np.issubdtype(got.dtype, np.floating):
            return False
        # sqrt(eps) of the result's precision: the steps themselves round at eps; a train that
        # does anything else with the gradients differs by far more.
        tau = precision_tolerance(np.result_type(got.dtype, expected.dtype))
        # The same non-finite entries, and the finite ones close: a result that is all NaN (or
        # inf) would otherwise equal every replay alike.
        g64, e64 = got.astype(np.float64), expected.astype(np.float64)
        if not np.array_equal(np.isfinite(g64), np.isfinite(e64)) or (telling and not np.isfinite(e64).any()):
            return False
        finite = np.isfinite(e64)
        if not np.allclose(g64[finite], e64[finite], rtol=tau, atol=tau):
            return False
    return True


UPDATE_TEXT = {
    "train_no_update": ("train returns the initial params unchanged: no update reached them (the new (W, b) "
                        "are never stored in params, or the batch loop never runs)"),
    "train_ascent": "train adds the gradient (W + lr * dW): gradient ascent; the update is W - lr * dW",
    "train_ignores_lr": "train steps by the raw gradient (W - dW): multiply it by lr",
}


def train_mistake(candidate: Any, X: np.ndarray, Y: np.ndarray, params: Sequence[tuple], lr: float,
                  steps: int) -> str:
    """The finding about a train whose result is wrong and not explained by its own forward and
    backward: the update mistake replay reproduces, else train's generic finding."""
    from conformance.diagnosis import named

    key = train_update_mistake(candidate, X, Y, params, lr, steps)
    if key:
        return named(key, UPDATE_TEXT[key])
    if train_follows_own_functions(candidate, X, Y, params, lr, steps):
        if _backward_mutates(candidate, X, Y, params):  # what makes those steps differ here
            return named("mutates_arguments", "train takes exactly the steps your own forward and backward "
                         "give, and your backward changes the params it is given in place (arguments must "
                         "not be modified): those steps update already-changed weights")
        return ("train takes exactly the steps your own forward and backward give, so its result is "
                "theirs: see their checks")
    return named("train_wrong", "train's result equals neither full-batch steps W - lr * dW with your own "
                 "forward and backward, nor any catalogued update mistake replayed with them")
