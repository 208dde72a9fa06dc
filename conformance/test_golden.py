"""Contract area: golden values. The candidate reproduces the reference's numbers, pinned in
fixtures/ (tolerance rule: SPEC.md, "Golden area"), and, with ``--golden DIR``, its
own numbers pinned earlier by ``python -m conformance.fixture_files record`` (the refactor check).

Each check feeds the candidate the fixture's exact inputs (backward gets the reference's
activations), so a failure points at one function. Optional functions (softmax,
cross_entropy, init_params, train) are skipped with a reason when the candidate lacks them.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from conformance import golden
from conformance import evidence
from conformance.calls import interface_limit, keeps_pre_activations, require
from conformance.train_replay import train_follows_own_functions, train_mistake
from conformance.candidate import Candidate
from conformance.checks import nonfinite_backward
from conformance.contract import result_dtype, validate_backward
from conformance.diagnosis import (diagnose, diagnose_forward, init_cause, named, nonfinite_output_cause,
                                   softmax_cause)
from conformance.exact import magnitudes
from conformance.gradcheck import precision_tolerance
from conformance.hooks import rerun

from conformance.golden import FIXTURES_DIR, RECORDING_NAME, FixtureError

CONFORMANCE_AREA = "golden"  # the check area graded by this module (conformance/plugin.py)

MLP_CASES = golden.fixture_cases("mlp")
SOFTMAX_CASES = golden.fixture_cases("softmax")
LOSS_CASES = golden.fixture_cases("cross_entropy")
INIT_CASES = golden.fixture_cases("init_params")
ALL_CASES = golden.fixture_cases()

HINTS = {
    "forward": "forward must return (activations, pre_activations) with activations = [X, A1, "
               "..., A_L] and pre_activations = [Z1, ..., Z_L], Z = A_prev @ W + b, ReLU on the "
               "hidden layers and a row-wise softmax on the last. The first wrong layer is the "
               "one to look at; the gradients area diagnoses more: `{gradients}`.",
    "backward": "backward must return [(dW1, db1), ..., (dW_L, db_L)] in forward order: the "
                "gradients of the MEAN cross-entropy, delta_L = (Y_hat - Y) / B, dW = A_prev.T "
                "@ delta, db = delta summed over the batch, delta_prev = (delta @ W.T) * "
                "ReLU'(Z_prev). Gradients are compared from the last layer down; the first "
                "wrong one is reported. The gradients area names known bugs: `{gradients}`.",
    "softmax": "softmax(Z) must be the row-wise softmax over the last axis, computed stably "
               "(subtract each row's maximum before exp).",
    "cross_entropy": "cross_entropy(Y_hat, Y) must be the mean over the batch of -log(the "
                     "probability of the true class), with Y one-hot.",
    "init_params": "init_params(layer_sizes, seed) must reproduce the section's draws: rng = "
                   "np.random.default_rng(seed), then for each layer in order W = "
                   "rng.standard_normal((n_in, n_out)) * np.sqrt(2 / n_in) and b = "
                   "np.zeros(n_out); return [(W, b), ...].",
    "train": "train(X, Y, X_test, Y_test, params, lr, epochs, batch_size) must do plain "
             "mini-batch SGD, W - lr * dW and b - lr * db after every batch, and return the "
             "params. Here batch_size equals the number of rows and epochs = 1, so the result "
             "must be exactly one gradient step whatever the shuffling.",
}


@functools.lru_cache(maxsize=None)
def _fixture(case_id: str) -> tuple[dict, dict[str, np.ndarray]]:
    entry = golden.load_manifest()["cases"][case_id]
    return entry, golden.load_npz(FIXTURES_DIR, entry)


def _case(case_id: str) -> tuple[dict, dict[str, np.ndarray]]:
    __tracebackhide__ = True
    try:
        return _fixture(case_id)
    except FixtureError as exc:
        pytest.fail(f"golden fixture {case_id} unusable: {exc}", pytrace=False)


def _hint(function: str, case_id: str) -> str:
    return HINTS[function].format(gradients=rerun("-k gradients"))


def _precision(values: dict, prefixes: tuple[str, ...]) -> np.dtype:
    """The precision a result is judged at: the least precise of the arrays it is made of and
    of the candidate's results it was built from (SPEC.md, dtype policy), e.g. train's params
    from the candidate's own gradients."""
    return result_dtype([v for k, v in values.items() if k.startswith(prefixes) and v.ndim])


