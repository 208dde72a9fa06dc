"""One comparison engine and one failure style for every value comparison in the suite: the
gradient, stability and interface checks, the golden fixtures and the refactor check alike.

Checks are vectorised (``Comparison.bad``); the explanation is built only on failure:
headline ``name[index]=actual, but should be expected [where]``, the contract, counts per
tensor, the worst entry per tensor (index, actual vs expected, abs/rel error, allowed, step),
a capped table, then the diagnosis, a snippet that reproduces it and what to do next.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import numpy.typing as npt

from conformance.contract import PrecisionFinding
from conformance.diagnosis import named

MAX_TABLE_ROWS = 10
# "Within float32 rounding" (SPEC.md, dtype policy): a float64 result whose every mismatch is
# below 64 float32 epsilons times the entry's magnitude bound M carries float32 rounding, not a
# bug (a correct float32 computation errs by ~1.5 eps32 * M; the smallest bug by M/64, about
# 130000 eps32). The tau part of ``allowed`` is sqrt(eps64) * (M + 0.01 max M), so the bound is
# that part times 64 eps32 / sqrt(eps64) = 512; finite-difference error stays as it is.
FLOAT32_ROUNDING_OVER_TAU64 = float(64 * np.finfo(np.float32).eps / np.sqrt(np.finfo(np.float64).eps))
FLOAT32_ROUNDING_FINDING = (
    "some float64 results carry errors above float64 rounding but below float32 rounding (every "
    "mismatch under 64 float32 epsilons of its magnitude bound). That is not a bug, so those checks "
    "passed. Usual sources: a float32 intermediate or float32 weights (return float32 arrays if you "
    "compute in float32), or values recovered by a subtraction such as W - W_new")


def fmt(x: float) -> str:
    return f"{x:.6g}"


def fmt_pair(a: float, e: float) -> tuple[str, str]:
    """Both values with just enough digits (6 to 17) to show that they differ."""
    for digits in (6, 9, 12, 17):
        sa, se = f"{a:.{digits}g}", f"{e:.{digits}g}"
        if sa != se:
            break
    return sa, se


@dataclass(eq=False)  # compared by identity: the fields are arrays
class Comparison:
    """Candidate values against the suite's expectation for one named tensor."""

    name: str  # e.g. "dW[1]"
    actual: np.ndarray  # plain float arrays (validated by conformance.contract first)
    expected: np.ndarray
    allowed: np.ndarray  # per-entry allowed |actual - expected|
    step: np.ndarray | None = None  # finite-difference step per entry, if any
    ignored: np.ndarray | None = None  # entries not judged (ReLU kinks): never a failure
    labels: Sequence[str] | None = None  # row labels (e.g. "direction 2"); default: array index
    # The other end of an acceptable range (expectation under ReLU'(0) = 1 where ``expected``
    # assumes 0): any value between the two passes, since any ReLU'(0) in [0, 1] is a valid
    # subgradient choice (e.g. np.heaviside(z, 0.5)).
    expected_alt: np.ndarray | None = None
    # The finite-difference part of ``allowed`` (0 when the expectation is exact): it is not
    # rounding of the candidate, so the float32-rounding bound does not scale it.
    fd_error: np.ndarray | None = None
    # What ``allowed`` would be had the result been float32, when the tolerance rule gives it
    # directly (the golden rule, k * eps * scale); otherwise derived from the float64 tau.
    allowed_float32: np.ndarray | None = None
    nan_equal: bool = False  # NaN where NaN is expected agrees (the refactor check)

    if TYPE_CHECKING:  # the generated __init__ as callers use it; the type checker reads only this
        # actual, expected and allowed may be any array-like (a scalar ``allowed``: the same bound
        # for every entry): __post_init__ makes them float64 arrays of the expected shape.
        def __init__(self, name: str, actual: npt.ArrayLike, expected: npt.ArrayLike, allowed: npt.ArrayLike,
                     step: np.ndarray | None = None, ignored: np.ndarray | None = None,
                     labels: Sequence[str] | None = None, expected_alt: np.ndarray | None = None,
                     fd_error: np.ndarray | None = None, allowed_float32: np.ndarray | None = None,
                     nan_equal: bool = False) -> None: ...

    def __post_init__(self) -> None:
        shape = np.shape(self.expected)
        self.actual = np.asarray(self.actual, dtype=np.float64).reshape(shape)
        self.expected = np.asarray(self.expected, dtype=np.float64)
        self.allowed = np.broadcast_to(np.asarray(self.allowed, dtype=np.float64), shape)

    @property
    def error(self) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            if self.expected_alt is None:
                error = np.abs(self.actual - self.expected)
            else:  # distance to the interval [min(expected, alt), max(expected, alt)]
                lo = np.minimum(self.expected, self.expected_alt)
                hi = np.maximum(self.expected, self.expected_alt)
                error = np.maximum(np.maximum(lo - self.actual, self.actual - hi), 0.0)
        # Equal values agree even when infinite (inf - inf is NaN); NaN stays a mismatch
        # unless NaN was expected and the comparison says NaN agrees.
        same = self.actual == self.expected
        if self.nan_equal:
            same |= np.isnan(self.actual) & np.isnan(self.expected)
        return np.where(same, 0.0, error)

    def shown_expected(self, flat_index: int, actual: float) -> str:
        """The expectation at one entry as text: a value, or the accepted interval."""
        e = self.expected.reshape(-1)[flat_index]
        alt = None if self.expected_alt is None else np.reshape(self.expected_alt, -1)[flat_index]
        if alt is None or alt == e or (np.isnan(alt) and np.isnan(e)):
            return fmt_pair(actual, e)[1]
        lo, hi = min(e, alt), max(e, alt)
        return f"[{fmt_pair(actual, lo)[1]}, {fmt_pair(actual, hi)[1]}]"

    def within_float32_rounding(self) -> bool:
        """Every mismatch below the float32-rounding bound (only meaningful for comparisons
        whose ``allowed`` was set from the float64 tau)."""
        if self.allowed_float32 is not None:
            bound = np.broadcast_to(self.allowed_float32, self.allowed.shape)
        else:
            fd = 0.0 if self.fd_error is None else np.broadcast_to(self.fd_error, self.allowed.shape)
            bound = (self.allowed - fd) * FLOAT32_ROUNDING_OVER_TAU64 + fd
        return bool(np.all((self.error <= bound) | ~self.bad))

    @property
    def bad(self) -> np.ndarray:
        bad = ~(self.error <= self.allowed)  # NaN/inf count as mismatches
        if self.ignored is not None:
            bad &= ~np.broadcast_to(self.ignored, bad.shape)
        return bad

    def label(self, flat_index: int) -> str:
        if self.labels is not None:
            return str(self.labels[flat_index])
        if not self.expected.ndim:  # a scalar (the loss): its name alone
            return ""
        idx = np.unravel_index(flat_index, self.expected.shape)
        return "[" + ", ".join(str(int(i)) for i in idx) + "]"


