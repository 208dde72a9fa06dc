"""Environment failures are grader errors, never student scores.

Covers the preflight (conformance/grade/run/preflight.py), the classification of runs (runner.classify /
run_job), the sandbox state recorded per run (report -> gradebook -> CSV -> HTML), the
batch's loud ending and retry, and Dask workers that check themselves.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_grade import (GOOD_REPORT, I_BUG, REFERENCE, TINY_ARGS, TINY_RUBRIC, graded_submission,
                              read_csv, t, write)
from tests.sandbox_off import private_project, readable_python_prefix
from conformance.grade import batch, cli
from conformance.grade.run import preflight
from conformance.grade.publish.gradebook import Gradebook
from conformance.grade.publish.html_report import overview, submission_page
from conformance.grade.publish.outputs import grades_csv
from conformance.grade.run.jobs import GradeConfig, Job, JobResult
from conformance.grade.run.runner import classify, read_report, run_job

REPO = Path(__file__).resolve().parents[1]
SETPRIV = shutil.which("setpriv")
# A container without the privileges the sandbox needs (Docker's default drops CAP_SYS_ADMIN):
# the same root user, but no new mount/PID/network namespaces.
NO_NAMESPACES = [SETPRIV or "setpriv", "--bounding-set=-sys_admin", "--inh-caps=-sys_admin"]
needs_namespace_drop = pytest.mark.skipif(
    SETPRIV is None or os.geteuid() != 0 or not sys.platform.startswith("linux"),
    reason="simulating a container without namespace privileges needs root, Linux and setpriv")


@pytest.fixture(autouse=True)
def fresh_preflight():
    preflight.forget()
    yield
    preflight.forget()


def job_for(config: GradeConfig, suite: str | None = None, files: dict | None = None) -> Job:
    files = files or {"a.py": b""}
    return Job(name="a", sha256="0" * 64, files=files, module=next(iter(files)), config=config,
               suite_version=suite)


def report_with(**changes) -> dict:
    data = json.loads(json.dumps(GOOD_REPORT))
    data.update(changes)
    return data


# -- the preflight's checks ---------------------------------------------------------------


def test_mnist_problem_names_missing_and_damaged_files(tmp_path: Path, real_dir: Path) -> None:
    assert preflight.mnist_problem(str(real_dir)) is None
    missing = preflight.mnist_problem(str(tmp_path))
    assert "MNIST data not found in " + str(tmp_path) in missing
    assert "`backprop-conformance fetch-mnist`" in missing  # the command an installed grader has
    copy = tmp_path / "copy"
    shutil.copytree(real_dir, copy)
    victim = next(copy.glob("t10k-labels*"))
    victim.chmod(0o644)
    data = bytearray(victim.read_bytes())
    if victim.suffix == ".gz":
        import gzip
        raw = bytearray(gzip.decompress(bytes(data)))
        raw[-1] ^= 1  # one label changed: still a valid file, not the original
        victim.write_bytes(gzip.compress(bytes(raw)))
    else:
        data[-1] ^= 1
        victim.write_bytes(bytes(data))
    problem = preflight.mnist_problem(str(copy))
    assert problem and "is damaged" in problem and victim.name in problem


def test_missing_optional_libraries_are_named_before_grading(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    notices = preflight.missing_extras()
    assert any(n.startswith("note: matplotlib is not installed, so the report pages have no plots")
               and "pip install 'backprop-conformance[grade]'" in n for n in notices)
    assert not any("tqdm" in n for n in notices)  # installed here


def test_disk_problem_when_the_temp_dir_is_nearly_full(monkeypatch: pytest.MonkeyPatch) -> None:
    assert preflight.disk_problem() is None
    monkeypatch.setattr(preflight, "MIN_FREE_BYTES", 1 << 62)
    assert "MiB free in the temp directory" in preflight.disk_problem()


def test_preflight_reports_every_problem_and_another_suite_version(tmp_path: Path) -> None:
    check = preflight.check_environment(GradeConfig(mnist_dir=str(tmp_path)), "0123456789abcdef",
                                        sandbox=False)
    assert not check.ok and len(check.problems) == 2
    assert "but the batch grades with 0123456789abcdef" in check.explain()
    assert "project files in " in check.explain() and "checkout" not in check.explain()  # a wheel has none
    assert "MNIST data not found" in check.explain()
    # Without --require-mnist, missing data is not the preflight's concern (the baseline's).
    assert preflight.check_environment(GradeConfig(require_mnist=False, mnist_dir=str(tmp_path)),
                                       sandbox=False).ok


@pytest.mark.skipif(os.geteuid() != 0 or not sys.platform.startswith("linux"), reason="needs root on Linux")
def test_sandbox_probe_engaged_or_off_as_asked(tmp_path: Path) -> None:
    assert preflight.probe_sandbox(GradeConfig())[0] == "engaged"
    assert preflight.probe_sandbox(GradeConfig(isolate=False))[0] == "off"
    # Off as root: the worker still drops to its own uid, which must reach Python and not the
    # project (tests/sandbox_off.py makes such a machine).
    prefix, project = readable_python_prefix(tmp_path), private_project(tmp_path)
    proc = subprocess.run([*prefix, sys.executable, "-c", PROBE.format(mode="off")], cwd=project,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    probed = json.loads(proc.stdout.strip().splitlines()[-1])
    assert probed["problems"] == [] and probed["sandbox"] == "off"


PROBE = ("import json; from conformance.grade.run.preflight import check_environment; "
         "from conformance.grade.run.jobs import GradeConfig; "
         "c = check_environment(GradeConfig(require_mnist=False, sandbox='{mode}')); "
         "print(json.dumps(c.to_dict()))")


@needs_namespace_drop
def test_sandbox_that_cannot_be_set_up_fails_the_preflight_unless_off(tmp_path: Path) -> None:
    prefix, project = readable_python_prefix(tmp_path), private_project(tmp_path)

    def probe(mode: str) -> dict:
        proc = subprocess.run([*prefix, *NO_NAMESPACES, sys.executable, "-c", PROBE.format(mode=mode)],
                              cwd=project, capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout.strip().splitlines()[-1])

    refused = probe("require")
    assert refused["problems"] and "the sandbox could not be set up" in refused["problems"][0]
    accepted = probe("off")
    assert accepted["problems"] == [] and accepted["sandbox"] == "off"


def test_degraded_sandbox_is_refused_unless_off() -> None:
    assert "degraded" in preflight.sandbox_problem("degraded", GradeConfig())
    assert preflight.sandbox_problem("degraded", GradeConfig(sandbox="off")) is None
    assert preflight.sandbox_problem("engaged", GradeConfig()) is None


# -- classification: only the submission's behaviour is final ------------------------------


@pytest.mark.parametrize("value, state", [
    ("engaged", "engaged"), ("DEGRADED", "degraded"), ({"state": "off", "why": "x"}, "off"),
    (None, "unknown"), ("root!", "unknown"), (["engaged"], "unknown"), ({"state": 1}, "unknown"),
])
def test_report_sandbox_field_is_read_defensively(tmp_path: Path, value, state: str) -> None:
    data = report_with() if value is None else report_with(sandbox=value)
    assert read_report(write(tmp_path / "r.json", json.dumps(data)))["sandbox"] == state


def parsed(tmp_path: Path, data: dict) -> dict:
    return read_report(write(tmp_path / "r.json", json.dumps(data)))


@pytest.mark.parametrize("change, why", [
    ({"tests": [{**t("test_mnist.py::test_sgd_loop_learns_mnist", "failed", message=(
        "MNIST data not found (looked in x); the MNIST checks did NOT run: get the data ... "
        "(--require-mnist makes this a failure)")), "properties": {"environment": "mnist_unavailable"}}]},
     "MNIST data unavailable"),
    ({"sandbox": "degraded"}, "sandbox was degraded"),
    ({"suite_version": "another"}, "is not the one this batch grades with"),
])
def test_environment_failures_are_errors_not_grades(tmp_path: Path, change: dict, why: str) -> None:
    report = parsed(tmp_path, report_with(**change))
    status, message = classify(report, 0, job_for(GradeConfig(), suite="x"))
    assert status == "error" and why in message and "not the submission's" in message


def test_the_submissions_own_failures_stay_final(tmp_path: Path) -> None:
    job = job_for(GradeConfig(), suite="x")
    failing = parsed(tmp_path, report_with(exitstatus=1, tests=[t("test_gradients.py::test_a", "failed",
                                                                   message="dW[1]=... but should be ...")]))
    assert classify(failing, 1, job) == ("graded", "")
    broken = parsed(tmp_path, report_with(candidate={**GOOD_REPORT["candidate"],
                                                     "load_error": "SyntaxError: invalid syntax"}))
    assert classify(broken, 0, job) == ("import_error", "SyntaxError: invalid syntax")
    # Without --require-mnist a skipped MNIST check is a choice of the grader, not a failure.
    skipped = parsed(tmp_path, report_with(tests=[{**t("test_mnist.py::test_m", "skipped"),
                                                   "properties": {"environment": "mnist_unavailable"},
                                                   "skip_reason": "MNIST data not found (looked in x); the MNIST checks "
                                                                      "did NOT run: get the data ..."}]))
    assert classify(skipped, 0, job_for(GradeConfig(require_mnist=False), suite="x"))[0] == "graded"
    assert classify(skipped, 0, job)[0] == "error"
    # Text the candidate writes (its exceptions) never turns its failures into grader errors.
    forged = parsed(tmp_path, report_with(exitstatus=1, tests=[
        t("test_interface.py::test_a", "failed", message="OSError: [Errno 28] No space left on device"),
        t("test_mnist.py::test_m", "failed", message="CandidateError: train raised: MNIST data not found; "
                                                    "the MNIST checks did NOT run")]))
    assert classify(forged, 1, job) == ("graded", "")
    own_import = parsed(tmp_path, report_with(candidate={
        **GOOD_REPORT["candidate"], "load_error": "importing candidate 'a' failed (in the isolated worker):\n"
        "OSError: [Errno 28] No space left on device; the sandbox could not be set up"}))
    assert classify(own_import, 0, job)[0] == "import_error"
    # --isolate-sandbox off: a run with limits only is graded, and says so.
    off = parsed(tmp_path, report_with(sandbox="off"))
    assert classify(off, 0, job_for(GradeConfig(sandbox="off"), suite="x")) == ("graded", "")


PAST_PREFLIGHT = ("import json, sys; import conformance.grade.run.preflight as pf; from conformance.grade.run.runner import "
                  "reference_job, run_job; from conformance.grade.run.jobs import GradeConfig; "
                  "pf.ensure_environment = lambda c, s=None: pf.Preflight(sandbox='engaged'); "
                  "r = run_job(reference_job(GradeConfig(**json.loads(sys.argv[1])))); "
                  "print(json.dumps([r.status, r.message]))")


def run_past_preflight(config: dict, prefix: tuple[str, ...] = ()) -> tuple[str, str]:
    """The real suite on the reference, with the preflight bypassed: what classification alone
    makes of an environment that fails during the run."""
    proc = subprocess.run([*prefix, sys.executable, "-c", PAST_PREFLIGHT, json.dumps(config)], cwd=REPO,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    status, message = json.loads(proc.stdout.strip().splitlines()[-1])
    return status, message


@pytest.mark.slow
def test_missing_mnist_during_the_run_is_an_error(tmp_path: Path) -> None:
    status, message = run_past_preflight({"mnist_dir": str(tmp_path),
                                          "extra_args": ["-k", "test_sgd_loop_learns_mnist"]})
    assert status == "error" and "MNIST data unavailable on this machine" in message


@pytest.mark.slow
@needs_namespace_drop
def test_sandbox_failing_during_the_run_is_an_error() -> None:
    status, message = run_past_preflight({"require_mnist": False, "extra_args": ["-k", "test_candidate_loads"]},
                                         prefix=tuple(NO_NAMESPACES))
    assert status == "error" and "the sandbox could not be set up" in message


def fake_python(tmp_path: Path, body: str) -> str:
    fake = write(tmp_path / "fake_python", f"#!/bin/sh\n{body}\n")
    fake.chmod(0o755)
    return str(fake)


def test_no_report_is_a_grader_error_when_isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The isolated candidate cannot stop the suite's process from writing its report: a
    missing report is the grader's failure. In-process it may be the candidate's doing."""
    python = fake_python(tmp_path, "echo 'Fatal Python error: Segmentation fault'; exit 1")
    isolated = run_job(job_for(GradeConfig(python=python, require_mnist=False)))
    assert isolated.status == "error" and "the suite wrote no report" in isolated.message
    if os.geteuid() == 0:  # the preflight's probe of this machine (the fake wrote no report)
        assert isolated.sandbox == "engaged"
    in_process = run_job(job_for(GradeConfig(python=python, require_mnist=False, isolate=False)))
    assert in_process.status == "crashed"
    # What the run printed is the candidate's text in-process: it never makes an error...
    full = fake_python(tmp_path, "echo 'OSError: [Errno 28] No space left on device'; exit 1")
    claims = run_job(job_for(GradeConfig(python=full, require_mnist=False, isolate=False)))
    assert claims.status == "crashed"
    # ...the machine's state does: a nearly full disk is the grader's problem.
    from conformance.grade.run import runner

    monkeypatch.setattr(runner, "_disk_nearly_full", lambda path: True)
    no_space = run_job(job_for(GradeConfig(python=full, require_mnist=False, isolate=False)))
    assert no_space.status == "error" and "no space left on device" in no_space.message


