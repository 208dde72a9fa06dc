"""Name the bug, not just the symptom.

``KNOWN_BUGS`` is a catalogue of the usual backward-pass mistakes, each a set of switches of
the exact backprop (``conformance.exact.BackwardBugs``; ``FORWARD_BUGS`` likewise for the
forward). When a candidate's gradients fail a check, ``diagnose`` recomputes
every variant on the same inputs and says which one the candidate's gradients equal.
``explain_exception`` turns a crash inside backward into a sentence about its likely cause
(the broadcast error of the ``pre_activations[i]`` index bug, the matmul error of a wrong W).
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from dataclasses import dataclass
from typing import Any, Sequence, cast

import numpy as np

from conformance.exact import (BackwardBugs, ForwardBugs, Grads, Magnitudes, Params, exact_forward,
                              exact_gradients, exact_softmax, magnitudes)
from conformance.evidence import Finding, current_case, record
from conformance.gradcheck import TENSOR_FLOOR, precision_tolerance
from conformance.mistakes import BY_KEY, MISTAKES


# ------------------------------------------------------------------ structured diagnoses
# Every sentence that names a catalogued mistake or a generic finding is built through
# ``named(key, text)``, which records the finding as data (conformance.evidence) for the test
# that is running: the grader prices the recorded keys, never the wording, and the candidate
# cannot add one (its own text is never recorded, only the suite's findings).


def named(key: str, text: str, consistent: Sequence[str] = ()) -> str:
    """``text``, with the finding ``key`` recorded on the current inputs. ``consistent``: for a
    generic finding, the catalogued mistakes whose replay on the same inputs reproduces it."""
    kind = "generic" if key in GENERIC_KEYS else "named"
    record(Finding(key=key, function=function_of(key), kind=kind, case=current_case(),
                   consistent=tuple(sorted(set(consistent)))))
    return text


def _grads_shapes(grads: Any) -> tuple | None:
    try:
        return tuple(tuple(np.shape(t) for t in pair) for pair in grads)
    except Exception:  # noqa: BLE001 - the candidate's result may be anything
        return None


def bugs_consistent_with(args: Sequence[Any], result: Any = None) -> list[str]:
    """The catalogued backward mistakes that, on backward's inputs ``args`` (activations,
    pre_activations, Y, params), would crash (``result`` None) or return gradients of the
    same shapes as ``result`` where the correct shapes differ.

    For a crash, a mistake whose replay returns gradients of other shapes than the correct ones
    counts too: the replay runs backprop in one order of operations, the section's, and code
    that computes the same steps in another order or layout (``dA = W.T @ dZ`` before the mask,
    samples in columns) meets the same misshapen array at a step that cannot broadcast it."""
    try:
        activations, pre_activations, Y, params = args
        pre_activations = _pre_activations_of(activations, pre_activations, params)
        simulate = lambda bugs: exact_gradients(activations, pre_activations, Y, params, bugs=bugs)  # noqa: E731
        correct = _grads_shapes(simulate(BackwardBugs()))
    except Exception:  # noqa: BLE001 - inputs the suite cannot simulate: no claim
        return []
    got = None if result is None else _grads_shapes(result)
    keys = []
    for bug in KNOWN_BUGS:
        try:
            with np.errstate(all="ignore"):
                shapes = _grads_shapes(simulate(bug.bugs))
        except (ValueError, IndexError):
            # Misshapen arrays surface as a crash in the section's order of operations, or as
            # misshapen gradients in another (the same reason as below, the other way round).
            if result is None or (got is not None and got != correct):
                keys.append(bug.key)
            continue
        if result is None and shapes != correct:
            keys.append(bug.key)
        elif result is not None and got is not None and shapes == got != correct:
            keys.append(bug.key)
    return keys


def _pre_activations_of(activations: Sequence[Any], pre_activations: Any, params: Params) -> Any:
    """The pre-activations backward was given, or, for an interface that keeps none (the
    declared limit "pre_activations": None), Z = A_prev @ W + b recomputed in float64 from the
    activations it was given: the replay of a mistake needs Z's shapes and signs."""
    if pre_activations is not None:
        return pre_activations
    return [np.asarray(a, np.float64) @ np.asarray(W, np.float64) + np.asarray(b, np.float64)
            for a, (W, b) in zip(activations[:-1], params)]


