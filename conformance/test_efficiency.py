"""Contract area: efficiency. ``backward`` is backpropagation, not numerical differentiation.

Backprop (reverse mode) gets every gradient for the cost of about one more forward pass.
Numerical differentiation (finite or complex-step differences, per weight or per unit) and
forward mode (directional derivatives, tangents pushed through the network) need one pass
per weight or per unit: on a deep, wide network that is hundreds of times more work. Both
give the right gradients, so only the cost tells them apart.

Cost model (conformance/SPEC.md, "Efficiency area"): the CPU time of the candidate's
``backward``, in units of the CPU time of plain vectorised backprop (the suite's own,
``backprop`` below) on the same inputs, timed in the same conditions right before and after
each call. Judged on a ladder of networks with 4 hidden layers of growing width; the verdict
is read on the widest (512 units), where every correct style measured costs at most ~26
backprops and every kind of numerical differentiation measured at least ~85:

- fail if backward costs more than ``LIMIT`` backprops on the widest network;
- fail early, on any rung, if it costs more than ``EARLY_LIMIT`` backprops and more than
  ``EARLY_FLOOR`` CPU seconds (so a per-weight numerical backward fails in a fraction of a
  second instead of running for an hour on the widest network).

Nothing the candidate controls is a denominator: its forward is not timed, and no ratio
between two of its own calls is used, so burning CPU anywhere only adds to its cost. Loops
over samples are not penalised: they cost a bounded multiple of backprop at every width.

Measurement: CPU time of the process that runs the candidate (in-process, or the isolated
worker read by the grader from the kernel's accounting, so the candidate cannot report its
own cost); minimum over rounds on fresh inputs (noise only ever adds time), after one
warm-up call (first-call imports).
"""

from __future__ import annotations

import secrets
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import pytest

from conformance.assertions import mismatch_report
from conformance.calls import CRASH_KEYS, interface_limit, named_contract, note_crash, remember_backward_inputs
from conformance.candidate import Candidate, CandidateError, CandidateRaised, failure_text, one_blas_thread
from conformance.cases import Case, make_case
from conformance.checks import contract_text, exact_gradient_comparisons
from conformance.contract import validate_backward
from conformance import evidence
from conformance.diagnosis import diagnose
from conformance.exact import exact_forward, magnitudes
from conformance.gradcheck import precision_tolerance

