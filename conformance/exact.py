"""The suite's one ground truth: the exact float64 forward, loss and backward, and the
magnitude bounds that scale every tolerance.

Everything that judges a candidate's numbers computes them here: the finite differences
(conformance/gradcheck.py), the checks (conformance/checks.py), the simulated known bugs
of the diagnosis (conformance/diagnosis.py: the bug switches below), the golden fixtures'
ReLU'(0) intervals and gradient scales (conformance/fixture_files.py). So each derivative (BP1-BP4) is
written once. Nothing here calls the candidate or the reference: conformance/reference/mlp.py stays the
section's own code, judged by these functions, never used by them.

Notation as in the reference: layer l computes ``Z = A_prev @ W + b`` and ``A = relu(Z)``,
or ``softmax(Z)`` on the last layer; ``activations`` is [X, A1, ..., softmax], and
``pre_activations`` is [Z1, ..., Z_L]; ``delta`` is dLoss/dZ of the current layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence, Union

import numpy as np

Params = Sequence[tuple[np.ndarray, np.ndarray]]
Grads = list[tuple[np.ndarray, np.ndarray]]
# ReLU'(0): 0 or 1 (both conventions are correct), or a function of Z giving the whole mask.
ReluPrime = Union[float, Callable[[np.ndarray], np.ndarray]]


def _f64(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)  # no copy for a float64 array: bit-identical


# ------------------------------------------------------------------------------ forward
def exact_softmax(Z: np.ndarray, axis: int = -1) -> np.ndarray:
    """Softmax along ``axis`` in float64, shifted by the maximum so exp cannot overflow."""
    Z = _f64(Z)
    e = np.exp(Z - Z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def relu(Z: np.ndarray) -> np.ndarray:
    return np.maximum(Z, 0.0)


@dataclass(frozen=True)
class ForwardBugs:
    """Switches that turn the exact forward into a known wrong one (``diagnosis.FORWARD_BUGS``
    simulates each); the defaults are the correct forward."""

    bias: bool = True  # False: Z = A_prev @ W (no bias)
    relu_output: bool = False  # ReLU on the logits before the softmax
    softmax_axis: int = -1  # 0: softmax over the batch axis
    softmax_hidden: bool = False  # softmax instead of ReLU on the hidden layers
    pre_after_relu: bool = False  # relu(Z) stored as the hidden pre-activation (in-place ReLU)
    relu_instead_of_softmax: bool = False  # ReLU instead of softmax on the output layer
    shifted_logits: bool = False  # logits stored shifted by their row maximum (in-place softmax)


CORRECT_FORWARD = ForwardBugs()


def exact_forward(X: np.ndarray, params: Params,
                  bugs: ForwardBugs = CORRECT_FORWARD) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """float64 ``activations`` [X, A1, ..., softmax] and ``pre_activations`` [Z1, ..., Z_L]
    (``bugs``: a known wrong forward instead)."""
    A = _f64(X)
    activations, pre_activations = [A], []
    for i, (W, b) in enumerate(params):
        Z = A @ _f64(W)
        if bugs.bias:
            Z = Z + _f64(b)
        last = i == len(params) - 1
        if last and bugs.relu_instead_of_softmax:
            A = relu(Z)
        elif last:
            A = exact_softmax(relu(Z) if bugs.relu_output else Z, axis=bugs.softmax_axis)
        else:
            A = exact_softmax(Z) if bugs.softmax_hidden else relu(Z)
        if last and bugs.shifted_logits:
            Z = Z - Z.max(axis=-1, keepdims=True)
        pre_activations.append(A if bugs.pre_after_relu and not last else Z)
        activations.append(A)
    return activations, pre_activations


# --------------------------------------------------------------------------------- loss
def exact_cross_entropy(logits: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Exact mean over the batch axis (-2) of logsumexp(z) - z[true class], from the logits
    (no log(0) guard needed); leading axes are kept (a stack of perturbed logits at once)."""
    m = logits.max(axis=-1, keepdims=True)
    lse = m[..., 0] + np.log(np.exp(logits - m).sum(axis=-1))
    return (lse - (logits * Y).sum(axis=-1)).mean(axis=-1)


def exact_loss(X: np.ndarray, Y: np.ndarray, params: Params) -> float:
    """The exact mean cross-entropy of the network on (X, Y)."""
    return float(exact_cross_entropy(exact_forward(X, params)[1][-1], _f64(Y)))