def bugs_replayed(args: Sequence[Any], result: Any) -> list[str]:
    """The catalogued backward mistakes whose replay on backward's inputs ``args`` gives
    exactly the candidate's ``result``, values included (not only its shapes), where the
    correct gradients have other shapes. Inputs or results the suite cannot read: none."""
    try:
        activations, pre_activations, Y, params = args
        pre_activations = _pre_activations_of(activations, pre_activations, params)
        got = [tuple(np.asarray(t, np.float64) for t in pair) for pair in result]
        correct = _grads_shapes(exact_gradients(activations, pre_activations, Y, params))
        mags = magnitudes(np.asarray(activations[0], np.float64), np.asarray(Y, np.float64), params)
        dtype = np.result_type(*[np.asarray(t).dtype for pair in result for t in pair])
        tau = precision_tolerance(dtype if np.issubdtype(dtype, np.floating) else np.float64)
    except Exception:  # noqa: BLE001 - nothing to replay against
        return []
    keys = []
    for bug in KNOWN_BUGS:
        try:
            with np.errstate(all="ignore"):
                simulated = exact_gradients(activations, pre_activations, Y, params, bugs=bug.bugs)
        except (ValueError, IndexError):
            continue
        shapes = _grads_shapes(simulated)
        if shapes == _grads_shapes(got) != correct:
            # the magnitude bounds belong to the correct shapes: compare in the mistake's own order
            bounds = Magnitudes(mags.pre_activations, mags.activations,
                                [(np.abs(W) + 1.0, np.abs(b) + 1.0) for W, b in simulated], mags.loss_scale)
            # got has the replay's shapes here, so it is one (dW, db) pair per layer
            if all(_matches(cast(Grads, got), simulated, bounds, tau)):
                keys.append(bug.key)
    return keys


@dataclass(frozen=True)
class KnownBug:
    key: str
    description: str  # completes "your gradients equal those of an implementation that ..."
    line_pattern: str  # the line as it usually appears, and what it should be
    bugs: BackwardBugs  # the switches of exact backprop that simulate it

    def gradients(self, activations: Sequence[np.ndarray], pre_activations: Sequence[np.ndarray],
                  Y: np.ndarray, params: Params) -> Grads:
        return exact_gradients(activations, pre_activations, Y, params, bugs=self.bugs)


KNOWN_BUGS: tuple[KnownBug, ...] = tuple(
    KnownBug(m.key, m.description, m.fix, m.backward) for m in MISTAKES if m.backward is not None)
# Pairs are tried when no single mistake explains every tensor. A per-sample loop's
# last_sample_only ignores every other switch, so it never pairs.
_UNPAIRED = ("last_sample_only",)


def _distinctive(expected: Grads, mags: Magnitudes, tau: float) -> list[bool]:
    """Per tensor: is it clearly non-zero? A tensor that is ~0 is explained by many mistakes
    (a saturated softmax, a dead layer) and by the correct code alike, so it is no evidence."""
    zeros = [(np.zeros_like(W), np.zeros_like(b)) for W, b in expected]
    return [not m for m in _matches(zeros, expected, mags, tau)]


def _matches(candidate: Grads, expected: Grads, mags: Magnitudes, tau: float,
             alternative: Grads | None = None) -> list[bool]:
    """Per tensor: does the candidate equal ``expected`` within the precision tolerance (or lie
    between ``expected`` and ``alternative``, the same computation under the other ReLU'(0)
    convention: any ReLU'(0) in [0, 1] is a valid choice)?"""
    out = []
    alternative = alternative if alternative is not None else expected
    for (cW, cb), (eW, eb), (aW, ab), (mW, mb) in zip(candidate, expected, alternative, mags.gradients):
        for c, e, a, m in ((cW, eW, aW, mW), (cb, eb, ab, mb)):
            if np.shape(c) != np.shape(e) or np.shape(a) != np.shape(e):
                out.append(False)
                continue
            scale = np.maximum(m, np.maximum(np.abs(e), np.abs(a)))
            allowed = tau * (scale + TENSOR_FLOOR * float(scale.max(initial=0.0)))
            c64 = np.asarray(c, np.float64)
            with np.errstate(invalid="ignore"):
                distance = np.maximum(np.maximum(np.minimum(e, a) - c64, c64 - np.maximum(e, a)), 0.0)
            out.append(bool(np.all(distance <= allowed)))
    return out


@dataclass(frozen=True)
class Replay:
    """A known mistake (or pair) replayed on the candidate's inputs under the accepted
    conventions: does it reproduce every tensor the candidate returned?"""

    matches: list[bool]  # per tensor: the candidate equals the replay
    distinctive: list[bool]  # per tensor: the replay's tensor is clearly non-zero


def replay(bugs: BackwardBugs, candidate: Grads, activations: Sequence[np.ndarray],
           pre_activations: Sequence[np.ndarray], Y: np.ndarray, params: Params,
           mags: Magnitudes, tau: float) -> Replay | None:
    """The mistake ``bugs`` on the exact engine, on these very inputs, with ReLU'(0) anywhere in
    [0, 1] (simulated at both ends; the two coincide unless some pre-activation is exactly 0).
    None when the mistake would crash, or return other shapes than the candidate did."""
    zero_z = any(np.any(np.asarray(z) == 0) for z in pre_activations)
    try:
        with np.errstate(all="ignore"):
            at0 = exact_gradients(activations, pre_activations, Y, params, 0.0, bugs=bugs)
            at1 = exact_gradients(activations, pre_activations, Y, params, 1.0, bugs=bugs) if zero_z else at0
    except (ValueError, IndexError):
        return None
    if any(np.shape(e) != np.shape(c) for pe, pc in zip(at0, candidate) for e, c in zip(pe, pc)) \
            or len(at0) != len(candidate):
        return None
    distinctive = [a or b for a, b in zip(_distinctive(at0, mags, tau), _distinctive(at1, mags, tau))]
    return Replay(_matches(candidate, at0, mags, tau, at1), distinctive)


