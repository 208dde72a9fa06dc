"""Same bytes, same grade.

The worker seeds everything seedable from the submission's sha256 before its code runs, so
a submission that draws from os.urandom (directly or through ``secrets``, ``SystemRandom``,
``np.random.default_rng()``) draws the same numbers in every run; what cannot be seeded
(/dev/urandom, the clock) fails the determinism check (conformance/determinism.py, an interface check),
which correct code passes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conformance.isolation import IsolatedCandidate
from conformance.isolation.process import SEED_ENV
from tests.test_grade import REFERENCE
from conformance.grade.score.rubric import load_rubric, score
from conformance.grade.run.jobs import GradeConfig, Job
from conformance.grade.run.runner import run_job

ADVERSARIAL = Path(__file__).resolve().parent / "adversarial" / "sandbox"

DRAWS = '''
import os, random, secrets, uuid
import numpy as np

def forward(X, params):
    return np.array([int.from_bytes(os.urandom(6), "big"), random.random(), np.random.rand(),
                     np.random.default_rng().random(), secrets.randbits(40), hash("same bytes") % 2**40,
                     random.SystemRandom().random(), uuid.uuid4().int % 2**40], dtype=np.float64)

def backward(activations, pre_activations, Y, params):
    return []
'''


def draws(path: Path) -> np.ndarray:
    cand = IsolatedCandidate.load(str(path))
    try:
        assert cand.load_error is None, cand.load_error
        return cand.call("forward", np.zeros(1), [])
    finally:
        cand.close()


def test_the_worker_seeds_everything_seedable_from_the_submission(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SEED_ENV, raising=False)
    first = draws(tmp_path.joinpath("a.py")) if tmp_path.joinpath("a.py").write_text(DRAWS) else None
    again = draws(tmp_path / "a.py")  # another worker process, the same bytes
    assert np.array_equal(first, again), (first, again)
    tmp_path.joinpath("b.py").write_text(DRAWS + "# one more byte\n")
    other = draws(tmp_path / "b.py")
    assert not np.any(first == other), "other bytes must draw other numbers"
    # The grader seeds a run from the whole submission's sha256 (its helpers count too).
    monkeypatch.setenv(SEED_ENV, "ab" * 32)
    assert np.array_equal(draws(tmp_path / "a.py"), draws(tmp_path / "b.py"))


FAST = ("-m", "not mnist", "-k", "interface or gradients")


def grade_of(source: str) -> tuple[float, list]:
    data = source.encode()
    import hashlib

    job = Job(name="s", sha256=hashlib.sha256(data).hexdigest(), files={"mlp.py": data}, module="mlp.py",
              config=GradeConfig(require_mnist=False, extra_args=FAST))
    result = run_job(job)
    assert result.status == "graded", result.message
    tests = result.report["tests"]
    return (score(load_rubric(None), result.status, tests, None, result.message).score,
            sorted((t["nodeid"], t["outcome"], t["message"]) for t in tests))


@pytest.mark.slow
def test_an_urandom_submission_gets_the_same_grade_in_every_run() -> None:
    """The red team's submission scored 93.70 in one batch and 99.16 in three others."""
    source = (ADVERSARIAL / "urandom_noise.py").read_text()
    runs = [grade_of(source) for _ in range(3)]
    assert runs[0] == runs[1] == runs[2], json.dumps([r[0] for r in runs])


@pytest.mark.slow
def test_unseedable_randomness_fails_the_determinism_check_and_correct_code_passes() -> None:
    noisy = dict((nodeid.rsplit("::", 1)[-1], (outcome, message))
                 for nodeid, outcome, message in grade_of((ADVERSARIAL / "clock_noise.py").read_text())[1])
    outcome, message = noisy["test_fresh_processes_give_identical_outputs"]
    assert outcome == "failed" and "each in two fresh processes" in message
    honest = dict((nodeid.rsplit("::", 1)[-1], outcome)
                  for nodeid, outcome, _ in grade_of(REFERENCE)[1])
    assert honest["test_fresh_processes_give_identical_outputs"] == "passed"
    assert "failed" not in honest.values()
