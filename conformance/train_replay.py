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
           steps: int) -> tuple[Any, str]:
    def run() -> list:
        current = [(np.asarray(W), np.asarray(b)) for W, b in params]
        for _ in range(steps):
            activations, pre_activations = candidate.call("forward", X, current)
            grads = candidate.call("backward", activations, pre_activations, Y, current)
            current = [(W - lr * np.asarray(dW), b - lr * np.asarray(db)) for (W, b), (dW, db) in zip(current, grads)]
        return current
    return _outcome(run)


def train_follows_own_functions(candidate: Any, X: np.ndarray, Y: np.ndarray, params: Sequence[tuple],
                                lr: float, steps: int) -> bool:
    """Does train(X, Y, X, Y, params, lr, steps, len(X)) (full batch: one step per epoch) do
    exactly what ``steps`` steps with the candidate's own forward and backward do? Calls run
    outside the test's evidence: only the caller decides what to keep."""
    with evidence.tentative():
        replayed, replay_error = _steps(candidate, X, Y, params, lr, steps)
        trained, train_error = _outcome(lambda: candidate.call("train", X, Y, X, Y, list(params), lr, steps, len(X)))
    if replay_error or train_error:
        return bool(replay_error) and replay_error == train_error
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
        if not np.allclose(got.astype(np.float64), expected.astype(np.float64), rtol=tau, atol=tau, equal_nan=True):
            return False
    return True
