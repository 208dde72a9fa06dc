"""Name the bug, not just the symptom.

``KNOWN_BUGS`` is a catalogue of the usual backward-pass mistakes, each written as a variant
of the correct recursion. When a candidate's gradients fail a check, ``diagnose`` recomputes
every variant on the same inputs and says which one the candidate's gradients equal.
``explain_exception`` turns a crash inside backward into a sentence about its likely cause
(the broadcast error of the ``pre_activations[i]`` index bug, the matmul error of a wrong W).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from conformance.gradcheck import TENSOR_FLOOR, Magnitudes, analytic_gradients

Grads = list[tuple[np.ndarray, np.ndarray]]
Params = Sequence[tuple[np.ndarray, np.ndarray]]


def _variant_backprop(acts: Sequence[np.ndarray], pres: Sequence[np.ndarray], Y: np.ndarray,
                      params: Params, *, batch_mean: bool = True, mask_offset: int = -1,
                      w_offset: int = 0, transpose_w: bool = True, mask: bool = True,
                      sign: float = 1.0, db_mean: bool = False, dw_mean: bool = False,
                      dw_transposed: bool = False, propagate: bool = True, reverse: bool = False,
                      softmax_jacobian: bool = False, dw_from_output: bool = False) -> Grads:
    """The correct recursion, with one knob per known mistake (defaults: correct)."""
    B = Y.shape[0]
    Y_hat = acts[-1]
    delta = sign * (Y_hat - Y)
    if softmax_jacobian:
        delta = delta * Y_hat * (1 - Y_hat)
    if batch_mean:
        delta = delta / B
    grads = []
    for i in reversed(range(len(params))):
        A_prev = acts[i + 1] if dw_from_output else acts[i]
        dW = delta.T @ A_prev if dw_transposed else A_prev.T @ delta
        if dw_mean:
            dW = dW / B
        db = delta.mean(axis=0) if db_mean else delta.sum(axis=0)
        grads.append((dW, db))
        if i > 0 and propagate:
            W = params[i + w_offset][0]
            delta = delta @ (W.T if transpose_w else W)
            if mask:
                delta = delta * (pres[i + mask_offset] > 0)
    return grads if reverse else grads[::-1]


@dataclass(frozen=True)
class KnownBug:
    key: str
    description: str  # completes "your gradients equal those of an implementation that ..."
    line_pattern: str  # the line as it usually appears, and what it should be
    knobs: dict[str, Any]

    def gradients(self, acts: Sequence[np.ndarray], pres: Sequence[np.ndarray], Y: np.ndarray,
                  params: Params) -> Grads:
        return _variant_backprop(acts, pres, Y, params, **self.knobs)


KNOWN_BUGS: tuple[KnownBug, ...] = (
    KnownBug("relu_index", "evaluates the ReLU derivative at the wrong layer's pre-activation "
             "(the i-1 bug)", "`* (pre_activations[i] > 0)` should be `* (pre_activations[i-1] > 0)`",
             {"mask_offset": 0}),
    KnownBug("no_batch_mean", "does not divide by the batch size",
             "`delta = Y_hat - Y` should be `delta = (Y_hat - Y) / B`", {"batch_mean": False}),
    KnownBug("double_batch_mean", "divides by the batch size twice (dW averaged again)",
             "`dW = A_prev.T @ delta / B`: delta is already divided by B", {"dw_mean": True}),
    KnownBug("db_mean", "averages db over the batch instead of summing it",
             "`db = delta.mean(axis=0)` should be `db = delta.sum(axis=0)`", {"db_mean": True}),
    KnownBug("missing_mask", "leaves out the ReLU derivative when propagating delta",
             "`delta = delta @ W.T` should be `delta = (delta @ W.T) * (pre_activations[i-1] > 0)`",
             {"mask": False}),
    KnownBug("wrong_weights", "propagates delta through the wrong layer's weights",
             "`W = params[i-1][0]` should be `W = params[i][0]`", {"w_offset": -1}),
    KnownBug("untransposed_weights", "propagates delta through W instead of W.T",
             "`delta @ W` should be `delta @ W.T`", {"transpose_w": False}),
    KnownBug("reversed_order", "returns the gradients in reverse order (last layer first)",
             "`return grads` should be `return list(reversed(grads))`", {"reverse": True}),
    KnownBug("transposed_dw", "computes dW transposed",
             "`dW = delta.T @ A_prev` should be `dW = A_prev.T @ delta`", {"dw_transposed": True}),
    KnownBug("wrong_sign", "uses Y - Y_hat (the gradient's sign is flipped)",
             "`delta = (Y - Y_hat) / B` should be `delta = (Y_hat - Y) / B`", {"sign": -1.0}),
    KnownBug("delta_not_propagated", "never propagates delta to the earlier layers",
             "the loop must update `delta = (delta @ W.T) * (pre_activations[i-1] > 0)`",
             {"propagate": False}),
    KnownBug("softmax_jacobian", "multiplies by the softmax derivative Y_hat * (1 - Y_hat) on top "
             "of Y_hat - Y", "`delta = (Y_hat - Y) / B` already includes the softmax derivative",
             {"softmax_jacobian": True}),
    KnownBug("dw_from_output", "uses the layer's own output instead of its input in dW",
             "`dW = activations[i+1].T @ delta` should be `dW = activations[i].T @ delta`",
             {"dw_from_output": True}),
)


def _matches(candidate: Grads, expected: Grads, mags: Magnitudes, tau: float) -> list[bool]:
    """Per tensor: does the candidate equal ``expected`` within the precision tolerance?"""
    out = []
    for (cW, cb), (eW, eb), (mW, mb) in zip(candidate, expected, mags.gradients):
        for c, e, m in ((cW, eW, mW), (cb, eb, mb)):
            if np.shape(c) != np.shape(e):
                out.append(False)
                continue
            scale = np.maximum(m, np.abs(e))
            allowed = tau * (scale + TENSOR_FLOOR * float(scale.max(initial=0.0)))
            out.append(bool(np.all(np.abs(np.asarray(c, np.float64) - e) <= allowed)))
    return out


def diagnose(candidate: Grads, acts: Sequence[np.ndarray], pres: Sequence[np.ndarray], Y: np.ndarray,
             params: Params, mags: Magnitudes, tau: float) -> str:
    """One or two sentences: which known implementation the candidate's gradients equal."""
    names = [f"{t}[{l}]" for l in range(len(params)) for t in ("dW", "db")]
    correct = [np.logical_or(a, b) for a, b in zip(
        _matches(candidate, analytic_gradients(acts, pres, Y, params, 0.0), mags, tau),
        _matches(candidate, analytic_gradients(acts, pres, Y, params, 1.0), mags, tau))]
    if all(correct):
        return "the gradients equal the correct ones on these inputs."
    partial = []
    for bug in KNOWN_BUGS:
        try:
            with np.errstate(all="ignore"):
                expected = bug.gradients(acts, pres, Y, params)
        except ValueError:  # this bug would crash on these shapes
            continue
        if any(np.shape(e) != np.shape(c) for pe, pc in zip(expected, candidate) for e, c in zip(pe, pc)):
            continue
        same = _matches(candidate, expected, mags, tau)
        if all(same):
            return (f"your gradients equal those of an implementation that {bug.description}: "
                    f"{bug.line_pattern}.")
        newly = [n for n, s, ok in zip(names, same, correct) if s and not ok]
        if newly:
            partial.append(f"{', '.join(newly)} equal those of an implementation that "
                           f"{bug.description} ({bug.line_pattern})")
    right = [n for n, ok in zip(names, correct) if ok]
    wrong = [n for n, ok in zip(names, correct) if not ok]
    text = f"wrong: {', '.join(wrong)}" + (f"; right: {', '.join(right)}" if right else "")
    if partial:
        return text + ".\n" + ";\n".join(partial) + "."
    return text + ". The gradients match none of the known bugs in conformance/diagnosis.py."