def _check_keys(candidate: Candidate, values: dict, arrays: dict, entry: dict,
                keys: list[tuple[str, str]], function: str, case_id: str, where: str,
                precision: np.dtype | None = None, diagnosis: Callable[[], str] | None = None) -> None:
    __tracebackhide__ = True
    if precision is None:
        precision = _precision(values, tuple(sorted({key.rstrip("0123456789") for key, _ in keys})))
    golden.assert_matches_fixture(values, arrays, entry, keys, where=where,
                                  hint=_hint(function, case_id), precision=precision,
                                  diagnosis=diagnosis,
                                  reproduce=golden.reproducer(case_id, entry, function, candidate.module_name))


def test_fixtures_intact() -> None:
    """Every fixture file is present, unmodified (sha256) and listed in the manifest."""
    try:
        manifest = golden.load_manifest()
        for entry in manifest["cases"].values():
            golden.load_npz(FIXTURES_DIR, entry)
    except FixtureError as exc:
        pytest.fail(f"{exc}\n\nThe golden checks cannot run on damaged fixtures; restore them "
                    "from git and run 'backprop-conformance fixtures check'.", pytrace=False)
    listed = {entry["file"] for entry in manifest["cases"].values()}
    strays = sorted(p.name for p in FIXTURES_DIR.glob("*.npz") if p.name not in listed)
    if strays:
        pytest.fail(f"fixtures/ holds files not in the manifest: {', '.join(strays)}", pytrace=False)


@pytest.mark.parametrize("case_id", MLP_CASES)
def test_forward_matches_golden(candidate: Candidate, case_id: str) -> None:
    entry, arrays = _case(case_id)
    values, _ = golden.candidate_outputs(candidate, entry, arrays, case_id, ["forward"])
    L = golden.n_layers_of(entry)
    kept = keeps_pre_activations(candidate)  # the declaration's word, never the candidate's result
    keys = [("act0", "activations[0]")]
    for i in range(L):  # layer by layer, so the first wrong layer is the one reported
        keys += [(f"pre{i}", f"pre_activations[{i}]")] if kept else []
        keys += [(f"act{i + 1}", f"activations[{i + 1}]")]
    _check_keys(candidate, values, arrays, entry, keys, "forward", case_id, f"forward(case={case_id})",
                diagnosis=lambda: _forward_diagnosis(values, arrays, L, kept))


def _forward_diagnosis(values: dict, arrays: dict, L: int, kept: bool = True) -> str:
    """As the gradients area's forward check (several fits name none), on the fixture."""
    activations = [values[f"act{i}"] for i in range(L + 1)]
    pre_activations = [values[f"pre{i}"] for i in range(L)] if kept else []
    if not np.isfinite(activations[-1]).all() and np.isfinite(arrays[f"act{L}"]).all():
        # the stability area's reading of non-finite output rows (a missing guard, if any)
        return nonfinite_output_cause(activations[-1], arrays[f"pre{L - 1}"],
                                      result_dtype([activations[-1], arrays["X"]]))
    params = [(W.astype(np.float64), b.astype(np.float64)) for W, b in golden.params_of(arrays, L)]
    precision = result_dtype([*activations, *pre_activations, arrays["X"]])
    return diagnose_forward(activations, pre_activations if kept else None, arrays["X"].astype(np.float64),
                            params, precision_tolerance(precision))


@pytest.mark.parametrize("case_id", MLP_CASES)
def test_backward_matches_golden(candidate: Candidate, case_id: str) -> None:
    interface_limit(candidate, "backward_alone")  # fed the fixture's activations
    entry, arrays = _case(case_id)
    values, _ = golden.candidate_outputs(candidate, entry, arrays, case_id, ["backward"])
    L = golden.n_layers_of(entry)
    keys = []
    for j in reversed(range(L)):  # in the order backprop computes them
        keys += [(f"db{j}", f"db[{j}]"), (f"dW{j}", f"dW[{j}]")]

    _check_keys(candidate, values, arrays, entry, keys, "backward", case_id, f"backward(case={case_id})",
                diagnosis=lambda: _failed_backward_diagnosis(values, arrays, L))


def _backward_keys(L: int) -> list[tuple[str, str]]:
    keys = []
    for j in reversed(range(L)):  # in the order backprop computes them
        keys += [(f"db{j}", f"db[{j}]"), (f"dW{j}", f"dW[{j}]")]
    return keys