# ----------------------------------------------------------------------------- backward
@dataclass(frozen=True)
class BackwardBugs:
    """Switches that turn exact backprop into a known wrong one (``diagnosis.KNOWN_BUGS``
    simulates each); the defaults are the correct recursion."""

    sign: float = 1.0  # BP1: -1 for Y - Y_hat
    softmax_jacobian: bool = False  # BP1: times Y_hat * (1 - Y_hat) on top of Y_hat - Y
    batch_mean: bool = True  # BP1: False forgets the division by B
    mask: bool = True  # BP2: False leaves out relu'(Z)
    mask_offset: int = -1  # BP2: relu' taken at pre_activations[i + mask_offset] (0: the i-1 bug)
    w_offset: int = 0  # BP2: delta propagated through params[i + w_offset]
    transpose_w: bool = True  # BP2: False propagates through W instead of W.T
    propagate: bool = True  # BP2: False never updates delta
    mean_every_layer: bool = False  # BP2: delta divided by B again at every layer
    db_mean: bool = False  # BP3: db averaged over the batch instead of summed
    dw_mean: bool = False  # BP4: dW divided by B again
    dw_times_batch: bool = False  # BP4: dW not divided by B while db is (a per-layer 1/m style)
    db_times_batch: bool = False  # BP3: db not divided by B while dW is (a per-layer 1/m style)
    dw_transposed: bool = False  # BP4: delta.T @ A_prev
    dw_from_output: bool = False  # BP4: the layer's own output instead of its input
    reverse: bool = False  # gradients returned last layer first
    last_sample_only: bool = False  # a per-sample loop that assigns instead of accumulating


CORRECT_BACKWARD = BackwardBugs()


def output_error(Y_hat: np.ndarray, Y: np.ndarray,
                 bugs: BackwardBugs = CORRECT_BACKWARD) -> np.ndarray:
    """BP1: softmax + mean cross-entropy give dL/dZ_L = (Y_hat - Y) / B. Computed in the
    inputs' dtype (conformance/fixture_files.py mirrors the reference's float32 rounding with it)."""
    delta = bugs.sign * (Y_hat - Y)
    if bugs.softmax_jacobian:
        delta = delta * Y_hat * (1 - Y_hat)
    if bugs.batch_mean:
        delta = delta / Y.shape[0]
    return delta


def relu_derivative(Z: np.ndarray, at_zero: ReluPrime, dtype: np.dtype) -> np.ndarray:
    """relu'(Z) as an array of ``dtype``: 1 where Z > 0, 0 where Z < 0, ``at_zero`` at 0
    (or ``at_zero(Z)`` everywhere when it is a function). 0 and 1 are exact in any dtype,
    so multiplying by this mask equals multiplying by a boolean one bit for bit."""
    if callable(at_zero):
        return np.asarray(at_zero(Z)).astype(dtype)
    return np.where(Z > 0, 1.0, np.where(Z == 0, at_zero, 0.0)).astype(dtype)


def backpropagate(delta: np.ndarray, activations: Sequence[np.ndarray],
                  pre_activations: Sequence[np.ndarray], params: Params,
                  relu_prime_at_zero: ReluPrime = 0.0,
                  bugs: BackwardBugs = CORRECT_BACKWARD) -> Grads:
    """BP2-BP4 from the output layer's ``delta`` down, in the inputs' dtype; returns
    [(dW1, db1), ..., (dW_L, db_L)] in forward order. ``magnitudes`` runs the same recursion
    on absolute values (the gradients' error bounds)."""
    B = delta.shape[0]
    grads = []
    for i in reversed(range(len(params))):
        A_prev = activations[i + 1] if bugs.dw_from_output else activations[i]
        dW = delta.T @ A_prev if bugs.dw_transposed else A_prev.T @ delta  # BP4: A_prev^T delta
        if bugs.dw_mean:
            dW = dW / B
        if bugs.dw_times_batch:
            dW = dW * B
        db = delta.mean(axis=0) if bugs.db_mean else delta.sum(axis=0)  # BP3: sum of delta
        if bugs.db_times_batch:
            db = db * B
        grads.append((dW, db))
        if i > 0 and bugs.propagate:
            # BP2: delta_{l-1} = (delta_l @ W_l.T) * relu'(Z_{l-1}); Z_{l-1} is pre_activations[i-1].
            W = params[i + bugs.w_offset][0]
            delta = delta @ (W.T if bugs.transpose_w else W)
            if bugs.mask:
                Z = pre_activations[i + bugs.mask_offset]
                delta = delta * relu_derivative(Z, relu_prime_at_zero, delta.dtype)
            if bugs.mean_every_layer:
                delta = delta / B
    return grads if bugs.reverse else grads[::-1]