def _row(c: Comparison, i: int) -> list[str]:
    a, e = c.actual.reshape(-1)[i], c.expected.reshape(-1)[i]
    err = c.error.reshape(-1)[i]
    rel = err / abs(e) if e != 0 else float("inf") if err else 0.0
    step = "-" if c.step is None else fmt(c.step.reshape(-1)[i])
    if step == "nan":  # judged against exact backprop: every finite difference hit a kink
        step = "kink: exact"
    return [c.name + c.label(i), fmt_pair(a, e)[0], c.shown_expected(i, a), fmt(err), fmt(rel),
            fmt(c.allowed.reshape(-1)[i]), step]


def _table(rows: list[list[str]]) -> list[str]:
    header = ["entry", "actual", "expected", "abs err", "rel err", "allowed", "step"]
    if all(r[-1] == "-" for r in rows):  # no finite differences in this check: no step column
        header, rows = header[:-1], [r[:-1] for r in rows]
    widths = [max(len(r[k]) for r in [header] + rows) for k in range(len(header))]
    return ["    " + "  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in [header] + rows]


def explaining() -> bool:
    """Whether a failure now gets its full explanation: always, except while hypothesis is still
    searching (generating or shrinking) in a property test, where a failure only steers the
    search. The diagnosis, tables and reproducer are then built once, when hypothesis replays
    the minimal failing example, instead of for every failing example it tries."""
    try:
        from hypothesis.control import current_build_context

        return bool(current_build_context().is_final)
    except Exception:  # noqa: BLE001 - no hypothesis test is running: explain
        return True


def mismatch_report(comparisons: Sequence[Comparison], *, where: str, compared: str, contract: str,
                    diagnosis: str | Callable[[], str] | None = None, reproduce: str | None = None,
                    next_step: str | Callable[[], str] | None = None, held_to: np.dtype | None = None) -> str | None:
    """None if every comparison holds, else the full failure message. ``held_to``: the dtype
    whose precision set the tolerances; when it is float64, a tensor whose every mismatch is
    float32 rounding agrees, with a ``PrecisionFinding`` warning (SPEC.md, dtype policy).
    ``diagnosis`` may be a function: it is called only when the report is written. Calls with
    an empty ``compared`` are quick probes and emit no warning."""
    failing = [c for c in comparisons if c.bad.any()]
    if not failing:
        return None
    if held_to is not None and np.dtype(held_to) == np.float64:
        rounding = [c for c in failing if c.within_float32_rounding()]
        if rounding and compared:
            warnings.warn(PrecisionFinding(FLOAT32_ROUNDING_FINDING), stacklevel=3)
        failing = [c for c in failing if all(c is not r for r in rounding)]
        if not failing:
            return None
    if not explaining():
        return f"{failing[0].name}: mismatch [{where}] (explained on the minimal failing example)"
    worst_rows, headline = [], None
    for c in failing:
        bad = c.bad.reshape(-1)
        excess = np.where(bad, np.nan_to_num(c.error.reshape(-1) - c.allowed.reshape(-1), nan=np.inf,
                                             posinf=np.inf), -np.inf)
        i = int(np.argmax(excess))
        worst_rows.append(_row(c, i))
        if headline is None:
            a = c.actual.reshape(-1)[i]
            headline = (f"{c.name}{c.label(i)}={fmt_pair(a, c.expected.reshape(-1)[i])[0]}, but should "
                        f"be {c.shown_expected(i, a)} [{where}]")
    counts = ", ".join(f"{c.name}: {int(c.bad.sum())}/{c.bad.size}" for c in failing)
    agree = [c.name for c in comparisons if all(c is not f for f in failing)]
    lines = [headline or "", f"  compared: {compared}", f"  contract: {contract}",
             f"  mismatched entries: {counts}" + (f"; agree: {', '.join(agree)}" if agree else ""),
             "  worst entry per tensor:"] + _table(worst_rows)
    first = failing[0]
    bad_idx = np.flatnonzero(first.bad.reshape(-1))
    if bad_idx.size > 1:
        shown = bad_idx[:MAX_TABLE_ROWS]
        lines.append(f"  mismatches of {first.name} ({len(shown)} of {bad_idx.size} shown):")
        lines += _table([_row(first, int(i)) for i in shown])
    ignored = sum(int(np.sum(c.ignored)) for c in comparisons if c.ignored is not None)
    if ignored:
        lines.append(f"  ({ignored} entries not judged: their difference straddled a ReLU kink)")
    kinked = sum(int(np.isnan(c.step).sum()) for c in comparisons if c.step is not None)
    if kinked:
        lines.append(f"  ({kinked} entries straddled a ReLU kink at every step: judged against exact "
                     "backprop instead, with either ReLU'(0) convention)")
    if callable(diagnosis):
        diagnosis = diagnosis()
    if callable(next_step):
        next_step = next_step()
    if diagnosis:  # "diagnosis:" only when a known bug is named (graders count those lines)
        label = "diagnosis" if "equal those of" in diagnosis else "finding"
        lines.append(f"  {label}: " + diagnosis.replace("\n", "\n    "))
    if reproduce:
        lines += ["  reproduce:", reproduce]
    if next_step:
        lines.append("  next: " + next_step)
    return "\n".join(lines)


def assert_comparisons(comparisons: Sequence[Comparison], **kwargs: Any) -> None:
    """Raise AssertionError with ``mismatch_report`` if any comparison fails."""
    __tracebackhide__ = True
    message = mismatch_report(comparisons, **kwargs)
    if message is not None:
        raise AssertionError(message)


def assert_finite(name: str, value: np.ndarray, *, where: str, guard: str | Callable[[], str]) -> None:
    """Every entry finite, else name the missing guard (``guard`` may be a function: it is
    called only on failure, so a finding it records is about a failure that happened)."""
    __tracebackhide__ = True
    arr = np.asarray(value, dtype=np.float64)
    bad = ~np.isfinite(arr)
    if bad.any():
        i = int(np.flatnonzero(bad.reshape(-1))[0])
        idx = np.unravel_index(i, arr.shape) if arr.ndim else ()
        label = "[" + ", ".join(str(int(k)) for k in idx) + "]" if idx else ""
        guard = guard() if callable(guard) else guard
        raise AssertionError(f"{name}{label}={fmt(arr.reshape(-1)[i])}, but should be finite [{where}]\n"
                             f"  non-finite entries: {int(bad.sum())}/{bad.size}\n"
                             f"  missing guard: {guard}")


def _first_change(before: object, after: object, path: str) -> str | None:
    """Where ``after`` (the candidate's copy after the call) differs from ``before``."""
    if isinstance(before, np.ndarray):
        if type(after) is not np.ndarray:
            return f"{path} was replaced by a {type(after).__name__}"
        if after.shape != before.shape or after.dtype != before.dtype:
            return f"{path} changed from {before.dtype}{before.shape} to {after.dtype}{after.shape}"
        diff = ~((after == before) | (np.isnan(after) & np.isnan(before)))
        if diff.any():
            i = np.unravel_index(int(np.flatnonzero(diff)[0]), before.shape)
            idx = "[" + ", ".join(str(int(k)) for k in i) + "]"
            return (f"{path}{idx} was {fmt(before[i])} before the call and {fmt(after[i])} after it "
                    f"({int(diff.sum())}/{diff.size} entries changed)")
        return None
    if isinstance(before, (list, tuple)):
        if not isinstance(after, (list, tuple)) or len(after) != len(before):
            return f"{path} (a {type(before).__name__} of {len(before)}) was changed in place"
        for k, (b, a) in enumerate(zip(before, after)):
            change = _first_change(b, a, f"{path}[{k}]")
            if change:
                return change
    return None


def assert_unchanged(before: Sequence[object], after: Sequence[object], names: Sequence[str], *,
                     where: str) -> None:
    """The candidate left every argument as it received it."""
    __tracebackhide__ = True
    for b, a, name in zip(before, after, names):
        change = _first_change(b, a, name)
        if change:
            raise AssertionError(
                f"{change}, but " + named("mutates_arguments", "arguments must not be modified")
                + f" [{where}]\n"
                "  contract: no function may mutate its inputs (the caller reuses them: training "
                "loops keep X, params and the activations)\n"
                "  next: look for in-place operations on an argument (`+=`, `*=`, `out=`, "
                "`arr[mask] = ...`, `np.maximum(Z, 0, out=Z)`); work on a copy or a new array.")
