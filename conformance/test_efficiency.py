"""Contract area: efficiency. ``backward`` is backpropagation, not numerical differentiation.

Backprop costs a few forward passes whatever the number of parameters P; differentiating
the loss numerically through forward (finite or complex-step differences) costs one or two
forward passes PER PARAMETER. Both give the right gradients, so only the cost tells them
apart. The suite measures, on networks of two sizes, the CPU time of ``backward`` in units
of the cost of one forward pass on the same inputs, and fails only when both

- on the large network (P = 1,648 parameters) backward costs more than
  ``RATIO_LIMIT`` forward passes, and
- that ratio grew by more than ``GROWTH_LIMIT`` x from the small network (P = 46):
  numerical differentiation's ratio grows with P, a slow but genuine backprop's does not.

Why these numbers, and why they cannot fail correct code of any style (per-sample loops,
recomputing forward inside backward, float32, OOP, einsum): conformance/SPEC.md,
"Efficiency area", which lists the measured ratios of every correct variant and of
numerical-gradient implementations.

Measurement: CPU time (not wall clock: a loaded machine slows both, an idle one neither) of
the process that runs the candidate, in-process or the isolated worker (read by the grader
from the kernel's accounting, so the candidate cannot report its own cost). Each quantity
is the minimum over ``REPEATS`` calls on fresh inputs (noise only ever adds time; fresh
inputs so a cache cannot answer), after one warm-up round (first-call imports).
"""

from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest

from conformance.assertions import mismatch_report
from conformance.calls import CRASH_KEYS, named_contract, note_crash, remember_backward_inputs
from conformance.candidate import Candidate, CandidateError, CandidateRaised, failure_text, one_blas_thread
from conformance.cases import Case, make_case
from conformance.checks import contract_text, exact_gradient_comparisons
from conformance.contract import validate_backward
from conformance import evidence
from conformance.diagnosis import diagnose, named
from conformance.exact import exact_forward, magnitudes
from conformance.gradcheck import precision_tolerance

# Numerical differentiation costs 1,648 to 3,296 forward passes on the large network (about
# half a second of CPU in total) and 46 to 92 on the small one; backprop a few on both. Same
# depth, so per-layer costs are alike on both. Batch 512: forward then does enough work
# (~0.15 ms) that the isolated worker's fixed cost per call (decoding arguments, encoding
# results, ~1 ms, counted in both forward and backward) compresses the ratios only ~6x.
SMALL = (8, 4, 2)
LARGE = (32, 40, 8)
BATCH = 512
REPEATS = 3
RATIO_LIMIT = 100.0  # forward passes per backward; SPEC.md "Efficiency area"
GROWTH_LIMIT = 8.0  # ratio(LARGE) / ratio(SMALL); SPEC.md "Efficiency area"
# A round at 3x the ratio limit (and past the growth limit) decides the large network without
# the other rounds (a numerical backward there costs ~0.45 s per round). More rounds could only
# lower backward's minimum, i.e. turn the verdict only if this round's cost were inflated: by
# >= 16x for the worst correct style measured (ratio 18), far beyond CPU-time noise.
# SPEC.md "Efficiency area".
DECISIVE_RATIO = 3 * RATIO_LIMIT


def n_params(sizes: tuple[int, ...]) -> int:
    return sum(a * b + b for a, b in itertools.pairwise(sizes))


@dataclass(frozen=True)
class Cost:
    sizes: tuple[int, ...]
    forward: float  # CPU seconds, min over repeats
    backward: float  # CPU seconds, min over repeats
    rounds: int = REPEATS  # how many rounds the minima are over

    @property
    def ratio(self) -> float:
        """backward's cost in forward passes."""
        return self.backward / max(self.forward, 1e-7)

    def describe(self) -> str:
        return (f"P = {n_params(self.sizes)} {list(self.sizes)}: backward {self.backward * 1e3:.3g} ms, "
                f"forward {self.forward * 1e3:.3g} ms -> {self.ratio:.3g} forward passes (min over "
                f"{self.rounds} round{'s' if self.rounds != 1 else ''} of fresh inputs)")


def _inputs(sizes: tuple[int, ...], seed: int) -> Case:
    return make_case(list(sizes), batch=BATCH, seed=seed)


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


