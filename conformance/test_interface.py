"""Interface area: the written contract (SPEC.md) - what exists, what comes back, in which shape
and type, what must not change, and what each optional function computes."""

from __future__ import annotations

import warnings
from typing import Callable, cast

import numpy as np
import pytest
from hypothesis import example, given

from conformance import strategies
from conformance.assertions import (
    FLOAT32_ROUNDING_FINDING,
    Comparison,
    assert_comparisons,
    assert_unchanged,
    fmt,
    mismatch_report,
)
from conformance.calls import interface_limit, invoke, named_contract, require, run_backward, run_forward
from conformance.train_replay import train_follows_own_functions, train_mistake
from conformance.candidate import Candidate, load_headline
from conformance.cases import Case, make_case
from conformance.checks import contract_text, forward_comparisons
from conformance.contract import (
    PrecisionFinding,
    least_precise,
    own_pre_activations,
    result_dtype,
    validate_array,
    validate_loss,
    validate_params,
)
from conformance import evidence
from conformance.diagnosis import (diagnose, diagnose_forward, init_cause, loss_cause, named, output_rows_finding,
                                   softmax_cause)
from conformance.exact import Grads, exact_forward, exact_gradients, exact_softmax, magnitudes, softmax_conditioning
from conformance.gradcheck import allowed_error, precision_tolerance
from conformance.golden import LOG_GUARD_MAX
from conformance.reference import mlp as reference

CONFORMANCE_AREA = "interface"  # the check area graded by this module (conformance/plugin.py)

# Shapes the contract promises to support (SPEC.md, "Shapes"): batch 1, 1 to 5 layers,
# widths 1 to 64, 2 to 10 classes, C / Fortran / strided (non-contiguous) inputs.
SUPPORTED = [
    make_case([3, 2], batch=1, seed=1),
    make_case([1, 1, 2], batch=1, seed=2),
    make_case([4, 6, 5, 4, 3, 10], batch=3, seed=3),
    make_case([64, 64, 10], batch=2, seed=4),
    make_case([5, 1, 1, 1, 1, 2], batch=4, seed=5),
    make_case([7, 8, 3], batch=5, seed=6, layout="F"),
    make_case([7, 8, 3], batch=5, seed=7, layout="strided"),
]


def test_candidate_loads(candidate: Candidate) -> None:
    """The module imports and defines forward and backward."""
    if candidate.load_error:  # the reason on the first line, the traceback below it
        headline = load_headline(candidate.load_error)
        rest = candidate.load_error.partition("\n")[2]
        raise AssertionError(headline + (f"\n{rest}" if rest.strip() and rest.strip() not in headline else ""))


@pytest.mark.parametrize("case", SUPPORTED, ids=lambda c: c.recipe)
def test_supported_shapes(candidate: Candidate, case: Case) -> None:
    """forward and backward run and return the contract's structure on every supported shape."""
    fwd = run_forward(candidate, case, f"forward(case={case!r})")
    run_backward(candidate, case, fwd.activations, fwd.pre_activations,
                 f"backward(*forward(case={case!r}))")


@given(case=strategies.cases(max_layers=5, max_width=12))
@example(case=make_case([2, 3, 4], batch=1, seed=0, layout="strided"))
def test_forward_structure(candidate: Candidate, case: Case) -> None:
    """Lists of the right lengths and shapes; activations[0] is X; last layer row-stochastic."""
    where = f"forward(case={case!r})"
    fwd = run_forward(candidate, case, where)
    tau = precision_tolerance(fwd.dtype)
    x = Comparison("activations[0]", fwd.activations[0], case.X,
                   allowed_error(np.abs(case.X), float(np.abs(case.X).max()), tau))
    P = fwd.activations[-1]
    rows = Comparison("activations[-1].sum(axis=1)", P.sum(axis=1), np.ones(case.batch), 8 * tau)
    negative = Comparison("activations[-1]", np.minimum(P, 0), np.zeros_like(P), 0.0)
    assert_comparisons([x, rows, negative], where=where,
                       compared="activations[0] vs X; the final activations vs a probability "
                                "distribution per row (non-negative, summing to 1)",
                       contract=contract_text(fwd.dtype, fd=False), held_to=fwd.dtype,
                       next_step=lambda: output_rows_finding(P) if not np.allclose(P.sum(axis=1), 1.0, atol=1e-3)
                       else "return [X, A1, ..., softmax(Z_L)]: activations[0] is X itself and the last "
                            "activation a probability distribution per row.")


