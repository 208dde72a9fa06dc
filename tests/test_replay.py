"""Verdicts proven by replay: a claim stands only if replaying it on the candidate's own inputs
reproduces what the candidate did, and evidence travels as data.

Each class of problem has an adversarial submission next to its honest twin (the same code
without the trick): the trick must never raise the grade. Messages are checked to be true of
the code they judge.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conformance import evidence
from conformance.cases import make_case
from conformance.diagnosis import diagnose, localise, log_guard_cause, named_bugs
from conformance.exact import BackwardBugs, exact_forward, exact_gradients, magnitudes
from conformance.gradcheck import precision_tolerance
from conformance.test_gradients import GRID, restriction_pattern
from tests.helpers import REPO_ROOT
from tools.catalogue import Variant
from tools.kill_matrix import RunOptions, VariantRun, default_score, run_variant

TAU64 = precision_tolerance(np.float64)
REFERENCE = (REPO_ROOT / "conformance" / "reference" / "mlp.py").read_text()
BACKWARD_DOC = '''    """Gradients of the mean cross-entropy, as [(dW1, db1), ..., (dW_L, db_L)] in forward order."""
'''
DB_SUM = "db = delta.sum(axis=0)  #"


def _variant(tmp: Path, name: str, source: str) -> Variant:
    path = tmp / f"{name}.py"
    path.write_text(source)
    return Variant(name, "buggy", path, frozenset(), name)


def _with_backward_prologue(prologue: str) -> str:
    """The reference with ``prologue`` at the top of backward (an expensive misbehaviour)."""
    assert BACKWARD_DOC in REFERENCE, "conformance/reference/mlp.py's backward docstring changed: update this test"
    return REFERENCE.replace(BACKWARD_DOC, BACKWARD_DOC + prologue, 1)


def _cheap(source: str) -> str:
    """The same code plus a deliberate cheap mistake (db averaged instead of summed)."""
    assert DB_SUM in source
    return source.replace(DB_SUM, "db = delta.mean(axis=0)  #", 1)


def _run(variant: Variant, tmp: Path, *extra: str) -> VariantRun:
    run = run_variant(variant, tmp / "runs", RunOptions(extra_args=tuple(extra)))
    assert run.error is None, (run.error, run.output_tail)
    return run


@pytest.fixture(scope="module")
def control(tmp_path_factory: pytest.TempPathFactory) -> VariantRun:
    tmp = tmp_path_factory.mktemp("control")
    return _run(_variant(tmp, "control_reference", REFERENCE), tmp)


# Expensive misbehaviours that a property test's one shrunk example may not show.
EXPENSIVE = {
    "zeros_on_large_networks": ("    if sum(W.size + b.size for W, b in params) > 3000:\n"
                                "        return [(np.zeros_like(W), np.zeros_like(b)) for W, b in params]\n"),
    "wrong_sign_on_deep_networks": ("    if len(params) >= 4:\n"
                                    "        Y = 2 * activations[-1] - Y  # flips the output error\n"),
}


@pytest.mark.parametrize("expensive", sorted(EXPENSIVE))
def test_a_cheap_mistake_never_raises_the_grade(expensive: str, tmp_path: Path, control: VariantRun) -> None:
    """Red team: db averaged on purpose hid a backward that returns zeros on large networks
    (90 instead of 60). Every case of the fixed grid is now explained on its own inputs."""
    honest = _with_backward_prologue(EXPENSIVE[expensive])
    twin = _run(_variant(tmp_path, f"twin_{expensive}", honest), tmp_path)
    trick = _run(_variant(tmp_path, f"cheap_{expensive}", _cheap(honest)), tmp_path)
    twin_score, trick_score = default_score(twin, control), default_score(trick, control)
    assert twin_score is not None and trick_score is not None
    assert twin_score < 100.0, "the expensive misbehaviour must be caught at all"
    assert trick_score <= twin_score, (trick_score, twin_score)


OWN_FILE_REWRITE = '''
_calls = [0]


def cross_entropy(Y_hat, Y):
    _calls[0] += 1
    if _calls[0] == 1:  # after its first (wrong) answer, declare itself an opted-out helper
        import pathlib
        path = pathlib.Path(__file__)
        path.write_text(path.read_text() + "\\nCONFORMANCE_OPT_OUT = ('cross_entropy',)\\n")
    return float(np.sum(-np.sum(Y * np.log(Y_hat + 1e-12), axis=1)))  # summed, not averaged
'''
HONEST_WRONG_LOSS = '''

def cross_entropy(Y_hat, Y):
    return float(np.sum(-np.sum(Y * np.log(Y_hat + 1e-12), axis=1)))  # summed, not averaged
'''
SELF_DELETING = '''

def cross_entropy(Y_hat, Y):
    globals().pop("cross_entropy", None)  # gone from the module after the first call
    return float(np.sum(-np.sum(Y * np.log(Y_hat + 1e-12), axis=1)))  # summed, not averaged
'''


@pytest.mark.parametrize("trick", ["rewrites_its_own_file", "deletes_itself"])
def test_a_function_present_at_load_stays_judged(trick: str, tmp_path: Path, control: VariantRun) -> None:
    """Red team: an optional function that vanished after its first wrong answer turned its
    remaining checks into neutral "not defined" skips (88 instead of 73)."""
    twin = _run(_variant(tmp_path, "twin_loss", REFERENCE + HONEST_WRONG_LOSS), tmp_path)
    tail = OWN_FILE_REWRITE if trick == "rewrites_its_own_file" else SELF_DELETING
    hostile = _run(_variant(tmp_path, f"vanishing_{trick}", REFERENCE + tail), tmp_path)
    twin_score, hostile_score = default_score(twin, control), default_score(hostile, control)
    assert twin_score is not None and hostile_score is not None and twin_score < 100.0
    assert hostile_score <= twin_score, (hostile_score, twin_score)


REWRITER = '''
import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        report.longrepr = "REWRITTEN"
    elif report.skipped and isinstance(report.longrepr, tuple):
        report.longrepr = (report.longrepr[0], report.longrepr[1], "Skipped: REWRITTEN")
'''


@pytest.mark.slow
def test_grades_do_not_depend_on_the_wording_of_any_message(tmp_path: Path, control: VariantRun,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Every failure and skip message rewritten to one word: identical grades (keys, skip kinds
    and environment problems are data on the report)."""
    from tools.catalogue import materialize

    variants = {v.name: v for v in materialize(tmp_path / "catalogue")}
    chosen = ["bug_no_batch_mean", "bug_relu_mask_current_layer", "bug_loss_sum_not_mean",
              "bug_forward_no_bias", "bug_db_keepdims", "ok_minimal_forward_backward"]
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "rewrite_messages.py").write_text(REWRITER)
    import tools.kill_matrix as km

    plain_runs = {name: run_variant(variants[name], tmp_path / "plain", RunOptions()) for name in chosen}
    # The same hardened command with one more plugin (the command itself refuses -p from users).
    original_env, original_command = km._environment, km.pytest_command
    monkeypatch.setattr(km, "_environment", lambda: {**original_env(), "PYTHONPATH": str(tmp_path / "plugins")})
    monkeypatch.setattr(km, "pytest_command", lambda *a, **k: original_command(*a, **k) + ["-p", "rewrite_messages"])
    for name in chosen:
        plain = plain_runs[name]
        rewritten = run_variant(variants[name], tmp_path / "rewritten", RunOptions())
        assert plain.error is None and rewritten.error is None, (plain.output_tail, rewritten.output_tail)
        shown = [t["message"] or t["skip_reason"] for t in rewritten.report if t["outcome"] != "passed"]
        assert shown and all("REWRITTEN" in m for m in shown), (name, shown[:3])  # the rewrite took
        assert default_score(rewritten, control) == default_score(plain, control), name