CONFORMANCE_AREA = "efficiency"  # the check area graded by this module (conformance/plugin.py)
Params = Sequence[tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Rung:
    """A network of 4 hidden layers of ``width`` units (8 inputs, 10 classes) and a batch.

    Depth matters: on one hidden layer, perturbing a unit changes the logits by a rank-one
    update, so forward mode costs no more than backprop; from the third layer down each
    unit's tangent must cross two dense ``width x width`` layers. 8 inputs keep the first
    layer (which no method needs to differentiate through) from diluting the ratio."""

    width: int
    batch: int

    @property
    def sizes(self) -> tuple[int, ...]:
        return (8, self.width, self.width, self.width, self.width, 10)


# Rungs: numerical differentiation's cost per backprop grows with the width (one pass per
# unit, or per weight), a correct backward's does not. The last rung decides; the first ones
# stop a numerical backward while it is still cheap (per-weight differences cost ~0.1 s at
# width 16 and would cost about an hour at 512). Batches grow with width so that every
# rung's backprop does real work, but stay small on narrow rungs where a per-sample loop's
# Python overhead (a few microseconds per sample) would otherwise dominate.
RUNGS: tuple[Rung, ...] = (Rung(16, 8), Rung(64, 32), Rung(256, 64), Rung(512, 128))
# Fraction of samples for which each hidden unit is active. Not 50% (random He weights): an
# attacker that pushes tangents per sample through the active units only saves (1/a)^3 ~ 8x
# at a = 0.5; at a = 0.8, 2x. Not ~100% either: with every mask all ones the network is
# linear and one Jacobian serves every sample. SPEC.md "Efficiency area".
ACTIVE_FRACTION = 0.8
LIMIT = 50.0  # backprops per backward on the last rung; SPEC.md "Efficiency area"
EARLY_LIMIT = 250.0  # a rung this far past LIMIT settles the verdict at once
# An early stop also needs this much CPU: the isolated worker's fixed cost per call (decoding
# arguments, encoding results, ~1 ms) is many backprops on the narrow rungs, but never 20 ms.
EARLY_FLOOR = 0.02
REPEATS = 3  # rounds on the last rung (minimum over them)
EARLY_ROUNDS = 2  # rounds on the other rungs: an early stop needs both past EARLY_LIMIT


def backprop(activations: Sequence[np.ndarray], pre_activations: Sequence[np.ndarray], Y: np.ndarray,
             params: Params) -> list[tuple[np.ndarray, np.ndarray]]:
    """The yardstick: the section's backprop, vectorised, float64 (BP1-BP4)."""
    delta = (activations[-1] - Y) / Y.shape[0]
    grads: list[Any] = [None] * len(params)
    for i in range(len(params) - 1, -1, -1):
        grads[i] = (activations[i].T @ delta, delta.sum(axis=0))
        if i:
            delta = (delta @ params[i][0].T) * (pre_activations[i - 1] > 0)
    return grads


def time_backprop(*args: Any) -> tuple[float, list[tuple[np.ndarray, np.ndarray]]]:
    """CPU seconds of one yardstick backprop in this (the grader's) process, and its result."""
    began = time.process_time()
    grads = backprop(*args)
    return time.process_time() - began, grads


@dataclass(frozen=True)
class Cost:
    rung: Rung
    backprop: float  # CPU seconds of the yardstick, min over its timings
    backward: float  # CPU seconds of the candidate's backward, min over rounds
    rounds: int

    @property
    def ratio(self) -> float:
        """backward's cost in backprops."""
        return self.backward / max(self.backprop, 1e-7)

    @property
    def decisive(self) -> bool:
        """Settles a failing verdict on any rung (EARLY_LIMIT, EARLY_FLOOR)."""
        return self.rounds >= min(EARLY_ROUNDS, REPEATS) and self.ratio > EARLY_LIMIT \
            and self.backward > EARLY_FLOOR

    def describe(self) -> str:
        return (f"width {self.rung.width} {list(self.rung.sizes)}, batch {self.rung.batch}: backward "
                f"{self.backward * 1e3:.3g} ms, backprop {self.backprop * 1e3:.3g} ms -> "
                f"{self.ratio:.3g} backprops (min over {self.rounds} round{'s' if self.rounds != 1 else ''})")


def _kink_bias(Z: np.ndarray) -> np.ndarray:
    """Per unit, the bias that puts the ReLU kink in the middle of the widest gap between
    consecutive samples' values near the (1 - ACTIVE_FRACTION) quantile: about that fraction
    of the batch is active, and no pre-activation sits near 0, where a finite-difference
    backward (judged like any other here) would straddle the kink and get wrong values."""
    ordered = np.sort(Z, axis=0)
    target = min(max(round((1.0 - ACTIVE_FRACTION) * Z.shape[0]), 1), Z.shape[0] - 1)
    spread = max(1, Z.shape[0] // 32)  # the widest of up to 9 gaps: active fraction within ~3%
    ks = np.arange(max(target - spread, 1), min(target + spread, Z.shape[0] - 1) + 1)
    gaps = ordered[ks] - ordered[ks - 1]  # (len(ks), units)
    k = ks[gaps.argmax(axis=0)]
    units = np.arange(Z.shape[1])
    return -(ordered[k, units] + ordered[k - 1, units]) / 2


def efficiency_case(rung: Rung, seed: int) -> Case:
    """Random inputs whose hidden biases make each unit active on about ACTIVE_FRACTION of the
    batch, away from the kink (``_kink_bias``), and whose last layer is scaled to logits of
    standard deviation 1: shifted biases grow the activations layer after layer, and logits
    of ~30 would give true-class probabilities below a log guard's 1e-12, whose derivative a
    numerical backward (judged like any other here) then differentiates too."""
    case = make_case(list(rung.sizes), batch=rung.batch, seed=seed)
    params, A = [], case.X
    for i, (W, b) in enumerate(case.params):
        if i < len(case.params) - 1:
            Z = A @ W
            b = _kink_bias(Z)
            A = np.maximum(Z + b, 0.0)
        else:
            W = W / max(float((A @ W).std()), 1e-12)
        params.append((W, b))
    return Case(case.X, case.Y, params, recipe=f"<efficiency case, width {rung.width}, batch "
                f"{rung.batch}, seed {seed}>", seed=seed)


def _timed(candidate: Candidate, function: str, *args: Any) -> tuple[Any, float | None]:
    """``call_timed``, with an in-process candidate's own exception made a CandidateRaised as
    the isolated worker makes it, so both modes fail the same way (and name the same key)."""
    # Findings about this call are about these inputs (the network's shapes identify them).
    evidence.at_case(f"{function}(efficiency, shapes {[np.shape(a) for a in args if isinstance(a, np.ndarray)]}, "
                     f"params {[tuple(np.shape(W)) for W, _ in args[-1]] if function == 'backward' else ''})")
    try:
        return candidate.call_timed(function, *args)
    except CandidateError:
        raise
    except Exception as exc:  # noqa: BLE001 - in-process: the candidate's own code raised
        raise CandidateRaised(function, type(exc).__name__, str(exc), "") from exc


def measure(candidate: Candidate, rung: Rung, seed: int = 0, *, warm_up: bool = True, final: bool = True,
            yardstick: Callable[..., tuple[float, Any]] = time_backprop) -> Cost:
    """The candidate's backward vs the yardstick on ``rung``: REPEATS rounds on the last rung,
    EARLY_ROUNDS on the others, fewer once the rounds so far are ``decisive``. The yardstick is
    timed right before and right after each call on the same inputs, so both see the same
    machine load. ``warm_up``: one unmeasured call first (first-call imports and caches)."""
    __tracebackhide__ = True
    yard: list[float] = []
    spent: list[float] = []
    cost = Cost(rung, 0.0, 0.0, 0)
    with one_blas_thread():
        for k in range(0 if warm_up else 1, (REPEATS if final else EARLY_ROUNDS) + 1):  # 0 only warms up
            case = efficiency_case(rung, seed * 1000 + k)
            activations, pre_activations = exact_forward(case.X, case.params)
            args = (activations, pre_activations, case.Y, case.params)
            before, _ = yardstick(*args)
            remember_backward_inputs(args)
            grads, cpu = _timed(candidate, "backward", *args)
            after, want = yardstick(*args)
            if k == 0:
                continue
            # Every measured call must have done the work, since the minimum over rounds may be
            # any of them; the full comparison (and its diagnosis) says what is wrong.
            if not close_to(grads, want):
                check_timed_gradients(case, grads, activations, pre_activations)
            if cpu is None:
                if not sys.platform.startswith("linux"):
                    pytest.skip("the isolated worker's CPU time is read from /proc (Linux only): "
                                "the efficiency check did NOT run")
                # On Linux it is always readable: a worker that vanished mid-call is the
                # candidate's doing (the call itself did not fail, so no other check saw it).
                raise AssertionError(f"the worker's CPU time could not be read after backward returned "
                                     f"(its process was replaced) [efficiency check, {list(rung.sizes)}]")
            yard += [before, after]
            spent.append(cpu)
            cost = Cost(rung, min(yard), min(spent), len(spent))
            if cost.decisive:
                break
    return cost


def close_to(result: Any, backprop_grads: Any) -> bool:
    """Whether ``result`` holds the gradients to 1e-3 of each tensor's largest entry: far
    looser than the full check (float32 results pass it), far tighter than any shortcut that
    skips the work on fresh inputs. False sends the call to the full check, which names what
    is wrong (and passes a result this one refuses only for a reason it states)."""
    try:
        return all(np.shape(got) == want.shape  # no broadcasting a smaller array over the answer
                   and np.abs(np.asarray(got, dtype=np.float64) - want).max(initial=0.0)
                   <= 1e-3 * np.abs(want).max(initial=0.0)
                   for pair, pair_want in zip(result, backprop_grads, strict=True)
                   for got, want in zip(pair, pair_want, strict=True))
    except Exception:  # noqa: BLE001 - not a list of (dW, db) of the right shapes: the full check says so
        return False


def check_timed_gradients(case: Case, result: Any, activations: list[np.ndarray],
                          pre_activations: list[np.ndarray]) -> None:
    """The timed backward must return the gradients: the cost of a backward that computes
    something else (say, zeros for this check's sizes) proves nothing."""
    __tracebackhide__ = True
    where = f"backward(efficiency, {list(case.layer_sizes)}, batch {case.batch})"
    grads, dtype = named_contract("backward_structure", validate_backward, result, case.params, where)
    message = mismatch_report(exact_gradient_comparisons(case, grads, dtype), where=where, compared="",
                              contract=contract_text(dtype, fd=False))
    if message is not None:
        # This check's inputs are drawn afresh every run, so its numbers would make two runs of
        # the same bytes print differently: the message states the fact and the diagnosis only
        # (the gradients area shows the numbers, on fixed inputs).
        diagnosis = diagnose(grads, activations, pre_activations, case.Y, case.params,
                             magnitudes(case.X, case.Y, case.params), precision_tolerance(dtype))
        raise AssertionError(
            f"the timed backward's gradients are wrong [{where}]\n"
            "  compared: the gradients returned by the timed backward (fed the exact forward's values) vs "
            "exact backprop: the cost is judged only for a backward that computes them\n"
            f"  diagnosis: {diagnosis}\n"
            "  next: the gradients area shows the same mistake with its numbers, on fixed inputs: fix it there")


def measure_ladder(candidate: Candidate, yardstick: Callable[..., tuple[float, Any]] = time_backprop,
                   seed: int | None = None) -> list[Cost]:
    """Every rung in order, up to the last or to the first decisive one. The inputs' seed is
    drawn from the OS unless given: with the suite's source public, fixed inputs could be
    generated and differentiated at import time (which is not timed) and answered from a
    table. Random inputs never decide a verdict: the cost does, and the gradients of any input."""
    __tracebackhide__ = True
    base = secrets.randbelow(1 << 20) if seed is None else seed
    costs: list[Cost] = []
    for i, rung in enumerate(RUNGS):
        costs.append(measure(candidate, rung, seed=base * 10 + i, warm_up=i == 0,
                             final=i == len(RUNGS) - 1, yardstick=yardstick))
        if costs[-1].decisive:
            break
    return costs


def verdict(costs: Sequence[Cost]) -> str | None:
    """The failure message, or None when backward costs what backpropagation costs."""
    last = costs[-1]
    judged = last.rung == RUNGS[-1]
    if not (last.decisive or (judged and last.ratio > LIMIT)):
        return None
    rows = "\n".join(f"    {c.describe()}" for c in costs)
    stopped = "" if judged else (f" (stopped at this rung: past {EARLY_LIMIT:g} backprops and "
                                 f"{EARLY_FLOOR * 1e3:g} ms, the widest would cost far more)")
    return (
        f"backward costs {last.ratio:.0f} backprops, but should cost a few (at most {LIMIT:g}) "
        f"[backward(efficiency, {list(last.rung.sizes)}, batch {last.rung.batch})]\n"
        f"  compared: CPU time of your backward vs plain vectorised backprop (the suite's own, "
        f"float64) on the same inputs, timed right before and after each call{stopped}:\n{rows}\n"
        f"  finding: backward does work that grows with the number of units or weights, the "
        "signature of numerical differentiation (finite or complex-step differences) or of forward "
        "mode (one directional derivative per unit or weight); backpropagation costs a bounded "
        "number of backprops at every width, Python loops over the samples included\n"
        f"  contract: backward is backprop: at most {LIMIT:g} backprops on the widest network, "
        f"fail at once past {EARLY_LIMIT:g} on any (conformance/SPEC.md, Efficiency area)\n"
        "  next: compute delta = (Y_hat - Y) / B at the output and propagate it backwards "
        "through W.T and the ReLU mask, one matrix product per layer (the section's BP1-BP4)")


def blas_pinnable() -> bool:
    """Whether this process can run its BLAS on one thread (threadpoolctl, ``one_blas_thread``)."""
    try:
        import threadpoolctl  # noqa: F401
    except ImportError:
        return False
    return True


def test_backward_cost_scales_like_backprop(candidate: Candidate, record_property: Any) -> None:
    """backward costs a few backprops, not one pass per unit or weight (no numerical differentiation)."""
    interface_limit(candidate, "efficiency")  # per-sample: the suite's own loop would be timed too
    if candidate.isolated and not blas_pinnable():
        # The worker runs one BLAS thread; a yardstick on several here counts their spinning
        # (measured 2.5-3.5x its one-thread CPU), which would let numerical differentiation pass.
        pytest.skip("the efficiency check did NOT run: it needs threadpoolctl in the grader's "
                    "environment to time its yardstick on one BLAS thread, as the isolated worker "
                    "runs (pip install 'backprop-conformance[bench]')")
    try:
        costs = measure_ladder(candidate)
    except CandidateError as exc:
        text = (f"your backward {failure_text(exc)} [efficiency check, networks of width "
                f"{', '.join(str(r.width) for r in RUNGS)}]")
        if exc.function in CRASH_KEYS:  # the crash the other areas charge: named, so it costs once
            note_crash(exc.function, text)
        raise AssertionError(text) from exc
    for cost in costs:  # conformance/report.py drops these from reports: they vary between runs
        record_property(f"efficiency_ratio_w{cost.rung.width}", round(cost.ratio, 2))
    message = verdict(costs)
    if message is not None:
        raise AssertionError(message)
