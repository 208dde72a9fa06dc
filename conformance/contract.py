"""Structure validation of what a candidate returns (conformance/SPEC.md, "Return values").

Validation happens BEFORE any value is compared: a returned object must be a genuine
``numpy.ndarray`` (exact type) of float32/float64 before the suite looks at its values, and
every comparison afterwards uses numpy functions on those plain arrays. So an ndarray
subclass or an object with a rigged ``__eq__``/``__array__``/``__float__`` is rejected by its
type, never consulted. Type names are read from ``type(obj)``, never from the object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np


ACCEPTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class ContractError(AssertionError):
    """A candidate's return value breaks the written contract (a test failure)."""


def type_name(obj: Any) -> str:
    cls = type(obj)
    module = getattr(cls, "__module__", "") or ""
    # Any, not str: a hostile metaclass can make these attributes anything (callers only format it).
    name: Any = getattr(cls, "__qualname__", None) or getattr(cls, "__name__", "?")
    return name if module in ("builtins", "") else f"{module}.{name}"


RETURN_CONTRACT = ("forward returns (activations, pre_activations) = ([X, A1, ..., AL], [Z1, ..., ZL]); "
                   "backward returns [(dW1, db1), ..., (dWL, dbL)] in forward order, dW shaped like W "
                   "and db like b (1-D); every array a plain numpy.ndarray of float32 or float64")


def _fail(message: str, where: str) -> ContractError:
    return ContractError(f"{message} [{where}]\n  contract: {RETURN_CONTRACT}")


def validate_array(value: Any, name: str, where: str, shape: tuple[int, ...] | None = None,
                  shape_hint: str = "") -> np.ndarray:
    """``value`` itself if it is an exact float32/float64 ndarray of ``shape``, else a
    ContractError that names the value and what is wrong."""
    __tracebackhide__ = True
    if type(value) is not np.ndarray:
        extra = " (a subclass of numpy.ndarray is not accepted: its operators could be redefined)" \
            if isinstance(value, np.ndarray) else ""
        raise _fail(f"{name} is a {type_name(value)}, but should be a numpy.ndarray{extra}", where)
    if value.dtype not in ACCEPTED_DTYPES:
        if value.dtype.kind == "f":
            why = f"{value.dtype} has not enough precision for the check; compute in float32 or float64"
        else:
            why = f"dtype {value.dtype} is not a real floating dtype; return float32 or float64"
        raise _fail(f"{name} has dtype {value.dtype}, but should be float32 or float64 ({why})", where)
    if shape is not None and value.shape != tuple(shape):
        raise _fail(f"{name} has shape {value.shape}, but should have shape {tuple(shape)}{shape_hint}",
                    where)
    return value


def validate_sequence(value: Any, name: str, where: str, length: int | None = None,
                     what: str = "items", note: str = "") -> tuple[Any, ...]:
    """A list or tuple (subclasses such as namedtuples are fine) of ``length`` items."""
    __tracebackhide__ = True
    if not isinstance(value, (list, tuple)):
        raise _fail(f"{name} is a {type_name(value)}, but should be a list or tuple of {what}", where)
    items = tuple(list.__iter__(value) if isinstance(value, list) else tuple.__iter__(value))
    if length is not None and len(items) != length:
        raise _fail(f"{name} has {len(items)} {what}, but should have {length}{note}", where)
    return items


class PrecisionFinding(UserWarning):
    """Not a failure: something the student should know about the precision of their results
    (collected into the run's summary, conformance/summary.py)."""


# An array "reveals" float32 when every entry is exactly a float32 number and enough entries
# carry a full float32 mantissa (more than 10 significant bits) that a float64 computation
# could not produce that by chance: each such entry has a 2**-29 chance, 4 give 2**-116.
REVEALING_ENTRIES = 4
# The note states the fact (only float32 numbers) and names both sources that give it: a
# float32 computation cast to float64, and float64 values recovered by a subtraction of nearby
# numbers (W - W_new), which keeps only the bits where they differ. The suite cannot tell them
# apart from the array alone, so it names neither as the cause.
FLOAT32_CAST_NOTE = ("float64 arrays whose every entry is exactly a float32 number are judged at "
                     "float32 precision (as float32 arrays would be). Two usual sources: a float32 "
                     "computation cast to float64 (return the float32 arrays themselves: it costs "
                     "nothing), or values recovered by a subtraction such as W - W_new, which keeps "
                     "only the bits where the two differ (compute the gradient directly) (dtype policy)")


