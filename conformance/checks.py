"""Candidate outputs against the suite's truth, as ``Comparison``s ready to assert.

- ``forward_comparisons``: check (a), the candidate's forward vs the exact float64 forward;
- ``gradient_comparisons``: check (b), gradients vs central differences of the exact loss
  (every entry for small networks, random directions for larger ones);
- ``self_consistency_comparisons``: check (c), the candidate's backward on its own forward
  vs central differences of the loss computed through the candidate's own forward.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from conformance.assertions import Comparison
from conformance.cases import Case
from conformance.contract import ForwardResult, own_pre_activations
from conformance.diagnosis import named
from conformance.exact import exact_cross_entropy, exact_forward, exact_gradients, magnitudes, softmax_conditioning
from conformance.gradcheck import allowed_error, central_differences, fd_tensor, precision_tolerance, random_directions

Grads = Sequence[tuple[np.ndarray, np.ndarray]]
ENTRYWISE_MAX_PARAMS = 400  # above this, each tensor is checked along random directions
DIRECTIONS_PER_TENSOR = 3


# Non-finite gradients from finite inputs: no guard of the output explains them.
def nonfinite_backward(grads: Sequence[tuple], activations: Sequence[np.ndarray],
                       pre_activations: Sequence[np.ndarray], Y: np.ndarray, params: Sequence[tuple],
                       dtype: np.dtype) -> str:
    """What is known when backward returns inf/nan from finite inputs. A cause is named only
    when replay shows it: backprop with the output recomputed as a softmax WITHOUT the max
    subtraction (in the candidate's precision) is non-finite in exactly the candidate's entries."""
    text = "backward turns finite inputs into inf/nan"
    z = np.asarray(pre_activations[-1], np.float64)
    with np.errstate(all="ignore"):
        e = np.exp(z.astype(dtype))
        naive = (e / e.sum(axis=-1, keepdims=True)).astype(np.float64)
        try:
            replayed = exact_gradients(list(activations[:-1]) + [naive], pre_activations, Y, params)
        except (ValueError, IndexError):
            return text
    same = all(np.array_equal(~np.isfinite(np.asarray(g, np.float64)), ~np.isfinite(r))
               for pg, pr in zip(grads, replayed) for g, r in zip(pg, pr) if np.shape(g) == np.shape(r))
    if same and any(not np.isfinite(r).all() for pair in replayed for r in pair):
        text = named("backward_max_guard", text + (
            f" exactly where a softmax recomputed inside backward without the max subtraction gives "
            f"inf/nan on these logits ({np.dtype(dtype).name}): subtract each sample's max before exp "
            "in every softmax backward computes (or reuse the probabilities forward returned, when it "
            "returns them)"))
    return text


def contract_text(dtype: np.dtype, fd: bool = True) -> str:
    tau = precision_tolerance(dtype)
    fd_part = "4*FD error estimate + " if fd else ""
    return (f"|actual - expected| <= {fd_part}tau*(M + 0.01*max(M)), tau = sqrt(eps) = {tau:.2g} "
            f"({np.dtype(dtype).name} result), M = a bound on the entry's magnitude (the same "
            f"computation on absolute values), which scales with every rounding error")


def forward_comparisons(case: Case, fwd: ForwardResult) -> list[Comparison]:
    tau = precision_tolerance(fwd.dtype)
    activations, pre_activations = exact_forward(case.X, case.params)
    mags = magnitudes(case.X, case.Y, case.params)
    out = []
    # Without pre-activations (the declaration's limit "pre_activations"), activations only.
    for l, (z, zt, zabs) in enumerate(zip(fwd.pre_activations or [], pre_activations, mags.pre_activations)):
        out.append(Comparison(f"pre_activations[{l}]", z, zt, allowed_error(zabs, zabs.max(initial=0), tau)))
    for l, (a, at) in enumerate(zip(fwd.activations, activations)):
        if l == len(activations) - 1:  # probabilities: error ~ 2 p |dz| after a softmax
            scale = at * softmax_conditioning(mags.pre_activations[-1])
        else:
            scale = mags.activations[l]
        out.append(Comparison(f"activations[{l}]", a, at, allowed_error(scale, scale.max(initial=0), tau)))
    return out


def _names(l: int) -> tuple[str, str]:
    return f"dW[{l}]", f"db[{l}]"


def exact_gradient_comparisons(case: Case, grads: Grads, dtype: np.dtype) -> list[Comparison]:
    """The candidate's gradients vs exact backprop (either ReLU'(0) convention), no finite
    differences: for hand-built cases whose pre-activations stay away from kinks."""
    tau = precision_tolerance(dtype)
    activations, pre_activations = exact_forward(case.X, case.params)
    mags = magnitudes(case.X, case.Y, case.params)
    g0 = exact_gradients(activations, pre_activations, case.Y, case.params, 0.0)
    g1 = exact_gradients(activations, pre_activations, case.Y, case.params, 1.0)
    out = []
    for l in range(len(case.params)):
        for t in range(2):
            M = mags.gradients[l][t]
            out.append(Comparison(_names(l)[t], grads[l][t], g0[l][t],
                                  allowed_error(M, float(M.max(initial=0)), tau), expected_alt=g1[l][t]))
    return out


def gradient_comparisons(case: Case, grads: Grads, dtype: np.dtype,
                         every_entry: bool = False) -> list[Comparison]:
    """Check (b): the candidate's gradients vs central differences of the exact loss: every
    entry of small networks (or of any network with ``every_entry``), else random directions."""
    tau = precision_tolerance(dtype)
    activations, pre_activations = exact_forward(case.X, case.params)
    mags = magnitudes(case.X, case.Y, case.params)
    zero_conv = exact_gradients(activations, pre_activations, case.Y, case.params, 0.0)
    one_conv = exact_gradients(activations, pre_activations, case.Y, case.params, 1.0)
    entrywise = every_entry or case.n_params <= ENTRYWISE_MAX_PARAMS
    out = []
    for l in range(len(case.params)):
        for t, kind in enumerate(("W", "b")):
            name = _names(l)[t]
            g = np.asarray(grads[l][t], dtype=np.float64)
            M, g0, g1 = mags.gradients[l][t], zero_conv[l][t], one_conv[l][t]
            if entrywise:
                est = fd_tensor(case.X, case.Y, case.params, l, kind, mags)
                ex = est.excluded.reshape(g.shape)
                # An entry whose difference straddles a kink is judged against exact backprop
                # under either ReLU'(0) convention instead (never against a kinked difference).
                expected = np.where(ex, g0, est.value.reshape(g.shape))
                alt = np.where(ex, g1, expected)
                fd_error = np.where(ex, 0, est.error.reshape(g.shape))
                allowed = allowed_error(M, M.max(initial=0), tau) + fd_error
                out.append(Comparison(name, g, expected, allowed,
                                      step=np.where(ex, np.nan, est.step.reshape(g.shape)),
                                      expected_alt=alt, fd_error=fd_error))
            else:
                V = random_directions(g.shape, DIRECTIONS_PER_TENSOR, case.seed * 31 + 2 * l + t)
                est = fd_tensor(case.X, case.Y, case.params, l, kind, mags, directions=V)
                axes = tuple(range(1, V.ndim))
                along = lambda a, V=V, axes=axes: (V * a).sum(axis=axes)  # noqa: E731
                m_dir = (np.abs(V) * M).sum(axis=axes)
                expected = np.where(est.excluded, along(g0), est.value)
                alt = np.where(est.excluded, along(g1), expected)
                fd_error = np.where(est.excluded, 0, est.error)
                allowed = allowed_error(m_dir, m_dir.max(initial=0), tau) + fd_error
                out.append(Comparison(f"{name}·v", along(g), expected, allowed,
                                      step=np.where(est.excluded, np.nan, est.step),
                                      labels=[f"[direction {k}]" for k in range(len(V))],
                                      expected_alt=alt, fd_error=fd_error))
    return out


def self_consistency_comparisons(case: Case, grads: Grads, dtype: np.dtype,
                                 forward: Callable[[list], ForwardResult]) -> list[Comparison]:
    """Check (c) (see ``_self_consistency``). A float64 forward that rounds somewhere in float32
    (float32 weights, a float32 intermediate) is only float32-smooth: a float64-sized step then
    differences rounding noise. When the float64 step fails, the step and error estimate of
    float32 are tried; if every tensor agrees then, the loss's precision was the float32 one."""
    out = _self_consistency(case, grads, dtype, forward, dtype)
    if np.dtype(dtype) == np.float64 and any(c.bad.any() for c in out):
        retry = _self_consistency(case, grads, dtype, forward, np.dtype(np.float32))
        if not any(c.bad.any() for c in retry):
            return retry
    return out