def _pairs() -> list[tuple[KnownBug, KnownBug, BackwardBugs]]:
    """Every pair of catalogued mistakes that can be made together (exhaustive)."""
    out = []
    for a, b in itertools.combinations(KNOWN_BUGS, 2):
        both = _combined(a.bugs, b.bugs)
        if both is not None:
            out.append((a, b, both))
    return out


def diagnose(candidate: Grads, activations: Sequence[np.ndarray], pre_activations: Sequence[np.ndarray],
             Y: np.ndarray, params: Params, mags: Magnitudes, tau: float) -> str:
    """One or two sentences: which known implementation the candidate's gradients equal.

    Replay is the rule (SPEC.md, "Diagnosis"): a known mistake is named only when the exact
    engine with that mistake reproduces EVERY tensor the candidate returned on these inputs,
    under one of the accepted conventions, and differs from the correct gradients somewhere
    clearly non-zero; failing that, a pair of known mistakes (searched exhaustively), named only
    if exactly one pair fits. Anything else is stated as what is wrong and what is right.
    """
    names = [f"{t}[{l}]" for l in range(len(params)) for t in ("dW", "db")]
    correct_replay = replay(BackwardBugs(), candidate, activations, pre_activations, Y, params, mags, tau)
    correct = correct_replay.matches if correct_replay is not None else [False] * len(names)
    informative = correct_replay.distinctive if correct_replay is not None else [True] * len(names)
    if all(correct):
        return "the gradients equal the correct ones on these inputs."

    def explains(result: Replay | None) -> bool:
        return result is not None and all(result.matches) and any(
            t and not ok for t, ok in zip(result.distinctive, correct))

    # A mistake that reproduces only some of the wrong tensors explains nothing about the call:
    # it is not mentioned (naming it would claim what the replay did not show).
    singles, quiet = [], []
    for bug in KNOWN_BUGS:
        result = replay(bug.bugs, candidate, activations, pre_activations, Y, params, mags, tau)
        if explains(result):
            singles.append(bug)
        elif result is not None and all(result.matches):
            quiet.append(bug)  # fits every tensor, but where it differs from correct all is ~0
    if len(singles) == 1:
        bug = singles[0]
        return named(bug.key, f"your gradients equal those of an implementation that "
                              f"{bug.description}: {bug.line_pattern}.")
    text = _wrong_and_right(names, correct, informative)
    if len(singles) > 1:
        # Several known mistakes reproduce every tensor: the evidence cannot tell which. None is
        # named; they are recorded as consistent with this failure (a grade may treat it as a
        # symptom of one that other cases name).
        named("backward_wrong", text, consistent=[bug.key for bug in singles])
        return (f"{text}. {len(singles)} of the common mistakes reproduce these gradients exactly "
                "(too few gradients here are clearly non-zero to tell them apart), so none is named. "
                + localise(correct, len(params), informative))
    pairs = [(a, b) for a, b, both in _pairs()
             if explains(replay(both, candidate, activations, pre_activations, Y, params, mags, tau))]
    if len(pairs) == 1:
        a, b = pairs[0]
        named(a.key, "")
        named(b.key, "")
        return ("your gradients equal those of an implementation with two of the common mistakes: it "
                f"{a.description} ({a.line_pattern}); and it {b.description} ({b.line_pattern}).")
    if quiet and not pairs:
        named("backward_wrong", text, consistent=[bug.key for bug in quiet])
        what = "one of the common mistakes gives" if len(quiet) == 1 else f"{len(quiet)} of the common mistakes give"
        return (f"{text}. Where your values differ from the correct ones they are ~0, and {what} "
                "exactly these values too: zeros alone do not prove a mistake, so none is named. "
                + localise(correct, len(params), informative))
    named("backward_wrong", text)
    if pairs:
        return (f"{text}. {len(pairs)} pairs of the common mistakes reproduce these gradients, so "
                "none is named. " + localise(correct, len(params), informative))
    return (text + f". No known mistake, alone or paired, reproduces them ({len(KNOWN_BUGS)} mistakes "
            "and their pairs replayed on these inputs). " + localise(correct, len(params), informative))


