"""Finite differences of the exact loss (conformance/exact.py), and the tolerances.

Nothing here calls the candidate or the reference. The loss is the exact mean cross-entropy
computed through a log-sum-exp (no ``+1e-12``); gradients are estimated by central differences
with relative step ``h = eps**(1/3) * max(1, |theta|)``, their own error is estimated by
Richardson comparison with step ``2h``, and a difference whose ``theta ± h`` (or ``± 2h``)
flips a ReLU mask is retried with a 64x smaller step and, if it still straddles a kink,
excluded (never reported as a failure). Tolerances: see ``allowed`` and conformance/SPEC.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from conformance.exact import Magnitudes, Params, exact_cross_entropy, exact_forward

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


# ----------------------------------------------------------------------- finite differences
@dataclass
class Estimate:
    """Central-difference estimates for a set of perturbations of one tensor."""

    value: np.ndarray  # the estimated derivative
    error: np.ndarray  # its estimated error (Richardson + rounding), to be added to tolerances
    step: np.ndarray  # the step used
    excluded: np.ndarray  # True where every step tried straddled a ReLU kink
    retried: int = 0  # how many needed the smaller step


def _perturbed_losses(X: np.ndarray, Y: np.ndarray, params: Params, base_activations: list[np.ndarray],
                      base_pre_activations: list[np.ndarray], layer: int, kind: str,
                      deltas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Loss and 'some ReLU mask flipped' for K perturbed copies of one tensor, in one batched
    forward pass from ``layer`` on (earlier layers are shared)."""
    L = len(params)
    A = base_activations[layer]
    W, b = params[layer]
    if kind == "W":
        Z = A @ (W + deltas) + b
    else:
        Z = A @ W + (b + deltas)[:, None, :]
    flipped = np.zeros(deltas.shape[0], dtype=bool)
    for i in range(layer, L):
        if i < L - 1:
            mask = Z > 0
            flipped |= (mask != (base_pre_activations[i] > 0)).any(axis=(1, 2))
            Z = np.where(mask, Z, 0.0) @ params[i + 1][0] + params[i + 1][1]
    return exact_cross_entropy(Z, Y), flipped


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
    shape = (-1,) + (1,) * (directions.ndim - 1)

    def signed(indices: np.ndarray, signed_steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return losses_and_flips(directions[indices] * signed_steps.reshape(shape))

    return _central_differences(signed, directions.shape[0], steps, loss_scale, eps)


def _central_differences(losses_at: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
                         count: int, steps: np.ndarray, loss_scale: float, eps: float) -> Estimate:
    """The difference scheme itself. ``losses_at(k, s)`` is the loss (and 'a mask flipped') at
    theta + s[j] * direction k[j], for index and signed-step arrays of equal length."""
    value = np.zeros(count)
    error = np.zeros(count)
    used = steps.astype(np.float64).copy()
    todo = np.arange(count)
    excluded = np.zeros(count, dtype=bool)
    retried = 0
    for attempt in range(2):
        if todo.size == 0:
            break
        h = used[todo]
        losses, flips = losses_at(np.tile(todo, 4), np.concatenate([h, -h, 2 * h, -2 * h]))
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
    """Derivative of the exact loss w.r.t. params[layer][W or b]: every entry when
    ``directions`` is None, else along each given direction (K, *shape)."""
    theta = params[layer][0 if kind == "W" else 1]
    activations, pre_activations = exact_forward(X, params)
    width = max(z.shape[-1] for z in pre_activations)
    per_item = X.shape[0] * width
    if directions is None:
        steps = STEP_FACTOR * np.maximum(1.0, np.abs(theta).reshape(-1))
        after = downstream(params, pre_activations, activations[-1], np.asarray(Y, dtype=np.float64), layer)

        def at_entries(entries: np.ndarray, signed_steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            pairs = np.stack([entries, signed_steps], axis=1)
            return _batched(lambda c: _entry_losses(Y, params, activations, pre_activations, after, layer, kind,
                                                    c[:, 0].astype(np.intp), c[:, 1]),
                            pairs, per_item=per_item)

        return _central_differences(at_entries, theta.size, steps, mags.loss_scale, EPS64)
    steps = np.full(directions.shape[0], STEP_FACTOR * max(1.0, float(np.abs(theta).max(initial=0))))

    def evaluate(deltas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _batched(lambda d: _perturbed_losses(X, Y, params, activations, pre_activations, layer, kind, d),
                        deltas, per_item=per_item + theta.size)

    return central_differences(evaluate, directions, steps, mags.loss_scale)


@dataclass
class Downstream:
    """How one unit of ``A_{layer+1}`` reaches the rest of the network, per sample, while no
    later ReLU mask flips (the network after ``layer`` is then linear in that unit): a change c
    of unit q in row b moves the logits by c * to_logits[b, q] and flips some later mask exactly
    when c > flip_up[b, q] or c < flip_down[b, q]."""

    to_logits: np.ndarray  # (B, n_{layer+1}, C)
    flip_up: np.ndarray  # (B, n_{layer+1}), >= 0 (inf: no flip for any increase)
    flip_down: np.ndarray  # (B, n_{layer+1}), <= 0 (-inf: no flip for any decrease)
    # The row's loss as a function of c, as a series (``loss_series``): its coefficients and
    # the spread max_j |g_j - mean_p g| that bounds where the series is exact to rounding.
    series: tuple[np.ndarray, ...]  # (slope, kappa2 / 2, kappa3 / 6, kappa4 / 24), each (B, n)
    spread: np.ndarray  # (B, n)


def downstream(params: Params, pre_activations: list[np.ndarray], probs: np.ndarray, Y: np.ndarray,
               layer: int) -> Downstream | None:
    """``Downstream`` of layer ``layer``'s output units (None for the output layer).

    A later pre-activation Z_k[b, j] moves by c * G_k[b, q, j]; its mask flips at c = -Z/G,
    upwards in c when (G < 0) == (Z > 0), downwards otherwise (strictly: a unit that does not
    move, c = 0, never flips a mask, even one sitting exactly at Z = 0)."""
    L = len(params)
    if layer == L - 1:
        return None
    B, n = pre_activations[layer].shape
    G = np.broadcast_to(params[layer + 1][0], (B,) + params[layer + 1][0].shape)
    up, down = np.full((B, n), np.inf), np.full((B, n), -np.inf)
    for k in range(layer + 1, L - 1):
        Z = pre_activations[k][:, None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            T = np.where(G != 0, -Z / G, np.nan)
        rising = (G < 0) == (Z > 0)
        up = np.minimum(up, np.where(rising & (G != 0), T, np.inf).min(axis=2))
        down = np.maximum(down, np.where(~rising & (G != 0), T, -np.inf).max(axis=2))
        G = (G * (pre_activations[k] > 0)[:, None, :]) @ params[k + 1][0]
    return Downstream(np.ascontiguousarray(G), up, down, *_loss_series(G, probs, Y))


def _loss_series(G: np.ndarray, probs: np.ndarray, Y: np.ndarray) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """Moving unit q of row b by c moves that row's logits by c * g (g = G[b, q]), and its loss
    by log(sum_j p_j exp(c g_j)) - c g.y: the cumulant generating function of g under the
    row's softmax p, minus a linear term. Its series c (k1 - g.y) + c^2 k2/2 + c^3 k3/6 +
    c^4 k4/24 (cumulants from central moments, so nothing cancels) has a remainder below
    (c * spread)^5 in loss units: with c * spread <= SERIES_MAX_REACH that is < 1e-20, far
    below the rounding term of every difference, so it stands in for the exact loss there."""
    p = probs[:, None, :]
    mean = (p * G).sum(axis=2)
    d = G - mean[:, :, None]
    d2 = d * d
    mu2, mu3, mu4 = (p * d2).sum(axis=2), (p * d2 * d).sum(axis=2), (p * d2 * d2).sum(axis=2)
    slope = mean - (G * Y[:, None, :]).sum(axis=2)
    return (slope, mu2 / 2, mu3 / 6, (mu4 - 3 * mu2 * mu2) / 24), np.abs(d).max(axis=2)


def _entry_losses(Y: np.ndarray, params: Params, activations: list[np.ndarray], pre_activations: list[np.ndarray],
                  after: Downstream | None, layer: int, kind: str, entries: np.ndarray,
                  signed_steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Loss change and 'some ReLU mask flipped' after moving single entries of one tensor.

    Moving W[p, q] by s moves only column q of this layer's pre-activations, by s * A_prev[:, p]
    (b[q]: by s on every row), so only unit q of the next activations changes, by
    c = relu(Z'[:, q]) - A[:, q], and (``Downstream``) the logits by c times that unit's row of
    the downstream Jacobian: per entry O(B * C) instead of a full perturbed forward pass. Mask
    flips are detected exactly (the linear prediction is exact up to the first flip), and a
    flipped difference is retried or excluded as before."""
    K, L = entries.shape[0], len(params)
    n_out = params[layer][0].shape[1]
    if kind == "W":
        rows, q = np.divmod(entries, n_out)
        shift = signed_steps[:, None] * activations[layer][:, rows].T  # (K, B): the move of Z[:, q]
    else:
        q = entries
        shift = np.repeat(signed_steps[:, None], pre_activations[layer].shape[0], axis=1)
    if after is None:  # the logits themselves: only column q moves
        return _loss_change_one_logit(pre_activations[L - 1], activations[L], Y, q, shift), np.zeros(K, dtype=bool)
    base = pre_activations[layer][:, q].T
    moved = base + shift
    change = np.maximum(moved, 0.0) - activations[layer + 1][:, q].T  # (K, B)
    flipped = ((moved > 0) != (base > 0)).any(axis=1)
    flipped |= ((change > after.flip_up[:, q].T) | (change < after.flip_down[:, q].T)).any(axis=1)
    reach = np.abs(change) * after.spread[:, q].T
    by_series = (reach <= SERIES_MAX_REACH).all(axis=1)
    losses = np.empty(K)
    c = change[by_series]
    slope, k2, k3, k4 = (coef[:, q[by_series]].T for coef in after.series)
    losses[by_series] = (c * (slope + c * (k2 + c * (k3 + c * k4)))).mean(axis=1)
    if not by_series.all():  # large moves (huge logits, big steps): the exact loss change
        rest = ~by_series
        logits_shift = change[rest][:, :, None] * after.to_logits[:, q[rest], :].transpose(1, 0, 2)
        losses[rest] = _loss_change(pre_activations[L - 1], activations[L], Y, logits_shift)
    return losses, flipped


SERIES_MAX_REACH = 1e-4  # c * spread up to which ``_loss_series`` replaces the exact loss


# Below this logit shift exp/log1p of the shift cannot overflow; above, the loss is recomputed.
SMALL_SHIFT = 1.0


def _loss_change(logits: np.ndarray, probs: np.ndarray, Y: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Exact change of the mean cross-entropy when the logits (B, C) move by ``shift`` (K, B, C):
    per row, log(sum_j p_j exp(shift_j)) - shift . y, with log1p/expm1 so a tiny change keeps
    its relative precision instead of cancelling against the whole loss. Only differences of
    these values are used, so the constant loss itself is never needed."""
    if np.abs(shift).max(initial=0.0) > SMALL_SHIFT:
        return exact_cross_entropy(logits + shift, Y) - exact_cross_entropy(logits, Y)
    per_row = np.log1p((probs * np.expm1(shift)).sum(axis=-1)) - (shift * Y).sum(axis=-1)
    return per_row.mean(axis=-1)


def _loss_change_one_logit(logits: np.ndarray, probs: np.ndarray, Y: np.ndarray, q: np.ndarray,
                           shift: np.ndarray) -> np.ndarray:
    """``_loss_change`` when only logit column q[k] moves, by shift[k] (K, B): O(K * B)."""
    if np.abs(shift).max(initial=0.0) > SMALL_SHIFT:
        full = np.zeros(shift.shape + (logits.shape[1],))
        full[np.arange(len(q)), :, q] = shift
        return _loss_change(logits, probs, Y, full)
    p, y = probs[:, q].T, Y[:, q].T
    return (np.log1p(p * np.expm1(shift)) - shift * y).mean(axis=-1)


def random_directions(shape: tuple[int, ...], count: int, seed: int) -> np.ndarray:
    """``count`` unit-norm Gaussian directions (reproducible from the case seed)."""
    V = np.random.default_rng(seed).standard_normal((count,) + tuple(shape))
    norms = np.sqrt((V.reshape(count, -1) ** 2).sum(axis=1))
    return V / norms.reshape((count,) + (1,) * len(shape))
