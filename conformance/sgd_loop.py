"""The suite's own mini-batch SGD loop, driven by a candidate's forward and backward.

The MNIST checks train with this loop rather than trusting a candidate's ``train``, and
verify what it returns (its checkpoints, replayed with exact gradients by the grader), since
it runs where the candidate runs and could be replaced there. The shuffling
scheme is the section's: ``rng = default_rng(seed)``, one ``rng.permutation(n)`` per epoch,
consecutive slices of ``batch_size`` rows (the last one may be shorter), update
``W - lr * dW``, ``b - lr * db``. With the reference's forward/backward it reproduces the
reference ``train`` bit for bit (tests/test_sgd_loop.py).

This file must stay self-contained (numpy and the standard library only): the isolated
worker loads it by path next to the candidate, where neither ``reference`` nor
``conformance`` is importable.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["SgdLoopError", "sgd"]


class SgdLoopError(Exception):
    """The candidate's forward/backward returned something the loop cannot use, or
    training diverged (non-finite values). The message says which and where."""


def _where(epoch: int, step: int, start: int, stop: int) -> str:
    return f"epoch {epoch}, step {step} (rows {start}:{stop} of the shuffled data)"


def _check_array(value: Any, name: str, shape: tuple[int, ...], where: str) -> np.ndarray:
    # Exact type, not isinstance: an ndarray subclass could override arithmetic.
    if type(value) is not np.ndarray:
        raise SgdLoopError(f"{name} is a {type(value).__name__}, but should be a numpy.ndarray "
                           f"[sgd, {where}]")
    if value.dtype.kind != "f":
        raise SgdLoopError(f"{name} has dtype {value.dtype}, but should be a floating dtype "
                           f"[sgd, {where}]")
    if value.shape != shape:
        raise SgdLoopError(f"{name} has shape {value.shape}, but should have shape {shape} "
                           f"[sgd, {where}]")
    return value


def _check_pair_list(value: Any, name: str, n_layers: int, where: str) -> list[Sequence[Any]]:
    if not isinstance(value, (list, tuple)) or len(value) != n_layers:
        got = f"a {type(value).__name__} of length {len(value)}" if isinstance(
            value, (list, tuple)) else f"a {type(value).__name__}"
        raise SgdLoopError(f"{name} is {got}, but should be a list of {n_layers} (dW, db) pairs "
                           f"[sgd, {where}]")
    for j, pair in enumerate(value):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise SgdLoopError(f"{name}[{j}] is a {type(pair).__name__}, but should be a (dW, db) "
                               f"pair [sgd, {where}]")
    return list(value)


def _first_non_finite(arrays: Sequence[tuple[str, np.ndarray]]) -> str:
    for name, array in arrays:
        bad = ~np.isfinite(array)
        if bad.any():
            index = tuple(int(i) for i in np.argwhere(bad)[0])
            return f"{name}{list(index)} = {float(array[index])} ({int(bad.sum())} non-finite entries)"
    return "a non-finite sum (overflow)"


def sgd(
    forward: Callable[..., Any],
    backward: Callable[..., Any],
    X: np.ndarray,
    Y: np.ndarray,
    params: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    lr: float,
    epochs: int,
    batch_size: int,
    seed: int,
    checkpoint_every: int | None = None,
) -> Any:
    """Train ``params`` with plain mini-batch SGD and return the final ``[(W, b), ...]``.

    ``params`` itself is not modified (the loop keeps its own list). Raises ``SgdLoopError``
    if forward/backward return the wrong structure (checked once per step, cheaply) or if
    the probabilities or the parameters stop being finite, naming the epoch and step.

    With ``checkpoint_every = C`` it returns ``[final_params, checkpoints]`` instead, where
    ``checkpoints`` holds the parameters before global step 0, C, 2C, ... and after the last
    step. This loop runs where the candidate runs, so the candidate could replace it: the
    caller never trusts what it returns, it replays sampled segments between checkpoints with
    exact gradients (conformance/test_mnist.py), and the checkpoints cost one copy of the
    parameters per C steps.
    """
    if not (isinstance(epochs, int) and epochs >= 0):
        raise ValueError(f"epochs must be a non-negative int, got {epochs!r}")
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but Y has {Y.shape[0]}")
    params = [(W, b) for W, b in params]
    shapes = [(W.shape, b.shape) for W, b in params]
    n_layers = len(params)
    if checkpoint_every is not None and not (isinstance(checkpoint_every, int) and checkpoint_every >= 1):
        raise ValueError(f"checkpoint_every must be a positive int, got {checkpoint_every!r}")
    rng = np.random.default_rng(seed)
    n = X.shape[0]
    checkpoints = []
    global_step = 0
    for epoch in range(epochs):
        idx = rng.permutation(n)
        X_shuf, Y_shuf = X[idx], Y[idx]
        for step, start in enumerate(range(0, n, batch_size)):
            stop = min(start + batch_size, n)
            where = _where(epoch, step, start, stop)
            X_b, Y_b = X_shuf[start:stop], Y_shuf[start:stop]
            if checkpoint_every is not None and global_step % checkpoint_every == 0:
                checkpoints.append(params)  # the arrays are never modified: no copy needed
            global_step += 1
            out = forward(X_b, params)
            if not isinstance(out, (list, tuple)) or len(out) != 2:
                raise SgdLoopError(f"forward returned a {type(out).__name__}, but should return "
                                   f"(activations, pre_activations) [sgd, {where}]")
            activations, pre_activations = out
            if not isinstance(activations, (list, tuple)) or len(activations) != n_layers + 1:
                raise SgdLoopError(f"forward's activations should be a list of {n_layers + 1} "
                                   f"arrays (X and one per layer) [sgd, {where}]")
            probs = _check_array(activations[-1], "activations[-1]", Y_b.shape, where)
            grads = _check_pair_list(backward(activations, pre_activations, Y_b, params),
                                     "backward's result", n_layers, where)
            new_params = []
            for j, ((W, b), (dW, db)) in enumerate(zip(params, grads)):
                dW = _check_array(dW, f"dW[{j}]", shapes[j][0], where)
                db = _check_array(db, f"db[{j}]", shapes[j][1], where)
                new_params.append((W - lr * dW, b - lr * db))
            params = new_params
            # One sum per array is far cheaper than isfinite().all() and is non-finite
            # exactly when some entry is (or the sum overflows, itself a sign of divergence).
            with np.errstate(over="ignore", invalid="ignore"):
                finite = all(np.isfinite(a.sum()) for a in (probs, *(x for p in params for x in p)))
            if not finite:
                named = [("activations[-1]", probs)] + [
                    (f"{kind}[{j}]", arr) for j, (W, b) in enumerate(params)
                    for kind, arr in (("W", W), ("b", b))]
                raise SgdLoopError(
                    f"training diverged: {_first_non_finite(named)} "
                    f"[sgd, {where}, lr={lr}]; check the stability guards (softmax max "
                    "subtraction, log(0)), the gradient scale (division by the batch size) and "
                    "the gradients themselves: wrong gradients diverge too")
    if checkpoint_every is None:
        return params
    return [params, checkpoints + [params]]