def _wrong_and_right(names: Sequence[str], correct: Sequence[bool], informative: Sequence[bool]) -> str:
    """"wrong: ...; right: ..." where a tensor is called right only if it is clearly non-zero on
    these inputs (a ~0 tensor is right for many wrong codes too: it shows nothing)."""
    wrong = [n for n, ok in zip(names, correct) if not ok]
    right = [n for n, ok, t in zip(names, correct, informative) if ok and t]
    zero = [n for n, ok, t in zip(names, correct, informative) if ok and not t]
    text = f"wrong: {', '.join(wrong)}"
    if right:
        text += f"; right: {', '.join(right)}"
    if zero:
        text += f"; ~0 here, so they show nothing: {', '.join(zero)}"
    return text


def _combined(first: BackwardBugs, second: BackwardBugs) -> BackwardBugs | None:
    """Both mistakes at once, or None when they set the same switch (or one cannot pair)."""
    default = BackwardBugs()
    changes: dict[str, Any] = {}  # field name -> the mistake's value of that switch
    for bugs in (first, second):
        for field in dataclasses.fields(BackwardBugs):
            value = getattr(bugs, field.name)
            if value != getattr(default, field.name):
                if field.name in changes or field.name in _UNPAIRED:
                    return None
                changes[field.name] = value
    return dataclasses.replace(default, **changes)


def localise(correct: Sequence[bool], n_layers: int, informative: Sequence[bool] | None = None) -> str:
    """Where to look, from which tensors are right: backprop computes the last layer first, so
    the first wrong tensor in that order is where the recursion goes off. A tensor that is ~0
    on these inputs (``informative`` False) is right for many wrong codes too: it shows nothing,
    and the sentence says so rather than pointing at a line."""
    informative = list(informative) if informative is not None else [True] * len(correct)
    # -1: wrong, 1: right and clearly non-zero, 0: right but ~0 (no evidence either way)
    state = [(-1 if not ok else 1 if t else 0) for ok, t in zip(correct, informative)]
    by_layer = [(state[2 * l], state[2 * l + 1]) for l in range(n_layers)]
    last_dw, last_db = by_layer[-1]
    if last_dw == -1 and last_db == -1:
        return ("Already the last layer is wrong: look at the output error, "
                "`delta = (Y_hat - Y) / B`, and at `dW = A_prev.T @ delta`, `db = delta.sum(axis=0)`.")
    if -1 in (last_dw, last_db) and 1 in (last_dw, last_db):
        which, other = ("db", "dW") if last_db == -1 else ("dW", "db")
        return (f"In the last layer {which} is wrong while {other} is right: look at the line "
                f"computing {which} (`dW = A_prev.T @ delta`, `db = delta.sum(axis=0)`).")
    if -1 in (last_dw, last_db):
        which = "db" if last_db == -1 else "dW"
        return (f"In the last layer {which} is wrong; the other tensor is ~0 here, so it does not "
                "tell whether the output error delta or that one line is off.")
    for l in reversed(range(n_layers - 1)):
        if -1 in by_layer[l]:
            return (f"Layers {l + 2}..{n_layers} (0-based {l + 1}..{n_layers - 1}) are right and layer "
                    f"{l + 1} (0-based {l}) is wrong: look at how delta is carried from layer {l + 1} "
                    f"to layer {l} (0-based), `delta = (delta @ W.T) * ReLU'(Z)`, with the W and Z of "
                    "those layers.")
    return "Every tensor is right on these inputs."


_BROADCAST = re.compile(r"could not be broadcast together with shapes \(([\d, ]+)\)\s*\(([\d, ]+)\)")
_MATMUL = re.compile(r"matmul: Input operand 1 has a mismatch in its core dimension")


def _shape(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.replace(" ", "").split(",") if v)