@given(case=strategies.cases(max_layers=5, max_width=12))
def test_backward_structure(candidate: Candidate, case: Case) -> None:
    """One (dW, db) pair per layer in forward order, dW shaped like W and db like b."""
    activations, pre_activations = reference.forward(case.X, case.params)
    run_backward(candidate, case, activations, pre_activations, f"backward(case={case!r})")


def test_pre_activations_hold_z_before_relu(candidate: Candidate) -> None:
    """pre_activations keep the negative entries of Z (no in-place ReLU overwrote them)."""
    interface_limit(candidate, "pre_activations")  # a forward that keeps none has none to check
    case = make_case([4, 6, 6, 3], batch=6, seed=21)
    where = f"forward(case={case!r})"
    fwd = run_forward(candidate, case, where)
    _, pre_activations = exact_forward(case.X, case.params)
    assert fwd.pre_activations is not None  # run_forward keeps them unless the declaration says not
    for l, (got, z) in enumerate(zip(fwd.pre_activations[:-1], pre_activations[:-1])):
        assert (z < 0).any(), "suite bug: this case must have negative pre-activations"
        scale = np.abs(z).max()
        if np.all(got >= 0) and np.allclose(got, np.maximum(z, 0), rtol=0, atol=1e-3 * scale):
            raise AssertionError(
                f"pre_activations[{l}] " + named("pre_after_relu", "holds relu(Z)") + " (no negative "
                f"entries), but should hold Z itself [{where}]\n  contract: pre_activations[l] is "
                "Z = A_prev @ W + b before the nonlinearity; backward needs its sign\n  next: an in-place ReLU overwrote Z "
                "(`np.maximum(Z, 0, out=Z)`, `Z[Z < 0] = 0`, `Z *= Z > 0`): compute A = relu(Z) "
                "as a new array.")


# Mutation is checked on every one of these shapes the code runs (depths 1 to 4, batches 1 to 5,
# C and F order): a crash on a depth the code does not support is judged by the gradients
# area, and must not stop this check from looking at the shapes it does run.
MUTATION_CASES: tuple[Case, ...] = (
    make_case([4, 5, 3], batch=5, seed=61),
    make_case([3, 2], batch=1, seed=62),
    make_case([5, 4, 4, 3], batch=3, seed=63, layout="F"),
    make_case([3, 4, 5, 4, 2], batch=2, seed=64),
)


def _check_no_mutation(candidate: Candidate, function: str, arguments: Callable[[Case], tuple],
                       names: tuple[str, ...]) -> None:
    __tracebackhide__ = True
    crashes = []
    for case in MUTATION_CASES:
        where = f"{function}(case={case!r})"
        args = arguments(case)
        with evidence.tentative() as found:
            try:
                _, after = invoke(candidate, function, *args, where=where, case=case, inspect=True)
            except AssertionError as exc:
                crashes.append((exc, found.findings))
                continue
        assert_unchanged(args, after, names, where=where)
    if len(crashes) == len(MUTATION_CASES):  # it runs on none of them: that crash is the finding
        first, findings = crashes[0]
        evidence.keep(findings)
        raise first


def test_forward_does_not_mutate_arguments(candidate: Candidate) -> None:
    _check_no_mutation(candidate, "forward", lambda case: (case.X, case.params), ("X", "params"))


def test_backward_does_not_mutate_arguments(candidate: Candidate) -> None:
    def arguments(case: Case) -> tuple:
        activations, pre_activations = reference.forward(case.X, case.params)
        return (activations, pre_activations, case.Y, case.params)

    _check_no_mutation(candidate, "backward", arguments, ("activations", "pre_activations", "Y", "params"))