def test_job_on_a_machine_without_mnist_is_an_error_without_running(tmp_path: Path) -> None:
    python = fake_python(tmp_path, f"touch {tmp_path}/ran; exit 1")
    result = run_job(job_for(GradeConfig(python=python, mnist_dir=str(tmp_path / "empty"))))
    assert result.status == "error" and "MNIST data not found" in result.message
    assert socket.gethostname() in result.message  # names the machine that failed
    assert not (tmp_path / "ran").exists()  # the suite never ran: nothing to mistake for a grade


def test_job_uses_this_machines_interpreter_not_the_clients() -> None:
    """A Job built elsewhere carries no interpreter path (the Dask client's would not exist)."""
    assert GradeConfig().python == ""
    assert GradeConfig().key() == GradeConfig(python="/elsewhere/python").key()
    assert GradeConfig().key() != GradeConfig(sandbox="off").key()


# -- the sandbox state is recorded and shown ------------------------------------------------


def test_gradebook_records_the_sandbox_and_migrates_old_files(tmp_path: Path) -> None:
    path = tmp_path / "grades.sqlite"
    with sqlite3.connect(path) as db:  # a gradebook from before runs recorded their sandbox
        db.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, name TEXT NOT NULL, sha256 TEXT NOT NULL, "
                   "suite_version TEXT NOT NULL, config_key TEXT NOT NULL, status TEXT NOT NULL, "
                   "message TEXT, exit_code INTEGER, duration REAL, started_at REAL, finished_at REAL, "
                   "host TEXT, output_tail TEXT, report TEXT, junit_xml TEXT)")
        db.execute("INSERT INTO runs (name, sha256, suite_version, config_key, status) "
                   "VALUES ('old', 'x', 'v', 'k', 'graded')")
    book = Gradebook(path)
    try:
        old = book.reusable_run("old", "x", "v", "k")
        assert old is not None and old.sandbox == "unknown"
        run_id = book.add_run(JobResult(name="a", sha256="y", status="graded", sandbox="engaged"), "v", "k")
        assert book.get_run(run_id).sandbox == "engaged"
    finally:
        book.close()