_BROADCAST = re.compile(r"could not be broadcast together with shapes \(([\d, ]+)\)\s*\(([\d, ]+)\)")
_MATMUL = re.compile(r"matmul: Input operand \d+ has a mismatch in its core dimension")


def _shape(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.replace(" ", "").split(",") if v)


def explain_exception(text: str, function: str, layer_sizes: Sequence[int], batch: int) -> str:
    """A likely cause for an exception message raised by the candidate's ``function``."""
    m = _BROADCAST.search(text)
    if m and function == "backward":
        shapes = {_shape(m.group(1)), _shape(m.group(2))}
        for i in range(1, len(layer_sizes) - 1):  # hidden layer widths n_i, next n_{i+1}
            if shapes == {(batch, layer_sizes[i]), (batch, layer_sizes[i + 1])}:
                return (f"this is the symptom of the i-1 bug: delta @ W.T has shape "
                        f"({batch}, {layer_sizes[i]}) but the ReLU mask has the shape of the NEXT "
                        f"layer's pre-activation ({batch}, {layer_sizes[i + 1]}); write "
                        f"`* (pre_activations[i-1] > 0)`, not `* (pre_activations[i] > 0)`.")
        return ("two arrays inside backward have incompatible shapes: check that every elementwise "
                "product pairs arrays of the same layer.")
    if _is_matmul_error(text) and function == "backward":
        if 1 in layer_sizes[1:-1]:
            return ("a matrix product inside backward has mismatched shapes. With a width-1 layer "
                    "this is typically the i-1 bug: `* (pre_activations[i] > 0)` multiplies a "
                    "(B, 1) delta by the next layer's (B, n) mask, broadcasting delta to the wrong "
                    "width, and the next `delta @ W.T` fails; write `pre_activations[i-1]`.")
        return ("a matrix product inside backward has mismatched shapes: propagate with the weights "
                "of the layer you just differentiated, transposed (`delta @ params[i][0].T`), and "
                "compute `dW = activations[i].T @ delta`.")
    return ""