REPEAT_ULPS = 64  # BLAS kernels may sum in an alignment-dependent order; state or randomness can't hide in 64 eps


@given(case=strategies.cases(max_layers=3, max_width=6))
def test_same_inputs_give_identical_outputs(candidate: Candidate, case: Case) -> None:
    """Identical results for identical inputs (no hidden state, no randomness), up to the few
    ulps by which a BLAS library may legitimately reorder a sum between two calls."""
    where = f"forward/backward(case={case!r}), called twice"
    runs = []
    for _ in range(2):
        fwd = run_forward(candidate, case, where)
        grads, _ = run_backward(candidate, case, fwd.activations, fwd.pre_activations, where)
        pre_activations = fwd.pre_activations or []  # none: the declaration says forward keeps none
        names = ([f"activations[{l}]" for l in range(len(fwd.activations))]
                 + [f"pre_activations[{l}]" for l in range(len(pre_activations))]
                 + [f"{t}[{l}]" for l in range(len(grads)) for t in ("dW", "db")])
        runs.append((names, fwd.activations + pre_activations + [g for pair in grads for g in pair]))
    mags = magnitudes(case.X, case.Y, case.params)
    kept = fwd.pre_activations is not None
    scales = ([mags.activations[0]] + mags.activations[1:-1] + [np.ones_like(mags.activations[-1])]
              + (mags.pre_activations if kept else []) + [m for pair in mags.gradients for m in pair])
    comparisons = []
    for name, first, second, scale in zip(runs[0][0], runs[0][1], runs[1][1], scales):
        if first.dtype != second.dtype:
            raise AssertionError(f"{name} came back as {first.dtype} from the first call and "
                                 f"{second.dtype} from the second [{where}]")
        eps = float(np.finfo(first.dtype).eps)
        comparisons.append(Comparison(name, second, first, REPEAT_ULPS * eps * (scale + 0.01 * scale.max(initial=0))))
    assert_comparisons(comparisons, where=where, compared="the second call's results vs the first's",
                       contract=f"|second - first| <= {REPEAT_ULPS}*eps*(M + 0.01*max(M)): the same "
                                "inputs give the same outputs",
                       next_step="no global state, no random numbers, no caching of earlier calls.")


# --------------------------------------------------------------------------- optional functions
def test_relu(candidate: Candidate) -> None:
    require(candidate, "relu")
    z = np.array([[-2.0, -0.0, 0.0, 1e-30, 3.5], [1e3, -1e3, 0.25, -0.25, 7.0]])
    where = "relu(z)"
    got = validate_array(invoke(candidate, "relu", z, where=where), "relu(z)", where, z.shape)
    tau = precision_tolerance(got.dtype)
    assert_comparisons([Comparison("relu(z)", got, np.maximum(z, 0), allowed_error(np.abs(z), 0, tau))],
                       where=where, compared="relu(z) vs max(z, 0) entrywise",
                       contract=contract_text(got.dtype, fd=False), held_to=got.dtype)
    _, after = invoke(candidate, "relu", z, where=where, inspect=True)
    assert_unchanged((z,), after, ("z",), where=where)


def test_softmax(candidate: Candidate) -> None:
    require(candidate, "softmax")
    z = np.random.default_rng(5).standard_normal((6, 4)) * 3
    where = "softmax(z), z of shape (6, 4), rows are samples"
    got = validate_array(invoke(candidate, "softmax", z, where=where), "softmax(z)", where, z.shape)
    tau = precision_tolerance(got.dtype)
    p = exact_softmax(z)
    scale = p * softmax_conditioning(np.abs(z))
    assert_comparisons([Comparison("softmax(z)", got, p, allowed_error(scale, 1.0, tau))], where=where,
                       compared="softmax(z) vs exp(z) / exp(z).sum(axis=-1) per row",
                       contract=contract_text(got.dtype, fd=False), held_to=got.dtype,
                       diagnosis=lambda: softmax_cause(got, z, got.dtype),
                       next_step="normalise over the last axis (the classes), one row per sample.")
    _, after = invoke(candidate, "softmax", z, where=where, inspect=True)
    assert_unchanged((z,), after, ("z",), where=where)