def test_every_failing_report_carries_typed_evidence(tmp_path: Path) -> None:
    source = REFERENCE.replace("delta = (Y_hat - Y) / B  #", "delta = (Y_hat - Y)  #", 1)
    run = _run(_variant(tmp_path, "no_mean", source), tmp_path)
    # Every check of backward's values (a check of train's result, say, may fail without a
    # finding: it costs its area, not a named mistake).
    failing = [t for t in run.report if t["outcome"] == "failed"
               and ("backward_matches" in t["nodeid"] or "grid" in t["nodeid"] or t["area"] == "relu_index")]
    assert failing
    for test in failing:
        found = evidence.findings_of(test["properties"])
        assert found, test["nodeid"]
        assert {f.key for f in found} == set(test["properties"]["diagnoses"])
        assert all(f.case for f in found if f.function == "backward"), test["nodeid"]


# ------------------------------------------------------------------ diagnosis by replay
def _inputs(sizes: list[int], batch: int, seed: int, zero_rows: int = 0):  # noqa: ANN202
    case = make_case(sizes, batch=batch, seed=seed, zero_rows=zero_rows)
    acts, pres = exact_forward(case.X, case.params)
    return case, acts, pres, magnitudes(case.X, case.Y, case.params)


def test_a_mistake_is_named_under_either_relu_convention() -> None:
    """The missing 1/B in code whose ReLU'(0) is 1 (a convention the contract accepts) was
    'no known mistake': mistakes are now replayed at both ends of ReLU'(0) in [0, 1]."""
    case, acts, pres, mags = _inputs([4, 5, 5, 3], 4, 11, zero_rows=2)
    assert any((z == 0).any() for z in pres[:-1])  # the convention matters on these inputs
    grads = exact_gradients(acts, pres, case.Y, case.params, 1.0, bugs=BackwardBugs(batch_mean=False))
    with evidence.recording() as found:
        text = diagnose(grads, acts, pres, case.Y, case.params, mags, TAU64)
    assert [f.key for f in found.findings] == ["no_batch_mean"], text
    assert named_bugs(text) == {"no_batch_mean"}