def _is_matmul_error(text: str) -> bool:
    return bool(_MATMUL.search(text)) or "shapes not aligned" in text


# ------------------------------------------------------------------------------ forward bugs
def _softmax(Z: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(Z - Z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _variant_forward(X: np.ndarray, params: Params, *, bias: bool = True, relu_output: bool = False,
                     softmax_axis: int = -1, softmax_hidden: bool = False,
                     pre_after_relu: bool = False,
                     relu_instead_of_softmax: bool = False) -> tuple[list[np.ndarray], list[np.ndarray]]:
    acts, pres = [X], []
    for i, (W, b) in enumerate(params):
        Z = acts[-1] @ W + (b if bias else 0.0)
        last = i == len(params) - 1
        if last and relu_instead_of_softmax:
            A = np.maximum(Z, 0)
        elif last:
            A = _softmax(np.maximum(Z, 0) if relu_output else Z, axis=softmax_axis)
        else:
            A = _softmax(Z) if softmax_hidden else np.maximum(Z, 0)
        pres.append(A if pre_after_relu and not last else Z)
        acts.append(A)
    return acts, pres


FORWARD_BUGS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("leaves out the bias (`Z = A_prev @ W` instead of `A_prev @ W + b`)", {"bias": False}),
    ("applies ReLU to the output layer before the softmax", {"relu_output": True}),
    ("applies ReLU instead of softmax on the output layer", {"relu_instead_of_softmax": True}),
    ("takes the softmax over the batch axis (`axis=0`) instead of per row (`axis=-1`)",
     {"softmax_axis": 0}),
    ("applies softmax on the hidden layers instead of ReLU", {"softmax_hidden": True}),
    ("stores relu(Z) in pre_activations (an in-place ReLU overwrote Z)", {"pre_after_relu": True}),
)


def diagnose_forward(activations: Sequence[np.ndarray], pre_activations: Sequence[np.ndarray],
                     X: np.ndarray, params: Params, tau: float) -> str:
    """Which known forward mistake the candidate's outputs equal, if any."""
    got = list(activations) + list(pre_activations)
    for description, knobs in FORWARD_BUGS:
        with np.errstate(all="ignore"):
            acts, pres = _variant_forward(X, params, **knobs)
        expected = acts + pres
        if all(np.shape(g) == np.shape(e) and np.all(
                np.abs(np.asarray(g, np.float64) - e) <= tau * (np.abs(e) + 0.01 * (np.abs(e).max(initial=0) + 1)))
               for g, e in zip(got, expected)):
            return f"your forward's outputs equal those of an implementation that {description}."
    return "the outputs match none of the known forward mistakes in conformance/diagnosis.py."
