"""Golden fixtures: load them (verified), ask a candidate for the same values, compare.

Used by conformance/test_golden.py (candidate vs fixtures, and candidate vs a recording
made by ``conformance.fixture_files record``) and by conformance/fixture_files.py (generation, check, record).

Tolerance rule (conformance/SPEC.md, "Golden area"): an obtained value G passes against the
stored E when |G - E| <= k * eps * S + 2 * tiny, with S the stored magnitude of the terms behind
each entry, k per key from the manifest, and eps/tiny of the less precise of the result and the
fixture; ReLU'(0)-dependent entries and the cross-entropy are intervals [lo, hi] instead.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from conformance.assertions import Comparison, assert_comparisons, assert_finite
from conformance.calls import CASES_SEEN, invoke, keeps_pre_activations, named_contract, provides
from conformance.cases import Case
from conformance.diagnosis import log_guard_cause, loss_cause
from conformance.contract import (least_precise, revealed_dtype, validate_array, validate_backward,
                                  validate_forward, validate_loss, validate_params)

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
                           "'python -m conformance.fixture_files generate' on purpose)")
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
    ``params`` and the reference's ``activations``/``pre_activations`` (what backward is fed)
    for an mlp case, ``Z`` for softmax, ``Y_hat``/``Y`` for cross_entropy."""
    entry = load_manifest()["cases"][case_id]
    arrays = load_npz(FIXTURES_DIR, entry)
    out: dict[str, Any] = {k: arrays[k] for k in ("X", "Y", "Z", "Y_hat") if k in arrays}
    if entry["kind"] == "mlp":
        L = n_layers_of(entry)
        out["params"] = params_of(arrays, L)
        out["activations"] = [arrays[f"act{i}"] for i in range(L + 1)]
        out["pre_activations"] = [arrays[f"pre{i}"] for i in range(L)]
    return out


def params_of(arrays: dict[str, np.ndarray], n_layers: int, prefix: str = "") -> list[tuple]:
    return [(arrays[f"{prefix}W{j}"], arrays[f"{prefix}b{j}"]) for j in range(n_layers)]


# -------------------------------------------------------------------- obtained values

def n_layers_of(entry: dict) -> int:
    return len(entry["architecture"]) - 1


# The call each golden check makes, on ``inputs = fixture_inputs(case_id)`` (candidate_outputs).
REPRODUCE_CALLS = {
    ("mlp", "forward"): "activations, pre_activations = impl.forward(inputs['X'], inputs['params'])",
    ("mlp", "backward"): ("grads = impl.backward(inputs['activations'], inputs['pre_activations'], "
                          "inputs['Y'], inputs['params'])  # the reference's activations"),
    ("mlp", "softmax"): "P = impl.softmax(inputs['pre_activations'][-1])",
    ("mlp", "cross_entropy"): "loss = impl.cross_entropy(inputs['activations'][-1], inputs['Y'])",
    ("mlp", "train"): ("params = impl.train(inputs['X'], inputs['Y'], inputs['X'], inputs['Y'], "
                       f"inputs['params'], {TRAIN_STEP_LR}, 1, len(inputs['X']))"),
    ("softmax", "softmax"): "P = impl.softmax(inputs['Z'])",
    ("cross_entropy", "cross_entropy"): "loss = impl.cross_entropy(inputs['Y_hat'], inputs['Y'])",
}


def reproducer(case_id: str, entry: dict, function: str, module: str) -> str:
    """A few lines that rerun one golden check's call of ``function`` outside pytest (like
    ``Case.snippet`` for the other areas)."""
    from conformance.cases import impl_import

    lines = impl_import(module)
    if entry["kind"] == "init_params":
        lines.append(f"    params = impl.init_params({list(entry['architecture'])}, {entry['seed']})")
    else:
        lines = ["    from conformance.golden import fixture_inputs  # part of the installed suite",
                 *lines, f"    inputs = fixture_inputs({case_id!r})",
                 "    " + REPRODUCE_CALLS[entry["kind"], function]]
    return "\n".join(lines)