def test_csv_and_html_show_each_runs_sandbox() -> None:
    engaged, off = graded_submission("alice"), graded_submission("bob")
    engaged.sandbox, off.sandbox = "engaged", "off"
    rows = {r["submission"]: r for r in csv.DictReader(io.StringIO(
        grades_csv([engaged, off], engaged.rubric).lstrip("\ufeff")))}
    assert rows["alice"]["sandbox"] == "engaged" and rows["bob"]["sandbox"] == "off"
    page = overview([engaged, off])
    assert "<th>sandbox</th>" in page and "engaged</span>: 1" in page and "off</span>: 1" in page
    assert "Sandbox: <span class=\"bad\">off</span>" in submission_page(off)
    failed = graded_submission("carol", status="error", message="grader error: MNIST data not found")
    assert "ended in a grader error" in overview([engaged, failed])


# -- the batch: loud, non-zero, retried ----------------------------------------------------


def fake_runs(outcomes: dict[str, str]):
    """A run_job stand-in: the named status per submission ("graded" gets a real-looking report)."""
    def run(job: Job) -> JobResult:
        status = outcomes[job.name]
        report = None
        if status == "graded":
            report = json.loads(json.dumps(GOOD_REPORT))
            report["tests"] = [t("test_interface.py::test_candidate_loads", "passed")]
            report.update(sandbox="engaged", suite_version=job.suite_version)
        return JobResult(name=job.name, sha256=job.sha256, status=status, report=report, sandbox="engaged",
                         message="" if status == "graded" else "grader error (not the submission's): "
                                                               "no space left on device")
    return run