def test_two_mistakes_are_found_when_neither_alone_fits_any_tensor() -> None:
    """An extra softmax-Jacobian factor and no 1/B in one line: every tensor differs from what
    each mistake alone gives, so pairs must be searched exhaustively."""
    case, acts, pres, mags = _inputs([5, 6, 4, 3], 7, 5)
    grads = exact_gradients(acts, pres, case.Y, case.params,
                            bugs=BackwardBugs(softmax_jacobian=True, batch_mean=False))
    with evidence.recording() as found:
        text = diagnose(grads, acts, pres, case.Y, case.params, mags, TAU64)
    assert sorted(f.key for f in found.findings) == ["no_batch_mean", "softmax_jacobian"], text
    assert "two of the common mistakes" in text


def test_the_log_guard_is_named_only_where_its_absence_predicts_the_failure() -> None:
    Y = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    clipped_but_one = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], dtype=np.float32)  # p rounds to 1
    with evidence.recording() as found:
        text = log_guard_cause(clipped_but_one, Y)  # e.g. log(1 - p) is what went non-finite
    assert found.findings == [] and "not a missing log(0) guard" in text and named_bugs(text) == set()
    zero_true_class = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    with evidence.recording() as found:
        text = log_guard_cause(zero_true_class, Y)
    assert [f.key for f in found.findings] == ["log_guard"] and "log(0) guard" in text


def test_a_tensor_is_called_right_only_where_it_is_clearly_non_zero() -> None:
    """Width-1 dead layers: only the last db is non-zero whatever the code does. The missing
    1/B was summed up as 'only db is wrong: look at the line computing db'."""
    case = make_case([5, 1, 1, 10], batch=3, seed=2, layout="strided")
    acts, pres = exact_forward(case.X, case.params)
    mags = magnitudes(case.X, case.Y, case.params)
    grads = exact_gradients(acts, pres, case.Y, case.params, bugs=BackwardBugs(batch_mean=False))
    text = diagnose(grads, acts, pres, case.Y, case.params, mags, TAU64)
    assert "look at the line computing db" not in text and "show nothing" in text, text
    assert "right: dW[2]" not in text
    # Without ~0 tensors the direct advice stands.
    assert "look at the line computing db" in localise([True, True, True, False], 2, [True] * 4)


def test_a_depth_restriction_gets_one_pattern_line() -> None:
    depths = [len(c.params) for c in GRID]
    crashed = [d != 2 for d in depths]
    line = restriction_pattern(GRID, crashed, [not c for c in crashed])
    assert "fails to run on every case with layers 1, 3, 4, 5" in line and "layers 2" in line
    # Wrong values on a supported depth: no restriction explains the failures, no line.
    passed = [not c for c in crashed]
    passed[depths.index(2)] = False
    assert restriction_pattern(GRID, crashed, passed) == ""


def test_the_grid_spans_depths_widths_and_batches() -> None:
    assert {len(c.params) for c in GRID} == {1, 2, 3, 4, 5}
    assert {c.batch for c in GRID} >= {1, 64} and max(c.n_params for c in GRID) > 3000
    assert min(c.n_params for c in GRID) < 100


