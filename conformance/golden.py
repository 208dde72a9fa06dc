"""Golden fixtures: load them (verified), ask a candidate for the same values, compare.

Used by conformance/test_golden.py (candidate vs fixtures, and candidate vs a recording
made by ``tools.fixtures record``) and by tools/fixtures.py (generation, check, record).

Tolerance rule (fixtures/README.md explains it at length). Every fixture stores, next to an
expected array E, a *scale* array S of the same shape: the sum of the absolute values of
all the terms that produced each entry, propagated through the network (for a matrix
product, |A| @ |W|; for softmax, p times the logit magnitude). Rounding in any summation
order changes an entry by at most about n * eps * S, so an obtained value G passes when

    |G - E| <= k * eps * S + 2 * tiny

with k from the manifest (about twice the longest chain of roundings in the case), eps the
machine epsilon of the *coarser* of the candidate's returned dtype and the fixture's dtype
(a float32 candidate gets float32 precision, a float64 one float64 precision, and a float64
candidate fed float32 inputs is held to the precision of the float32 fixture), and tiny the
smallest normal number of that dtype (underflow to subnormals). Entries where a legitimate
choice changes the value (ReLU'(0) at exactly-zero pre-activations) carry an interval
[lo, hi] instead of one value. The cross-entropy is checked against an interval too: any
log(0) guard between none and an additive or clipping 1e-7 is accepted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from conformance import contract
from conformance.candidate import failure_text
from conformance.contract import PrecisionFinding, revealed_dtype
from conformance.diagnosis import explain_exception, named

MANIFEST_NAME = "manifest.json"


def _fixtures_dir() -> Path:
    """Where the golden fixtures are: ``conformance/fixtures/`` in an installed wheel (the
    repository's ``fixtures/`` mapped into the package, see pyproject.toml), else the
    checkout's top-level ``fixtures/`` (a clone or an editable install)."""
    suite = Path(__file__).resolve().parent
    installed = suite / "fixtures"
    return installed if (installed / MANIFEST_NAME).is_file() else suite.parent / "fixtures"


FIXTURES_DIR = _fixtures_dir()
RECORDING_NAME = "recording.json"
FORMAT_VERSION = 1

# The cross-entropy interval: a candidate may guard log(0) with any additive constant or
# clipping floor up to this value (1e-7 is the largest in common use), or clip the top at 1 - it.
LOG_GUARD_MAX = 1e-7
# -log of the smallest positive float64 (subnormal 5e-324) is 744.4: no finite guarded
# loss term can exceed it, so it caps an unguarded -log(0) in the interval's upper end.
MAX_NEG_LOG = 745.0

KIND_FUNCTIONS = {
    "mlp": ("forward", "backward", "softmax", "cross_entropy", "train"),
    "softmax": ("softmax",),
    "cross_entropy": ("cross_entropy",),
    "init_params": ("init_params",),
}
# Full-batch learning rate of the recorded/checked train step (one SGD step per epoch).
TRAIN_STEP_LR = 0.1


class FixtureError(Exception):
    """A fixture or recording is missing, unreadable, or not what its manifest says."""


# ----------------------------------------------------------------------------- loading

def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_manifest(directory: Path = FIXTURES_DIR, name: str = MANIFEST_NAME) -> dict:
    path = Path(directory) / name
    if not path.is_file():
        raise FixtureError(f"{path} is missing: the fixtures cannot be checked without it "
                           "(it is never auto-created; restore it from git, or run "
                           "'python -m tools.fixtures generate' on purpose)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise FixtureError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("cases"), dict):
        raise FixtureError(f"{path} has no 'cases' table")
    return manifest


def load_npz(directory: Path, entry: dict) -> dict[str, np.ndarray]:
    """Load one case file after checking it is exactly the file the manifest describes."""
    path = Path(directory) / entry["file"]
    if not path.is_file():
        raise FixtureError(f"{path} is missing (listed in the manifest); a missing fixture is "
                           "an error, never re-created automatically")
    digest = sha256_file(path)
    if digest != entry["sha256"]:
        raise FixtureError(f"{path} has sha256 {digest[:16]}..., but the manifest says "
                           f"{entry['sha256'][:16]}...: the file is corrupted or was modified")
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def fixture_cases(kind: str | None = None, directory: Path = FIXTURES_DIR) -> list[str]:
    """Case ids for pytest parametrization; [] when the manifest is unusable (the
    integrity test then fails with the reason)."""
    try:
        cases = load_manifest(directory)["cases"]
    except FixtureError:
        return []
    return [cid for cid, entry in cases.items() if kind is None or entry.get("kind") == kind]


def fixture_inputs(case_id: str) -> dict[str, Any]:
    """A fixture's inputs by case id (the reproducer printed in golden failures): ``X``, ``Y``,
    ``params`` for an mlp case, ``Z`` for softmax, ``Y_hat``/``Y`` for cross_entropy."""
    entry = load_manifest()["cases"][case_id]
    arrays = load_npz(FIXTURES_DIR, entry)
    out: dict[str, Any] = {k: arrays[k] for k in ("X", "Y", "Z", "Y_hat") if k in arrays}
    if entry["kind"] == "mlp":
        out["params"] = params_of(arrays, n_layers_of(entry))
    return out


def params_of(arrays: dict[str, np.ndarray], n_layers: int, prefix: str = "") -> list[tuple]:
    return [(arrays[f"{prefix}W{j}"], arrays[f"{prefix}b{j}"]) for j in range(n_layers)]


# -------------------------------------------------------------------- obtained values

class Mismatch(AssertionError):
    """A candidate's value disagrees with a golden one; the message is the full report."""


@contextlib.contextmanager
def _structure(function: str) -> Iterator[None]:
    """A contract violation in ``function``'s result is the generic finding ``<function>_structure``."""
    try:
        yield
    except contract.ContractError as exc:
        named(f"{function}_structure", (str(exc).splitlines() or [""])[0])
        raise


def checked_array(value: Any, name: str, where: str, shape: tuple[int, ...] | None = None
                  ) -> np.ndarray:
    """The value as a genuine float32/float64 ndarray of the expected shape, or a failure
    (the suite's contract check: type first, so a rigged object never reaches numpy)."""
    __tracebackhide__ = True
    return contract.checked_array(value, name, where, shape)


def checked_scalar(value: Any, name: str, where: str) -> tuple[np.ndarray, np.dtype]:
    """A loss value as a 0-d float64 array, and the dtype that sets its tolerance (a Python
    float is judged as float32, the most lenient accepted precision; see contract.check_loss)."""
    __tracebackhide__ = True
    number, dtype = contract.check_loss(value, where)
    return np.asarray(number, dtype=np.float64), dtype


def checked_sequence(value: Any, name: str, length: int, where: str) -> list:
    __tracebackhide__ = True
    return list(contract.checked_sequence(value, name, where, length))


def call_candidate(candidate: Any, function: str, *args: Any, where: str,
                   shapes: tuple[Sequence[int], int] | None = None) -> Any:
    """Call the candidate; its exception becomes a failure naming the call (the original
    traceback stays chained for the student). ``shapes`` (layer sizes, batch) lets the
    message explain a shape error by its evidence (conformance.diagnosis.explain_exception)."""
    __tracebackhide__ = True
    try:
        return candidate.call(function, *args)
    except Exception as exc:  # noqa: BLE001 - any candidate exception is a finding
        text = failure_text(exc)
        hint = explain_exception(text, function, shapes[0], shapes[1]) if shapes else ""
        if function in ("forward", "backward"):
            named(f"{function}_crash", f"your {function} {text}".splitlines()[0])
        raise Mismatch(f"your {function} {text} [{where}]"
                       + (f"\n  likely cause: {hint}" if hint else "")) from exc


def n_layers_of(entry: dict) -> int:
    return len(entry["architecture"]) - 1


def candidate_outputs(candidate: Any, entry: dict, arrays: dict[str, np.ndarray], case_id: str,
                      functions: Sequence[str] | None = None
                      ) -> tuple[dict[str, np.ndarray], list[str]]:
    """Everything the candidate computes on this case's inputs, as validated arrays keyed
    like the fixture (``act0``, ``pre0``, ``dW0``, ``loss``, ``softmax``, ``train_W0`` ...;
    ``loss_precision`` is a 0-d array whose dtype sets the loss tolerance).

    Returns (values, absent functions). Raises ``Mismatch`` when a call fails or returns
    the wrong structure. Used both to record a candidate and to compare against fixtures
    or a recording, so the two always ask exactly the same questions."""
    __tracebackhide__ = True
    kind = entry["kind"]
    wanted = [f for f in KIND_FUNCTIONS[kind] if functions is None or f in functions]
    out: dict[str, np.ndarray] = {}
    absent = [f for f in wanted if not candidate.has(f)]
    present = [f for f in wanted if f not in absent]
    if kind == "mlp":
        L = n_layers_of(entry)
        X, Y, params = arrays["X"], arrays["Y"], params_of(arrays, L)
        acts = [arrays[f"act{i}"] for i in range(L + 1)]
        pres = [arrays[f"pre{i}"] for i in range(L)]
        if "forward" in present:
            where = f"forward(case={case_id})"
            result = call_candidate(candidate, "forward", X, params, where=where)
            with _structure("forward"):
                result = checked_sequence(result, "forward's result (activations, pre_activations)",
                                          2, where)
                got_acts = checked_sequence(result[0], "activations", L + 1, where)
                got_pres = checked_sequence(result[1], "pre_activations", L, where)
                for i, a in enumerate(got_acts):
                    out[f"act{i}"] = checked_array(a, f"activations[{i}]", where, acts[i].shape)
                for i, z in enumerate(got_pres):
                    out[f"pre{i}"] = checked_array(z, f"pre_activations[{i}]", where, pres[i].shape)
        if "backward" in present:
            where = f"backward(case={case_id})"
            grads = call_candidate(candidate, "backward", acts, pres, Y, params, where=where,
                                   shapes=(list(entry["architecture"]), X.shape[0]))
            with _structure("backward"):
                grads = checked_sequence(grads, "backward's result (one (dW, db) per layer)", L, where)
                for j, pair in enumerate(grads):
                    dW, db = checked_sequence(pair, f"grads[{j}] (dW, db)", 2, where)
                    out[f"dW{j}"] = checked_array(dW, f"dW[{j}]", where, params[j][0].shape)
                    out[f"db{j}"] = checked_array(db, f"db[{j}]", where, params[j][1].shape)
        if "softmax" in present:
            where = f"softmax(case={case_id}, input=pre_activations[{L - 1}])"
            out["softmax"] = checked_array(call_candidate(candidate, "softmax", pres[-1],
                                                          where=where), "softmax(Z)", where,
                                           acts[-1].shape)
        if "cross_entropy" in present:
            where = f"cross_entropy(case={case_id}, Y_hat=activations[{L}])"
            loss, precision = checked_scalar(
                call_candidate(candidate, "cross_entropy", acts[-1], Y, where=where), "cross_entropy", where)
            out["loss"], out["loss_precision"] = loss, np.zeros((), precision)
        if "train" in present:
            where = (f"train(case={case_id}, lr={TRAIN_STEP_LR}, epochs=1, "
                     f"batch_size={X.shape[0]})")
            trained = checked_sequence(
                call_candidate(candidate, "train", X, Y, X, Y, params, TRAIN_STEP_LR, 1,
                               X.shape[0], where=where), "train's result (params)", L, where)
            for j, pair in enumerate(trained):
                W, b = checked_sequence(pair, f"params[{j}] (W, b)", 2, where)
                out[f"train_W{j}"] = checked_array(W, f"W[{j}]", where, params[j][0].shape)
                out[f"train_b{j}"] = checked_array(b, f"b[{j}]", where, params[j][1].shape)
    elif kind == "softmax" and present:
        where = f"softmax(case={case_id})"
        out["P"] = checked_array(call_candidate(candidate, "softmax", arrays["Z"], where=where),
                                 "softmax(Z)", where, arrays["P"].shape)
    elif kind == "cross_entropy" and present:
        where = f"cross_entropy(case={case_id})"
        loss, precision = checked_scalar(
            call_candidate(candidate, "cross_entropy", arrays["Y_hat"], arrays["Y"], where=where), "cross_entropy", where)
        out["loss"], out["loss_precision"] = loss, np.zeros((), precision)
    elif kind == "init_params" and present:
        sizes, seed = list(entry["architecture"]), entry["seed"]
        where = f"init_params({sizes}, seed={seed})"
        params = checked_sequence(call_candidate(candidate, "init_params", sizes, seed,
                                                 where=where), "init_params' result",
                                  len(sizes) - 1, where)
        for j, pair in enumerate(params):
            W, b = checked_sequence(pair, f"params[{j}] (W, b)", 2, where)
            out[f"W{j}"] = checked_array(W, f"W[{j}]", where, arrays[f"W{j}"].shape)
            out[f"b{j}"] = checked_array(b, f"b[{j}]", where, arrays[f"b{j}"].shape)
    return out, absent


# ------------------------------------------------------------------------ comparison

def eps_for(*dtypes: np.dtype) -> float:
    """Machine epsilon of the coarsest of the given floating dtypes."""
    return max(float(np.finfo(d).eps) for d in dtypes)


def tiny_for(*dtypes: np.dtype) -> float:
    return max(float(np.finfo(d).tiny) for d in dtypes)


def _fmt(x: float, other: float | None = None) -> str:
    """6 significant digits like the rest of the suite, or every digit (shortest round-trip
    text) when 6 would make two different numbers look equal."""
    short = f"{x:.6g}"
    if other is not None and short == f"{other:.6g}" and x != other:
        return repr(float(x))
    return short


def _index(flat: int, shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(int(i)) for i in np.unravel_index(flat, shape)) + "]" if shape else ""


@dataclass
class Comparison:
    """Outcome of one vectorised comparison, explained only when it failed."""

    name: str
    where: str
    compared: str
    obtained: np.ndarray  # float64 view of the candidate's values
    lo: np.ndarray  # accepted interval (lo == hi except at ambiguous entries)
    hi: np.ndarray
    tol: np.ndarray
    ok: np.ndarray
    contract: str

    @property
    def passed(self) -> bool:
        return bool(self.ok.all())

    def report(self, hint: str, max_rows: int = 10) -> str:
        """The suite's failure style: headline, compared, contract, counts, worst entries, next."""
        bad = np.flatnonzero(~self.ok.ravel())
        shape = self.obtained.shape
        got, lo, hi, tol = (a.ravel() for a in (self.obtained, self.lo, self.hi, self.tol))
        with np.errstate(invalid="ignore", over="ignore"):
            err = np.where(got < lo, lo - got, np.where(got > hi, got - hi, 0.0))
            err = np.where(np.isnan(got), np.inf, err)
            ref = np.maximum(np.abs(lo), np.abs(hi))
            rel = np.where(ref > 0, err / np.where(ref > 0, ref, 1), np.inf)
            excess = err / np.maximum(tol, np.finfo(np.float64).tiny)
        order = bad[np.argsort(-excess[bad], kind="stable")]

        def expected(k: int) -> str:
            if lo[k] == hi[k]:
                return _fmt(lo[k], got[k])
            return f"[{_fmt(lo[k], got[k])}, {_fmt(hi[k], got[k])}]"

        worst = int(order[0])
        rows = [["entry", "actual", "expected", "abs err", "rel err", "allowed"]]
        for k in (int(i) for i in order[:max_rows]):
            rows.append([self.name + _index(k, shape), _fmt(got[k], lo[k]), expected(k),
                         f"{err[k]:.3g}", f"{rel[k]:.3g}", f"{tol[k]:.3g}"])
        widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
        table = ["    " + "  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in rows]
        i_abs, i_rel = int(bad[np.argmax(err[bad])]), int(bad[np.argmax(rel[bad])])
        lines = [
            f"{self.name}{_index(worst, shape)}={_fmt(got[worst], lo[worst])}, but should be "
            f"{expected(worst)} [{self.where}]",
            f"  compared: {self.compared}",
            f"  contract: {self.contract}",
            f"  mismatched entries: {self.name}: {bad.size}/{got.size}; max abs err "
            f"{err[i_abs]:.3g} at {self.name}{_index(i_abs, shape)}, max rel err {rel[i_rel]:.3g} "
            f"at {self.name}{_index(i_rel, shape)}",
            f"  worst entries ({min(bad.size, max_rows)} of {bad.size} shown, by error / allowed):",
            *table,
            f"  next: {hint}",
        ]
        return "\n".join(lines)


def compare(obtained: np.ndarray, expected: np.ndarray, scale: np.ndarray, k: float, *, name: str,
            where: str, fixture_dtype: np.dtype, lo: np.ndarray | None = None,
            hi: np.ndarray | None = None, precision: np.dtype | None = None,
            compared: str = "candidate vs golden fixture") -> Comparison:
    """Vectorised check of ``obtained`` against ``expected`` (or the interval [lo, hi])
    with the module's tolerance rule; cheap when it passes. ``precision`` overrides the
    dtype whose epsilon applies (default: the obtained array's)."""
    own = np.dtype(precision) if precision is not None else revealed_dtype(obtained)
    got = obtained.astype(np.float64)
    lo = (expected if lo is None else lo).astype(np.float64)
    hi = (expected if hi is None else hi).astype(np.float64)

    def within(dtype: np.dtype) -> tuple[np.ndarray, np.ndarray, float]:
        eps = eps_for(dtype, fixture_dtype)
        tol = k * eps * scale.astype(np.float64) + 2 * tiny_for(dtype, fixture_dtype)
        with np.errstate(invalid="ignore"):
            return (got >= lo - tol) & (got <= hi + tol), tol, eps  # NaN compares False

    ok, tol, eps = within(own)
    if not ok.all() and own == np.float64 and within(np.dtype(np.float32))[0].all():
        # float32 rounding inside a float64 result is not a bug (SPEC.md, dtype policy)
        from conformance.assertions import FLOAT32_ROUNDING_FINDING

        warnings.warn(PrecisionFinding(FLOAT32_ROUNDING_FINDING), stacklevel=2)
        ok, tol, eps = within(np.dtype(np.float32))
    contract = (f"|actual - expected| <= k * eps * scale + 2 * tiny, k = {k:g}, eps = {eps:.3g} "
                f"({own.name} result, {np.dtype(fixture_dtype).name} fixture), scale = the "
                f"magnitude of the terms behind each entry, so allowed = {tol.min():.3g} to "
                f"{tol.max():.3g} here")
    return Comparison(name, where, compared, got, lo, hi, tol, ok, contract)


def assert_matches_fixture(obtained: np.ndarray, arrays: dict[str, np.ndarray], key: str,
                           k: float, *, name: str, where: str, hint: str,
                           precision: np.dtype | None = None) -> None:
    """Compare with fixture entry ``key`` (its scale, and its ambiguity interval if any)."""
    __tracebackhide__ = True
    expected = arrays[key]
    interval = f"lo_{key}" in arrays
    result = compare(obtained, expected, arrays[f"scale_{key}"], k, name=name, where=where,
                     fixture_dtype=expected.dtype, lo=arrays.get(f"lo_{key}"),
                     hi=arrays.get(f"hi_{key}"), precision=precision,
                     compared=f"candidate vs golden fixture value {key!r} (the reference's)"
                     + ("; [lo, hi] entries: ReLU'(0) may be 0 or 1 there" if interval else ""))
    if not result.passed:
        raise Mismatch(result.report(hint))


def assert_loss_within(obtained: np.ndarray, arrays: dict[str, np.ndarray], k: float, *,
                       where: str, hint: str, precision: np.dtype | None = None) -> None:
    """The cross-entropy must be finite and inside the fixture's guard interval."""
    __tracebackhide__ = True
    value = float(obtained)
    if not np.isfinite(value):
        raise Mismatch(
            f"cross_entropy={value}, but should be finite [{where}]\n"
            f"  compared: candidate vs golden fixture (the reference gives "
            f"{float(arrays['loss']):.6g})\n"
            "  missing guard: some predicted probability of a true class is exactly 0 here, so "
            "the loss needs a log(0) guard: add a small constant inside the log (the section "
            "uses + 1e-12) or clip the probabilities")
    result = compare(np.asarray(obtained, dtype=np.float64), arrays["loss"], arrays["scale_loss"],
                     k, name="cross_entropy", where=where, fixture_dtype=arrays["loss"].dtype,
                     lo=arrays["lo_loss"], hi=arrays["hi_loss"], precision=precision,
                     compared=f"candidate vs the interval of correct losses: any log(0) guard "
                     f"from none to {LOG_GUARD_MAX:g}, added or clipped (the reference's "
                     f"+ 1e-12 gives {float(arrays['loss']):.17g})")
    if not result.passed:
        raise Mismatch(result.report(hint))


def assert_identical(obtained: np.ndarray, recorded: np.ndarray, *, name: str, where: str,
                     rtol: float, atol: float) -> None:
    """Refactor check: same dtype and shape, and bit-identical values (NaN == NaN) unless a
    tolerance was asked for."""
    __tracebackhide__ = True
    if obtained.dtype != recorded.dtype or obtained.shape != recorded.shape:
        raise Mismatch(f"{name} is {obtained.dtype}{list(obtained.shape)}, but should be "
                       f"{recorded.dtype}{list(recorded.shape)} as recorded [{where}]")
    if rtol == 0 and atol == 0:
        same = (obtained == recorded) | (np.isnan(obtained) & np.isnan(recorded))
        contract = "bit-identical (no --golden-rtol/--golden-atol given)"
        tol = np.zeros(recorded.shape)
    else:
        tol = atol + rtol * np.abs(recorded.astype(np.float64))
        with np.errstate(invalid="ignore"):
            same = (np.abs(obtained.astype(np.float64) - recorded) <= tol) | (
                np.isnan(obtained) & np.isnan(recorded))
        contract = f"|actual - recorded| <= atol + rtol * |recorded| (rtol={rtol:g}, atol={atol:g})"
    if same.all():
        return
    rec = recorded.astype(np.float64)
    result = Comparison(name, where, "candidate now vs its own recording", obtained.astype(np.float64),
                        rec, rec, tol, same, contract)
    raise Mismatch(result.report(
        "your code now computes different numbers than when the recording was made. If "
        "the change is intended, record again (backprop-conformance record --impl ... "
        "--out DIR); if only rounding moved, relax with --golden-rtol/--golden-atol."))