def _probabilities(rng: np.random.Generator, batch: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    P = exact_softmax(rng.standard_normal((batch, k)))
    return P, np.eye(k)[rng.integers(0, k, batch)]


@pytest.mark.parametrize("batch", [1, 5])
def test_cross_entropy(candidate: Candidate, batch: int) -> None:
    """Mean over the batch of -log(probability of the true class)."""
    require(candidate, "cross_entropy")
    P, Y = _probabilities(np.random.default_rng(batch), batch, 4)
    where = f"cross_entropy(Y_hat, Y), batch {batch}"
    value, dtype = named_contract("loss_structure", validate_loss, invoke(candidate, "cross_entropy", P, Y, where=where),
                                  where)
    p_true = (P * Y).sum(axis=1)
    true = float(-np.mean(np.log(p_true)))
    # Any log(0) guard up to LOG_GUARD_MAX is legitimate: an additive guard g shifts -log(p) by
    # at most g / p, a clip of the top at 1 - g by about g (same bound as conformance/golden.py).
    tau = precision_tolerance(dtype)
    allowed = tau * (abs(true) + 1.0) + LOG_GUARD_MAX * (float(np.mean(1.0 / p_true)) + 1.0)
    rounding32 = 64 * float(np.finfo(np.float32).eps) * (abs(true) + 1.0)  # SPEC.md, dtype policy
    if (not abs(value - true) <= allowed and np.dtype(dtype) == np.float64
            and abs(value - true) <= allowed + rounding32):
        warnings.warn(PrecisionFinding(FLOAT32_ROUNDING_FINDING))
    elif not abs(value - true) <= allowed:
        hint = "\n  diagnosis: " + loss_cause(value, P, Y)
        raise AssertionError(f"cross_entropy={fmt(value)}, but should be {fmt(true)} [{where}]\n"
                             f"  contract: |actual - expected| <= {fmt(allowed)} = tau*(|loss| + 1) "
                             f"+ 1e-7*(mean(1/p) + 1) for any log(0) guard up to 1e-7 "
                             f"(tau for {np.dtype(dtype).name})" + hint)
    _, after = invoke(candidate, "cross_entropy", P, Y, where=where, inspect=True)
    assert_unchanged((P, Y), after, ("Y_hat", "Y"), where=where)


INIT_CONTRACT = ("init_params(layer_sizes, seed) must reproduce the section's draws: "
                 "rng = np.random.default_rng(seed); for each layer in order "
                 "W = rng.standard_normal((n_in, n_out)) * np.sqrt(2 / n_in); b = np.zeros(n_out)")


# Initialisations students write instead of the section's He draws: (key, what it does, W's
# scale from (n_in, n_out)). Each is named only when every W equals its draws (same generator
# and order, so the section's standard normals times that scale) and every b is zero.
@pytest.mark.parametrize("sizes,seed", [([5, 4, 3], 0), ([3, 7, 2, 4], 7)])
def test_init_params(candidate: Candidate, sizes: list[int], seed: int) -> None:
    require(candidate, "init_params")
    where = f"init_params({sizes}, {seed})"
    got = invoke(candidate, "init_params", sizes, seed, where=where)
    got_params = named_contract("init_structure", validate_params, got,
                                [((n_in, n_out), (n_out,)) for n_in, n_out in zip(sizes[:-1], sizes[1:])],
                                "init_params' return value", where)
    rng = np.random.default_rng(seed)
    comparisons, arrays = [], []
    for l, ((W, b), n_in, n_out) in enumerate(zip(got_params, sizes[:-1], sizes[1:])):
        arrays += [W, b]
        expected = rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)
        comparisons += [(f"W[{l}]", W, expected), (f"b[{l}]", b, np.zeros(n_out))]
    tau = precision_tolerance(result_dtype(arrays))
    assert_comparisons(
        [Comparison(n, g, e, allowed_error(np.abs(e), 0.0, tau)) for n, g, e in comparisons],
        where=where, compared="your initial parameters vs the section's draws for this seed",
        contract=INIT_CONTRACT, diagnosis=lambda: init_cause(arrays, sizes, seed, tau),
        next_step="same generator, same draw order (layer by layer, W only), same He scale; "
                  "biases start at zero.")


