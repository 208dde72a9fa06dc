"""The suite's own ground truth: exact float64 forward/loss, magnitude bounds, finite differences.

Nothing here calls the candidate or the reference. The loss is the exact mean cross-entropy
computed through a log-sum-exp (no ``+1e-12``); gradients are estimated by central differences
with relative step ``h = eps**(1/3) * max(1, |theta|)``, their own error is estimated by
Richardson comparison with step ``2h``, and a difference whose ``theta ± h`` (or ``± 2h``)
flips a ReLU mask is retried with a 64x smaller step and, if it still straddles a kink,
excluded (never reported as a failure). Tolerances: see ``allowed`` and conformance/SPEC.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

Params = Sequence[tuple[np.ndarray, np.ndarray]]
EPS64 = float(np.finfo(np.float64).eps)
STEP_FACTOR = EPS64 ** (1 / 3)  # optimal central-difference step for a smooth float64 function
KINK_RETRY_SHRINK = 64.0  # retry factor for a difference that straddles a ReLU kink
TENSOR_FLOOR = 0.01  # fraction of the tensor's magnitude allowed on every entry (tiny entries)
RICHARDSON_SAFETY = 4.0  # multiplies the step-h vs step-2h error estimate
ROUNDING_SAFETY = 8.0  # multiplies eps * |loss terms| / h, the rounding error of a difference
MAX_CHUNK_ELEMENTS = 2_000_000  # bounds the memory of one batched perturbed forward pass


def precision_tolerance(dtype: np.dtype | type) -> float:
    """tau = sqrt(eps) of the dtype the candidate returned: 1.5e-8 (float64), 3.5e-4 (float32).

    A correct candidate's error is a few eps times the magnitude bound times a modest growth
    factor (sums of <= 64 terms, <= 5 layers, softmax conditioning), far below sqrt(eps); the
    bugs the suite must catch change gradients by O(1) relative amounts (>= 1/64)."""
    return float(np.sqrt(np.finfo(dtype).eps))


def allowed_error(entry_scale: np.ndarray, tensor_scale: float, tau: float) -> np.ndarray:
    """tau * (M_ij + 0.01 * S_T): magnitude-scaled, so tiny entries are not held to a relative
    accuracy their own cancellation makes impossible."""
    return tau * (np.asarray(entry_scale, dtype=np.float64) + TENSOR_FLOOR * tensor_scale)


# ----------------------------------------------------------------------------- exact model
def true_forward(X: np.ndarray, params: Params) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """float64 activations [X, A1, ..., softmax] and pre-activations [Z1, ..., ZL]."""
    A = np.asarray(X, dtype=np.float64)
    acts, pres = [A], []
    for i, (W, b) in enumerate(params):
        Z = A @ np.asarray(W, dtype=np.float64) + np.asarray(b, dtype=np.float64)
        pres.append(Z)
        if i == len(params) - 1:
            e = np.exp(Z - Z.max(axis=-1, keepdims=True))
            A = e / e.sum(axis=-1, keepdims=True)
        else:
            A = np.maximum(Z, 0.0)
        acts.append(A)
    return acts, pres


def mean_cross_entropy(logits: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Exact mean over the batch axis (-2) of logsumexp(z) - z[true class]; leading axes kept."""
    m = logits.max(axis=-1, keepdims=True)
    lse = m[..., 0] + np.log(np.exp(logits - m).sum(axis=-1))
    return (lse - (logits * Y).sum(axis=-1)).mean(axis=-1)


def true_loss(X: np.ndarray, Y: np.ndarray, params: Params) -> float:
    return float(mean_cross_entropy(true_forward(X, params)[1][-1], np.asarray(Y, dtype=np.float64)))


