"""Interface area, determinism: the same bytes get the same grade.

The check is collected from conformance/test_interface.py (which imports it), so it is an
interface check by file and by CONFORMANCE_AREA alike; it lives here, beside the isolation
it relies on.

Isolated, the worker seeds everything seedable from the submission's sha256 before its code
runs (hash seed, ``random``, numpy's global generator, os.urandom and what draws through it:
``secrets``, ``SystemRandom``, ``np.random.default_rng()``), so a submission that draws
"random" numbers draws the same ones in every run. What cannot be seeded (the clock, reading
/dev/urandom, object addresses) would make the grade depend on the run: this check starts two
fresh workers, gives each the same forward and backward calls, and requires the same answers.
Their histories are identical, so correct code (deterministic by the contract, SPEC.md)
answers identically; the tolerance is the few ulps a BLAS library may reorder a sum by, as in
test_interface's repeated-call check.

In-process runs (trusted code) cannot start fresh processes: there the two runs are two
calls in this process, each after the same seeding of ``random`` and numpy's global
generator (restored afterwards), which still tells apart a forward or backward that draws
unseeded randomness, and gives correct code the same verdict as isolated.
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from functools import partial
from typing import Iterator

import numpy as np

from conformance.assertions import Comparison, assert_comparisons
from conformance.calls import run_backward, run_forward
from conformance.candidate import Candidate
from conformance.cases import make_case
from conformance.exact import magnitudes

REPEAT_ULPS = 64  # as test_interface.REPEAT_ULPS: BLAS may reorder a sum; randomness can't hide there
CASE = make_case([6, 8, 5, 4], batch=7, seed=21)


@contextmanager
def _same_process_reseeded(candidate: Candidate) -> Iterator[Candidate]:
    """In-process stand-in for a fresh session: the same seeds for the global generators."""
    saved = random.getstate(), np.random.get_state()
    random.seed(0)
    np.random.seed(0)
    try:
        yield candidate
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])


def _outputs(candidate: Candidate, where: str) -> tuple[list[str], list[np.ndarray]]:
    __tracebackhide__ = True
    fwd = run_forward(candidate, CASE, where)
    grads, _ = run_backward(candidate, CASE, fwd.activations, fwd.pre_activations, where)
    pre_activations = fwd.pre_activations or []  # none: the declaration says forward keeps none
    names = ([f"activations[{i}]" for i in range(len(fwd.activations))]
             + [f"pre_activations[{i}]" for i in range(len(pre_activations))]
             + [f"{t}[{i}]" for i in range(len(grads)) for t in ("dW", "db")])
    return names, [np.asarray(v) for v in
                   fwd.activations + pre_activations + [g for pair in grads for g in pair]]


def test_fresh_processes_give_identical_outputs(candidate: Candidate) -> None:
    """forward and backward on the same inputs, each in two freshly started processes."""
    fresh_session = getattr(candidate, "fresh_session", None)
    if fresh_session is not None:
        where = f"forward/backward(case={CASE!r}), each in two fresh processes"
    else:
        where = f"forward/backward(case={CASE!r}), called twice after the same seeding"
        fresh_session = partial(_same_process_reseeded, candidate)
    runs = []
    for _ in range(2):
        with fresh_session() as fresh:
            runs.append(_outputs(fresh, where))
    mags = magnitudes(CASE.X, CASE.Y, CASE.params)
    kept = any(name.startswith("pre_activations") for name in runs[0][0])
    scales = ([mags.activations[0]] + mags.activations[1:-1] + [np.ones_like(mags.activations[-1])]
              + (mags.pre_activations if kept else []) + [m for pair in mags.gradients for m in pair])
    comparisons = []
    for name, first, second, scale in zip(runs[0][0], runs[0][1], runs[1][1], scales):
        if first.dtype != second.dtype:
            raise AssertionError(f"{name} came back as {first.dtype} from the first process and "
                                 f"{second.dtype} from the second [{where}]")
        eps = float(np.finfo(first.dtype).eps) if first.dtype.kind == "f" else 0.0
        comparisons.append(Comparison(name, second, first,
                                      REPEAT_ULPS * eps * (scale + 0.01 * scale.max(initial=0))))
    assert_comparisons(comparisons, where=where, compared="the second process's results vs the first's",
                       contract=f"|second - first| <= {REPEAT_ULPS}*eps*(M + 0.01*max(M)): the same inputs "
                                "give the same outputs in every run",
                       next_step="no randomness that is not seeded (the clock, /dev/urandom, id()): the "
                                 "grade of the same file must be the same in every run.")