def candidate_outputs(candidate: Any, entry: dict, arrays: dict[str, np.ndarray], case_id: str,
                      functions: Sequence[str] | None = None
                      ) -> tuple[dict[str, np.ndarray], list[str]]:
    """Everything the candidate computes on this case's inputs, as validated arrays keyed
    like the fixture (``act0``, ``pre0``, ``dW0``, ``loss``, ``softmax``, ``train_W0`` ...;
    ``loss_precision`` is a 0-d array whose dtype sets the loss tolerance).

    Returns (values, absent functions). Calls go through ``calls.invoke`` and results through
    ``conformance.contract``, like every other area: a crash or a wrong structure raises the
    same AssertionError, with the same hints and finding keys. Used both to record a candidate
    and to compare against fixtures or a recording, so the two ask exactly the same questions."""
    __tracebackhide__ = True
    kind = entry["kind"]
    wanted = [f for f in KIND_FUNCTIONS[kind] if functions is None or f in functions]
    out: dict[str, np.ndarray] = {}
    absent = [f for f in wanted if not provides(candidate, f)]  # opted out counts as absent
    present = [f for f in wanted if f not in absent]
    sizes = list(entry["architecture"])

    # The network's shapes let a crash be explained by its evidence (mlp and init_params cases).
    shapes = (sizes, entry.get("batch") or 1) if sizes else None

    def call(function: str, *args: Any, where: str, inspect: bool = False) -> Any:
        __tracebackhide__ = True
        return invoke(candidate, function, *args, where=where, shapes=shapes, inspect=inspect,
                      reproduce=reproducer(case_id, entry, function, candidate.module_name))

    if kind == "mlp":
        L = n_layers_of(entry)
        X, Y, params = arrays["X"], arrays["Y"], params_of(arrays, L)
        activations = [arrays[f"act{i}"] for i in range(L + 1)]
        pre_activations = [arrays[f"pre{i}"] for i in range(L)]
        if {"forward", "backward", "train"} & set(present):  # a network's shape: summary patterns
            CASES_SEEN.append(Case(X, Y, params, recipe=f"fixture_inputs({case_id!r})"))
        if "forward" in present:
            where = f"forward(case={case_id})"
            fwd = named_contract("forward_structure", validate_forward,
                                 call("forward", X, params, where=where), X, params, where,
                                 keeps_pre_activations(candidate))
            out.update({f"act{i}": a for i, a in enumerate(fwd.activations)})
            out.update({f"pre{i}": z for i, z in enumerate(fwd.pre_activations or [])})  # none: not kept
        if "backward" in present:
            where = f"backward(case={case_id})"
            result = call("backward", activations, pre_activations, Y, params, where=where)
            grads, _ = named_contract("backward_structure", validate_backward, result, params, where)
            for j, (dW, db) in enumerate(grads):
                out[f"dW{j}"], out[f"db{j}"] = dW, db
        if "softmax" in present:
            where = f"softmax(case={case_id}, input=pre_activations[{L - 1}])"
            out["softmax"] = validate_array(call("softmax", pre_activations[-1], where=where),
                                            "softmax(Z)", where, activations[-1].shape)
        if "cross_entropy" in present:
            where = f"cross_entropy(case={case_id}, Y_hat=activations[{L}])"
            loss, precision = named_contract("loss_structure", validate_loss,
                                             call("cross_entropy", activations[-1], Y, where=where), where)
            out["loss"], out["loss_precision"] = np.asarray(loss, np.float64), np.zeros((), precision)
        if "train" in present:
            where = (f"train(case={case_id}, lr={TRAIN_STEP_LR}, epochs=1, "
                     f"batch_size={X.shape[0]})")
            # train may return the params, or None after updating the list it was given in place
            result, after = call("train", X, Y, X, Y, params, TRAIN_STEP_LR, 1, X.shape[0], where=where,
                                 inspect=True)
            trained = named_contract("train_structure", validate_params, after[4] if result is None else result,
                                     [(W.shape, b.shape) for W, b in params], "train's result", where)
            for j, (W, b) in enumerate(trained):
                out[f"train_W{j}"], out[f"train_b{j}"] = W, b
    elif kind == "softmax" and present:
        where = f"softmax(case={case_id})"
        out["P"] = validate_array(call("softmax", arrays["Z"], where=where), "softmax(Z)", where,
                                  arrays["P"].shape)
    elif kind == "cross_entropy" and present:
        where = f"cross_entropy(case={case_id})"
        loss, precision = named_contract("loss_structure", validate_loss,
                                         call("cross_entropy", arrays["Y_hat"], arrays["Y"], where=where), where)
        out["loss"], out["loss_precision"] = np.asarray(loss, np.float64), np.zeros((), precision)
    elif kind == "init_params" and present:
        seed = entry["seed"]
        where = f"init_params({sizes}, seed={seed})"
        param_shapes = [(arrays[f"W{j}"].shape, arrays[f"b{j}"].shape) for j in range(len(sizes) - 1)]
        params = named_contract("init_structure", validate_params, call("init_params", sizes, seed, where=where),
                                param_shapes, "init_params' result", where)
        for j, (W, b) in enumerate(params):
            out[f"W{j}"], out[f"b{j}"] = W, b
    return out, absent