def _backward_diagnosis(values: dict, arrays: dict, L: int) -> str:
    """Names the bug when the gradients equal a known one on the fixture's inputs (replay)."""
    nonfinite = [name for key, name in _backward_keys(L)
                 if not np.isfinite(values[key]).all() and np.isfinite(arrays[key]).all()]
    if nonfinite:  # no catalogued mistake makes inf/nan: say what the evidence shows
        grads = [(values[f"dW{j}"], values[f"db{j}"]) for j in range(L)]
        return named("backward_wrong", f"{', '.join(nonfinite)} hold inf/nan where every expected "
                     "value is finite: " + nonfinite_backward(
                         grads, [arrays[f"act{i}"] for i in range(L + 1)], [arrays[f"pre{i}"] for i in range(L)],
                         arrays["Y"], golden.params_of(arrays, L), result_dtype([g for p in grads for g in p])))
    X, Y = arrays["X"].astype(np.float64), arrays["Y"].astype(np.float64)
    params = [(W.astype(np.float64), b.astype(np.float64)) for W, b in golden.params_of(arrays, L)]
    activations = [arrays[f"act{i}"].astype(np.float64) for i in range(L + 1)]
    pre_activations = [arrays[f"pre{i}"].astype(np.float64) for i in range(L)]
    grads = [(values[f"dW{j}"], values[f"db{j}"]) for j in range(L)]
    precision = result_dtype([g for pair in grads for g in pair] + [arrays["X"]])
    return diagnose(grads, activations, pre_activations, Y, params, magnitudes(X, Y, params),
                    precision_tolerance(precision))


def _failed_backward_diagnosis(values: dict, arrays: dict, L: int) -> str:
    """The golden backward check failed: its diagnosis. Within the diagnosis's looser precision
    bound, yet outside the golden rule's, the values are still backward's, found wrong here by
    the golden rule (never a catalogued mistake)."""
    with evidence.tentative() as found:
        text = _backward_diagnosis(values, arrays, L)
    evidence.keep(found.findings)
    if found.findings:
        return text
    return named("backward_wrong", "the gradients differ from the fixture's by more than the golden rule "
                 "allows, though within the precision no catalogued mistake could be told apart at")




@pytest.mark.parametrize("case_id", MLP_CASES + SOFTMAX_CASES)
def test_softmax_matches_golden(candidate: Candidate, case_id: str) -> None:
    require(candidate, "softmax")
    entry, arrays = _case(case_id)
    values, _ = golden.candidate_outputs(candidate, entry, arrays, case_id, ["softmax"])
    key = "softmax" if entry["kind"] == "mlp" else "P"
    z = arrays[f"pre{golden.n_layers_of(entry) - 1}"] if entry["kind"] == "mlp" else arrays["Z"]
    _check_keys(candidate, values, arrays, entry, [(key, "softmax(Z)")], "softmax", case_id,
                f"softmax(case={case_id})",
                diagnosis=lambda: softmax_cause(values[key], z, result_dtype([values[key], z])))


@pytest.mark.parametrize("case_id", MLP_CASES + LOSS_CASES)
def test_cross_entropy_matches_golden(candidate: Candidate, case_id: str) -> None:
    """Accepts any log(0) guard up to 1e-7 (additive or clipping) or a fused formula: the
    loss must lie in the fixture's interval, and be finite where a probability is 0."""
    require(candidate, "cross_entropy")
    entry, arrays = _case(case_id)
    values, _ = golden.candidate_outputs(candidate, entry, arrays, case_id, ["cross_entropy"])
    golden.assert_loss_within(values["loss"], arrays, entry["tolerances"]["loss"]["k"],
                              where=f"cross_entropy(case={case_id})",
                              hint=_hint("cross_entropy", case_id),
                              reproduce=golden.reproducer(case_id, entry, "cross_entropy",
                                                          candidate.module_name),
                              precision=values["loss_precision"].dtype,
                              probabilities=_loss_inputs(case_id))


def _loss_inputs(case_id: str) -> tuple[np.ndarray, np.ndarray]:
    inputs = golden.fixture_inputs(case_id)
    Y_hat = inputs["Y_hat"] if "Y_hat" in inputs else inputs["activations"][-1]
    return np.asarray(Y_hat), np.asarray(inputs["Y"])


def _param_keys(entry: dict, prefix: str) -> list[tuple[str, str]]:
    """(fixture key, display name) of every W and b, e.g. ("train_W0", "W[0]")."""
    return [(f"{prefix}{kind}{j}", f"{kind}[{j}]")
            for j in range(golden.n_layers_of(entry)) for kind in ("W", "b")]


@pytest.mark.parametrize("case_id", INIT_CASES)
def test_init_params_matches_golden(candidate: Candidate, case_id: str) -> None:
    require(candidate, "init_params")
    entry, arrays = _case(case_id)
    values, _ = golden.candidate_outputs(candidate, entry, arrays, case_id, ["init_params"])
    keys = _param_keys(entry, "")
    got = [values[key] for key, _ in keys]
    _check_keys(candidate, values, arrays, entry, keys, "init_params", case_id,
                f"init_params({entry['architecture']}, seed={entry['seed']})",
                diagnosis=lambda: init_cause(got, list(entry["architecture"]), entry["seed"],
                                             precision_tolerance(result_dtype(got))))