def measure(candidate: Candidate, sizes: tuple[int, ...], seed: int = 0, warm_up: bool = True,
            decisive: Callable[[Cost], bool] | None = None) -> Cost:
    """Min-over-repeats CPU costs of forward and backward on fresh inputs of one network size.
    ``warm_up``: one unmeasured round first (first-call imports and caches); needed before the
    first size only, since the minimum over the rounds already discards a slow first round at
    the next size (and a numerical backward's warm-up round at P = 1,648 costs ~0.5 s). Without
    it, one unmeasured forward still warms this size up, so that a single decisive round is
    not judged against a cold (slower) forward.
    ``decisive``: stop early once the rounds so far settle the verdict."""
    __tracebackhide__ = True
    fwd, bwd = [], []
    with one_blas_thread():
        if not warm_up:
            case = _inputs(sizes, seed * 1000)
            _timed(candidate, "forward", case.X, case.params)
        for k in range(0 if warm_up else 1, REPEATS + 1):  # round 0 only warms up
            case = _inputs(sizes, seed * 1000 + k)
            out, f_cpu = _timed(candidate, "forward", case.X, case.params)
            if not (isinstance(out, (list, tuple)) and len(out) == 2):
                # The same structure mistake the interface area charges: named, so it costs once.
                raise AssertionError(named("forward_structure",
                                     f"forward returned a {type(out).__name__}, but should return "
                                     f"(activations, pre_activations) [forward(efficiency, {list(sizes)})]"))
            # backward gets the exact forward's values (its cost does not depend on them), so
            # what it returns can be checked without blaming it for a forward mistake.
            activations, pre_activations = exact_forward(case.X, case.params)
            remember_backward_inputs((activations, pre_activations, case.Y, case.params))
            grads, b_cpu = _timed(candidate, "backward", activations, pre_activations, case.Y, case.params)
            if k == 0:
                continue
            if k == 1:
                check_timed_gradients(case, grads, activations, pre_activations)
            if f_cpu is None or b_cpu is None:
                if not sys.platform.startswith("linux"):
                    pytest.skip("the isolated worker's CPU time is read from /proc (Linux only): "
                                "the efficiency check did NOT run")
                # On Linux it is always readable: a worker that vanished mid-call is the
                # candidate's doing (the call itself did not fail, so no other check saw it).
                raise AssertionError(f"the worker's CPU time could not be read after forward/backward "
                               f"returned (its process was replaced) [efficiency check, {list(sizes)}]")
            fwd.append(f_cpu)
            bwd.append(b_cpu)
            if decisive is not None and decisive(Cost(sizes, min(fwd), min(bwd), len(fwd))):
                break
    return Cost(sizes, min(fwd), min(bwd), len(fwd))


def check_timed_gradients(case: Case, result: Any, activations: list[np.ndarray],
                          pre_activations: list[np.ndarray]) -> None:
    """The timed backward must return the gradients: the cost of a backward that computes
    something else (say, zeros for this check's batch size) proves nothing."""
    __tracebackhide__ = True
    where = f"backward(efficiency, {list(case.layer_sizes)}, batch {BATCH})"
    grads, dtype = named_contract("backward_structure", validate_backward, result, case.params, where)
    message = mismatch_report(
        exact_gradient_comparisons(case, grads, dtype), where=where,
        compared="the gradients returned by the timed backward (fed the exact forward's values) vs "
                 "exact backprop: the cost is judged only for a backward that computes them",
        contract=contract_text(dtype, fd=False),
        diagnosis=lambda: diagnose(grads, activations, pre_activations, case.Y, case.params,
                                   magnitudes(case.X, case.Y, case.params), precision_tolerance(dtype)))
    if message is not None:
        raise AssertionError(message)


def decided_by(small: Cost) -> Callable[[Cost], bool]:
    """Whether the large network's rounds so far already settle a failing verdict (see
    DECISIVE_RATIO): 3x the ratio limit, and past the growth limit from ``small``."""
    return lambda large: large.ratio > DECISIVE_RATIO and large.ratio > GROWTH_LIMIT * small.ratio


def verdict(small: Cost, large: Cost) -> str | None:
    """The failure message, or None when backward scales like backpropagation."""
    growth = large.ratio / max(small.ratio, 1e-9)
    if large.ratio <= RATIO_LIMIT or growth <= GROWTH_LIMIT:
        return None
    return (
        f"backward costs {large.ratio:.0f} forward passes, but should cost a few (at most "
        f"{RATIO_LIMIT:g}) [backward(efficiency, {list(large.sizes)}, batch {BATCH})]\n"
        f"  compared: CPU time of backward vs forward on the same inputs:\n"
        f"    small network {small.describe()}\n"
        f"    large network {large.describe()}\n"
        f"  finding: relative to forward, backward's cost grew {growth:.0f}x with "
        f"{n_params(large.sizes) // n_params(small.sizes)}x the parameters: it grows with the number "
        "of parameters, the signature of numerical differentiation (one or two forward passes "
        "per parameter); backpropagation costs a few forward passes whatever the size\n"
        f"  contract: backward is backprop: fail only if ratio > {RATIO_LIMIT:g} AND it grows "
        f"> {GROWTH_LIMIT:g}x from P = {n_params(small.sizes)} to P = {n_params(large.sizes)} "
        "(conformance/SPEC.md, Efficiency area)\n"
        "  next: compute delta = (Y_hat - Y) / B at the output and propagate it backwards "
        "through W.T and the ReLU mask, one matrix product per layer (the section's BP1-BP4)")


def test_backward_cost_scales_like_backprop(candidate: Candidate, record_property: Any) -> None:
    """backward costs a few forward passes, not one per parameter (no numerical differentiation)."""
    try:
        small = measure(candidate, SMALL, seed=1)
        large = measure(candidate, LARGE, seed=2, warm_up=False, decisive=decided_by(small))
    except CandidateError as exc:
        text = (f"your forward/backward {failure_text(exc)} [efficiency check, "
                f"networks {list(SMALL)} and {list(LARGE)}, batch {BATCH}]")
        if exc.function in CRASH_KEYS:  # the crash the other areas charge: named, so it costs once
            note_crash(exc.function, text)
        raise AssertionError(text) from exc
    record_property("efficiency_ratio_small", round(small.ratio, 2))
    record_property("efficiency_ratio_large", round(large.ratio, 2))
    message = verdict(small, large)
    if message is not None:
        raise AssertionError(message)