def test_grader_errors_end_the_batch_loudly_and_are_retried(tmp_path: Path, monkeypatch, capsys) -> None:
    write(tmp_path / "subs" / "alice.py", REFERENCE)
    write(tmp_path / "subs" / "bob.py", I_BUG)
    rubric = write(tmp_path / "r.toml", TINY_RUBRIC)
    args = [str(tmp_path / "subs"), "--out", str(tmp_path / "out"), "--rubric", str(rubric), "--no-baseline",
            *TINY_ARGS]
    monkeypatch.setattr(batch, "run_job", fake_runs({"alice": "graded", "bob": "error"}))
    assert cli.main(args) == 3
    captured = capsys.readouterr()
    last = captured.out.strip().splitlines()[-1]
    assert last.startswith("GRADER ERROR: 1 submission(s)") and "bob" in last and "no space left" in last
    rows = read_csv(tmp_path / "out" / "grades.csv")
    assert rows["bob"]["status"] == "error" and rows["bob"]["score"] == "0"
    assert rows["alice"]["sandbox"] == "engaged"
    assert "preflight:" in captured.err and "ready; sandbox engaged" in captured.err
    # Fixed environment: the next run retries bob only (alice's grade is final and reused).
    monkeypatch.setattr(batch, "run_job", fake_runs({"bob": "graded"}))
    assert cli.main(args) == 0
    assert "(1 run, 0 re-scored, 1 unchanged)" in capsys.readouterr().out
    rows = read_csv(tmp_path / "out" / "grades.csv")
    assert rows["bob"]["status"] == "graded" and rows["bob"]["score"] == "10"