def test_a_charged_mistake_explains_only_the_failures_that_record_it() -> None:
    """A cheap mistake named in an area used to explain every other failure of that area."""
    from conformance.grade.score.rubric import load_rubric, score

    def test(name: str, outcome: str, keys: tuple[str, ...] = ()) -> dict:
        return {"nodeid": f"conformance/test_interface.py::{name}", "area": "interface", "outcome": outcome,
                "message": "", "summary": "", "skip_reason": "",
                "properties": {"diagnoses": list(keys)} if keys else {}}

    rubric = load_rubric()
    tests = [test("a", "passed"), test("b", "failed", ("db_mean",)), test("c", "failed"), test("d", "passed")]
    interface = next(g for g in score(rubric, "graded", tests).groups if g.group.area == "interface")
    assert [t["nodeid"][-1] for t in interface.explained] == ["b"]
    assert [t["nodeid"][-1] for t in interface.failed] == ["c"]  # no key: it counts in its area


ONLY_TWO_LAYERS_MUTATING = '''
import numpy as np


def relu(z):
    return np.maximum(z, 0)


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def forward(X, params):
    acts, pres = [X], []
    for i, (W, b) in enumerate(params):
        Z = acts[-1] @ W + b
        pres.append(Z)
        acts.append(softmax(Z) if i == len(params) - 1 else relu(Z))
    return acts, pres


def backward(activations, pre_activations, Y, params):
    activations[1] *= 1.0001  # mutates its argument
    (W1, b1), (W2, b2) = params  # runs 2-layer networks only
    B = Y.shape[0]
    d2 = (activations[2] - Y) / B
    d1 = (d2 @ W2.T) * (pre_activations[0] > 0)
    return [(activations[0].T @ d1, d1.sum(0)), (activations[1].T @ d2, d2.sum(0))]
'''


def test_mutation_is_checked_on_the_shapes_the_code_runs(tmp_path: Path) -> None:
    """Code that runs only 2-layer networks crashed on the property's first case, so its
    mutation was never looked at."""
    run = _run(_variant(tmp_path, "two_layers_mutating", ONLY_TWO_LAYERS_MUTATING), tmp_path, "-k", "mutate")
    backward = next(t for t in run.report if t["nodeid"].endswith("test_backward_does_not_mutate_arguments"))
    assert backward["outcome"] == "failed" and "must not be modified" in backward["message"], backward["message"]
    assert "mutates_arguments" in backward["properties"]["diagnoses"]


# ------------------------------------------------------------------ second red team
STEP = "params[j] = (W - lr * dW, b - lr * db)"
HE_DRAW = "W = rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)"
LOSS = "return -np.mean(np.sum(Y * np.log(Y_hat + 1e-12), axis=1))"


def _patched(*pairs: tuple[str, str]) -> str:
    source = REFERENCE
    for old, new in pairs:
        assert old in source, f"conformance/reference/mlp.py changed: {old!r} not found"
        source = source.replace(old, new, 1)
    return source


# (honest named mistake, the same function made unrecognisable or crashing)
DISGUISES = {
    "train_ascent_scaled": ((STEP, "params[j] = (W + lr * dW, b + lr * db)"),
                           (STEP, "params[j] = (W + 1.01 * lr * dW, b + 1.01 * lr * db)")),
    "train_raises": ((STEP, "params[j] = (W, b)"),
                     (STEP, "raise RuntimeError('out of memory')")),
    "init_raises": ((HE_DRAW, "W = np.zeros((n_in, n_out))"),
                    (HE_DRAW, "raise MemoryError('x')")),
    "loss_raises": ((LOSS, "return np.mean(np.sum(Y * np.log(Y_hat + 1e-12), axis=1))"),
                    (LOSS, "raise NotImplementedError")),
}


@pytest.mark.parametrize("name", sorted(DISGUISES))
def test_a_disguised_or_crashing_optional_function_costs_no_less_than_its_named_mistake(
        name: str, tmp_path: Path, control: VariantRun) -> None:
    """Red team: train, init_params and cross_entropy had no generic price, so garbage or an
    exception cost a fraction of an area while the honest named mistake cost 10-30 points."""
    honest, disguised = DISGUISES[name]
    twin = _run(_variant(tmp_path, f"{name}_twin", _patched(honest)), tmp_path)
    trick = _run(_variant(tmp_path, name, _patched(disguised)), tmp_path)
    twin_score, trick_score = default_score(twin, control), default_score(trick, control)
    assert twin_score is not None and trick_score is not None and twin_score < 100.0
    assert trick_score <= twin_score, (trick_score, twin_score)


