"""Run the conformance suite on one submission, as a subprocess, and classify what happened.

``run_job`` is the unit of work for every executor (the local pool and Dask workers): it
takes a plain-data ``Job`` (the submission's bytes, not a path, so a remote worker needs
nothing but this repository) and returns a plain-data ``JobResult``. It never raises for
anything a submission does.

Trust: the only output believed is the JSON report written by the suite's pytest process
into a fresh private directory (mode 0700) that the isolated worker, running as another
user, cannot reach and is never told about. The report is still parsed defensively (size
cap, schema and type checks) and must describe the submission that was sent.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from conformance.invocation import SUITE_ROOT
from conformance.isolation.process import PRIVATE_ENV, SEED_ENV, UID_ENV, fresh_uid, kill_uid
from conformance.report import MEASUREMENT_PROPERTIES
from conformance.grade.run.jobs import (REFERENCE_MODULE, REPO_ROOT, GradeConfig, Job, JobResult, child_env,
                                       pytest_command)

SANDBOX_STATES = ("engaged", "degraded", "off")
REPORT_MAX_BYTES = 32 * 1024 * 1024
JUNIT_MAX_BYTES = 8 * 1024 * 1024
OUTPUT_TAIL_BYTES = 16 * 1024
OUTCOMES = ("passed", "failed", "skipped", "error")
# Live suite processes, so an interrupted grader can take them down (they run in their
# own sessions, out of reach of the terminal's Ctrl-C).
_LIVE: set[subprocess.Popen] = set()
_LIVE_LOCK = threading.Lock()


class ReportError(Exception):
    """The report file is missing, too large or not what the suite writes."""


def _descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (Linux /proc; empty elsewhere). The isolated worker
    runs in its own session, out of reach of a kill of the suite's process group."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read().decode("ascii", "replace")
            ppid = int(stat.rsplit(")", 1)[1].split()[1])  # "pid (comm) state ppid ..."
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _signal(kill: Callable[[int, int], None], target: int) -> None:
    try:
        kill(target, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, OSError):
        pass


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the suite's process group and every process below it (their groups too)."""
    for _ in range(2):  # a second sweep catches anything started during the first
        stray = _descendants(proc.pid) if proc.poll() is None else []
        _signal(os.killpg, proc.pid)
        for pid in stray:
            _signal(os.killpg, pid)  # a session leader's group (the worker's)
            _signal(os.kill, pid)


def kill_all_live() -> None:
    """Kill every running suite process tree (used on SIGINT/SIGTERM of the grader)."""
    with _LIVE_LOCK:
        procs = list(_LIVE)
    for proc in procs:
        _kill_tree(proc)


def _tail(path: Path, limit: int = OUTPUT_TAIL_BYTES) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - limit))
            data = handle.read()
    except OSError:
        return ""
    text = data.decode("utf-8", "replace")
    return ("[... output cut ...]\n" + text) if size > limit else text


def _require(cond: object, what: str) -> None:  # (any value: its truth is the test)
    if not cond:
        raise ReportError(f"invalid report: {what}")


def _text(value: Any, limit: int = 20000) -> str:
    return value[:limit] if isinstance(value, str) else ""


def sandbox_state(value: Any) -> str:
    """The run's sandbox state from the report's top-level ``"sandbox"`` field, read
    defensively: a known state as a string or as ``{"state": ...}``; anything else (absent,
    an older suite, garbage) is ``"unknown"``."""
    if isinstance(value, dict):
        value = value.get("state")
    if isinstance(value, str) and value.strip().lower() in SANDBOX_STATES:
        return value.strip().lower()
    return "unknown"