def _train_follows_own_functions(candidate: Candidate, case: Case, trained: list, lr: float, epochs: int,
                                 tau: float) -> str:
    """Replay: when train's result equals ``epochs`` full-batch steps W - lr * backward(forward(X))
    taken with the candidate's own functions, and forward or backward is wrong on these inputs,
    train's failure is theirs (their findings are recorded here too). "" otherwise."""
    findings, causes = [], []
    params = [(np.array(W, np.float64), np.array(b, np.float64)) for W, b in case.params]
    try:
        for step in range(epochs):
            at = Case(case.X, case.Y, params, recipe=case.recipe)
            with evidence.tentative() as found:
                fwd = run_forward(candidate, at, f"forward(case={case!r}), step {step + 1}", params)
                grads, _ = run_backward(candidate, at, fwd.activations, fwd.pre_activations,
                                        f"backward(*forward(case={case!r})), step {step + 1}")
                if step == 0:  # are forward or backward wrong on these inputs? (replay diagnoses)
                    if mismatch_report(forward_comparisons(at, fwd), where="", compared="", contract="") is not None:
                        causes.append(diagnose_forward(fwd.activations, fwd.pre_activations, case.X, params, tau))
                    text = diagnose(grads, fwd.activations, own_pre_activations(fwd), case.Y, params,
                                    magnitudes(case.X, case.Y, params), tau)
                    if any(f.function == "backward" for f in found.findings):
                        causes.append(text)
                    findings = list(found.findings)
            params = [(W - lr * np.asarray(dW, np.float64), b - lr * np.asarray(db, np.float64))
                      for (W, b), (dW, db) in zip(params, grads)]
    except AssertionError:
        return ""  # forward or backward fails on its own here: no replay, no claim
    if not findings:
        return ""
    for (gW, gb), (W, b) in zip(trained, params):
        for g, e in ((gW, W), (gb, b)):
            if np.shape(g) != e.shape or not np.allclose(np.asarray(g, np.float64), e, rtol=tau, atol=tau):
                return ""
    evidence.keep(findings)
    return "train steps with your own forward and backward, which are wrong here: " + "; ".join(causes)


def _train_diagnosis(arrays: list[np.ndarray], case: Case, lr: float, epochs: int, tau: float) -> str:
    """Which common update mistake train's result equals (exact steps of each variant)."""
    start = cast(Grads, [tuple(np.array(p, dtype=np.float64) for p in pair) for pair in case.params])  # (W, b) pairs
    got = arrays

    def same(params: list) -> bool:  # the tolerance of the train check itself, tau*(|W| + 1)
        flat = [a for pair in params for a in pair]
        return all(np.allclose(g, e, rtol=0, atol=tau * (float(np.abs(e).max(initial=0)) + 1.0))
                   for g, e in zip(got, flat))

    if same(start):
        return named("train_no_update", (
            "train returns the initial params unchanged: no update reached them (the new (W, b) "
            "are never stored in params, or the batch loop never runs, e.g. "
            "`range(0, n - batch_size, batch_size)` drops the last batch, which with batch_size = n "
            "is the only one)"))
    variants = (("train_ascent", 1.0, -1.0, ("train adds the gradient (W + lr * dW): gradient "
                                              "ascent; the update is W - lr * dW")),
                ("train_ignores_lr", 1.0 / lr, 1.0, ("train steps by the raw gradient (W - dW): "
                                                     "multiply it by lr")))
    for key, scale, sign, text in variants:
        params = start
        for _ in range(epochs):
            activations, pre_activations = exact_forward(case.X, params)
            grads = exact_gradients(activations, pre_activations, case.Y, params)
            params = [(W - sign * scale * lr * dW, b - sign * scale * lr * db)
                      for (W, b), (dW, db) in zip(params, grads)]
        if same(params):
            return named(key, text)
    return ""