def explain_exception(text: str, function: str, layer_sizes: Sequence[int], batch: int) -> str:
    """A likely cause for an exception message raised by the candidate's ``function``."""
    m = _BROADCAST.search(text)
    if m and function == "backward":
        shapes = {_shape(m.group(1)), _shape(m.group(2))}
        for i in range(1, len(layer_sizes) - 1):  # hidden layer widths n_i, next n_{i+1}
            if shapes == {(batch, layer_sizes[i]), (batch, layer_sizes[i + 1])}:
                return named("relu_index", f"this is the symptom of the i-1 bug: delta @ W.T has shape "
                        f"({batch}, {layer_sizes[i]}) but the ReLU mask has the shape of the NEXT "
                        f"layer's pre-activation ({batch}, {layer_sizes[i + 1]}); write "
                        f"`* (pre_activations[i-1] > 0)`, not `* (pre_activations[i] > 0)`.")
        first, second = _shape(m.group(1)), _shape(m.group(2))
        if len(first) == len(second) == 2 and first == second[::-1]:
            return (f"two arrays inside backward have transposed shapes, {first} and {second}: one of "
                    "them is used transposed (dW must have W's shape, A_prev.T @ delta).")
        if len(first) == len(second) and sum(a != b for a, b in zip(first, second)) == 1:
            return (f"two arrays inside backward have shapes {first} and {second}, which differ in "
                    "one dimension: check where each is computed (a layer's width, the number of "
                    "classes in Y).")
        return ("two arrays inside backward have incompatible shapes: check that every elementwise "
                "product pairs arrays of the same layer.")
    sizes = _matmul_sizes(text)
    if sizes is not None and function == "backward":
        rows, cols = sizes  # an array with `cols` columns was multiplied by one with `rows` rows
        hidden = list(layer_sizes[1:-1])
        untransposed = [l for l in range(1, len(layer_sizes) - 1)
                        if (rows, cols) == (layer_sizes[l], layer_sizes[l + 1])]
        for k, width in enumerate(hidden, start=1):
            if width == 1 and (rows, cols) == (1, layer_sizes[k + 1]) and cols != 1 and untransposed:
                return (f"a matrix product inside backward multiplies a delta with {cols} columns by an "
                        f"array with 1 row, next to the width-1 layer {k}. Several mistakes give exactly "
                        "these shapes here (a mask from the wrong layer, W without .T, another layer's "
                        "W), so check each: the ReLU mask comes from `pre_activations[i-1]` and delta is "
                        "propagated with this layer's own W, transposed: `delta @ params[i][0].T`.")
            if width == 1 and (rows, cols) == (1, layer_sizes[k + 1]) and cols != 1:
                return named("relu_index", f"a matrix product inside backward multiplies a delta with {cols} columns (the "
                        f"width of layer {k + 1}, after the width-1 layer {k}) by an array with 1 row. "
                        "That is the symptom of the i-1 bug: `* (pre_activations[i] > 0)` multiplied "
                        f"a (B, 1) delta by the next layer's (B, {cols}) mask, broadcasting it to the "
                        "wrong width; write `* (pre_activations[i-1] > 0)`.")
        for l in untransposed[:1]:
            full = _DOT.search(text)
            if full and (int(full.group(3)), int(full.group(4))) == (rows, cols):
                what = f"an array of shape ({rows}, {cols}), which is that layer's W itself, not W.T"
                return named("untransposed_weights", f"a matrix product inside backward multiplies an array with {cols} columns "
                        f"(delta of layer {l}, 0-based, has {cols}) by {what}. Propagate with this "
                        "layer's weights transposed: `delta @ params[i][0].T`.")
            # numpy's matmul text gives two sizes only: several mistakes fit them (W of this
            # layer untransposed, another layer's W.T), so no single one is named.
            return (f"a matrix product inside backward multiplies an array with {cols} columns (the "
                    f"width of delta in layer {l}, 0-based) by an array with {rows} rows: the weights "
                    "delta is propagated through have the wrong shape. Propagation needs this "
                    f"layer's own W, transposed, of shape ({cols}, {rows}): `delta @ params[i][0].T`.")
        return ("a matrix product inside backward has mismatched shapes (an array with "
                f"{cols} columns times one with {rows} rows): propagate with the weights of the "
                "layer you just differentiated, transposed (`delta @ params[i][0].T`), and compute "
                "`dW = activations[i].T @ delta`.")
    return ""


_DOT = re.compile(r"shapes \((\d+),\s*(\d+)\) and \((\d+),\s*(\d+)\) not aligned")


_MATMUL_SIZES = re.compile(r"core dimension 0.*\(size (\d+) is different from (\d+)\)", re.DOTALL)


def _matmul_sizes(text: str) -> tuple[int, int] | None:
    """(rows of the right operand, columns of the left one) from numpy's matmul or np.dot
    shape error; None for another error."""
    m = _DOT.search(text)
    if m:
        return int(m.group(3)), int(m.group(2))
    m = _MATMUL_SIZES.search(text)
    if m and _MATMUL.search(text):
        return int(m.group(1)), int(m.group(2))
    return None


# ------------------------------------------------------------------------------ forward bugs
FORWARD_BUGS: tuple[tuple[str, str, ForwardBugs], ...] = tuple(  # (key, description, switches)
    (m.key, f"{m.description}; {m.fix}" if m.fix else m.description, m.forward)
    for m in MISTAKES if m.forward is not None)


