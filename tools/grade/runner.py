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

import hashlib
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

REPO_ROOT = Path(__file__).resolve().parents[2]
REFERENCE_MODULE = REPO_ROOT / "reference" / "mlp.py"

REPORT_MAX_BYTES = 32 * 1024 * 1024
JUNIT_MAX_BYTES = 8 * 1024 * 1024
OUTPUT_TAIL_BYTES = 16 * 1024
OUTCOMES = ("passed", "failed", "skipped", "error")
# Statuses a re-run keeps; "error" means the grader failed (not the submission) and is retried.
FINAL_STATUSES = ("graded", "import_error", "timeout", "crashed", "no_module", "invalid_submission")
STATUS_HELP = {
    "graded": "the suite ran to the end",
    "import_error": "the module could not be imported or lacks forward/backward",
    "timeout": "the whole run exceeded the time limit and was killed",
    "crashed": "the suite's run ended without a valid report",
    "no_module": "no module to judge was found in the submission",
    "invalid_submission": "the submission could not be read (size, file type)",
    "error": "the grader itself failed on this submission (retried on the next run)",
}


@dataclass(frozen=True)
class GradeConfig:
    """How the suite is run; part of what makes a stored run reusable (``key``)."""

    timeout: float = 300.0  # wall-clock seconds for one submission's whole pytest run
    isolate: bool = True
    hypothesis_profile: str | None = "grading"
    require_mnist: bool = True
    mnist_dir: str | None = None
    extra_args: tuple[str, ...] = ()
    call_timeout: float | None = None  # per call to the candidate (None: the isolation's default)
    python: str = sys.executable

    def key(self) -> str:
        """Hash of the settings that can change a verdict (not the interpreter path)."""
        relevant = {"timeout": self.timeout, "isolate": self.isolate,
                    "profile": self.hypothesis_profile, "require_mnist": self.require_mnist,
                    "extra_args": list(self.extra_args), "call_timeout": self.call_timeout}
        return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Job:
    name: str
    sha256: str
    files: dict[str, bytes]
    module: str
    config: GradeConfig


@dataclass
class JobResult:
    name: str
    sha256: str
    status: str
    message: str = ""
    report: dict[str, Any] | None = None
    junit_xml: str | None = None
    exit_code: int | None = None
    duration: float = 0.0
    output_tail: str = ""
    host: str = field(default_factory=socket.gethostname)
    started_at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ReportError(Exception):
    """The report file is missing, too large or not what the suite writes."""


def pytest_command(config: GradeConfig, module_path: Path, report: Path, junit: Path) -> list[str]:
    cmd = [config.python, "-m", "pytest", "conformance", "--impl", str(module_path),
           "--conformance-report", str(report), f"--junitxml={junit}",
           "-p", "no:cacheprovider", "-q", "--no-header", "-o", "console_output_style=classic"]
    if config.isolate:
        cmd.append("--isolate")
    if config.require_mnist:
        cmd.append("--require-mnist")
    if config.hypothesis_profile:
        cmd += ["--hypothesis-profile", config.hypothesis_profile]
    if config.mnist_dir:
        cmd += ["--mnist-dir", config.mnist_dir]
    return cmd + list(config.extra_args)


def _child_env(config: GradeConfig, multi_file: bool = False) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("BACKPROP_IMPL", "PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTHONPATH",
                        "PYTHONSTARTUP", "PYTHONINSPECT")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # never leave candidate bytecode behind
    env["PYTHONHASHSEED"] = "0"  # the same run on every machine
    # One BLAS thread per suite process: parallelism comes from -j (N processes on N cores would
    # otherwise oversubscribe the CPU), and the arithmetic no longer depends on the core count.
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")
    if config.mnist_dir:
        env["BACKPROP_MNIST_DIR"] = config.mnist_dir
    if config.isolate:
        # Budgets of the isolated candidate (read by conformance.isolation from the pytest
        # process's environment). The session budget stays below the hard wall-clock limit, so a
        # submission that hangs in some calls still finishes its run with the checks it passed,
        # instead of being killed with nothing.
        if config.call_timeout:
            env["BACKPROP_ISOLATE_CALL_TIMEOUT"] = f"{config.call_timeout:g}"
        env.setdefault("BACKPROP_ISOLATE_SESSION_TIMEOUT", f"{max(5.0, 0.8 * config.timeout):g}")
    if multi_file:
        # A student folder may import its own helper modules: the isolated worker gets a copy of
        # the whole folder (which holds that student's files and nothing else).
        env["BACKPROP_ISOLATE_COPY_DIR"] = "1"
    return env