def test_train_takes_full_batch_gradient_steps(candidate: Candidate) -> None:
    """With batch_size = n, one epoch is exactly one full-batch gradient step (shuffling cannot
    change a full-batch mean), so train(..., lr, epochs=2, batch_size=n) has one right answer."""
    require(candidate, "train")
    case = make_case([4, 5, 3], batch=12, seed=31)
    lr, epochs = 0.1, 2
    where = f"train(X, Y, X, Y, params, lr={lr}, epochs={epochs}, batch_size={case.batch}) on {case!r}"
    with evidence.tentative() as found:
        try:
            got, args_after = invoke(candidate, "train", case.X, case.Y, case.X, case.Y, case.params, lr,
                                     epochs, case.batch, where=where, inspect=True)
            if got is None:  # updated params in place and returned nothing: judge the updated list
                got = args_after[4]
            trained = named_contract("train_structure", validate_params, got,
                                     [(W.shape, b.shape) for W, b in case.params], "train's return value", where)
            failure = None
        except AssertionError as exc:
            failure = exc
    if failure is not None:  # train raised or returned the wrong structure: is it what its own
        # forward/backward steps do here? Then it is their failure; else train's own.
        with evidence.tentative() as own:
            try:
                fwd = run_forward(candidate, case, f"forward(case={case!r})")
                run_backward(candidate, case, fwd.activations, fwd.pre_activations,
                             f"backward(*forward(case={case!r}))")
            except AssertionError:
                pass  # their findings (a crash, a wrong structure) are what replay may attribute
        if own.findings and train_follows_own_functions(candidate, case.X, case.Y, case.params, lr, epochs):
            evidence.keep(own.findings)
        else:
            evidence.keep(found.findings)
        raise failure
    evidence.keep(found.findings)
    params = cast(Grads, [tuple(np.array(p, dtype=np.float64) for p in pair) for pair in case.params])  # (W, b) pairs
    for _ in range(epochs):
        activations, pre_activations = exact_forward(case.X, params)
        grads = exact_gradients(activations, pre_activations, case.Y, params)
        params = [(W - lr * dW, b - lr * db) for (W, b), (dW, db) in zip(params, grads)]
    expectations, arrays = [], []
    for l, ((gW, gb), (W, b)) in enumerate(zip(trained, params)):
        arrays += [gW, gb]
        expectations += [(f"W[{l}]", gW, W), (f"b[{l}]", gb, b)]
    # The params are built from the candidate's own forward/backward results: judged at the
    # least precise of those and of the params themselves (SPEC.md, dtype policy).
    fwd = run_forward(candidate, case, f"forward(case={case!r})")
    own_grads, grads_dtype = run_backward(candidate, case, fwd.activations, fwd.pre_activations,
                                          f"backward(*forward(case={case!r}))")
    dtype = least_precise(result_dtype(arrays), fwd.dtype, grads_dtype)
    tau = precision_tolerance(dtype)
    comparisons = [Comparison(n, g, e, allowed_error(np.abs(e) + 1.0, 0.0, tau)) for n, g, e in expectations]
    diagnosis = ""
    if mismatch_report(comparisons, where=where, compared="", contract="") is not None:
        # train runs the candidate's backward: a wrong backward is the cause to name first.
        diagnosis = (_train_follows_own_functions(candidate, case, trained, lr, epochs, tau)
                     or _train_diagnosis(arrays, case, lr, epochs, tau)
                     or train_mistake(candidate, case.X, case.Y, case.params, lr, epochs))
    assert_comparisons(
        comparisons, held_to=dtype, diagnosis=diagnosis,
        where=where, compared="the params train returns vs two exact full-batch SGD steps",
        contract="W <- W - lr * dW and b <- b - lr * db once per mini-batch; tau*(|W| + 1)",
        next_step="train runs your forward and backward: if the gradients area fails too, fix "
                  "that first; otherwise check the update sign, that lr and batch_size are used, "
                  "and that the trained params are returned.")


# Same bytes, same grade: forward and backward in two fresh worker processes.
from conformance.determinism import test_fresh_processes_give_identical_outputs  # noqa: E402, F401