# ------------------------------------------------------------------------ comparison

def golden_allowed(scale: np.ndarray, k: float, precision: np.dtype, fixture_dtype: np.dtype
                   ) -> np.ndarray:
    """The golden tolerance rule (SPEC.md, "Golden area"): k * eps * scale + 2 * tiny, at the
    precision of the less precise of the result and the fixture."""
    coarse = np.finfo(least_precise(precision, fixture_dtype))
    return k * float(coarse.eps) * np.asarray(scale, np.float64) + 2 * float(coarse.tiny)


def fixture_comparison(obtained: np.ndarray, arrays: dict[str, np.ndarray], key: str, k: float, *,
                       name: str, precision: np.dtype | None = None,
                       expected: np.ndarray | None = None) -> tuple[Comparison, np.dtype]:
    """The candidate's ``obtained`` against fixture entry ``key`` (its scale, and its
    ambiguity interval ``lo_``/``hi_`` if any), as one ``Comparison`` of the suite's engine,
    with the dtype it is held to (``precision``, default: the precision the values reveal).
    ``expected`` replaces the stored value (tools/fixtures checks other computations with the
    same rule)."""
    held_to = np.dtype(precision) if precision is not None else revealed_dtype(obtained)
    fixture_dtype = arrays[key].dtype
    scale = arrays[f"scale_{key}"]
    if expected is not None:
        lo = hi = expected
    else:
        lo, hi = arrays.get(f"lo_{key}", arrays[key]), arrays.get(f"hi_{key}", arrays[key])
    return Comparison(
        name, obtained, lo, golden_allowed(scale, k, held_to, fixture_dtype), expected_alt=hi,
        allowed_float32=(golden_allowed(scale, k, np.dtype(np.float32), fixture_dtype)
                         if held_to == np.float64 else None)), held_to


def golden_contract(comparisons: Sequence[tuple[Comparison, float]], held_to: np.dtype,
                    fixture_dtype: np.dtype) -> str:
    eps = float(np.finfo(least_precise(held_to, fixture_dtype)).eps)
    ks = ", ".join(f"{c.name} {k:g}" for c, k in comparisons)
    return (f"|actual - expected| <= k * eps * scale + 2 * tiny, eps = {eps:.3g} "
            f"({np.dtype(held_to).name} result, {np.dtype(fixture_dtype).name} fixture), scale = the "
            f"magnitude of the terms behind each entry, k per tensor from the manifest ({ks})")


def assert_matches_fixture(values: dict[str, np.ndarray], arrays: dict[str, np.ndarray], entry: dict,
                           keys: Sequence[tuple[str, str]], *, where: str, hint: str,
                           precision: np.dtype | None = None,
                           diagnosis: Callable[[], str] | None = None,
                           reproduce: str | None = None) -> None:
    """Compare the candidate's ``values`` with the fixture, one tensor per (key, display name),
    in one report (the first failing tensor leads it)."""
    __tracebackhide__ = True
    compared, held = [], []
    for key, name in keys:
        k = entry["tolerances"][key]["k"]
        comparison, held_to = fixture_comparison(values[key], arrays, key, k, name=name,
                                                 precision=precision)
        compared.append((comparison, k))
        held.append(held_to)
    held_to = least_precise(*held)
    fixture_dtype = least_precise(*(arrays[key].dtype for key, _ in keys))
    interval = any(f"lo_{key}" in arrays for key, _ in keys)
    assert_comparisons(
        [c for c, _ in compared], where=where,
        compared="candidate vs golden fixture (the reference's values)"
                 + ("; [lo, hi] entries: ReLU'(0) may be 0 or 1 there" if interval else ""),
        contract=golden_contract(compared, held_to, fixture_dtype), held_to=held_to,
        diagnosis=diagnosis, reproduce=reproduce, next_step=hint)