@pytest.mark.parametrize("case_id", MLP_CASES)
def test_train_takes_one_sgd_step(candidate: Candidate, case_id: str) -> None:
    require(candidate, "train")
    entry, arrays = _case(case_id)
    L = golden.n_layers_of(entry)
    # forward and backward on the same fixture first: their findings belong to their own tests,
    # and to this one only where replay shows train's failure is theirs.
    with evidence.tentative() as own:
        try:
            own_values = golden.candidate_outputs(candidate, entry, arrays, case_id, ["forward", "backward"])[0]
        except AssertionError:  # a broken forward/backward fails its own tests
            own_values = {}
    with evidence.tentative() as found:
        try:
            values, _ = golden.candidate_outputs(candidate, entry, arrays, case_id, ["train"])
            failure = None
        except AssertionError as exc:
            failure = exc
    if failure is not None:
        # train raised, or returned the wrong structure: forward's or backward's failure only if
        # replaying the step with its own forward and backward does exactly the same.
        if own.findings and train_follows_own_functions(candidate, arrays["X"], arrays["Y"],
                                                        golden.params_of(arrays, L), golden.TRAIN_STEP_LR, 1):
            evidence.keep(own.findings)
        else:
            evidence.keep(found.findings)  # train's own crash or structure
        raise failure
    evidence.keep(found.findings)
    values = {**own_values, **values}
    # train's params are built from the candidate's own forward and backward: judged at the
    # least precise of the three (float32 gradients applied to float64 params are float32 steps).
    _check_keys(candidate, values, arrays, entry, _param_keys(entry, "train_"), "train", case_id,
                f"train(case={case_id}, lr={golden.TRAIN_STEP_LR}, epochs=1, "
                f"batch_size={entry['batch']})",
                precision=_precision(values, ("train_", "act", "pre", "dW", "db")),
                diagnosis=lambda: (_train_follows_own_functions(candidate, values, arrays, L, case_id)
                                   or _train_follows_failing_functions(candidate, arrays, L, own.findings)
                                   or train_mistake(candidate, arrays["X"], arrays["Y"], golden.params_of(arrays, L),
                                                    golden.TRAIN_STEP_LR, 1)))


def _train_follows_failing_functions(candidate: Candidate, arrays: dict, L: int, findings: list) -> str:
    """Replay, when forward or backward failed their own checks on this fixture (a crash or a
    wrong structure, so no values to diagnose): train's result is what their steps give, so its
    failure is theirs (their findings are recorded here too)."""
    if not findings or not train_follows_own_functions(candidate, arrays["X"], arrays["Y"],
                                                       golden.params_of(arrays, L), golden.TRAIN_STEP_LR, 1):
        return ""
    evidence.keep(findings)
    return ("train takes exactly the step your own forward and backward give, and they fail their own "
            "checks on this fixture: fix those first")


def _train_follows_own_functions(candidate: Candidate, values: dict, arrays: dict, L: int,
                                 case_id: str) -> str:
    """Replay: when train's one full-batch step equals W - lr * backward(forward(X)) computed
    with the candidate's own functions on this fixture, and forward or backward is wrong here,
    train's failure is theirs: their findings are recorded on this test too. "" otherwise."""
    if not all(f"act{i}" in values for i in range(L + 1)) or not all(f"dW{j}" in values for j in range(L)):
        return ""
    findings, causes = [], []
    for diagnosis in (_forward_diagnosis, _backward_diagnosis):
        with evidence.tentative() as found:
            text = diagnosis(values, arrays, L)
        if found.findings:  # that function is wrong on this fixture (a finding was recorded)
            findings += found.findings
            causes.append(text)
    if not findings:
        return ""  # forward and backward are right here: they do not explain train
    try:
        with evidence.tentative():  # the extra call's own findings belong elsewhere
            own = candidate.call("backward", [values[f"act{i}"] for i in range(L + 1)],
                                 [values[f"pre{i}"] for i in range(L)], arrays["Y"], golden.params_of(arrays, L))
            grads = validate_backward(own, golden.params_of(arrays, L), f"backward(case={case_id})")[0]
    except Exception:  # noqa: BLE001 - the candidate's failure; no replay, no claim
        return ""
    for j, (dW, db) in enumerate(grads):
        for param, grad in ((f"W{j}", dW), (f"b{j}", db)):
            got = np.asarray(values[f"train_{param}"], np.float64)
            replayed = arrays[param].astype(np.float64) - golden.TRAIN_STEP_LR * np.asarray(grad, np.float64)
            # sqrt(eps) of the step's precision: the step itself rounds at eps; a train that does
            # anything else with the gradient differs by far more.
            tau = precision_tolerance(result_dtype([np.asarray(values[f"train_{param}"]), np.asarray(grad)]))
            if got.shape != replayed.shape or not np.allclose(got, replayed, rtol=tau, atol=tau):
                return ""
    evidence.keep(findings)
    return "train steps with your own forward and backward, which are wrong on this fixture: " + "; ".join(causes)


