"""The efficiency area's cost model (conformance/test_efficiency.py, SPEC.md "Efficiency area"),
driven by scripted CPU costs: its verdicts and control flow, without timing anything. The
real costs of the catalogue's correct and numerical variants are judged by the kill matrix
(tests/test_kill_matrix.py, slow) and printed by tools/bench_efficiency.py."""

from __future__ import annotations

from typing import Callable

import numpy as np
import pytest

from conformance import test_efficiency as eff
from conformance.test_efficiency import (
    EARLY_FLOOR,
    EARLY_LIMIT,
    EARLY_ROUNDS,
    LIMIT,
    REPEATS,
    RUNGS,
    Cost,
    Rung,
    backprop,
    efficiency_case,
    measure,
    measure_ladder,
    verdict,
)
from conformance.exact import exact_forward, exact_gradients

YARD = 1e-3  # scripted CPU seconds of one yardstick backprop, on every rung


def _yardstick(*args: object) -> tuple[float, object]:
    return YARD, backprop(*args)  # type: ignore[arg-type]


class Scripted:
    """A stand-in candidate: right gradients, and a scripted CPU cost per backward call that
    may depend on the rung (its width), as a hostile candidate's may."""

    def __init__(self, cost: Callable[[int], float]) -> None:
        self.cost = cost
        self.calls: list[int] = []

    def call_timed(self, function: str, *args: object) -> tuple[object, float]:
        assert function == "backward", "the efficiency area times backward only"
        activations, pre_activations, Y, params = args
        width = params[0][0].shape[1]
        self.calls.append(width)
        return backprop(activations, pre_activations, Y, params), self.cost(width)


def _ladder(cost: Callable[[int], float]) -> tuple[list[Cost], Scripted]:
    cand = Scripted(cost)
    return measure_ladder(cand, yardstick=_yardstick), cand  # type: ignore[arg-type]


