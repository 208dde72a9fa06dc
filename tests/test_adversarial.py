"""Hostile submissions (tests/adversarial/*.py) graded with ``--isolate``: each must get no
credit, fail with a precise reason, leave the runner exiting with status 1 (never 0), and
not change the verdict of a correct submission graded at the same time. An attack on
credit (a trick that makes wrong or absent work pass) also has an honest twin
(tests/adversarial/twins/<name>.py: the same code without the trick): the hostile one must
pass no test its twin fails, nor skip one its twin fails.

Every attack runs as ``pytest conformance --impl <copy> --isolate`` in a subprocess (the
tools/kill_matrix.py runner), next to a correct submission graded concurrently.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT
from tests.leftovers import processes_under
from tools.catalogue import Variant
from tools.kill_matrix import RunOptions, VariantRun, run_variant

ADVERSARIAL = Path(__file__).resolve().parent / "adversarial"

# Small limits so hanging attacks cost seconds: the suite's calls take milliseconds, so a
# 3 s per-call limit cannot fail a correct candidate; 15 s bounds a whole session of hangs.
LIMITS_ENV = {"BACKPROP_ISOLATE_CALL_TIMEOUT": "3", "BACKPROP_ISOLATE_SESSION_TIMEOUT": "15"}
# The runner's own output must stay bounded whatever the candidate prints.
MAX_RUNNER_LOG = 2 << 20


# The MNIST attacks train for an epoch: the session budget must hold a training run.
MNIST_LIMITS_ENV = {"BACKPROP_ISOLATE_SESSION_TIMEOUT": "900"}


@dataclass(frozen=True)
class Attack:
    # Regex that must appear in at least one failure message; None for an attack that may
    # pass checks (it must then get exactly what its honest twin gets, and no more).
    reason: str | None
    load_fails: bool = False  # the candidate is rejected at load time (one failing test)
    must_fail: frozenset[str] = field(default_factory=lambda: frozenset({"interface"}))
    twin: bool = False  # graded against tests/adversarial/twins/<name>.py
    mnist: bool = False  # the attack is on the MNIST area: run it (needs the data)


ATTACKS: dict[str, Attack] = {
    "loop_at_import": Attack(r"timeout after 3 s while importing the candidate", load_fails=True),
    "os_exit_at_import": Attack(r"exited with status 0 while importing the candidate", load_fails=True),
    "import_reference": Attack(r"ModuleNotFoundError: No module named 'conformance", load_fails=True),
    "loop_in_backward": Attack(r"timeout after 3 s \(per-call limit\)|session time budget of 15 s",
                               must_fail=frozenset({"interface", "gradients"})),
    "sys_exit_zero": Attack(r"SystemExit: 0", must_fail=frozenset({"interface", "gradients"})),
    "os_exit_zero": Attack(r"worker exited with status 0 while running (forward|backward)\(\)",
                           must_fail=frozenset({"interface", "gradients"})),
    "segfault": Attack(r"killed by signal SIGSEGV while running (forward|backward)\(\)",
                       must_fail=frozenset({"interface", "gradients"})),
    "huge_allocation": Attack(r"MemoryError.*\n?.*address space is limited to \d+ MiB|"
                              r"address space is limited", must_fail=frozenset({"interface", "gradients"})),
    "output_flood": Attack(r"timeout after 3 s|session time budget",
                           must_fail=frozenset({"interface", "gradients"})),
    "fork_escape": Attack(r"BlockingIOError: \[Errno 11\] Resource temporarily unavailable",
                          must_fail=frozenset({"interface", "gradients"})),
    # Structurally valid (uniform probabilities, zero gradients): the values must be caught.
    "patch_numpy": Attack(r"should be|mismatch|differ", must_fail=frozenset({"gradients", "golden"})),
    "patch_pytest": Attack(r"should be|mismatch|differ", must_fail=frozenset({"gradients", "golden"})),
    "lying_arrays": Attack(r"is a \S*(AgreeableArray|Chameleon), but should be a numpy\.ndarray",
                           must_fail=frozenset({"interface", "gradients"})),
    "steal_reference": Attack(r"nothing to steal: the reference source was not found \(\[\]\)",
                              must_fail=frozenset({"interface", "gradients"})),
    "read_fixtures": Attack(r"files visible to the candidate: \[\]", must_fail=frozenset({"interface"})),
    # Its exception quotes cheap diagnoses: it is charged as a backward that raises.
    "forge_diagnosis": Attack(r"your backward raised ValueError: diagnosis: it equals the SUM",
                              must_fail=frozenset({"interface", "gradients", "golden"})),
    # It may write only in its private scratch directory (its cwd), which nobody reads.
    "forge_reports": Attack(r"forged report files: \[('[\w/.-]*/bp-isolate-\w+/work/[\w.-]+'(, )?)*\]",
                            must_fail=frozenset({"interface"})),
    # Many files of 4 MiB: the only writable place is a private tmpfs of --isolate-scratch MiB.
    "disk_filler": Attack(r"OSError: \[Errno 28\] No space left on device",
                          must_fail=frozenset({"interface", "gradients"})),
    # Refused by the worker's encoder, or (forged frame) from its prefix, before the grader reads it.
    "huge_answers": Attack(r"more than \d+ bytes of arrays|exceeds the \d+-byte limit \(refused before reading",
                           must_fail=frozenset({"interface", "gradients"})),
    "many_tiny_arrays": Attack(r"holds (more than 4096|65000) arrays",
                               must_fail=frozenset({"interface", "gradients"})),
    # Clears its parent-death signal, ignores SIGTERM, setsid, tries to fork: killed with its
    # PID namespace all the same (nothing of it may be left: checked for every attack below).
    "survive_parent": Attack(r"timeout after 3 s \(per-call limit\)|session time budget of 15 s",
                             must_fail=frozenset({"interface", "gradients"})),
    # Imports, reads by path and follows the editable install's pointers to the project
    # (test_isolation.py also runs it against a regular `pip install .`).
    "import_project": Attack(r"nothing of the project is reachable", load_fails=True),
    # --- credit the checks do not earn ------------------------------
    "mnist_jump_backward": Attack(r"but should be \S+ \[backward\(MNIST step|off by .* from exact SGD",
                                  must_fail=frozenset({"gradients", "mnist"}), twin=True, mnist=True),
    "mnist_replace_sgd_loop": Attack(r"backward's return value is a NoneType",
                                     must_fail=frozenset({"gradients", "mnist"}), twin=True, mnist=True),
    "mnist_fit_test_arguments": Attack(None, must_fail=frozenset(), twin=True, mnist=True),
    "fake_relu_flips": Attack(r"check c", must_fail=frozenset({"gradients"}), twin=True),
    "vanishing_functions": Attack(r"softmax", must_fail=frozenset({"stability"}), twin=True),
    "numerical_gradients": Attack(r"numerical differentiation|session time budget",
                                  must_fail=frozenset({"efficiency"})),
}


def test_every_attack_file_has_an_expected_outcome() -> None:
    on_disk = {p.stem for p in ADVERSARIAL.glob("*.py")}
    assert on_disk == set(ATTACKS), (
        f"tests/adversarial and ATTACKS disagree: files without an expected outcome "
        f"{sorted(on_disk - set(ATTACKS))}, outcomes without a file {sorted(set(ATTACKS) - on_disk)}")
    twins = {p.stem for p in (ADVERSARIAL / "twins").glob("*.py")}
    assert twins == {n for n, a in ATTACKS.items() if a.twin}, (
        f"tests/adversarial/twins and the attacks marked twin=True disagree: {sorted(twins)}")


def _correct_submission(dest: Path) -> Variant:
    """A correct, self-contained submission: a copy of the reference module (it imports only
    numpy), the one implementation the suite must pass whatever else changes."""
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / "good_student.py"
    shutil.copyfile(REPO_ROOT / "conformance" / "reference" / "mlp.py", path)
    return Variant("good_student", "correct", path, frozenset(), "copy of conformance/reference/mlp.py")


def _grade(variant: Variant, workdir: Path, report: Path | None = None, mnist: bool = False) -> VariantRun:
    extra = ("--conformance-report", str(report)) if report is not None else ()
    return run_variant(variant, workdir, RunOptions(isolate=True, mnist=mnist, timeout=1200 if mnist else 300,
                                                    extra_args=extra))


def _unearned(hostile: VariantRun, twin: VariantRun) -> dict[str, tuple[str, str]]:
    """Tests where the hostile submission did better than its honest twin: passed (or was
    skipped, hence neutral) where the twin did not pass."""
    twin_outcomes = _outcomes(twin)
    better = {"passed": {"skipped", "failed"}, "skipped": {"failed"}}
    return {k: (v, twin_outcomes.get(k, "absent")) for k, v in _outcomes(hostile).items()
            if twin_outcomes.get(k, "failed") in better.get(v, set())}


def _outcomes(run: VariantRun) -> dict[str, str]:
    return {t.nodeid: t.outcome for t in run.tests}


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The correct submission's per-test verdicts, graded alone."""
    mp = pytest.MonkeyPatch()
    for key, value in LIMITS_ENV.items():
        mp.setenv(key, value)
    try:
        base = tmp_path_factory.mktemp("baseline")
        run = _grade(_correct_submission(base / "submission"), base / "run")
    finally:
        mp.undo()
    assert run.error is None and run.returncode == 0, (
        f"the correct submission does not pass when graded alone: {run.error}\n{run.output_tail}")
    return _outcomes(run)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_gets_no_credit_and_no_influence(name: str, tmp_path: Path, baseline: dict[str, str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in LIMITS_ENV.items():
        monkeypatch.setenv(key, value)
    attack = ATTACKS[name]
    if attack.mnist:
        if not os.environ.get("BACKPROP_MNIST_DIR"):
            pytest.skip(f"{name} attacks the MNIST area: set BACKPROP_MNIST_DIR to run it")
        for key, value in MNIST_LIMITS_ENV.items():
            monkeypatch.setenv(key, value)
    submissions = tmp_path / "submissions"  # the attacker's neighbour is a correct submission
    submissions.mkdir()
    hostile = Variant(name, "buggy", submissions / f"{name}.py", frozenset(), "adversarial")
    shutil.copyfile(ADVERSARIAL / f"{name}.py", hostile.path)
    good = _correct_submission(tmp_path / "good")
    report = tmp_path / "grader-output" / "report.json"
    report.parent.mkdir()
    fork_marker = Path("/tmp/bp-adversarial-fork-escaped")
    fork_marker.unlink(missing_ok=True)
    # The sandbox copies live where an outer grader would put them (conformance/grade/run/runner.py does).
    isolate_dir = tmp_path / "isolate"
    monkeypatch.setenv("BACKPROP_ISOLATE_DIR", str(isolate_dir))

    with ThreadPoolExecutor(max_workers=2) as pool:  # graded at the same time, like a batch
        attacked = pool.submit(_grade, hostile, tmp_path / "run-hostile", report, attack.mnist)
        neighbour = pool.submit(_grade, good, tmp_path / "run-good", None, attack.mnist)
        run, good_run = attacked.result(), neighbour.result()

    # The runner survived and said "failed" (1), never "passed" (0) or crashed (2-5).
    assert run.error is None, f"{name}: the grading run itself broke: {run.error}\n{run.output_tail}"
    if attack.reason is not None:
        assert run.returncode == 1, f"{name}: pytest exited with {run.returncode}\n{run.output_tail}"
        # No credit, for the precise reason.
        failures = run.failures()
        messages = "\n\n".join(t.message for t in failures)
        assert re.search(attack.reason, messages), (
            f"{name}: no failure message matches {attack.reason!r}; failures were:\n{messages[:4000]}")
    if attack.twin:  # no more than the same code without the trick
        twin_path = submissions.parent / "twin" / f"{name}.py"
        twin_path.parent.mkdir()
        shutil.copyfile(ADVERSARIAL / "twins" / f"{name}.py", twin_path)
        twin_run = _grade(Variant(name, "buggy", twin_path, frozenset(), "honest twin"),
                          tmp_path / "run-twin", None, attack.mnist)
        assert twin_run.error is None, f"{name}: grading the twin broke: {twin_run.error}"
        unearned = _unearned(run, twin_run)
        assert not unearned, f"{name} got credit its honest twin does not get: {unearned}"
    if attack.load_fails:
        assert [t.nodeid.rsplit("::", 1)[-1] for t in run.tests] == ["test_candidate_loads"], (
            f"{name}: a candidate that cannot load must get exactly one failing load check")
    for area in attack.must_fail:
        assert run.area_outcome(area) == "failed", f"{name}: area {area} was not failed"
    # The grader's own outputs are genuine: junit (parsed above) and the JSON report.
    if report.exists():
        data = json.loads(report.read_text())
        assert "forged" not in data, f"{name}: the JSON report was forged"
        assert attack.reason is None or any(t.get("outcome") == "failed" for t in data.get("tests", [])), (
            f"{name}: the JSON report does not record the failures")
    # No influence: the correct neighbour's verdicts are the ones it gets alone.
    assert good_run.error is None and good_run.returncode == 0, (
        f"{name} changed its neighbour's run: {good_run.error}\n{good_run.output_tail}")
    outcomes = _outcomes(good_run)
    common = outcomes.keys() & baseline.keys()  # the suite may grow between the two runs
    changed = {k: (baseline[k], outcomes[k]) for k in common if baseline[k] != outcomes[k]}
    assert common and not changed, f"{name} changed a correct submission's verdicts: {changed}"
    # Nothing left behind where the grader or other submissions live.
    time.sleep(0.5 if name != "fork_escape" else 3)  # an escaped child would write after 2 s
    assert not fork_marker.exists(), f"{name}: a child process escaped and wrote {fork_marker}"
    for place in (Path("/tmp"), submissions, report.parent, REPO_ROOT):
        assert not (place / "FORGED-by-candidate").exists(), f"{name} wrote a file in {place}"
    assert sorted(p.name for p in submissions.iterdir()) == [f"{name}.py"], (
        f"{name}: files appeared next to the submission")
    # Nothing of the run survives it: no process working in a sandbox directory (the worker,
    # its keeper and init all have their cwd there), no sandbox copy of student code.
    leftovers = processes_under(isolate_dir)
    assert not leftovers, f"{name}: processes outlived the run: {leftovers}"
    assert not list(isolate_dir.glob("bp-isolate-*")), f"{name}: sandbox directories left behind"
    log_size = (tmp_path / "run-hostile" / f"{name}.log").stat().st_size
    assert log_size < MAX_RUNNER_LOG, f"{name}: the runner printed {log_size} bytes"