def revealed_dtype(array: np.ndarray) -> np.dtype:
    """The precision an array's values show: its dtype, or float32 for a float64 array that
    holds only float32 numbers (a float32 computation cast to float64)."""
    if array.dtype != np.float64 or array.size < REVEALING_ENTRIES:
        return array.dtype
    finite = array[np.isfinite(array)]
    with np.errstate(over="ignore", invalid="ignore"):
        if finite.size != array.size or not np.array_equal(finite.astype(np.float32), finite):
            return array.dtype
        mantissa, _ = np.frexp(finite)
        coarse = mantissa * 2.0**11 == np.round(mantissa * 2.0**11)  # 11 bits or fewer: 0, 1, 0.5...
    return np.dtype(np.float32) if int((~coarse).sum()) >= REVEALING_ENTRIES else array.dtype


def result_dtype(arrays: Sequence[np.ndarray]) -> np.dtype:
    """The least precise precision among validated arrays (their dtype, or float32 for float64
    arrays holding only float32 numbers): it sets the tolerances (SPEC.md, dtype policy)."""
    dtypes = [revealed_dtype(a) for a in arrays]
    if any(d != a.dtype for d, a in zip(dtypes, arrays)):
        import warnings

        warnings.warn(PrecisionFinding(FLOAT32_CAST_NOTE), stacklevel=2)
    return least_precise(*dtypes) if dtypes else np.dtype(np.float64)


def least_precise(*dtypes: np.dtype | type) -> np.dtype:
    """The floating dtype with the largest machine epsilon: the one that sets a tolerance when
    a result mixes precisions (the suite's one rule for it; SPEC.md, dtype policy)."""
    return max((np.dtype(d) for d in dtypes), key=lambda d: np.finfo(d).eps)


@dataclass
class ForwardResult:
    activations: list[np.ndarray]
    # None only when the (trusted) declaration says forward keeps no pre-activations (the limit
    # "pre_activations", decided on the suite's side: never by what the candidate returns).
    pre_activations: list[np.ndarray] | None
    dtype: np.dtype


def own_pre_activations(fwd: ForwardResult) -> list[np.ndarray]:
    """The candidate's own pre-activations, as check (c) reads them: its zs, or, for a forward that
    keeps none (the declaration's limit "pre_activations"), what its activations say of them:
    the hidden masks (A > 0 exactly where Z > 0; -1 stands for Z <= 0, so ReLU'(0) = 0, the
    convention of a mask read from A) and log(probabilities) for the logits (the same softmax,
    so the same cross-entropy; in float64, of the candidate's own probabilities)."""
    if fwd.pre_activations is not None:
        return list(fwd.pre_activations)
    hidden = [np.where(np.asarray(a) > 0, np.asarray(a, np.float64), -1.0) for a in fwd.activations[1:-1]]
    with np.errstate(divide="ignore"):
        return hidden + [np.log(np.asarray(fwd.activations[-1], np.float64))]


def validate_forward(result: Any, X: np.ndarray, params: Sequence[tuple[np.ndarray, np.ndarray]],
                  where: str, pre_activations_kept: bool = True) -> ForwardResult:
    """forward(X, params) -> (activations [X, A1..AL], pre_activations [Z1..ZL]).

    ``pre_activations_kept=False`` (the caller's declaration has the limit "pre_activations"):
    the pair's second item is not read, and the result's ``pre_activations`` is None."""
    __tracebackhide__ = True
    L = len(params)
    pair = validate_sequence(result, "forward's return value", where, 2, "items",
                            " (activations, pre_activations)")
    returned_activations = validate_sequence(pair[0], "activations", where, L + 1, "arrays",
                            f" (X, then one per layer; the network has {L} layers)")
    returned_pre_activations = validate_sequence(pair[1], "pre_activations", where, L, "arrays",
                            f" (one per layer; the network has {L} layers)") if pre_activations_kept else ()
    B = X.shape[0]
    activations = [validate_array(returned_activations[0], "activations[0]", where, X.shape,
                          " (activations[0] is the input X itself)")] + [
        validate_array(a, f"activations[{l}]", where, (B, W.shape[1]))
        for l, (a, (W, _)) in enumerate(zip(returned_activations[1:], params), start=1)]
    pre_activations = [validate_array(z, f"pre_activations[{l}]", where, (B, W.shape[1]),
                          " (Z of layer l+1 = A_l @ W + b)")
            for l, (z, (W, _)) in enumerate(zip(returned_pre_activations, params))]
    return ForwardResult(activations, pre_activations if pre_activations_kept else None,
                         result_dtype(activations[1:] + pre_activations))