def read_report(path: Path) -> dict[str, Any]:
    """Parse and validate the suite's JSON report; return a normalised copy that holds
    only known fields of known types (nothing else from the file is kept)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ReportError("the suite wrote no report") from None
    _require(size <= REPORT_MAX_BYTES, f"{size} bytes (limit {REPORT_MAX_BYTES})")
    try:
        data = json.loads(path.read_bytes())
    except (ValueError, RecursionError) as exc:
        raise ReportError(f"invalid report: not JSON ({exc})") from None
    _require(isinstance(data, dict), "not a JSON object")
    _require(data.get("schema") == "backprop-conformance-report/1", "unknown schema")
    cand = data.get("candidate")
    _require(isinstance(cand, dict), "no candidate section")
    tests = data.get("tests")
    _require(isinstance(tests, list), "no test list")
    clean_tests = []
    seen = set()
    for i, t in enumerate(tests):
        _require(isinstance(t, dict), f"tests[{i}] is not an object")
        nodeid, area, outcome = t.get("nodeid"), t.get("area"), t.get("outcome")
        _require(isinstance(nodeid, str) and nodeid and nodeid not in seen, f"tests[{i}].nodeid")
        _require(isinstance(area, str) and area, f"tests[{i}].area")
        _require(outcome in OUTCOMES, f"tests[{i}].outcome = {outcome!r}")
        duration = t.get("duration", 0.0)
        _require(isinstance(duration, (int, float)) and not isinstance(duration, bool)
                 and math.isfinite(duration), f"tests[{i}].duration")
        props = t.get("properties", {})
        seen.add(nodeid)
        clean_tests.append({
            "nodeid": nodeid, "area": area, "outcome": outcome, "duration": float(duration),
            "message": _text(t.get("message")), "summary": _text(t.get("summary")),
            "skip_reason": _text(t.get("skip_reason")),
            "properties": props if isinstance(props, dict) else {},
        })
    exitstatus = data.get("exitstatus")
    _require(isinstance(exitstatus, int) and not isinstance(exitstatus, bool), "exitstatus")
    load_error = cand.get("load_error")
    collect_errors = data.get("collect_errors") or []
    _require(isinstance(collect_errors, list), "collect_errors")
    return {
        "suite_version": _text(data.get("suite_version"), 64),
        "sandbox": sandbox_state(data.get("sandbox")),
        "exitstatus": exitstatus,
        "candidate": {"module": _text(cand.get("module"), 200), "sha256": _text(cand.get("sha256"), 64),
                      "isolated": cand.get("isolated") is True,
                      "load_error": load_error if isinstance(load_error, str) else None},
        "tests": clean_tests,
        "conventions": _conventions(data.get("conventions")),
        "collect_errors": [{"nodeid": _text(e.get("nodeid"), 500), "message": _text(e.get("message"))}
                           for e in collect_errors if isinstance(e, dict)],
    }


def _conventions(value: Any) -> dict[str, Any]:
    """The conventions the run judged with (conformance/declaration.py record), known fields only."""
    value = value if isinstance(value, dict) else {}
    texts = value.get("conventions") if isinstance(value.get("conventions"), list) else []
    limits = value.get("limits") if isinstance(value.get("limits"), dict) else {}
    notes = value.get("notes") if isinstance(value.get("notes"), list) else []
    return {"source": _text(value.get("source"), 500), "trusted": value.get("trusted") is True,
            "conventions": [_text(t, 500) for t in texts[:64]],
            "limits": {_text(k, 64): _text(v, 1000) for k, v in list(limits.items())[:16]},
            "notes": [_text(n, 1000) for n in notes[:8]]}


# The grader's own folders, longest first, as they appear in text: with a separator after.
_GRADER_FOLDERS = tuple(sorted({str(path) for root in (REPO_ROOT, Path(SUITE_ROOT))
                                for path in (root, root.resolve())}, key=len, reverse=True))
_GRADER_PREFIXES = tuple(f"{folder}{os.sep}" for folder in _GRADER_FOLDERS)

# "<function f at 0x7f3a9c1d2e80>" (or "&gt;" in XML)
_ADDRESS = re.compile(r"\bat 0x[0-9a-fA-F]{4,16}(?=>|&gt;)")


def run_independent(value: Any, workdir: Path) -> Any:
    """``value`` (text, or lists and dicts of it) without what only this run has: the run's
    private temp folder is left out of every path (``/tmp/grade-x1y2/submission/frank.py``
    becomes ``submission/frank.py``) and memory addresses in reprs (pytest shows a failed
    test's arguments) are masked. Students and the class files see no grader path, and two
    runs of the same bytes give the same text."""
    if isinstance(value, str):
        # The run's folder first, then the grader's checkout (a submission can learn it, e.g.
        # from the worker's argv0, and print it into its own messages).
        for prefix in (f"{workdir}{os.sep}", f"{workdir.resolve()}{os.sep}", *_GRADER_PREFIXES):
            value = value.replace(prefix, "")
        for folder in _GRADER_FOLDERS:  # the checkout named on its own
            value = value.replace(folder, "<grader>")
        return _ADDRESS.sub("at 0x...", value)
    if isinstance(value, list):
        return [run_independent(v, workdir) for v in value]
    if isinstance(value, dict):
        return {k: run_independent(v, workdir) for k, v in value.items()}
    return value


# What differs between two pytest JUnit files of the same bytes: when, where and how long
# the run took, hypothesis' timing statistics and the suite's measurements.
JUNIT_RUN_ATTRIBUTES = ("timestamp", "hostname", "time")
JUNIT_RUN_PROPERTIES = ("hypothesis-statistics-", *MEASUREMENT_PROPERTIES)


def deterministic_junit(xml: str) -> str:
    """pytest's JUnit XML without what varies between runs (``JUNIT_RUN_ATTRIBUTES``,
    ``JUNIT_RUN_PROPERTIES``); the timings stay in the gradebook. Unparseable XML is kept as
    it is. (pytest writes the file; the candidate's text in it is escaped, and no DTD.)"""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return xml
    for parent in root.iter():
        for attribute in JUNIT_RUN_ATTRIBUTES:
            parent.attrib.pop(attribute, None)
        for child in list(parent):
            if child.tag == "property" and child.get("name", "").startswith(JUNIT_RUN_PROPERTIES):
                parent.remove(child)
        for child in list(parent):
            if child.tag == "properties" and not len(child):
                parent.remove(child)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


# The "environment" property conformance/test_mnist.py sets on an MNIST check without usable data.
MNIST_UNAVAILABLE = "mnist_unavailable"
LOW_DISK_BYTES = 64 * 2**20  # below this much free space a report may not have been writable


def _disk_nearly_full(path: Path) -> bool:
    try:
        return shutil.disk_usage(path).free < LOW_DISK_BYTES
    except OSError:
        return False


def environment_failure(report: dict[str, Any], job: Job) -> str | None:
    """Why a run's verdict reflects the grader's environment rather than the submission
    (None when it is the submission's own). Only evidence the candidate cannot write is used:
    text the candidate controls (its exceptions, its output) could otherwise turn its own
    failures into endless retries."""
    expected = job.suite_version
    ran_with = report.get("suite_version")
    if expected and ran_with and ran_with != expected:
        return (f"the suite that ran ({ran_with}) is not the one this batch grades with "
                f"({expected}): the checkout changed during the batch or differs on this machine")
    # (A worker that cannot be set up, or a copy that runs out of disk, never becomes a load
    # error: the isolation raises GraderEnvironmentError, typed where it happens, and the run
    # ends as a grader error without a report. Nothing here reads the load error's text.)
    sandbox = report.get("sandbox", "unknown")
    if job.config.isolate and job.config.sandbox != "off" and sandbox == "degraded":
        return "the run's sandbox was degraded (resource limits only) and --isolate-sandbox off was not given"
    if job.config.require_mnist:
        for t in report["tests"]:
            # Typed by the suite's MNIST fixture (conformance/test_mnist.py), never read from text.
            if t["outcome"] != "passed" and (t.get("properties") or {}).get("environment") == MNIST_UNAVAILABLE:
                text = (t["message"] or t["skip_reason"]).strip().removeprefix("Failed: ")
                return f"MNIST data unavailable on this machine: {text.splitlines()[0][:500] if text else ''}"
    return None


def classify(report: dict[str, Any], exit_code: int, job: Job) -> tuple[str, str]:
    """Status and explanation for a run that produced a valid report. Only the submission's
    own behaviour ends in a final status; an environment failure is ``error``."""
    cand = report["candidate"]
    why = environment_failure(report, job)
    if why:
        return "error", f"grader error (not the submission's): {why}"
    if len(job.files) == 1 and cand["sha256"] and cand["sha256"] != job.sha256:
        return "crashed", "the report describes another file than the submission (sha256 differs)"
    if report["exitstatus"] != exit_code:
        return "crashed", (f"pytest exited with {exit_code} but its report says {report['exitstatus']}: "
                           "the run was tampered with or ended abnormally")
    if cand["load_error"]:
        return "import_error", cand["load_error"]
    if report["collect_errors"]:
        first = report["collect_errors"][0]
        return "error", f"the suite failed to collect {first['nodeid']}:\n{first['message']}"
    if exit_code not in (0, 1):
        if job.config.isolate:  # the candidate cannot end the suite's process from its worker
            return "error", f"grader error (not the submission's): pytest ended with exit status {exit_code}"
        return "crashed", f"pytest ended with exit status {exit_code}"
    if not report["tests"]:
        return "error", "the suite ran no test"
    return "graded", ""


def run_job(job: Job) -> JobResult:
    """Grade one submission: check this machine (once per process; see preflight.py), write
    the submission to a private temp dir, run the suite with a hard wall-clock limit on the
    whole process group, read back the report."""
    started = time.time()
    result = JobResult(name=job.name, sha256=job.sha256, status="error", started_at=started)
    if not job.config.python:  # this machine's interpreter, whoever built the job
        job = replace(job, config=replace(job.config, python=sys.executable))
    if not _environment_fit(job, result):
        return result
    workdir = Path(tempfile.mkdtemp(prefix="grade-"))
    # 0711: a worker without namespaces (another uid) must enter it to reach isolate/ (its own
    # copy, 0711 too); it can list nothing, and submission/ and out/ stay 0700, the grader's.
    workdir.chmod(0o711)
    # As root every worker of this run gets one dedicated uid: when the suite ends, every
    # process of that uid is the run's, and all are killed and verified gone before the report
    # is read (a daemon the candidate left cannot rewrite what the grader writes next).
    uid = fresh_uid() if job.config.isolate and os.geteuid() == 0 else None
    try:
        _run_in(workdir, job, uid, result)
        return result
    except Exception as exc:  # noqa: BLE001 - the grader's own failure: status "error", retried
        result.status = "error"
        result.message = f"grader error (not the submission's): {type(exc).__name__}: {exc}"
        return result
    finally:
        if uid is not None:  # also when the grader itself failed midway
            kill_uid(uid)
        result.duration = time.time() - started
        shutil.rmtree(workdir, ignore_errors=True)


def _environment_fit(job: Job, result: JobResult) -> bool:
    """The preflight of this machine; when it fails (or crashes), ``result`` says why."""
    from conformance.grade.run.preflight import ensure_environment

    try:
        env_check = ensure_environment(job.config, job.suite_version)
    except Exception as exc:  # noqa: BLE001 - a preflight that crashes is the grader's failure
        result.message = f"grader error (not the submission's): preflight failed: {type(exc).__name__}: {exc}"
        return False
    if not env_check.ok:
        result.message = f"grader error (not the submission's): {env_check.explain()}"
        result.sandbox = env_check.sandbox
        return False
    result.sandbox = env_check.sandbox
    return True


def _run_in(workdir: Path, job: Job, uid: int | None, result: JobResult) -> None:
    """Run the suite on the job's files in ``workdir`` and fill ``result`` with its verdict."""
    sub_dir, out_dir = _write_submission(workdir, job.files)
    report_path, junit_path = out_dir / "report.json", out_dir / "junit.xml"
    log_path = out_dir / "pytest.log"
    cmd = pytest_command(job.config, sub_dir / job.module, report_path, junit_path)
    env = _suite_env(job, workdir, sub_dir, out_dir, uid)
    exit_code, timed_out = _run_suite(cmd, env, log_path, job.config.timeout)
    survivors = kill_uid(uid) if uid is not None else []
    if survivors:  # nothing is judged while something of the submission may still act
        result.message = (f"grader error (not the submission's): processes of the run's worker "
                          f"uid {uid} survived SIGKILL (pids {survivors[:5]}); no verdict")
        return
    result.exit_code = exit_code
    result.output_tail = run_independent(_tail(log_path), workdir)
    if timed_out:
        result.status = "timeout"
        result.message = (f"the suite did not finish within {job.config.timeout:g} s and was "
                          "killed; the submission probably hangs or is very slow")
        return
    try:
        report = read_report(report_path)
    except ReportError as exc:
        _no_report(result, exc, exit_code, workdir, job)
        return
    _judge_report(result, report, exit_code, job, workdir, junit_path)


def _write_submission(workdir: Path, files: dict[str, bytes]) -> tuple[Path, Path]:
    """workdir/submission (the job's files) and workdir/out (the report), both 0700."""
    sub_dir = workdir / "submission"
    out_dir = workdir / "out"
    out_dir.mkdir(mode=0o700)
    sub_dir.mkdir(mode=0o700)
    for rel, data in files.items():
        target = (sub_dir / rel).resolve()
        if sub_dir.resolve() not in target.parents:
            raise ValueError(f"refusing file path {rel!r}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return sub_dir, out_dir


def _suite_env(job: Job, workdir: Path, sub_dir: Path, out_dir: Path, uid: int | None) -> dict[str, str]:
    """The suite process's environment for this run."""
    env = child_env(job.config, len(job.files) > 1)
    # The isolated candidate's sandbox copies live in workdir, removed below even when
    # pytest is killed (timeout, Ctrl-C) and cannot clean up itself.
    env["BACKPROP_ISOLATE_DIR"] = str(workdir / "isolate")
    env[SEED_ENV] = job.sha256  # same bytes, same draws (conformance/isolation/worker.py)
    env[PRIVATE_ENV] = os.pathsep.join([*filter(None, env.get(PRIVATE_ENV, "").split(os.pathsep)),
                                        str(sub_dir), str(out_dir)])
    if uid is not None:
        env[UID_ENV] = str(uid)
    return env


def _run_suite(cmd: list[str], env: dict[str, str], log_path: Path, timeout: float) -> tuple[int, bool]:
    """Run pytest in its own session, output to ``log_path``; (exit code, timed out). Its
    process tree is killed at the end either way."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=SUITE_ROOT, env=env,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        with _LIVE_LOCK:
            _LIVE.add(proc)
        try:
            exit_code = proc.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            _kill_tree(proc)  # before the wait: the tree is only findable while pytest lives
            exit_code = proc.wait()
            timed_out = True
        finally:
            _kill_tree(proc)  # stragglers of a finished run's group go too
            with _LIVE_LOCK:
                _LIVE.discard(proc)
    return exit_code, timed_out


def _no_report(result: JobResult, exc: ReportError, exit_code: int, workdir: Path, job: Job) -> None:
    """A run without a usable report: the grader's failure or the submission's crash."""
    # The suite's own process writes the report. With isolation, the candidate runs in
    # a separate worker and cannot stop that: no report means the grader's side failed
    # (disk full, killed, out of memory). In-process, the candidate can kill pytest.
    no_space = _disk_nearly_full(workdir)  # the machine's state, never the run's output text
    grader_side = job.config.isolate or exit_code in (3, 4) or no_space
    result.status = "error" if grader_side else "crashed"
    how = (f"killed by signal {signal.Signals(-exit_code).name}" if exit_code < 0
           else f"exit status {exit_code}")
    prefix = "grader error (not the submission's): " if grader_side else ""
    if no_space:
        prefix += "no space left on device; "
    result.message = f"{prefix}{exc} (pytest {how}); last output:\n{result.output_tail[-3000:]}"


def _judge_report(result: JobResult, report: dict[str, Any], exit_code: int, job: Job, workdir: Path,
                  junit_path: Path) -> None:
    """The verdict from a valid report, and the run's JUnit file when it is small enough."""
    result.report = report = run_independent(report, workdir)
    if report["sandbox"] != "unknown":
        result.sandbox = report["sandbox"]
    result.status, result.message = classify(report, exit_code, job)
    if junit_path.is_file() and junit_path.stat().st_size <= JUNIT_MAX_BYTES:
        result.junit_xml = deterministic_junit(
            run_independent(junit_path.read_text(encoding="utf-8", errors="replace"), workdir))


def reference_job(config: GradeConfig, suite_version: str | None = None) -> Job:
    """The reference implementation as a job: the baseline every rubric must give full marks."""
    data = REFERENCE_MODULE.read_bytes()
    # The reference has the section's interface, whatever the class declares.
    return Job(name="(reference)", sha256=hashlib.sha256(data).hexdigest(),
               files={"mlp.py": data}, module="mlp.py", config=dataclasses.replace(config, declaration=""),
               suite_version=suite_version)