def test_failed_preflight_grades_nobody(tmp_path: Path, capsys) -> None:
    write(tmp_path / "subs" / "alice.py", REFERENCE)
    (tmp_path / "nomnist").mkdir()
    code = cli.main([str(tmp_path / "subs"), "--out", str(tmp_path / "out"), "--mnist-dir",
                     str(tmp_path / "nomnist"), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "is not fit to grade" in err and "MNIST data not found" in err
    assert not (tmp_path / "out" / "grades.csv").exists()


@pytest.mark.slow
@needs_namespace_drop
def test_batch_without_sandbox_privileges_refuses_then_grades_with_explicit_off(tmp_path: Path) -> None:
    write(tmp_path / "subs" / "alice.py", REFERENCE)
    rubric = write(tmp_path / "r.toml", TINY_RUBRIC)
    base = [*NO_NAMESPACES, sys.executable, "-m", "conformance.grade", str(tmp_path / "subs"), "--out",
            str(tmp_path / "out"), "--rubric", str(rubric), *TINY_ARGS]
    refused = subprocess.run(base, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert refused.returncode == 2 and "the sandbox could not be set up" in refused.stderr
    assert not (tmp_path / "out" / "grades.csv").exists()
    # Off as root: from a project other users cannot read, with a Python they can (sandbox_off.py).
    prefix, project = readable_python_prefix(tmp_path), private_project(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "BACKPROP_MNIST_DIR"}  # not needed; hidden there
    accepted = subprocess.run([*prefix, *base, "--isolate-sandbox", "off"], cwd=project, capture_output=True,
                              text=True, timeout=600, check=False, env=env)
    assert accepted.returncode == 0, accepted.stderr
    row = read_csv(tmp_path / "out" / "grades.csv")["alice"]
    assert row["status"] == "graded" and row["sandbox"] == "off"


# -- Dask: every worker checks itself; a failing one takes no jobs ------------------------


def start_worker(address: str, env: dict, cwd: Path, name: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nworkers", "1",
                             "--nthreads", "1", "--no-nanny", "--name", name, "--no-dashboard"],
                            cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.slow
def test_dask_worker_without_mnist_takes_no_jobs_and_workers_use_their_own_checkout(
        tmp_path: Path, real_dir: Path) -> None:
    distributed = pytest.importorskip("distributed", reason="the optional extra 'dask' is not installed")
    # A second checkout at another path (as on another machine), with the same suite files.
    other = tmp_path / "elsewhere"
    for top in ("conformance", "fixtures"):
        shutil.copytree(REPO / top, other / top, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", other)
    (tmp_path / "empty").mkdir()
    base_env = {k: v for k, v in os.environ.items() if k not in ("BACKPROP_MNIST_DIR", "PYTHONPATH")}
    good_env = {**base_env, "BACKPROP_MNIST_DIR": str(real_dir), "PYTHONPATH": str(other)}
    bad_env = {**base_env, "BACKPROP_MNIST_DIR": str(tmp_path / "empty")}
    write(tmp_path / "subs" / "alice.py", REFERENCE)
    write(tmp_path / "subs" / "bob.py", I_BUG)
    write(tmp_path / "subs" / "carol.py", REFERENCE.replace("import numpy as np", "import numpy as np\n#c"))
    rubric = write(tmp_path / "r.toml", TINY_RUBRIC)
    # MNIST counts (require_mnist) but the selected checks do not need it: the data only
    # decides which worker passes its preflight. No --mnist-dir: each worker uses its own.
    config = GradeConfig(extra_args=("-m", "not mnist", "-k", "test_candidate_loads"))
    log: list[str] = []
    with distributed.LocalCluster(n_workers=0, protocol="tcp://", host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        workers = [start_worker(cluster.scheduler_address, good_env, tmp_path, "good"),
                   start_worker(cluster.scheduler_address, bad_env, tmp_path, "bad")]
        try:
            with distributed.Client(cluster.scheduler_address) as client:
                client.wait_for_workers(2, timeout=120)
                from conformance.grade.run import runner
                roots = client.run(lambda: str(runner.REPO_ROOT))
                assert str(other) in roots.values()  # the good worker imports its own checkout
            summary = batch.grade_batch(batch.BatchOptions(
                tmp_path / "subs", tmp_path / "out", config=config, dask=cluster.scheduler_address,
                rubric=rubric, progress=False), log=log.append)
        finally:
            for proc in workers:
                proc.terminate()
            for proc in workers:
                proc.wait(timeout=60)
    text = "\n".join(log)
    assert "takes no jobs" in text and f"MNIST data not found in $BACKPROP_MNIST_DIR={tmp_path / 'empty'}" in text
    assert summary.statuses == {"graded": 3} and not summary.grader_errors
    rows = read_csv(tmp_path / "out" / "grades.csv")
    assert {name: row["score"] for name, row in rows.items()} == {"alice": "10", "bob": "10", "carol": "10"}
    assert {row["sandbox"] for row in rows.values()} == {"engaged" if os.geteuid() == 0 else "degraded"}


def test_dask_cluster_where_no_worker_passes_grades_nobody(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed", reason="the optional extra 'dask' is not installed")
    write(tmp_path / "subs" / "alice.py", REFERENCE)
    config = GradeConfig(mnist_dir=str(tmp_path / "nowhere"))
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp://",
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        with pytest.raises(batch.BatchError, match="no worker passed its preflight"):
            batch.grade_batch(batch.BatchOptions(tmp_path / "subs", tmp_path / "out", config=config,
                                                 dask=cluster.scheduler_address, progress=False),
                              log=lambda s: None)
    assert not (tmp_path / "out" / "grades.csv").exists()



def test_runs_stored_under_a_failed_environment_are_not_reused(tmp_path: Path, monkeypatch, capsys) -> None:
    """A gradebook written by an older grader kept 'graded' for a run without MNIST and
    'crashed' for an isolated run without report: both are graded again, not reused."""
    write(tmp_path / "subs" / "alice.py", REFERENCE)
    write(tmp_path / "subs" / "bob.py", I_BUG)
    rubric = write(tmp_path / "r.toml", TINY_RUBRIC)
    args = [str(tmp_path / "subs"), "--out", str(tmp_path / "out"), "--rubric", str(rubric), "--no-baseline",
            *TINY_ARGS[1:]]  # MNIST counts (no --no-require-mnist)
    monkeypatch.setattr(batch, "run_job", fake_runs({"alice": "graded", "bob": "graded"}))
    # The runs are faked, so the data is never read: the preflight is told it is present, so
    # this machine's own MNIST (absent on a fresh clone) does not decide the outcome.
    monkeypatch.setattr(preflight, "mnist_problem", lambda mnist_dir: None)
    assert cli.main(args) == 0
    with sqlite3.connect(tmp_path / "out" / "grades.sqlite") as db:
        report = json.loads(db.execute("SELECT report FROM runs WHERE name='alice'").fetchone()[0])
        report["tests"].append({**t("test_mnist.py::test_sgd_loop_learns_mnist", "failed", message=(
            "MNIST data not found (looked in x); the MNIST checks did NOT run: get the data")),
            "properties": {"environment": "mnist_unavailable"}})
        db.execute("UPDATE runs SET report=? WHERE name='alice'", (json.dumps(report),))
        db.execute("UPDATE runs SET status='crashed', report=NULL WHERE name='bob'")
    capsys.readouterr()
    assert cli.main(args) == 0
    assert "(2 run, 0 re-scored, 0 unchanged)" in capsys.readouterr().out