# ------------------------------------------------------------------- refactor check

@functools.lru_cache(maxsize=None)
def _recording(directory: str) -> dict:
    path = Path(directory) / RECORDING_NAME
    if not Path(directory).is_dir():
        raise FixtureError(f"--golden {directory}: no such directory. Record first: "
                           f"backprop-conformance record --impl <module> --out {directory}")
    if not path.is_file():
        raise FixtureError(f"--golden {directory}: {RECORDING_NAME} is missing, so this is not "
                           "a recording (never auto-created). Record first: backprop-conformance "
                           f"record --impl <module> --out {directory}")
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise FixtureError(f"{path} is not valid JSON: {exc}") from exc


NOT_REQUESTED = "not-requested"
NO_RECORDING = "no-recording"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # One skip instead of one per case when the refactor check is not asked for, and one
    # failure instead of one per case when DIR holds no recording.
    if metafunc.function.__name__ == "test_matches_recording":
        directory = metafunc.config.getoption("golden")
        if directory is None:
            ids = [NOT_REQUESTED]
        elif not (Path(directory) / RECORDING_NAME).is_file():
            ids = [NO_RECORDING]
        else:
            ids = ALL_CASES
        metafunc.parametrize("case_id", ids)


def test_matches_recording(candidate: Candidate, request: pytest.FixtureRequest,
                           case_id: str) -> None:
    """With --golden DIR: the candidate's outputs equal those recorded in DIR (bit-exact
    unless --golden-rounding, --golden-rtol or --golden-atol relax it)."""
    directory = request.config.getoption("golden")
    if directory is None:
        pytest.skip("refactor check not requested (--golden DIR): pin your outputs with "
                    "'backprop-conformance record --impl <module> --out DIR' first")
    if case_id == NO_RECORDING:  # DIR holds no recording: say so once, not once per case
        try:
            _recording(directory)
        except FixtureError as exc:
            pytest.fail(str(exc), pytrace=False)
        pytest.fail(f"--golden {directory}: {RECORDING_NAME} appeared during the run: run again",
                    pytrace=False)
    rtol, atol = request.config.getoption("golden_rtol"), request.config.getoption("golden_atol")
    rounding = request.config.getoption("golden_rounding")
    entry, arrays = _case(case_id)
    try:
        recording = _recording(directory)
        current = golden.sha256_file(FIXTURES_DIR / golden.MANIFEST_NAME)
        if recording.get("fixtures_manifest_sha256") != current:
            raise FixtureError(f"{directory} was recorded on different fixtures (manifest sha256 "
                               "differs), so the inputs are not the same: record again")
        if case_id not in recording.get("cases", {}):
            raise FixtureError(f"{directory} has no recording of case {case_id}: record again")
        rec_entry = recording["cases"][case_id]
        recorded = golden.load_npz(Path(directory), rec_entry)
    except FixtureError as exc:
        pytest.fail(str(exc), pytrace=False)
    values, absent = golden.candidate_outputs(candidate, entry, arrays, case_id)
    problems: list[tuple[str, str]] = []
    for key in sorted(recorded):
        if key not in values:
            problems.append((key, f"{key} was recorded but is not produced any more (function "
                                  f"{', '.join(absent) or 'call'} missing?)"))
            continue
        try:
            golden.assert_identical(values[key], recorded[key], name=key,
                                    where=f"refactor check (case={case_id}, --golden {directory})",
                                    rtol=rtol, atol=atol,
                                    rounding=((arrays[f"scale_{key}"], entry["tolerances"][key]["k"])
                                              if rounding and f"scale_{key}" in arrays
                                              and key in entry["tolerances"] else None))
        except AssertionError as exc:
            problems.append((key, str(exc)))
    if problems:  # the first change leads (its headline is the summary's line), then the count
        others = ", ".join(key for key, _ in problems[1:])
        raise AssertionError(f"{problems[0][1]}\n  changed: {len(problems)} of {len(recorded)} recorded "
                             f"values in case {case_id}" + (f"; also {others}" if others else ""))