def _self_consistency(case: Case, grads: Grads, dtype: np.dtype,
                      forward: Callable[[list], ForwardResult], step_dtype: np.dtype) -> list[Comparison]:
    """Check (c): the candidate's backward (on its own forward) along one random direction per
    tensor vs central differences of mean cross-entropy of the candidate's own logits.

    The step follows the candidate's precision (eps**(1/3) of its dtype); a direction whose
    difference flips one of the candidate's own ReLU masks is retried smaller and, if it still
    does, is judged against exact backprop at the candidate's OWN activations (either ReLU'(0)
    convention) instead: never skipped, so a forward that fakes mask flips on the suite's
    perturbations gains nothing (a correct backward is exactly that function of its inputs).
    Because that fallback cannot see a wrong forward, any fallback also adds check (a)'s
    comparisons of the candidate's forward with the exact forward: a kink, real or faked,
    never lets a forward bug pass this check."""
    eps = float(np.finfo(step_dtype).eps)
    tau = precision_tolerance(dtype)
    mags = magnitudes(case.X, case.Y, case.params)
    base = forward(list(case.params))
    base_own = own_pre_activations(base)
    base_masks = [z > 0 for z in base_own[:-1]]
    at_own = [exact_gradients(base.activations, base_own, case.Y, case.params, c) for c in (0.0, 1.0)]
    out = []
    fell_back = False
    for l in range(len(case.params)):
        for t in range(2):
            theta = case.params[l][t]
            V = random_directions(theta.shape, 1, case.seed * 17 + 2 * l + t)

            def losses_and_flips(offsets: np.ndarray, l: int = l, t: int = t) -> tuple[np.ndarray, np.ndarray]:
                losses, flips = [], []
                for d in offsets:
                    params = list(case.params)
                    pair = list(params[l])
                    pair[t] = pair[t] + d
                    params[l] = (pair[0], pair[1])
                    own = own_pre_activations(forward(params))
                    logits = np.asarray(own[-1], dtype=np.float64)
                    losses.append(float(exact_cross_entropy(logits, case.Y)))
                    flips.append(any(((z > 0) != m).any() for z, m in zip(own[:-1], base_masks)))
                return np.array(losses), np.array(flips)

            step = np.array([eps ** (1 / 3) * max(1.0, float(np.abs(theta).max(initial=0)))])
            est = central_differences(losses_and_flips, V, step, mags.loss_scale, eps=eps)
            axes = tuple(range(1, V.ndim))
            M = mags.gradients[l][t]
            m_dir = (np.abs(V) * M).sum(axis=axes)
            along = lambda a, V=V, axes=axes: (V * np.asarray(a, np.float64)).sum(axis=axes)  # noqa: E731
            actual = along(grads[l][t])
            kinked = est.excluded
            expected = np.where(kinked, along(at_own[0][l][t]), est.value)
            alt = np.where(kinked, along(at_own[1][l][t]), expected)
            allowed = allowed_error(m_dir, float(m_dir.max()), tau) + np.where(kinked, 0.0, est.error)
            out.append(Comparison(f"{_names(l)[t]}·v", actual, expected, allowed,
                                  step=np.where(kinked, np.nan, est.step),
                                  expected_alt=alt, labels=["[random direction]"],
                                  fd_error=np.where(kinked, 0.0, est.error)))
            fell_back |= bool(kinked.any())
    if fell_back:
        out += forward_comparisons(case, base)
    return out
