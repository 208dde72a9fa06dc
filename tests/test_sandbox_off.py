"""``--isolate-sandbox off`` as root: no namespaces, but the worker still
runs as its own unprivileged uid, cannot reach the grader's files or the results, and nothing
of it outlives the run; where that cannot be had the run is a grader error, never a score.

The end-to-end tests run the Gradescope autograder as a container without namespace
privileges would (``setpriv`` drops CAP_SYS_ADMIN) on a bundle built with
``--isolate-sandbox off``, behind tests/sandbox_off.py's mount namespace that makes the Python
installation readable to other users (as in a container with a system Python).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conformance.isolation import process
from tests.sandbox_off import needs_root_off, private_project, readable_python_prefix
from tests.test_gradescope import build, layout, run_autograder
from tests.test_grade import REFERENCE
from tests.test_preflight import NO_NAMESPACES, SETPRIV
from conformance.grade.run import preflight, runner
from conformance.grade.run.jobs import GradeConfig

ADVERSARIAL = Path(__file__).resolve().parent / "adversarial" / "sandbox"
needs_container = pytest.mark.skipif(SETPRIV is None, reason="simulating a container needs setpriv")


def processes_mentioning(text: str) -> list[int]:
    """Live (non-zombie) processes whose command line contains ``text``."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry.name}/cmdline").read_bytes().replace(b"\0", b" ")
            state = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if text.encode() in cmdline and state not in ("Z", "X"):
            found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def off_bundle(tmp_path_factory: pytest.TempPathFactory, real_dir: Path) -> Path:
    return build(tmp_path_factory.mktemp("off-bundle"), real_dir, "--isolate-sandbox", "off")


@pytest.fixture(scope="module")
def engaged_bundle(tmp_path_factory: pytest.TempPathFactory, real_dir: Path) -> Path:
    return build(tmp_path_factory.mktemp("engaged-bundle"), real_dir)


def run_off(tmp_path: Path, bundle: Path, upload: dict[str, str], *, engaged: bool = False,
            own_pids: bool = False) -> tuple[Path, subprocess.CompletedProcess, dict | None]:
    """Gradescope's run_autograder on ``upload``: in the simulated container (``off`` bundle),
    or, ``engaged``, as root with namespaces (the default bundle). ``own_pids``: the container
    has its own PID namespace (tests/sandbox_off.py)."""
    root = layout(tmp_path / "gs", bundle, upload)
    prefix = () if engaged else (*readable_python_prefix(tmp_path, own_pids=own_pids), *NO_NAMESPACES)
    proc, results = run_autograder(root, prefix=prefix)
    return root, proc, results


@pytest.mark.slow
@needs_root_off
@needs_container
def test_off_as_root_grades_a_correct_upload_with_full_marks(off_bundle: Path, tmp_path: Path) -> None:
    root, proc, results = run_off(tmp_path, off_bundle, {"mlp.py": REFERENCE})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert results is not None and results["score"] == results["extra_data"]["max_score"] == 100, results
    assert results["extra_data"]["sandbox"] == "off"