def exact_gradients(activations: Sequence[np.ndarray], pre_activations: Sequence[np.ndarray],
                    Y: np.ndarray, params: Params, relu_prime_at_zero: ReluPrime = 0.0,
                    bugs: BackwardBugs = CORRECT_BACKWARD) -> Grads:
    """Exact backprop in float64 at the given forward values, ReLU'(0) = 0 or 1 (both are
    correct) or a mask function; ``bugs``: a known wrong backward instead."""
    activations = [_f64(a) for a in activations]
    pre_activations = [_f64(z) for z in pre_activations]
    Y = _f64(Y)
    params = [(_f64(W), _f64(b)) for W, b in params]
    if bugs.last_sample_only:  # what a per-sample loop that assigns (dW = ...) is left with
        last = exact_gradients([a[-1:] for a in activations], [z[-1:] for z in pre_activations],
                               Y[-1:], params, relu_prime_at_zero)
        return [(dW / Y.shape[0], db / Y.shape[0]) for dW, db in last]
    delta = output_error(activations[-1], Y, bugs)
    return backpropagate(delta, activations, pre_activations, params, relu_prime_at_zero, bugs)


# --------------------------------------------------------------------------- magnitudes
def pre_activation_bound(A_bound: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|A_prev| @ |W| + |b| in float64: >= |Z| entrywise, and the scale of Z's rounding."""
    return A_bound @ np.abs(_f64(W)) + np.abs(_f64(b))


def softmax_conditioning(Z_bound: np.ndarray) -> np.ndarray:
    """Softmax turns an error dz of the logits into dp ~ 2 p |dz|, and |dz| ~ eps * |Z|: so a
    probability's rounding scale is p times this, per row."""
    return 1.0 + 2.0 * Z_bound.max(axis=-1, keepdims=True)


def gradient_bounds(delta_bound: np.ndarray, activation_bounds: Sequence[np.ndarray],
                    pre_activations: Sequence[np.ndarray], params: Params) -> Grads:
    """BP2-BP4 on absolute values (|W| for W, bounds for A and delta), with relu'(0) = 1 so
    the bound covers both ReLU'(0) conventions: >= |gradient| entrywise, and the scale of
    each gradient's rounding."""
    abs_params = [(np.abs(_f64(W)), np.abs(_f64(b))) for W, b in params]
    return backpropagate(delta_bound, activation_bounds, pre_activations, abs_params, 1.0)


@dataclass
class Magnitudes:
    """Absolute-value bounds that scale every tolerance (a running error bound in the style
    of Higham: the same computation with |.| everywhere, so cancellation cannot shrink it)."""

    pre_activations: list[np.ndarray]  # |A_prev| @ |W| + |b|, >= |Z|
    activations: list[np.ndarray]  # bound on |A| and on its rounding scale
    gradients: Grads  # M for (dW, db), >= |gradient| entrywise
    loss_scale: float  # |loss| + magnitudes of the logits: the rounding scale of the loss


def magnitudes(X: np.ndarray, Y: np.ndarray, params: Params) -> Magnitudes:
    """The ``Magnitudes`` of the exact forward and backward on (X, Y)."""
    activations, pre_activations = exact_forward(X, params)
    A_abs = [np.abs(activations[0])]
    Z_abs = []
    for i, (W, b) in enumerate(params):
        Zb = pre_activation_bound(A_abs[-1], W, b)
        Z_abs.append(Zb)
        last = i == len(params) - 1
        A_abs.append(activations[-1] if last else np.where(pre_activations[i] >= 0, Zb, 0.0))
    delta = (activations[-1] * softmax_conditioning(Z_abs[-1]) + Y) / Y.shape[0]
    grads = gradient_bounds(delta, A_abs, pre_activations, params)
    loss = float(exact_cross_entropy(pre_activations[-1], Y))
    loss_scale = abs(loss) + sum(float(z.max(initial=0.0)) for z in Z_abs)
    return Magnitudes(Z_abs, A_abs, grads, loss_scale)