def assert_loss_within(loss: np.ndarray, arrays: dict[str, np.ndarray], k: float, *, where: str,
                       hint: str, precision: np.dtype | None = None,
                       reproduce: str | None = None,
                       probabilities: tuple[np.ndarray, np.ndarray] | None = None) -> None:
    """The cross-entropy must be finite and inside the fixture's guard interval
    (``probabilities``: the (Y_hat, Y) it was computed from, to tell why it is not finite)."""
    __tracebackhide__ = True
    def guard() -> str:
        if probabilities is None:
            return ("the loss must stay finite: a log(0) guard (the section adds 1e-12 inside the "
                    "log) or a log-softmax")
        return log_guard_cause(*probabilities)

    assert_finite("cross_entropy", loss, where=where, guard=guard)
    comparison, held_to = fixture_comparison(np.asarray(loss, np.float64), arrays, "loss", k,
                                             name="cross_entropy", precision=precision)
    assert_comparisons(
        [comparison], where=where, held_to=held_to,
        compared=f"candidate vs the interval of correct losses: any log(0) guard from none to "
                 f"{LOG_GUARD_MAX:g}, added or clipped (the reference's + 1e-12 gives "
                 f"{float(arrays['loss']):.17g})",
        contract=golden_contract([(comparison, k)], held_to, arrays["loss"].dtype),
        diagnosis=(lambda: loss_cause(float(loss), *probabilities)) if probabilities is not None else None,
        reproduce=reproduce, next_step=hint)


def assert_identical(obtained: np.ndarray, recorded: np.ndarray, *, name: str, where: str,
                     rtol: float, atol: float, rounding: tuple[np.ndarray, float] | None = None) -> None:
    """Refactor check: same dtype and shape, and bit-identical values (NaN == NaN) unless a
    tolerance was asked for. ``rounding`` = (the fixture's scale of this value, its k): also
    allow the golden area's rounding rule, k * eps * scale + 2 * tiny in the recorded dtype
    (SPEC.md, "Golden area"), which holds any correct summation order, float32 included."""
    __tracebackhide__ = True
    if obtained.dtype != recorded.dtype or obtained.shape != recorded.shape:
        raise AssertionError(f"{name} is {obtained.dtype}{list(obtained.shape)}, but should be "
                             f"{recorded.dtype}{list(recorded.shape)} as recorded [{where}]")
    terms = ([f"rtol * |recorded| (rtol={rtol:g})"] if rtol else []) + ([f"atol={atol:g}"] if atol else [])
    if rounding is not None:
        terms.append(f"the golden rounding rule k * eps * scale + 2 * tiny (k={rounding[1]:g}, "
                     f"{recorded.dtype} eps)")
    contract = ("|actual - recorded| <= " + " + ".join(terms) if terms
                else "bit-identical (no --golden-rounding/--golden-rtol/--golden-atol given)")
    # rtol = 0 adds nothing (not 0 * inf = NaN at infinite recorded values)
    allowed = atol + (rtol * np.abs(recorded.astype(np.float64)) if rtol else 0.0)
    if rounding is not None:
        allowed = allowed + golden_allowed(rounding[0], rounding[1], recorded.dtype, recorded.dtype)
    assert_comparisons(
        [Comparison(name, obtained, recorded, allowed, nan_equal=True)], where=where,
        compared="candidate now vs its own recording", contract=contract, next_step=(
            "your code now computes different numbers than when the recording was made. If "
            "the change is intended, record again (backprop-conformance record --impl ... "
            "--out DIR --force); if only rounding moved, compare with --golden-rounding."))