def diagnose_forward(activations: Sequence[np.ndarray], pre_activations: Sequence[np.ndarray] | None,
                     X: np.ndarray, params: Params, tau: float) -> str:
    """Which known forward mistake the candidate's outputs equal, if exactly one does (inputs
    such as huge logits can make several give the same outputs: then none is named).
    ``pre_activations`` None (a forward that keeps none): the activations alone are compared."""
    pre_activations = [] if pre_activations is None else list(pre_activations)
    got = list(activations) + pre_activations  # zip stops at got: without zs, activations only
    with np.errstate(all="ignore"):
        exact_activations, exact_pre_activations = exact_forward(X, params)
    def fit(expected: Sequence[np.ndarray]) -> bool:
        return all(_close(g, e, tau) for g, e in zip(got, expected))

    # A mistake is evidence only where the correct forward does not fit as well (tiny entries
    # below this resolution, e.g. float32 underflow on huge logits, tell nothing).
    fits = [] if fit(exact_activations + exact_pre_activations) else [
        (key, description) for key, description, bugs in FORWARD_BUGS
        if fit(sum(_quiet_forward(X, params, bugs), []))]
    if len(fits) == 1:
        key, description = fits[0]
        return named(key, f"your forward's outputs equal those of an implementation that {description}.")
    wrong = [f"activations[{l}]" for l, (g, e) in enumerate(zip(activations, exact_activations))
             if not _close(g, e, tau)]
    wrong += [f"pre_activations[{l}]" for l, (g, e) in enumerate(zip(pre_activations, exact_pre_activations))
              if not _close(g, e, tau)]
    if fits:  # consistent with known mistakes, the evidence only cannot tell which: no key
        return (f"wrong: {', '.join(wrong)}. {len(fits)} of the common forward mistakes fit these "
                "inputs equally, so none is named (other inputs can tell them apart).")
    known = named("forward_wrong", f"wrong: {', '.join(wrong)}. ") if wrong else ""
    return (f"{known}The outputs equal none of the {len(FORWARD_BUGS)} common forward mistakes the "
            "suite knows; the first wrong array (pre_activations[l] before activations[l+1]) is the "
            "layer to look at.")


def _quiet_forward(X: np.ndarray, params: Params, bugs: ForwardBugs) -> tuple[list, list]:
    with np.errstate(all="ignore"):
        return exact_forward(X, params, bugs)


def _close(got: np.ndarray, expected: np.ndarray, tau: float) -> bool:
    e = np.asarray(expected, np.float64)
    return np.shape(got) == np.shape(e) and bool(np.all(
        np.abs(np.asarray(got, np.float64) - e) <= tau * (np.abs(e) + 0.01 * (np.abs(e).max(initial=0) + 1))))


def output_rows_finding(P: np.ndarray) -> str:
    """What the output's row sums show (stated as facts, naming a cause only with evidence)."""
    sums = P.sum(axis=1)
    if np.allclose(P.sum(axis=0), 1.0, atol=1e-6) and not np.allclose(sums, 1.0, atol=1e-6):
        return named("softmax_batch_axis", "the COLUMNS of activations[-1] sum to 1, not its rows: the softmax normalises over "
                "the batch axis; take the max and the sum over the class axis (axis=-1 with samples in "
                "rows, axis=0 with samples in columns), with keepdims=True.")
    if np.all(P == 0):
        return named("forward_wrong", "activations[-1] is all zeros: forward does not return the "
                     "softmax's output as the last activation.")
    rows = ", ".join(f"{v:.6g} (row {i})" for i, v in list(enumerate(sums))[:4])
    return named("forward_wrong", f"the rows of activations[-1] sum to {rows}, not 1: the last "
                 "activation must be the row-wise softmax of the last pre-activation.")


def softmax_cause(P: np.ndarray, z: np.ndarray, dtype: np.dtype) -> str:
    """What replay shows about a wrong softmax(z) = P: the guard whose absence gives exactly
    these non-finite rows, or the batch-axis softmax when it reproduces every finite entry;
    "" when no known mistake does."""
    P64 = np.asarray(P, np.float64)
    z64 = np.asarray(z, np.float64)
    if P64.shape != z64.shape or P64.ndim != 2:
        return ""
    if not np.isfinite(P64).all():
        return nonfinite_output_cause(P64, z64, dtype)
    tau = precision_tolerance(dtype)
    with np.errstate(all="ignore"):
        batch_axis = exact_softmax(z64, axis=0)
    if _close(P64, batch_axis, tau) and not _close(P64, exact_softmax(z64), tau):
        return named("softmax_batch_axis", "your softmax's output equals a softmax over the batch axis "
                     "(each COLUMN sums to 1): take the max and the sum over each sample's classes")
    with np.errstate(all="ignore"):  # the max over the batch axis (per class) subtracted instead
        zc = np.asarray(z, dtype=dtype)
        e = np.exp(zc - zc.max(axis=0, keepdims=True))
        column_max = (e / e.sum(axis=-1, keepdims=True)).astype(np.float64)
    if np.isfinite(column_max).all() and _close(P64, column_max, tau) and not _close(P64, exact_softmax(z64), tau):
        return named("row_guard", "your softmax's output equals exp(z - z.max(axis=0)) normalised per sample: "
                     "the max must be taken per sample, over the classes (axis=-1 with samples in rows); "
                     "a max over the batch shifts each class differently, which changes the probabilities")
    return ""