@pytest.mark.slow
@needs_root_off
@needs_container
@pytest.mark.parametrize("mode", ["off", "engaged"])
def test_the_worker_cannot_read_the_graders_files_nor_show_their_paths(
        mode: str, off_bundle: Path, engaged_bundle: Path, tmp_path: Path) -> None:
    """The red team's read: the reference found through the worker's argv0 and every
    process's command line (the bundle's source/project). Off as root its own uid reaches none
    of it (engaged: its namespace hides it), so it gets no credit; and the paths it tried,
    the grader's checkout among them, reach the student masked (§6b, seen engaged)."""
    attack = (ADVERSARIAL / "grader_files_via_argv.py").read_text()
    bundle = off_bundle if mode == "off" else engaged_bundle
    # The container's own processes only: on a shared machine another job's command line may
    # name a world-readable clone of the project, which is not the grader's and no container holds.
    root, proc, results = run_off(tmp_path, bundle, {"mlp.py": attack}, engaged=mode == "engaged",
                                  own_pids=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert results is not None and results["extra_data"]["status"] == "import_error", results
    assert results["score"] == 0
    text = json.dumps(results)
    assert "no grader file was readable" in text
    checkout = str(root / "source" / "project")
    assert checkout not in text and os.path.realpath(checkout) not in text, "the checkout path leaked"
    assert "conformance/isolation/worker.py" in text  # the argv0, masked like the other paths


@pytest.mark.slow
@needs_root_off
@needs_container
def test_off_as_root_no_daemon_outlives_the_run_or_touches_results(off_bundle: Path, tmp_path: Path) -> None:
    """The red team's daemon: double fork, kill the keeper, rewrite results.json for a minute.
    The worker's uid may not fork (RLIMIT_NPROC=1 on a uid of its own) and could not write
    results/ anyway; every process of the uid is killed and counted before results.json."""
    beats = Path(tempfile.mkdtemp(prefix="heartbeat-"))
    try:
        beats.chmod(0o777)  # anyone may write here: only the missing daemon keeps it empty
        heartbeat = beats / "beat"
        attack = (ADVERSARIAL / "daemon_rewrites_results.py").read_text().replace("@HEARTBEAT@", str(heartbeat))
        root, proc, results = run_off(tmp_path, off_bundle, {"mlp.py": attack})
        assert proc.returncode == 0, proc.stderr[-3000:]
        written = (root / "results" / "results.json").read_text()
        assert "forged" not in written, "a daemon rewrote results.json"
        assert results is not None and results["extra_data"]["status"] == "graded" and results["score"] < 100
        time.sleep(2)  # a daemon's next rounds (it rewrites every 0.1 s)
        assert (root / "results" / "results.json").read_text() == written
        assert "forged" not in written and not heartbeat.exists(), "a daemon ran"
        assert not processes_mentioning(str(root)), "a process of the run outlived it"
    finally:
        shutil.rmtree(beats, ignore_errors=True)


@needs_root_off
def test_off_as_root_with_a_readable_project_is_a_grader_error(tmp_path: Path) -> None:
    """A checkout other users can read (here a copy of the project in a world-readable
    folder) would hand the worker the reference: the preflight refuses, naming the path."""
    visible = Path(tempfile.mkdtemp(prefix="readable-checkout-"))
    try:
        visible.chmod(0o755)
        project = private_project(visible)
        visible.chmod(0o755)  # private_project closes it; open it again: the point of the test
        script = ("import json; from conformance.grade.run import preflight; from conformance.grade.run.jobs import GradeConfig;"
                  "print(json.dumps(preflight.check_environment(GradeConfig(sandbox='off', require_mnist=False))"
                  ".problems))")
        proc = subprocess.run([*readable_python_prefix(tmp_path), sys.executable, "-c", script], cwd=project,
                              capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode == 0, proc.stderr[-3000:]
        problems = json.loads(proc.stdout.strip().splitlines()[-1])
        assert problems and "the sandbox could not be set up" in problems[0], problems
        assert f"it can read/enter the grader's {project / 'conformance'}" in problems[0]
    finally:
        shutil.rmtree(visible, ignore_errors=True)


def test_off_without_root_is_refused_by_every_grader(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not root: no uid to drop to, so the worker could read and write all the grading user
    can: `grade`, Dask workers and Gradescope (all through the preflight) refuse to grade."""
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    problem = preflight.sandbox_problem("off", GradeConfig(sandbox="off"))
    assert problem and "--isolate-sandbox off needs the grader to run as root" in problem
    assert preflight.sandbox_problem("off", GradeConfig(sandbox="off", isolate=False)) is None


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to start processes as another uid")
def test_kill_uid_kills_every_process_of_the_uid_and_verifies() -> None:
    uid = process.fresh_uid()
    procs = [subprocess.Popen(["sleep", "600"], user=uid, group=uid, start_new_session=True) for _ in range(3)]
    try:
        assert sorted(process.uid_processes(uid)) == sorted(p.pid for p in procs)
        assert process.kill_uid(uid) == []
        for p in procs:
            assert p.wait(timeout=10) < 0
        assert process.uid_processes(uid) == []
    finally:
        for p in procs:
            p.kill()


def test_a_run_whose_uid_survives_is_a_grader_error_not_a_verdict(monkeypatch: pytest.MonkeyPatch) -> None:
    """If the run's uid cannot be verified empty, nothing is judged (the processes could still
    act on what the grader writes next)."""
    from tests.test_preflight import job_for

    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(runner, "kill_uid", lambda uid: [4242])
    monkeypatch.setattr(runner.subprocess, "Popen", _FinishedPopen)
    monkeypatch.setattr(runner, "ensure_environment", None, raising=False)
    monkeypatch.setattr(preflight, "ensure_environment", lambda *a, **k: preflight.Preflight(sandbox="off"))
    result = runner.run_job(job_for(GradeConfig(sandbox="off", require_mnist=False)))
    assert result.status == "error" and "survived SIGKILL (pids [4242])" in result.message


class _FinishedPopen:
    """A suite run that ended at once (exit 1), without touching the machine."""

    def __init__(self, *args, **kwargs) -> None:
        self.pid, self.returncode = 999999, 1

    def wait(self, timeout=None) -> int:
        return 1

    def poll(self) -> int:
        return 1


def test_the_checkout_path_is_masked_in_everything_the_student_sees(tmp_path: Path) -> None:
    checkout = runner.REPO_ROOT
    text = (f"ImportError: from {checkout}/conformance/isolation/worker.py; tried {checkout}, "
            f"{tmp_path}/submission/mlp.py")
    masked = runner.run_independent({"m": [text]}, tmp_path)["m"][0]
    assert str(checkout) not in masked
    assert masked == ("ImportError: from conformance/isolation/worker.py; tried <grader>, "
                      "submission/mlp.py")