# Live suite processes, so an interrupted grader can take them down (they run in their
# own sessions, out of reach of the terminal's Ctrl-C).
_LIVE: set[subprocess.Popen] = set()
_LIVE_LOCK = threading.Lock()


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


def _require(cond: bool, what: str) -> None:
    if not cond:
        raise ReportError(f"invalid report: {what}")


def _text(value: Any, limit: int = 20000) -> str:
    return value[:limit] if isinstance(value, str) else ""


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
        "exitstatus": exitstatus,
        "candidate": {"module": _text(cand.get("module"), 200), "sha256": _text(cand.get("sha256"), 64),
                      "isolated": cand.get("isolated") is True,
                      "load_error": load_error if isinstance(load_error, str) else None},
        "tests": clean_tests,
        "collect_errors": [{"nodeid": _text(e.get("nodeid"), 500), "message": _text(e.get("message"))}
                           for e in collect_errors if isinstance(e, dict)],
    }


def classify(report: dict[str, Any], exit_code: int, job: Job) -> tuple[str, str]:
    """Status and explanation for a run that produced a valid report."""
    cand = report["candidate"]
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
        return "crashed", f"pytest ended with exit status {exit_code}"
    if not report["tests"]:
        return "error", "the suite ran no test"
    return "graded", ""


def run_job(job: Job) -> JobResult:
    """Grade one submission: write it to a private temp dir, run the suite with a hard
    wall-clock limit on the whole process group, read back the report."""
    started = time.time()
    result = JobResult(name=job.name, sha256=job.sha256, status="error", started_at=started)
    workdir = Path(tempfile.mkdtemp(prefix="grade-"))  # 0700: private to the grader's user
    try:
        sub_dir = workdir / "submission"
        out_dir = workdir / "out"
        out_dir.mkdir(mode=0o700)
        for rel, data in job.files.items():
            target = (sub_dir / rel).resolve()
            if sub_dir.resolve() not in target.parents:
                raise ValueError(f"refusing file path {rel!r}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        report_path, junit_path = out_dir / "report.json", out_dir / "junit.xml"
        log_path = out_dir / "pytest.log"
        cmd = pytest_command(job.config, sub_dir / job.module, report_path, junit_path)
        env = _child_env(job.config, len(job.files) > 1)
        # The isolated candidate's sandbox copies live in workdir, removed below even when
        # pytest is killed (timeout, Ctrl-C) and cannot clean up itself.
        env["BACKPROP_ISOLATE_DIR"] = str(workdir / "isolate")
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env,
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            with _LIVE_LOCK:
                _LIVE.add(proc)
            try:
                exit_code = proc.wait(timeout=job.config.timeout)
                timed_out = False
            except subprocess.TimeoutExpired:
                _kill_tree(proc)  # before the wait: the tree is only findable while pytest lives
                exit_code = proc.wait()
                timed_out = True
            finally:
                _kill_tree(proc)  # stragglers of a finished run's group go too
                with _LIVE_LOCK:
                    _LIVE.discard(proc)
        result.exit_code = exit_code
        result.output_tail = _tail(log_path)
        if timed_out:
            result.status = "timeout"
            result.message = (f"the suite did not finish within {job.config.timeout:g} s and was "
                              "killed; the submission probably hangs or is very slow")
            return result
        try:
            report = read_report(report_path)
        except ReportError as exc:
            result.status = "error" if exit_code == 4 else "crashed"
            how = (f"killed by signal {signal.Signals(-exit_code).name}" if exit_code < 0
                   else f"exit status {exit_code}")
            result.message = f"{exc} (pytest {how}); last output:\n{result.output_tail[-3000:]}"
            return result
        result.report = report
        result.status, result.message = classify(report, exit_code, job)
        if junit_path.is_file() and junit_path.stat().st_size <= JUNIT_MAX_BYTES:
            result.junit_xml = junit_path.read_text(encoding="utf-8", errors="replace")
        return result
    except Exception as exc:  # noqa: BLE001 - the grader's own failure: status "error", retried
        result.status = "error"
        result.message = f"grader error: {type(exc).__name__}: {exc}"
        return result
    finally:
        result.duration = time.time() - started
        shutil.rmtree(workdir, ignore_errors=True)


def reference_job(config: GradeConfig) -> Job:
    """The reference implementation as a job: the baseline every rubric must give full marks."""
    data = REFERENCE_MODULE.read_bytes()
    return Job(name="(reference)", sha256=hashlib.sha256(data).hexdigest(),
               files={"mlp.py": data}, module="mlp.py", config=config)