# ------------------------------------------------------------------ cross_entropy
# Matching a loss mistake is a diagnosis, not a verdict (the check's own tolerance decides
# pass/fail): 1e-4 relative tells the catalogued mistakes apart (they change the value by a
# factor B, -1 or 1/k) while allowing any log(0) guard up to 1e-7 and float32 losses.
LOSS_MATCH_RTOL = 1e-4


def loss_cause(value: float, P: np.ndarray, Y: np.ndarray) -> str:
    """Which common loss mistake, replayed on these very probabilities (with the section's
    1e-12 guard), gives the candidate's value; else the generic finding."""
    P64, Y64 = np.asarray(P, np.float64), np.asarray(Y, np.float64)
    B, k = Y64.shape
    with np.errstate(all="ignore"):
        true = float(-np.mean(np.sum(Y64 * np.log(P64 + 1e-12), axis=1)))

    def near(expected: float) -> bool:
        return bool(np.isfinite(expected)) and abs(value - expected) <= LOSS_MATCH_RTOL * (abs(expected) + 1.0)

    if B > 1 and near(B * true) and not near(true):
        return named("loss_sum", "it equals the SUM over the batch; the loss is the mean (np.mean)")
    if near(-true) and not near(true):
        return named("loss_sign", "the sign is flipped: the loss is -mean(log p), a positive number")
    if k > 1 and near(true / k) and not near(true):  # (averaging over k classes too divides by k)
        return named("loss_mean_over_classes", (
            "it equals the mean over every entry (batch x classes); the loss sums over the classes and "
            "averages over the batch only: -np.mean(np.sum(Y * np.log(Y_hat), axis=1))"))
    return named("loss_wrong", "the value matches none of the common loss mistakes (sum, sign, mean over "
                 "classes)")


# ------------------------------------------------------------------ init_params
INIT_SCALES = (
    ("init_fan_out", "scales by sqrt(2 / n_out) (fan-out) instead of He's sqrt(2 / n_in)",
     lambda n_in, n_out: np.sqrt(2.0 / n_out)),
    ("init_one_over_n", "scales by sqrt(1 / n_in) instead of He's sqrt(2 / n_in)",
     lambda n_in, n_out: np.sqrt(1.0 / n_in)),
    ("init_xavier", "uses Xavier/Glorot sqrt(2 / (n_in + n_out)) instead of He's sqrt(2 / n_in)",
     lambda n_in, n_out: np.sqrt(2.0 / (n_in + n_out))),
)


def init_cause(arrays: list[np.ndarray], sizes: list[int], seed: int, tau: float) -> str:
    """Which common initialisation mistake the returned params equal, if any."""
    Ws, bs = arrays[0::2], arrays[1::2]
    if all(np.all(W == 0) for W in Ws):
        return named("init_zero", "every W is zero: all hidden units stay identical and ReLU "
                     "gradients vanish; draw W = rng.standard_normal((n_in, n_out)) * np.sqrt(2 / n_in)")
    for key, text, scale in INIT_SCALES:
        rng = np.random.default_rng(seed)
        draws = [rng.standard_normal((n_in, n_out)) * scale(n_in, n_out)
                 for n_in, n_out in zip(sizes[:-1], sizes[1:])]
        # 4 tau: the draws times a scale computed in the candidate's precision (one rounding of
        # the scale, one of the product) and compared in float64: a few ulps of that precision.
        if (all(np.allclose(W, d, rtol=4 * tau, atol=0) for W, d in zip(Ws, draws))
                and all(np.all(b == 0) for b in bs)):
            return named(key, f"your init_params {text}")
    return named("init_wrong", "the params equal none of the common initialisation mistakes (He "
                 "scale on fan-in, zero init, Xavier): check the generator, its seed, the draw order "
                 "and shape, and that biases start at zero")


# ------------------------------------------------------------------ non-finite outputs
# The stability area names a missing softmax guard with these; the golden area reads a
# non-finite forward output the same way.
MAX_GUARD = ("per-sample max subtraction: softmax must subtract each sample's max over the classes "
             "before exp (z - z.max(axis=-1, keepdims=True) with samples in rows, axis=0 with samples "
             "in columns); "
             "np.exp overflows to inf above 709 in float64 (88 in float32) and inf/inf is nan")
ROW_GUARD = ("the max must be taken per sample, over the classes (axis=-1 with samples in rows, axis=0 "
             "with samples in columns; keepdims=True): with a single global max, "
             "rows far below it underflow to all zeros and 0/0 is nan")


LOG_GUARD = ("the log(0) guard: cross_entropy must stay finite when the true class has probability "
             "0, e.g. np.log(Y_hat + 1e-12), np.log(np.clip(Y_hat, 1e-12, 1)) or a log-softmax")