@pytest.mark.parametrize("wrong_train", [
    "params[j] = (W + lr * dW, b + lr * db)",
    # right on one sample (the replay's order-free probe), garbage on real batches
    "params[j] = (W - lr * dW, b - lr * db) if len(idx) == 1 else (W + 1.01 * lr * dW, b)",
])
def test_a_cheap_backward_mistake_does_not_hide_a_wrong_train(wrong_train: str, tmp_path: Path,
                                                             control: VariantRun) -> None:
    """db averaged on purpose made an ascent train's failures read as backward's consequences
    (87.5 instead of 68.4): train's failure is backward's only where replay shows it."""
    ascent = (STEP, "params[j] = (W + lr * dW, b + lr * db)")
    twin = _run(_variant(tmp_path, "ascent", _patched(ascent)), tmp_path)
    trick = _run(_variant(tmp_path, "wrong_train_db_mean", _cheap(_patched((STEP, wrong_train)))), tmp_path)
    assert default_score(trick, control) <= default_score(twin, control)


def test_a_train_that_updates_in_place_and_returns_none_is_correct(tmp_path: Path, control: VariantRun) -> None:
    """SPEC allows train to return None after updating the params list it was given."""
    head, sep, tail = REFERENCE.partition("def train(")
    assert sep and "    return params\n" in tail, "conformance/reference/mlp.py's train changed: update this test"
    source = head + sep + tail.replace("    return params\n", "    return None\n", 1)  # updated in place
    run = _run(_variant(tmp_path, "train_in_place", source), tmp_path)
    assert default_score(run, control) == 100.0, [t["message"][:200] for t in run.report if t["outcome"] == "failed"]


ZEROS_REVERSED = ("    if True:\n        return [(np.zeros_like(W), np.zeros_like(b)) for W, b in reversed(params)]\n")


def test_shapes_alone_name_no_mistake(tmp_path: Path) -> None:
    """Zeros in reversed order were told 'returns the gradients in reverse order': the fix would
    still return zeros. A structure names a mistake only when replay gives its values too."""
    run = _run(_variant(tmp_path, "zeros_reversed", _with_backward_prologue(ZEROS_REVERSED)), tmp_path)
    named = {k for t in run.report for k in (t["properties"].get("diagnoses") or [])}
    assert named and not named & {"reversed_order", "transposed_dw"}, named
    assert not any("reverse order (last layer first)" in t["message"] for t in run.report)


FORGED_NUMPY_TEXT = '''    for i in reversed(range(1, len(params))):
        a, m = pre_activations[i - 1].shape, pre_activations[i].shape
        if a != m:
            raise ValueError("operands could not be broadcast together with shapes "
                             + str(a).replace(" ", "") + " " + str(m).replace(" ", "") + " ")
'''


def test_an_exception_the_candidate_raises_itself_is_no_evidence(tmp_path: Path) -> None:
    """Correct gradients, then numpy's broadcast message forged with the i-1 bug's shapes: the
    i-1 bug was named and its line 'to change' was the raise statement."""
    run = _run(_variant(tmp_path, "forged_numpy_text", _with_backward_prologue(FORGED_NUMPY_TEXT)), tmp_path)
    named = {k for t in run.report for k in (t["properties"].get("diagnoses") or [])}
    assert "backward_crash" in named and "relu_index" not in named, named
    assert not any("symptom of the i-1 bug" in t["message"] for t in run.report)


def test_a_mistake_only_above_batch_64_is_caught(tmp_path: Path, control: VariantRun) -> None:
    flip = "    if Y.shape[0] > 64 and activations[0].shape[1] != 8:\n        Y = 2 * activations[-1] - Y\n"
    run = _run(_variant(tmp_path, "large_batch_only", _with_backward_prologue(flip)), tmp_path)
    assert default_score(run, control) < 100.0


def test_non_finite_gradients_name_a_recomputed_softmax_only_where_replay_gives_them() -> None:
    from conformance.cases import scaled_logits_case
    from conformance.checks import nonfinite_backward

    case = scaled_logits_case(1e3, seed=1)
    acts, pres = exact_forward(case.X, case.params)
    with np.errstate(all="ignore"):
        e = np.exp(pres[-1])
        naive = e / e.sum(axis=-1, keepdims=True)
        recomputed = exact_gradients(acts[:-1] + [naive], pres, case.Y, case.params)
        zero_over_zero = [(dW * np.nan, db * np.nan) for dW, db in exact_gradients(acts, pres, case.Y, case.params)]
    assert any(not np.isfinite(t).all() for pair in recomputed for t in pair)
    text = nonfinite_backward(recomputed, acts, pres, case.Y, case.params, np.dtype(np.float64))
    assert "softmax recomputed inside backward" in text
    other = nonfinite_backward(zero_over_zero, acts, pres, case.Y, case.params, np.dtype(np.float64))
    assert "softmax" not in other and "inf/nan" in other