def analytic_gradients(acts: Sequence[np.ndarray], pres: Sequence[np.ndarray], Y: np.ndarray,
                       params: Params, relu_prime_at_zero: float = 0.0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Correct backprop in float64, with ReLU'(0) set to 0 or 1 (both are allowed)."""
    delta = (np.asarray(acts[-1], np.float64) - Y) / Y.shape[0]
    grads = []
    for i in reversed(range(len(params))):
        grads.append((np.asarray(acts[i], np.float64).T @ delta, delta.sum(axis=0)))
        if i > 0:
            Z = np.asarray(pres[i - 1], np.float64)
            mask = np.where(Z > 0, 1.0, np.where(Z == 0, relu_prime_at_zero, 0.0))
            delta = (delta @ np.asarray(params[i][0], np.float64).T) * mask
    return grads[::-1]


@dataclass
class Magnitudes:
    """Absolute-value bounds that scale every tolerance (a running error bound in the style
    of Higham: the same computation with |.| everywhere, so cancellation cannot shrink it)."""

    pre_activations: list[np.ndarray]  # |A_prev| @ |W| + |b|, >= |Z|
    activations: list[np.ndarray]  # bound on |A| and on its rounding scale
    gradients: list[tuple[np.ndarray, np.ndarray]]  # M for (dW, db), >= |gradient| entrywise
    loss_scale: float  # |loss| + magnitudes of the logits: the rounding scale of the loss


def magnitudes(X: np.ndarray, Y: np.ndarray, params: Params) -> Magnitudes:
    acts, pres = true_forward(X, params)
    A_abs = [np.abs(acts[0])]
    Z_abs = []
    for i, (W, b) in enumerate(params):
        Zb = A_abs[-1] @ np.abs(W) + np.abs(b)
        Z_abs.append(Zb)
        A_abs.append(acts[-1] if i == len(params) - 1 else np.where(pres[i] >= 0, Zb, 0.0))
    # Softmax amplifies an error dz in the logits into dp ~ 2 p |dz|; |dz| ~ eps * |Z|abs.
    conditioning = 1.0 + 2.0 * Z_abs[-1].max(axis=-1, keepdims=True)
    delta = (acts[-1] * conditioning + Y) / Y.shape[0]
    grads = []
    for i in reversed(range(len(params))):
        grads.append((A_abs[i].T @ delta, delta.sum(axis=0)))
        if i > 0:  # >= 0: the bound covers both ReLU'(0) conventions
            delta = (delta @ np.abs(params[i][0]).T) * (pres[i - 1] >= 0)
    loss = float(mean_cross_entropy(pres[-1], Y))
    loss_scale = abs(loss) + sum(float(z.max(initial=0.0)) for z in Z_abs)
    return Magnitudes(Z_abs, A_abs, grads[::-1], loss_scale)


# ----------------------------------------------------------------------- finite differences
@dataclass
class Estimate:
    """Central-difference estimates for a set of perturbations of one tensor."""

    value: np.ndarray  # the estimated derivative
    error: np.ndarray  # its estimated error (Richardson + rounding), to be added to tolerances
    step: np.ndarray  # the step used
    excluded: np.ndarray  # True where every step tried straddled a ReLU kink
    retried: int = 0  # how many needed the smaller step


def _perturbed_losses(X: np.ndarray, Y: np.ndarray, params: Params, base_acts: list[np.ndarray],
                      base_pres: list[np.ndarray], layer: int, kind: str,
                      deltas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Loss and 'some ReLU mask flipped' for K perturbed copies of one tensor, in one batched
    forward pass from ``layer`` on (earlier layers are shared)."""
    L = len(params)
    A = base_acts[layer]
    W, b = params[layer]
    if kind == "W":
        Z = A @ (W + deltas) + b
    else:
        Z = A @ W + (b + deltas)[:, None, :]
    flipped = np.zeros(deltas.shape[0], dtype=bool)
    for i in range(layer, L):
        if i < L - 1:
            mask = Z > 0
            flipped |= (mask != (base_pres[i] > 0)).any(axis=(1, 2))
            Z = np.where(mask, Z, 0.0) @ params[i + 1][0] + params[i + 1][1]
    return mean_cross_entropy(Z, Y), flipped


def _batched(fn: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], deltas: np.ndarray,
             per_item: int) -> tuple[np.ndarray, np.ndarray]:
    chunk = max(1, MAX_CHUNK_ELEMENTS // max(per_item, 1))
    parts = [fn(deltas[s:s + chunk]) for s in range(0, deltas.shape[0], chunk)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def central_differences(losses_and_flips: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
                        directions: np.ndarray, steps: np.ndarray, loss_scale: float,
                        eps: float = EPS64) -> Estimate:
    """Derivatives along ``directions`` (K, *shape) with per-direction ``steps`` (K,).

    ``losses_and_flips(deltas)`` evaluates the loss at theta + deltas[k] for every k and says
    whether a ReLU mask flipped. Uses +-h and +-2h; retries kinked ones with h / 64."""
    K = directions.shape[0]
    value = np.zeros(K)
    error = np.zeros(K)
    used = steps.astype(np.float64).copy()
    todo = np.arange(K)
    excluded = np.zeros(K, dtype=bool)
    retried = 0
    for attempt in range(2):
        if todo.size == 0:
            break
        h = used[todo]
        shape = (-1,) + (1,) * (directions.ndim - 1)
        d = directions[todo]
        offsets = np.concatenate([d * h.reshape(shape) * f for f in (1.0, -1.0, 2.0, -2.0)])
        losses, flips = losses_and_flips(offsets)
        lp, lm, lp2, lm2 = losses.reshape(4, -1)
        kinked = flips.reshape(4, -1).any(axis=0)
        d1 = (lp - lm) / (2 * h)
        d2 = (lp2 - lm2) / (4 * h)
        value[todo] = d1
        error[todo] = RICHARDSON_SAFETY * np.abs(d2 - d1) / 3 + ROUNDING_SAFETY * eps * loss_scale / h
        if attempt == 0:
            todo = todo[kinked]
            retried = int(todo.size)
            used[todo] /= KINK_RETRY_SHRINK
        else:
            excluded[todo[kinked]] = True
    return Estimate(value, error, used, excluded, retried)


def fd_tensor(X: np.ndarray, Y: np.ndarray, params: Params, layer: int, kind: str,
              mags: Magnitudes, directions: np.ndarray | None = None) -> Estimate:
    """Derivative of the true loss w.r.t. params[layer][W or b]: every entry when
    ``directions`` is None, else along each given direction (K, *shape)."""
    theta = params[layer][0 if kind == "W" else 1]
    acts, pres = true_forward(X, params)
    width = max(z.shape[-1] for z in pres)
    if directions is None:
        directions = np.eye(theta.size).reshape((theta.size,) + theta.shape)
        steps = STEP_FACTOR * np.maximum(1.0, np.abs(theta).reshape(-1))
    else:
        steps = np.full(directions.shape[0], STEP_FACTOR * max(1.0, float(np.abs(theta).max(initial=0))))

    def evaluate(deltas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _batched(lambda d: _perturbed_losses(X, Y, params, acts, pres, layer, kind, d),
                        deltas, per_item=X.shape[0] * width + theta.size)

    return central_differences(evaluate, directions, steps, mags.loss_scale)


def random_directions(shape: tuple[int, ...], count: int, seed: int) -> np.ndarray:
    """``count`` unit-norm Gaussian directions (reproducible from the case seed)."""
    V = np.random.default_rng(seed).standard_normal((count,) + tuple(shape))
    norms = np.sqrt((V.reshape(count, -1) ** 2).sum(axis=1))
    return V / norms.reshape((count,) + (1,) * len(shape))