def log_guard_cause(P: np.ndarray, Y: np.ndarray) -> str:
    """Why the loss is not finite. The log(0) guard is named missing only when its absence
    predicts it: replaying -mean(sum(Y * log(P))) without a guard on these very inputs is not
    finite (some true class has probability exactly 0). Otherwise the non-finite value comes
    from elsewhere (e.g. log(1 - p) where p rounds to 1, a division), and is said as such."""
    P64, Y64 = np.asarray(P, np.float64), np.asarray(Y, np.float64)
    with np.errstate(all="ignore"):
        unguarded = -np.mean(np.sum(Y64 * np.log(P64), axis=-1))
    if not np.isfinite(unguarded) and np.any((Y64 > 0) & (P64 == 0)):
        return named("log_guard", LOG_GUARD)
    return ("cross_entropy is not finite although -sum(Y * log(Y_hat)) is finite on these very "
            "probabilities (no true class has probability 0), so it is not a missing log(0) guard: "
            "look for another log or division in the loss (e.g. log(1 - Y_hat) where a probability "
            "rounds to 1); the loss is -mean over the batch of sum over classes of Y * log(Y_hat).")


def _nonfinite_rows(P: np.ndarray) -> np.ndarray:
    return ~np.isfinite(P).all(axis=1)


def nonfinite_output_cause(P: np.ndarray, logits: np.ndarray, dtype: np.dtype) -> str:
    """Name a missing guard only when the candidate's non-finite rows are exactly those of a
    softmax without that guard (simulated on the exact logits, in the candidate's precision);
    otherwise say what is known."""
    bad = _nonfinite_rows(P)
    z = np.asarray(logits, dtype=dtype)
    with np.errstate(all="ignore"):
        e_naive = np.exp(z)
        no_shift = _nonfinite_rows(e_naive / e_naive.sum(axis=-1, keepdims=True))
        e_global = np.exp(z - z.max())
        global_shift = _nonfinite_rows(e_global / e_global.sum(axis=-1, keepdims=True))
        e_column = np.exp(z - z.max(axis=0, keepdims=True))  # the max over the batch, per class
        column_shift = _nonfinite_rows(e_column / e_column.sum(axis=-1, keepdims=True))
    rows = ", ".join(str(int(i)) for i in np.flatnonzero(bad)[:8])
    matches_naive, matches_global = np.array_equal(bad, no_shift), np.array_equal(bad, global_shift)
    matches_column = np.array_equal(bad, column_shift)
    if matches_naive and not (matches_global or matches_column):
        return named("max_guard", f"{MAX_GUARD} (rows {rows} are non-finite, exactly the rows where exp of the raw "
                "logits overflows)")
    if matches_global and not (matches_naive or matches_column):
        return named("row_guard", f"{ROW_GUARD} (rows {rows} are non-finite, exactly the rows that a single global "
                "max pushes to all zeros)")
    if matches_column and not (matches_naive or matches_global):
        return named("row_guard", f"{ROW_GUARD} (rows {rows} are non-finite, exactly the rows that subtracting each "
                "class's max over the batch pushes to all zeros)")
    return (f"rows {rows} of the output are not finite. A softmax must stay finite for any logits: "
            "subtract each sample's own maximum over the classes before exp "
            "(`z - z.max(axis=-1, keepdims=True)` with samples in rows) "
            "and never divide by a sum that can be 0.")


# ------------------------------------------------------------------ views of the catalogue
# Generic findings about one function (key -> the function): its outputs are wrong and no
# catalogued mistake fits, or it returns the wrong structure, or it raises. Where a specific
# mistake of the same function is named, they are its symptoms on other inputs and a rubric
# does not charge them again (conformance/grade/score/rubric.py).
GENERIC_KEYS: dict[str, str] = {m.key: m.function for m in MISTAKES if m.generic}
# Mistakes named by a check of one function (conformance/test_interface.py), outside the
# replayed ones: key -> (the phrase its message holds, the cause in one line).
FUNCTION_BUGS: dict[str, tuple[str, str]] = {
    m.key: (m.phrases[0], m.cause) for m in MISTAKES
    if not m.generic and m.backward is None and m.forward is None and m.function not in ("forward",)
    and m.key != "log_guard"}


def generic_text(key: str) -> str:
    m = BY_KEY.get(key)
    return m.cause if m is not None else key


def function_of(key: str) -> str:
    """The function a diagnosis key is about ("" when it is about no single one)."""
    m = BY_KEY.get(key)
    return m.function if m is not None else ""


def named_bugs(text: str) -> set[str]:
    """The keys of every mistake a message names: its description (the part before any
    parenthesis, for forward mistakes) or one of its phrases (conformance.mistakes)."""
    found = set()
    for m in MISTAKES:
        if m.generic:
            continue
        options = m.phrases + ((m.description.split(" (")[0],) if m.function in ("backward", "forward")
                               and (m.backward is not None or m.forward is not None) else ())
        if any(p in text for p in options):
            found.add(m.key)
    return found


def diagnosis_keys() -> tuple[str, ...]:
    """Every key a failing test's "diagnoses" property can hold (what a rubric can price)."""
    return tuple(BY_KEY)