def validate_backward(result: Any, params: Sequence[tuple[np.ndarray, np.ndarray]],
                   where: str) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.dtype]:
    """backward(...) -> [(dW1, db1), ..., (dWL, dbL)] in forward order, dW like W, db like b."""
    __tracebackhide__ = True
    L = len(params)
    layers = validate_sequence(result, "backward's return value", where, L, "items",
                              f" (one (dW, db) pair per layer; the network has {L} layers)")
    shapes = [(W.shape, b.shape) for W, b in params]
    got = []
    for l, pair in enumerate(layers):
        items = validate_sequence(pair, f"gradient {l}", where, 2, "items", " (dW, db)")
        got.append(items)
    if L > 1 and shapes != shapes[::-1]:
        got_shapes = [tuple(getattr(x, "shape", None) if type(x) is np.ndarray else None for x in p)
                      for p in got]
        if got_shapes == shapes[::-1]:
            # A statement about shapes only: which mistake made them is for replay to say
            # (conformance.calls.named_contract compares the values too).
            raise _fail("the gradients have the shapes of the layers in reversed order (the last layer's "
                        "first): return [(dW1, db1), ..., (dWL, dbL)] in forward order", where)
    grads = []
    for l, ((dW, db), (W, b)) in enumerate(zip(got, params)):
        if type(dW) is np.ndarray and _broadcast_widened(dW.shape, W.shape):
            raise _fail(f"dW[{l}] has shape {dW.shape}, but should have shape {W.shape}: numpy "
                        "broadcasting across a width-1 layer widened an array, which happens when "
                        "an array of another layer is used (e.g. the i-1 bug's "
                        "`pre_activations[i]` mask)", where)
        hint_w = (" (the shape of W.T; dW must have W's shape, as A_prev.T @ delta has)"
                  if type(dW) is np.ndarray and dW.shape == W.shape[::-1] and W.shape[0] != W.shape[1]
                  else " (dW must have the shape of W)")
        hint_b = " (db must have the shape of b: delta.sum(axis=0))"
        if type(db) is np.ndarray and db.ndim == 2 and db.size == b.size:
            hint_b = " (db must be 1-D like b, e.g. delta.sum(axis=0) without keepdims)"
        grads.append((validate_array(dW, f"dW[{l}]", where, W.shape, hint_w),
                      validate_array(db, f"db[{l}]", where, b.shape, hint_b)))
    return grads, result_dtype([g for pair in grads for g in pair])


def validate_params(value: Any, shapes: Sequence[tuple[tuple[int, ...], tuple[int, ...]]], name: str,
                    where: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """A parameter list [(W1, b1), ..., (WL, bL)] (what init_params and train return) with
    W and b of the given shapes."""
    __tracebackhide__ = True
    layers = validate_sequence(value, name, where, len(shapes), "items",
                               f" (one (W, b) pair per layer; the network has {len(shapes)} layers)")
    params = []
    for l, (pair, (w_shape, b_shape)) in enumerate(zip(layers, shapes)):
        W, b = validate_sequence(pair, f"params[{l}]", where, 2, "items", " (W, b)")
        params.append((validate_array(W, f"W[{l}]", where, w_shape),
                       validate_array(b, f"b[{l}]", where, b_shape)))
    return params


def _broadcast_widened(got: tuple[int, ...], want: tuple[int, ...]) -> bool:
    return got != want and len(got) == len(want) and all(g == w or w == 1 for g, w in zip(got, want))


def validate_loss(value: Any, where: str) -> tuple[float, np.dtype]:
    """A Python float, a numpy float32/float64 scalar, or a 0-d / 1-element float array.

    Returns the value and the dtype that sets its tolerance. A Python float does not say in
    which precision it was computed (``float(x32.mean())`` is common), so it is judged with
    float32 tolerances, the most lenient accepted precision (loss bugs are O(1) anyway)."""
    __tracebackhide__ = True
    if type(value) is float:
        return value, np.dtype(np.float32)
    if type(value) in (np.float64, np.float32):
        return float(value), np.dtype(type(value))
    if type(value) is np.ndarray:
        arr = validate_array(value, "the loss", where)
        if arr.size != 1:
            raise _fail(f"the loss has shape {arr.shape}, but should be a scalar (the mean over the "
                        "batch, not one value per sample)", where)
        return float(arr.reshape(-1)[0]), arr.dtype
    if type(value) is np.float16:
        raise _fail("the loss is a numpy.float16: not enough precision for the check", where)
    raise _fail(f"the loss is a {type_name(value)}, but should be a float (Python float, "
                "numpy float64/float32, or a 0-d/1-element float array)", where)