def test_the_yardstick_is_backprop() -> None:
    case = efficiency_case(RUNGS[0], 7)
    acts, pres = exact_forward(case.X, case.params)
    for (gW, gb), (eW, eb) in zip(backprop(acts, pres, case.Y, case.params),
                                  exact_gradients(acts, pres, case.Y, case.params, 0.0)):
        np.testing.assert_allclose(gW, eW, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(gb, eb, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("rung", RUNGS)
def test_cases_keep_masks_mixed_and_away_from_kinks(rung: Rung) -> None:
    """About ACTIVE_FRACTION of each unit's samples active (neither sparse masks, which a
    per-sample forward mode exploits, nor all-ones, which make the network linear), and no
    pre-activation near 0, where a correct finite-difference backward would straddle a kink."""
    for seed in range(3):
        case = efficiency_case(rung, seed)
        acts, pres = exact_forward(case.X, case.params)
        # logits of scale 1: no true-class probability near a log guard (1e-12 .. 1e-7)
        assert (acts[-1] * case.Y).sum(axis=1).min() > 1e-4
        for Z in pres[:-1]:
            assert 0.6 <= (Z > 0).mean() <= 0.9
            assert (Z > 0).any(axis=1).all()  # no sample whose layer is all off
            # a central difference's step on a weight (1e-5 of its size, |W| < 1 here) moves Z
            # by at most 1e-5 * max|A_prev| < 2e-4 (max|A| ~ 16): 1e-3 leaves a 5x margin
            assert np.abs(Z).min() > 1e-3


def test_correct_styles_pass_at_their_measured_ratios() -> None:
    """Ratios measured for correct styles (SPEC.md): vectorised ~1-3, per-sample loops up to
    ~26 on every rung; the limit leaves 2x above the worst."""
    for ratio in (1.0, 26.0):
        costs, cand = _ladder(lambda w, r=ratio: r * YARD)
        assert verdict(costs) is None
        assert [c.rung for c in costs] == list(RUNGS)
        assert cand.calls.count(RUNGS[-1].width) == REPEATS  # every round on the decisive rung


def test_a_slow_correct_style_on_narrow_networks_is_not_stopped_early() -> None:
    """Python overhead (per-sample loops; the isolated worker's ~1 ms per call) is many
    backprops on narrow networks, but never EARLY_FLOOR of CPU: no early stop."""
    costs, _ = _ladder(lambda w: EARLY_FLOOR * 0.9 if w < 512 else 20 * YARD)
    assert verdict(costs) is None and len(costs) == len(RUNGS)


@pytest.mark.parametrize("ratio", [LIMIT * 1.2, 120.0, 1000.0])
def test_numerical_differentiation_fails_on_the_widest_network(ratio: float) -> None:
    costs, _ = _ladder(lambda w: ratio * YARD if w == RUNGS[-1].width else YARD)
    message = verdict(costs)
    assert message is not None and "numerical differentiation" in message
    assert f"backward costs {ratio:.0f} backprops" in message
    assert f"batch {RUNGS[-1].batch}" in message


def test_a_numerical_backward_is_stopped_at_the_first_decisive_rung() -> None:
    """Per-weight differences: ~1,800 backprops and ~70 ms on the narrowest rung; measuring it
    on the widest would take an hour."""
    costs, cand = _ladder(lambda w: 1800 * YARD * (w / 16) ** 2)
    assert len(costs) == 1 and costs[0].rounds == EARLY_ROUNDS
    assert cand.calls == [RUNGS[0].width] * (EARLY_ROUNDS + 1)  # the warm-up call, then the rounds
    message = verdict(costs)
    assert message is not None and "stopped at this rung" in message


@pytest.mark.parametrize("burn", [0.0, 0.05, 1.0])
def test_cpu_burn_never_helps(burn: float) -> None:
    """Whatever a numerical backward burns on the narrow rungs (to flatten a growth, or to
    look uniformly slow), the widest rung's cost is judged against the suite's backprop."""
    costs, _ = _ladder(lambda w: (120 * YARD) if w == RUNGS[-1].width else burn)
    assert verdict(costs) is not None


def test_a_cheap_round_that_skips_the_work_is_caught() -> None:
    """The cost is the minimum over rounds, so every measured round must return the gradients
    of its own fresh inputs: a candidate that does the work in the first round only, and
    answers the later ones cheaply, fails as a wrong backward instead of looking cheap."""
    class WorkOnce(Scripted):
        def call_timed(self, function: str, *args: object) -> tuple[object, float]:
            grads, cost = super().call_timed(function, *args)
            if len(self.calls) > 2:  # warm-up and first round honest, then stale answers
                return self.stale, YARD / 100  # type: ignore[has-type]
            self.stale = grads
            return grads, cost

    with pytest.raises(AssertionError, match=r"timed backward.s gradients are wrong"):
        measure(WorkOnce(lambda w: 300 * YARD), RUNGS[0], yardstick=_yardstick)  # type: ignore[arg-type]


def test_an_early_stop_needs_both_rounds() -> None:
    """One slow round (a page-fault storm, a first-call import at a new width) is not decisive."""
    calls = iter([YARD] + [EARLY_LIMIT * 10 * YARD, YARD] + [YARD] * 100)  # warm-up, then rung 1
    costs, _ = _ladder(lambda w: next(calls))
    assert len(costs) == len(RUNGS) and verdict(costs) is None


def test_the_timed_backward_must_return_the_gradients() -> None:
    """Red team: a numerical backward that returns zeros for the efficiency check's sizes
    passed an earlier version. What the timed call returns is checked against exact backprop."""
    from conformance import evidence

    class ZerosForTheseSizes(Scripted):
        def call_timed(self, function: str, *args: object) -> tuple[object, float]:
            _, cost = super().call_timed(function, *args)
            return [(np.zeros_like(W), np.zeros_like(b)) for W, b in args[3]], cost  # type: ignore[attr-defined]

    measure(Scripted(lambda w: YARD), RUNGS[0], yardstick=_yardstick)  # type: ignore[arg-type]
    with evidence.recording() as found, \
            pytest.raises(AssertionError, match=r"timed backward.s gradients are wrong") as failure:
        measure(ZerosForTheseSizes(lambda w: YARD), RUNGS[0], yardstick=_yardstick)  # type: ignore[arg-type]
    assert f"backward(efficiency, {list(RUNGS[0].sizes)}, batch {RUNGS[0].batch})" in str(failure.value)
    assert [f.key for f in found.findings] == ["backward_wrong"]  # charged as a wrong backward


def test_constants_keep_their_documented_order() -> None:
    assert 1 < LIMIT < EARLY_LIMIT and EARLY_ROUNDS <= REPEATS
    assert [r.width for r in RUNGS] == sorted(r.width for r in RUNGS) and RUNGS[-1].width >= 512
    assert all(len(r.sizes) == 6 for r in RUNGS)  # 5 layers: the most the contract promises
    assert eff.ACTIVE_FRACTION == pytest.approx(0.8)


def test_inputs_cannot_be_known_in_advance() -> None:
    """Red team: with fixed seeds, a candidate could rebuild the suite's cases at import time
    (not timed), differentiate them numerically there and answer from a table. Each run draws
    its inputs' seed from the OS."""
    seen = []

    class Recording(Scripted):
        def call_timed(self, function: str, *args: object) -> tuple[object, float]:
            seen.append(float(args[0][0][0, 0]))  # type: ignore[index]
            return super().call_timed(function, *args)

    measure_ladder(Recording(lambda w: 1.0), yardstick=_yardstick)  # type: ignore[arg-type]  # stops at rung 1
    first = seen[0]
    seen.clear()
    measure_ladder(Recording(lambda w: 1.0), yardstick=_yardstick)  # type: ignore[arg-type]
    assert seen[0] != first


def test_isolated_without_one_blas_thread_is_a_visible_skip(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without threadpoolctl the grader's yardstick would run on several BLAS threads, whose
    spinning inflates its CPU time 2.5-3.5x against the one-thread worker: a numerical backward
    could pass. The check says it did not run instead."""
    class Isolated(Scripted):
        isolated = True

    monkeypatch.setattr(eff, "blas_pinnable", lambda: False)
    with pytest.raises(pytest.skip.Exception, match="did NOT run.*threadpoolctl"):
        eff.test_backward_cost_scales_like_backprop(Isolated(lambda w: YARD), lambda *a: None)  # type: ignore[arg-type]


def test_the_cheap_gradient_check_refuses_shortcuts() -> None:
    case = efficiency_case(RUNGS[1], 3)
    acts, pres = exact_forward(case.X, case.params)
    want = backprop(acts, pres, case.Y, case.params)
    assert eff.close_to(want, want)
    assert eff.close_to([(W.astype(np.float32), b.astype(np.float32)) for W, b in want], want)  # float32
    assert not eff.close_to([(W[:1], b) for W, b in want], want)  # a row broadcast over dW
    assert not eff.close_to([(W * 1.01, b) for W, b in want], want)
    assert not eff.close_to(want[:-1], want) and not eff.close_to(None, want)
