"""Golden fixtures: generate them from the reference, check them, record a candidate.

    python -m conformance.fixture_files generate [--dir fixtures]   # first time only; refuses to overwrite
    python -m conformance.fixture_files update   [--dir fixtures]   # regenerate on purpose (review SUMMARY.md)
    python -m conformance.fixture_files check    [--dir fixtures]   # CI: integrity + recompute + 2nd method
    python -m conformance.fixture_files record --impl mymodule --out DIR [--force]  # pin a candidate's outputs

``check`` exits non-zero naming the case, key and worst entry when: a file's sha256 differs
from the manifest, a manifest file is missing, a file is not in the manifest, a stored value
differs from what the reference computes now (bit-exact by default), or the golden
gradients disagree with complex-step differentiation (an independent method that needs
no step-size trade-off: Im f(x + ih) / h is exact to rounding for tiny h).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import platform
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from conformance import golden
from conformance.exact import backpropagate, gradient_bounds, output_error, pre_activation_bound
from conformance.golden import (FIXTURES_DIR, FORMAT_VERSION, LOG_GUARD_MAX, MANIFEST_NAME,
                                MAX_NEG_LOG, RECORDING_NAME, FixtureError)

ROOT = Path(__file__).resolve().parent.parent
REFERENCE_FILE = ROOT / "conformance" / "reference" / "mlp.py"
SUMMARY_NAME = "SUMMARY.md"
COMPLEX_STEP = 1e-20  # no subtraction, so any tiny step is exact to rounding
COMPLEX_STEP_RTOL = 1e-10  # float64 cases: agreement with complex-step, relative to max |grad|


@dataclass(frozen=True)
class CaseSpec:
    id: str
    kind: str  # mlp | softmax | cross_entropy | init_params
    description: str
    architecture: tuple[int, ...] = ()
    batch: int = 0
    dtype: str = "float64"
    seed: int = 0
    options: dict = field(default_factory=dict)


CASES = [
    CaseSpec("f64_depth1_b8", "mlp", "one layer (softmax regression), batch 8", (5, 3), 8, seed=1),
    CaseSpec("f64_depth2_b16", "mlp", "one hidden layer, batch 16", (6, 8, 4), 16, seed=2),
    CaseSpec("f64_depth3_b1", "mlp", "two hidden layers, batch of one row", (5, 7, 6, 3), 1, seed=3),
    CaseSpec("f64_depth4_b10", "mlp", "three hidden layers, batch 10", (4, 9, 8, 7, 5), 10, seed=4),
    CaseSpec("f32_depth2_b12", "mlp", "float32 inputs, one hidden layer", (6, 8, 4), 12, "float32",
             seed=5),
    CaseSpec("f32_depth4_b1", "mlp", "float32 inputs, three hidden layers, batch of one row",
             (5, 6, 7, 6, 4), 1, "float32", seed=6),
    CaseSpec("f64_zero_preact", "mlp",
             "exactly-zero pre-activations (a zero weight column and bias in hidden layers 1 and "
             "2): ReLU'(0) is a free choice there, so those gradient entries are intervals",
             (5, 6, 6, 4), 9, seed=7, options={"zero_units": ((0, 2), (1, 4))}),
    CaseSpec("f64_large_logits", "mlp",
             "logits of order 1e3: probabilities underflow to exactly 0, some for the true "
             "class (the loss then needs its log(0) guard)", (6, 8, 5), 8, seed=8,
             options={"logit_scale": 2000.0}),
    CaseSpec("f32_large_logits", "mlp", "float32, logits of order 150 (exp underflows)",
             (6, 8, 5), 8, "float32", seed=9, options={"logit_scale": 150.0}),
    CaseSpec("f64_softmax_edges", "softmax",
             "logits +-1e3 and +-1e4, equal logits, rows of very different scale", seed=10),
    CaseSpec("f32_softmax_edges", "softmax", "float32 logits up to +-100, equal logits",
             dtype="float32", seed=11),
    CaseSpec("f64_ce_log0", "cross_entropy",
             "true-class probabilities 0 (log(0)), 1e-300, 1e-15 and 1", seed=12),
    CaseSpec("f32_ce_log0", "cross_entropy", "float32 probabilities 0, 1e-40 (subnormal), 1",
             dtype="float32", seed=13),
    CaseSpec("init_50_32_10_seed0", "init_params", "He draws for 50-32-10, seed 0",
             (50, 32, 10), seed=0),
    CaseSpec("init_3_5_4_2_seed123", "init_params", "He draws for 3-5-4-2, seed 123",
             (3, 5, 4, 2), seed=123),
    CaseSpec("init_7_1_seed2to40", "init_params", "He draws for 7-1 (one output), seed 2**40",
             (7, 1), seed=2**40),
]


def _reference():
    from conformance.reference import mlp

    return mlp


# --------------------------------------------------------------------------- building

def _k_for(spec: CaseSpec, n_classes: int) -> float:
    """Twice the longest chain of roundings an entry can see (all inner dimensions, the
    batch sum, plus a dozen for exp/log/division), so k * eps * scale bounds any
    summation order with a factor-2 margin."""
    if spec.kind == "init_params":
        return 4.0  # one multiply by a square root, computed in any way: a few ulps
    return 2.0 * (sum(spec.architecture) + spec.batch + n_classes + 12)


def _softmax_scale(P: np.ndarray, Z_scale: np.ndarray) -> np.ndarray:
    # dp_i = p_i (dz_i - sum_j p_j dz_j), and exp turns an absolute rounding of its argument
    # (~|z|) into a relative error of p: hence p times the row's logit magnitude.
    return np.abs(P).astype(np.float64) * (4.0 * Z_scale.max(axis=-1, keepdims=True) + 4.0)


def _loss_bounds(P: np.ndarray, Y: np.ndarray) -> dict[str, np.ndarray]:
    """Interval of a correct mean cross-entropy over guard choices, and its scale."""
    p = P.astype(np.float64)
    true = (Y > 0)
    with np.errstate(divide="ignore"):
        neglog = np.minimum(-np.log(p), MAX_NEG_LOG)
    lo = np.mean(np.sum(np.where(true, -np.log(p + LOG_GUARD_MAX), 0.0), axis=1))
    hi = np.mean(np.sum(np.where(true, neglog, 0.0), axis=1)) + 2 * LOG_GUARD_MAX
    scale = np.mean(np.sum(np.where(true, neglog + 1.0, 0.0), axis=1))
    return {"lo_loss": np.asarray(lo), "hi_loss": np.asarray(hi), "scale_loss": np.asarray(scale)}


def _backward_scales(activation_scales: list, pre_activations: list, Y: np.ndarray, params: list) -> list:
    """Per-entry magnitudes behind each gradient: |A|^T @ |delta| and sum |delta|, with
    |delta| propagated through |W|^T and a mask that keeps Z == 0 (both ReLU'(0) choices)."""
    activation_scales = [a.astype(np.float64) for a in activation_scales]
    delta_scale = (activation_scales[-1] + np.abs(Y)) / Y.shape[0]
    return gradient_bounds(delta_scale, activation_scales, pre_activations, params)


def _mlp_inputs(spec: CaseSpec) -> tuple[np.ndarray, np.ndarray, list]:
    mlp = _reference()
    dtype = np.dtype(spec.dtype)
    rng = np.random.default_rng(spec.seed)
    sizes = spec.architecture
    X = rng.standard_normal((spec.batch, sizes[0]))
    Y = np.eye(sizes[-1])[rng.integers(0, sizes[-1], spec.batch)]
    params = [(W, 0.1 * rng.standard_normal(b.shape))
              for W, b in mlp.init_params(list(sizes), seed=spec.seed)]
    for layer, unit in spec.options.get("zero_units", ()):
        W, b = params[layer]
        W[:, unit] = 0.0  # Z[:, unit] = 0 exactly whatever the summation order
        b[unit] = 0.0
    if "logit_scale" in spec.options:
        _, Z = mlp.forward(X, params)
        W, b = params[-1]
        factor = spec.options["logit_scale"] / np.abs(Z[-1]).max()
        params[-1] = (W * factor, b * factor)
    return X.astype(dtype), Y.astype(dtype), [(W.astype(dtype), b.astype(dtype)) for W, b in params]


def build_case(spec: CaseSpec) -> tuple[dict[str, np.ndarray], dict]:
    """The case's arrays (inputs, expected outputs, scales, intervals) and manifest fields."""
    mlp = _reference()
    arrays: dict[str, np.ndarray] = {}
    ambiguous: list[str] = []
    if spec.kind == "mlp":
        X, Y, params = _mlp_inputs(spec)
        L = len(params)
        arrays.update(X=X, Y=Y)
        for j, (W, b) in enumerate(params):
            arrays[f"W{j}"], arrays[f"b{j}"] = W, b
        activations, pre_activations = mlp.forward(X, params)
        # Forward scales: |A_prev| @ |W| + |b| per layer (ReLU is 1-Lipschitz).
        a_scale = np.abs(X).astype(np.float64)
        arrays["act0"], arrays["scale_act0"] = activations[0], a_scale
        for j, (W, b) in enumerate(params):
            z_scale = pre_activation_bound(a_scale, W, b)
            arrays[f"pre{j}"], arrays[f"scale_pre{j}"] = pre_activations[j], z_scale
            a_scale = z_scale if j < L - 1 else _softmax_scale(activations[-1], z_scale)
            arrays[f"act{j + 1}"], arrays[f"scale_act{j + 1}"] = activations[j + 1], a_scale
        arrays["softmax"] = activations[-1]
        arrays["scale_softmax"] = _softmax_scale(activations[-1], np.abs(pre_activations[-1]).astype(np.float64))
        arrays["loss"] = np.asarray(mlp.cross_entropy(activations[-1], Y))
        arrays.update(_loss_bounds(activations[-1], Y))
        grads = mlp.backward(activations, pre_activations, Y, params)
        # Gradient scales from the forward scales, not from |A| and |P|: a correct backward
        # may recompute what it is given (Y_hat = softmax(Z_L) from the logits, or the whole
        # forward pass from X), and train always does; the forward scales cover that rounding.
        fwd = [arrays[f"scale_act{i}"] for i in range(L + 1)]
        scales = _backward_scales(fwd, pre_activations, Y, params)
        # The other ReLU'(0) convention, in the fixture's dtype (rounds as the reference does).
        other = backpropagate(output_error(activations[-1], Y), activations, pre_activations, params,
                              relu_prime_at_zero=1.0)
        for j, ((dW, db), (sW, sb), (oW, ob)) in enumerate(zip(grads, scales, other)):
            for key, g, s, o in ((f"dW{j}", dW, sW, oW), (f"db{j}", db, sb, ob)):
                arrays[key], arrays[f"scale_{key}"] = g, s
                if not np.array_equal(g, o):
                    arrays[f"lo_{key}"], arrays[f"hi_{key}"] = np.minimum(g, o), np.maximum(g, o)
                    ambiguous.append(key)
        # Train: one full-batch SGD step per epoch, so shuffling cannot matter.
        lr = golden.TRAIN_STEP_LR
        for j, ((W, b), (dW, db)) in enumerate(zip(params, grads)):
            for name, P0, G in (("W", W, dW), ("b", b, db)):
                key, gkey = f"train_{name}{j}", f"d{name}{j}"
                arrays[key] = P0 - lr * G
                arrays[f"scale_{key}"] = np.abs(P0).astype(np.float64) + lr * scales[j][name == "b"]
                if gkey in ambiguous:
                    arrays[f"lo_{key}"] = P0 - lr * arrays[f"hi_{gkey}"]
                    arrays[f"hi_{key}"] = P0 - lr * arrays[f"lo_{gkey}"]
                    ambiguous.append(key)
        n_classes = spec.architecture[-1]
    elif spec.kind == "softmax":
        dtype = np.dtype(spec.dtype)
        big = 1e3 if dtype == np.float64 else 100.0
        huge = 1e4 if dtype == np.float64 else 88.0
        Z = np.array([
            [big, -big, 0.0, big - 1],
            [huge, huge - 1, -huge, 0.0],
            [3.0, 3.0, 3.0, 3.0],
            [-huge, -huge, -huge, -huge + 2],
            [1e-3, -2e-3, 0.0, 5e-4],
            [0.0, 0.0, 0.0, 0.0],
            [0.75 * big, 0.0, -0.75 * big, 10.0],
            [-big, -big + 1, -big + 2, -big + 3],
        ]).astype(dtype)
        P = mlp.softmax(Z)
        arrays.update(Z=Z, P=P, scale_P=_softmax_scale(P, np.abs(Z).astype(np.float64)))
        n_classes = Z.shape[1]
    elif spec.kind == "cross_entropy":
        dtype = np.dtype(spec.dtype)
        small = 1e-300 if dtype == np.float64 else 1e-40
        Y_hat = np.array([
            [0.0, 1.0, 0.0],
            [0.2, 0.3, 0.5],
            [small, 0.5, 0.5 - small],
            [1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0],
            [1e-15, 1.0 - 1e-15, 0.0],
            [0.25, 0.25, 0.5],
        ]).astype(dtype)
        Y = np.eye(3)[[0, 2, 0, 0, 1, 0, 1]].astype(dtype)
        arrays.update(Y_hat=Y_hat, Y=Y, loss=np.asarray(mlp.cross_entropy(Y_hat, Y)))
        arrays.update(_loss_bounds(Y_hat, Y))
        n_classes = 3
    elif spec.kind == "init_params":
        for j, (W, b) in enumerate(mlp.init_params(list(spec.architecture), spec.seed)):
            arrays[f"W{j}"], arrays[f"scale_W{j}"] = W, np.abs(W)
            arrays[f"b{j}"], arrays[f"scale_b{j}"] = b, np.abs(b)  # zeros: exact
        n_classes = spec.architecture[-1]
    else:
        raise ValueError(f"unknown case kind {spec.kind!r}")
    k = _k_for(spec, n_classes)
    expected = [key for key in arrays if f"scale_{key}" in arrays]
    entry = {
        "kind": spec.kind,
        "description": spec.description,
        "architecture": list(spec.architecture),
        "batch": spec.batch,
        "dtype": spec.dtype,
        "seed": spec.seed,
        "file": f"{spec.id}.npz",
        "tolerances": {key: {"k": k, "scale": f"scale_{key}"} for key in expected},
        "ambiguous": ambiguous,
    }
    return arrays, entry


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """The arrays as a compressed .npz (np.load reads it), byte-identical for equal arrays on
    every Python: each member is written whole with a fixed date. np.savez_compressed streams its
    members, and whether zipfile then writes zip64 headers differs between Python patch releases
    (3.11.2 and 3.11.7 give different bytes for the same arrays)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o600 << 16
            archive.writestr(info, member.getvalue())
    return buffer.getvalue()


def _versions() -> dict:
    from importlib import metadata

    try:
        package = metadata.version("backprop-conformance")
    except metadata.PackageNotFoundError:
        package = "unknown"
    return {"numpy": np.__version__, "python": platform.python_version(),
            "backprop_conformance": package,
            "reference_mlp_sha256": hashlib.sha256(REFERENCE_FILE.read_bytes()).hexdigest()}


TOLERANCE_RULE = (
    "pass when |obtained - expected| <= k * eps * scale + 2 * tiny, entrywise; scale is the "
    "stored scale_<key> array (sum of |terms| behind each entry, propagated), eps and tiny "
    "belong to the coarser of the candidate's returned dtype and the fixture dtype, k is per "
    "key below; keys listed under 'ambiguous' (ReLU'(0) choices) and 'loss' (log(0) guard "
    "choices) are checked against the interval [lo_<key>, hi_<key>] instead. "
    "See fixtures/README.md.")


def write_fixtures(directory: Path, *, overwrite: bool) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    manifest_path = directory / MANIFEST_NAME
    if not overwrite:
        existing = [p.name for p in directory.glob("*.npz")]
        if manifest_path.exists() or existing:
            raise FixtureError(
                f"{directory} already holds fixtures ({MANIFEST_NAME if manifest_path.exists() else existing[0]}"
                "...); 'generate' never overwrites them. Use 'update' to regenerate on purpose, "
                "then review the SUMMARY.md diff before committing.")
    cases = {}
    written = []
    for spec in CASES:
        arrays, entry = build_case(spec)
        data = _npz_bytes(arrays)
        (directory / entry["file"]).write_bytes(data)
        entry["sha256"] = hashlib.sha256(data).hexdigest()
        cases[spec.id] = entry
        written.append(entry["file"])
    if overwrite:  # files of cases that no longer exist would fail 'check' as strays
        for stray in directory.glob("*.npz"):
            if stray.name not in written:
                stray.unlink()
    manifest = {"format": FORMAT_VERSION, "generated_by": _versions(),
                "tolerance_rule": TOLERANCE_RULE, "log_guard_max": LOG_GUARD_MAX,
                "cases": cases}
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    (directory / SUMMARY_NAME).write_text(summary(directory, manifest))
    return written


def _stats(a: np.ndarray) -> str:
    a64 = a.astype(np.float64)
    digest = hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:10]
    if a.size == 0:
        return f"{a.dtype} {list(a.shape)} empty"
    return (f"{a.dtype} {list(a.shape)} min {a64.min():.6g} max {a64.max():.6g} "
            f"sum {a64.sum():.10g} bytes-sha256 {digest}")


def summary(directory: Path, manifest: dict) -> str:
    """Human-readable digest of every fixture, so a change is visible in review."""
    lines = ["# Golden fixtures: summary (generated by `python -m tools.fixtures`; do not edit)",
             "", f"Generated with numpy {manifest['generated_by']['numpy']}, conformance/reference/mlp.py "
             f"sha256 {manifest['generated_by']['reference_mlp_sha256'][:16]}.", ""]
    for cid, entry in manifest["cases"].items():
        arrays = golden.load_npz(directory, entry)
        lines.append(f"## {cid} ({entry['kind']}, {entry['dtype']})")
        lines.append("")
        lines.append(f"{entry['description']}. Architecture {entry['architecture']}, batch "
                     f"{entry['batch']}, seed {entry['seed']}, file sha256 {entry['sha256'][:16]}.")
        if entry["ambiguous"]:
            lines.append(f"ReLU'(0) intervals on: {', '.join(entry['ambiguous'])}.")
        lines.append("")
        for key in sorted(k for k in arrays if not k.startswith(("scale_", "lo_", "hi_"))):
            lines.append(f"- `{key}`: {_stats(arrays[key])}")
        lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- checking

def _complex_loss(X: np.ndarray, Y: np.ndarray, params: list) -> complex:
    """Exact mean cross-entropy (log-softmax, no guard) with complex-safe ReLU and max."""
    A = X.astype(np.complex128)
    for j, (W, b) in enumerate(params):
        Z = A @ W + b
        if j < len(params) - 1:
            A = np.where(Z.real > 0, Z, 0)
        else:
            shifted = Z - Z.real.max(axis=1, keepdims=True)
            log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
            return -np.mean(np.sum(Y * log_p, axis=1))
    raise ValueError("no layers")


def complex_step_gradients(X: np.ndarray, Y: np.ndarray, params: list) -> list:
    """d loss / d theta for every parameter entry by complex-step differentiation, float64."""
    base = [(W.astype(np.complex128), b.astype(np.complex128)) for W, b in params]
    Xd, Yd = X.astype(np.float64), Y.astype(np.float64)
    grads = []
    for j in range(len(base)):
        pair = []
        for t in range(2):
            tensor = base[j][t]
            g = np.empty(tensor.shape)
            for index in np.ndindex(tensor.shape):
                tensor[index] += 1j * COMPLEX_STEP
                g[index] = _complex_loss(Xd, Yd, base).imag / COMPLEX_STEP
                tensor[index] -= 1j * COMPLEX_STEP
            pair.append(g)
        grads.append(tuple(pair))
    return grads


def check_gradients_independently(cid: str, entry: dict, arrays: dict[str, np.ndarray]) -> list[str]:
    """The stored gradients against complex-step differentiation of the exact loss."""
    problems = []
    L = golden.n_layers_of(entry)
    cs = complex_step_gradients(arrays["X"], arrays["Y"], golden.params_of(arrays, L))
    for j, (cW, cb) in enumerate(cs):
        for key, c in ((f"dW{j}", cW), (f"db{j}", cb)):
            stored = arrays[key]
            if stored.dtype == np.float64:
                tol = COMPLEX_STEP_RTOL * max(np.abs(c).max(), np.finfo(float).tiny)
                ok = np.abs(stored - c) <= tol
                rule = f"|stored - complex-step| <= {COMPLEX_STEP_RTOL:g} * max|grad| = {tol:.3g}"
            else:  # a float32 fixture is only as exact as float32: the manifest rule
                k = entry["tolerances"][key]["k"]
                result, _ = golden.fixture_comparison(stored, arrays, key, k, name=key, expected=c)
                ok, tol = ~result.bad, result.allowed
                rule = f"|stored - complex-step| <= {k:g} * eps(float32) * scale + 2 * tiny"
            if not ok.all():
                worst = np.unravel_index(np.argmax(np.abs(stored - c) - tol), c.shape)
                problems.append(
                    f"{cid}: {key}{tuple(int(i) for i in worst)} = {stored[worst]!r}, but "
                    f"complex-step differentiation gives {c[worst]!r} ({int((~ok).sum())} of "
                    f"{ok.size} entries violate {rule}): the reference's backward or the "
                    "fixture is wrong")
    return problems


def _diff_message(cid: str, key: str, stored: np.ndarray, fresh: np.ndarray) -> str:
    if stored.shape != fresh.shape or stored.dtype != fresh.dtype:
        return (f"{cid}: {key} is stored as {stored.dtype}{list(stored.shape)}, but the reference "
                f"now gives {fresh.dtype}{list(fresh.shape)}")
    differ = ~((stored == fresh) | (np.isnan(stored) & np.isnan(fresh)))
    with np.errstate(invalid="ignore"):
        diff = np.where(differ, np.abs(stored.astype(np.float64) - fresh), 0.0)
    worst = np.unravel_index(int(np.nanargmax(np.where(np.isnan(diff), np.inf, diff))), diff.shape)
    w = tuple(int(i) for i in worst)
    return (f"{cid}: {key}{w if w else ''} is stored as {stored[worst]!r}, but the reference now "
            f"gives {fresh[worst]!r} ({int(differ.sum())} of {differ.size} entries differ, max "
            f"abs difference {np.nanmax(diff):.3g})")


def check(directory: Path, *, tolerant: bool = False, log: Callable[[str], None] = print) -> list[str]:
    """All integrity, reproducibility and correctness problems of the fixtures in ``directory``."""
    try:
        manifest = golden.load_manifest(directory)
    except FixtureError as exc:
        return [str(exc)]
    problems = []
    specs = {spec.id: spec for spec in CASES}
    listed = {entry["file"] for entry in manifest["cases"].values()}
    for stray in sorted(p.name for p in directory.glob("*.npz")):
        if stray not in listed:
            problems.append(f"{directory / stray} is not in the manifest (a stray or injected file)")
    for cid in specs:
        if cid not in manifest["cases"]:
            problems.append(f"{cid}: defined in conformance/fixture_files.py but missing from the manifest "
                            "(run 'python -m conformance.fixture_files update' on purpose)")
    # The file's bytes may differ from the generating one (a comment, a layout change) while its
    # numbers do not: what is said about it waits for the values (below).
    recorded = manifest.get("generated_by", {}).get("reference_mlp_sha256")
    bytes_differ = recorded != _versions()["reference_mlp_sha256"]
    value_problems_before = len(problems)
    for cid, entry in manifest["cases"].items():
        try:
            arrays = golden.load_npz(directory, entry)
        except FixtureError as exc:
            problems.append(f"{cid}: {exc}")
            continue
        if cid not in specs:
            problems.append(f"{cid}: in the manifest but not defined in conformance/fixture_files.py")
            continue
        fresh, fresh_entry = build_case(specs[cid])
        for key in sorted(set(arrays) | set(fresh)):
            if key not in arrays or key not in fresh:
                problems.append(f"{cid}: key {key} is {'missing from the file' if key not in arrays else 'no longer produced'}")
                continue
            same = (arrays[key].shape == fresh[key].shape and arrays[key].dtype == fresh[key].dtype
                    and np.array_equal(arrays[key], fresh[key], equal_nan=True))
            if same:
                continue
            if tolerant and key in entry["tolerances"] and arrays[key].shape == fresh[key].shape:
                k = entry["tolerances"][key]["k"]
                result, _ = golden.fixture_comparison(fresh[key], arrays, key, k, name=key)
                if not result.bad.any():
                    continue
            problems.append(_diff_message(cid, key, arrays[key], fresh[key]))
        for field_name in ("kind", "architecture", "batch", "dtype", "seed", "tolerances", "ambiguous"):
            if entry.get(field_name) != fresh_entry[field_name]:
                problems.append(f"{cid}: manifest field {field_name!r} is {entry.get(field_name)!r}, "
                                f"but the generator now says {fresh_entry[field_name]!r}")
        if entry["kind"] == "mlp":
            problems += check_gradients_independently(cid, entry, arrays)
    if bytes_differ:
        if len(problems) == value_problems_before:
            log("note: conformance/reference/mlp.py is not byte-identical to the file that generated the fixtures "
                "(a comment or layout change, say); every value it computes still matches them")
        else:
            log(f"note: conformance/reference/mlp.py is not the file that generated the fixtures (sha256 "
                f"{str(recorded)[:12]}...), and the values below differ")
    summary_path = directory / SUMMARY_NAME
    if not problems and (not summary_path.is_file() or summary_path.read_text() != summary(directory, manifest)):
        problems.append(f"{summary_path} is missing or out of date with the fixtures "
                        "(run 'python -m conformance.fixture_files update')")
    return problems


# ---------------------------------------------------------------------------- recording

@dataclass
class Recorded:
    path: Path
    replaced: str = ""  # what the recording it replaced was of ("" if there was none)
    printed: int = 0  # lines the candidate printed while it was called (not shown)


def record(impl: str, out: Path, fixtures_dir: Path = FIXTURES_DIR, replace: bool = False) -> Recorded:
    """Pin a candidate's outputs on every fixture input into ``out`` (see README). An existing
    recording is the baseline a refactor is checked against: it is replaced only when asked."""
    from conformance.candidate import InProcessCandidate

    previous = out / RECORDING_NAME
    replaced = ""
    if previous.exists():
        try:
            old = json.loads(previous.read_text())
            replaced = f"{old.get('module_file')} (sha256 {str(old.get('module_sha256'))[:12]})"
        except (OSError, ValueError, AttributeError):
            replaced = "an unreadable recording"
        if not replace:
            raise FixtureError(f"{previous} already holds a recording of {replaced}: it is what "
                               f"'check --golden {out}' compares against. Record into another folder, "
                               "or pass --force to replace it")
    candidate = InProcessCandidate.load(impl)
    if candidate.load_error:
        raise FixtureError(candidate.load_error)
    manifest = golden.load_manifest(fixtures_dir)
    out.mkdir(parents=True, exist_ok=True)
    cases = {}
    printed = io.StringIO()  # the candidate's own prints (a train loop's progress) are not ours
    for cid, entry in manifest["cases"].items():
        arrays = golden.load_npz(fixtures_dir, entry)
        try:
            with contextlib.redirect_stdout(printed):
                values, absent = golden.candidate_outputs(candidate, entry, arrays, cid)
        except AssertionError as exc:  # a failed call or a contract violation
            raise FixtureError(f"cannot record case {cid}: {exc}") from exc
        data = _npz_bytes(values)
        (out / f"{cid}.npz").write_bytes(data)
        cases[cid] = {"file": f"{cid}.npz", "sha256": hashlib.sha256(data).hexdigest(),
                      "keys": sorted(values), "absent": absent}
    recording = {
        "format": FORMAT_VERSION,
        "impl": impl,
        "module": candidate.module_name,
        "module_file": str(candidate.path),
        "module_sha256": candidate.sha256,
        "fixtures_manifest_sha256": golden.sha256_file(fixtures_dir / MANIFEST_NAME),
        "numpy": np.__version__,
        "cases": cases,
    }
    previous.write_text(json.dumps(recording, indent=2) + "\n")
    return Recorded(previous, replaced, len(printed.getvalue().splitlines()))


# --------------------------------------------------------------------------------- CLI

def main(argv: list[str] | None = None, prog: str = "python -m conformance.fixture_files") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["record"]:
        return record_main(argv[1:], prog=f"{prog} record")
    parser = argparse.ArgumentParser(allow_abbrev=False, prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("generate", "create the fixtures (refuses to overwrite)"),
                       ("update", "regenerate the fixtures on purpose (overwrites)"),
                       ("check", "verify integrity, reproducibility and the gradients")):
        p = sub.add_parser(name, help=text, allow_abbrev=False)
        p.add_argument("--dir", type=Path, default=FIXTURES_DIR, help="fixtures directory")
        if name == "check":
            p.add_argument("--tolerant", action="store_true",
                           help="accept recomputed values within the manifest tolerances instead "
                                "of bit-exact (for a machine whose BLAS rounds differently)")
    sub.add_parser("record", help=RECORD_HELP, allow_abbrev=False)  # listed; run by record_main
    args = parser.parse_args(argv)
    try:
        if args.command in ("generate", "update"):
            written = write_fixtures(args.dir, overwrite=args.command == "update")
            print(f"wrote {len(written)} fixtures, {MANIFEST_NAME} and {SUMMARY_NAME} to {args.dir}")
            return 0
        problems = check(args.dir, tolerant=args.tolerant)  # the command is "check"
        if problems:
            print(f"fixture check FAILED: {len(problems)} problem(s) in {args.dir}",
                  file=sys.stderr)
            for line in problems:
                print(f"  - {line}", file=sys.stderr)
            return 1
        n = len(golden.load_manifest(args.dir)["cases"])
        print(f"fixture check passed: {n} cases intact, reproduced by the reference "
              f"({'within tolerance' if args.tolerant else 'bit-exact'}), golden gradients "
              f"agree with complex-step differentiation")
        return 0
    except FixtureError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


RECORD_HELP = "pin a candidate's outputs on the fixture inputs"


def add_record_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--impl", required=True, help="module name or path to a .py file")
    p.add_argument("--out", type=Path, required=True, help="directory for the recording")
    p.add_argument("--force", action="store_true",
                   help="replace a recording already in --out (it is the baseline a refactor is "
                        "checked against, so it is kept unless asked)")
    p.add_argument("--dir", type=Path, default=FIXTURES_DIR,
                   help="the golden fixtures whose inputs the candidate is run on (default: the "
                        "suite's own; only for a suite developer's regenerated set)")


def record_main(argv: list[str] | None = None, prog: str = "backprop-conformance record") -> int:
    """The ``record`` command (``backprop-conformance record``, ``python -m conformance.fixture_files record``)."""
    parser = argparse.ArgumentParser(prog=prog, description=RECORD_HELP, allow_abbrev=False)
    add_record_arguments(parser)
    args = parser.parse_args(argv)
    try:
        done = record(args.impl, args.out, args.dir, replace=args.force)
    except FixtureError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"recorded {args.impl} -> {done.path}"
          + (f" (replaced the recording of {done.replaced})" if done.replaced else "")
          + (f"\n({done.printed} lines the candidate printed while it was called are not shown)"
             if done.printed else "")
          + f"\nnow check a refactor with: backprop-conformance check {args.impl} --golden {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
