"""Is this machine fit to grade? Checked where the jobs run, before any submission's run counts.

Every executor checks itself: the batch's own machine (before the reference baseline), each
Dask worker (before it takes a job; a worker that fails takes none) and the Gradescope
container (before the student's run). A failed check is the grader's problem, never a
student's score: the caller reports it loudly and nothing is graded with it.

What is checked (``check_environment``):
- the suite version of this checkout is the one the batch grades with (a Dask worker with
  another checkout, or files edited during a batch, would give verdicts of another suite);
- the MNIST files are present and intact (their published MD5s) when the MNIST checks count
  (``require_mnist``): without them every correct student would lose the MNIST points;
- free space in the temp directory, where every run writes its submission, report and log;
- the sandbox, by starting a real isolated worker on the reference module with the
  environment the suite runs get (``--probe-sandbox`` in a child process). Its state is
  ``engaged`` (namespaces and privilege drop), ``degraded`` (resource limits only) or ``off``
  (asked for with ``--isolate-sandbox off``, or no isolation at all). ``degraded`` is refused
  unless the grader was told ``--isolate-sandbox off`` explicitly.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


from conformance.grade.run.jobs import REFERENCE_MODULE, REPO_ROOT, child_env

# A run writes the submission (capped by intake), a report (<= 32 MiB, runner.REPORT_MAX_BYTES),
# a JUnit file (<= 8 MiB) and a log; 128 MiB leaves room for two parallel runs of the largest.
MIN_FREE_BYTES = 128 * 1024 * 1024
PROBE_TIMEOUT = 120.0  # starting one worker takes about a second; generous for a loaded machine


@dataclass
class Preflight:
    """The verdict on one machine's environment (plain data: it travels back from Dask workers)."""

    host: str = field(default_factory=socket.gethostname)
    python: str = sys.executable
    checkout: str = ""
    suite_version: str = ""
    sandbox: str = "unknown"
    sandbox_detail: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def explain(self) -> str:
        where = f"{self.host} ({self.python}, project files in {self.checkout})"  # a clone or site-packages
        if self.ok:
            return f"environment of {where} ready; sandbox {self.sandbox}"
        return f"environment of {where} is not fit to grade:\n" + "\n".join(f"  - {p}" for p in self.problems)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def mnist_problem(mnist_dir: str | None) -> str | None:
    """Why the MNIST checks could not run here (None when the four files are present and intact)."""
    from conformance.reference.mnist import DIR_ENV, FETCH_MNIST, FILES, cache_dir, find_mnist_dir

    directory = find_mnist_dir(mnist_dir)
    if directory is None:
        where = (mnist_dir or (f"${DIR_ENV}={os.environ[DIR_ENV]}" if os.environ.get(DIR_ENV)
                               else f"the user cache {cache_dir()}"))
        return (f"MNIST data not found in {where}: every submission would lose the MNIST points. "
                f"Get it with {FETCH_MNIST} or pass --mnist-dir DIR")
    for spec in FILES.values():
        gz, raw = directory / (spec.name + ".gz"), directory / spec.name
        path = gz if gz.is_file() else raw
        try:
            # Accepted like conformance.reference.mnist accepts it: the published .gz MD5, or (re-compressed
            # copies) the MD5 of the decompressed IDX bytes.
            if path is gz and _md5(path) == spec.gz_md5:
                continue
            digest = _md5(path, decompress=path is gz)
        except (OSError, EOFError, zlib.error) as exc:
            return f"MNIST file {path} cannot be read: {exc}"
        if digest != spec.raw_md5:
            return (f"MNIST file {path} is damaged: MD5 of its IDX bytes is {digest}, but should be "
                    f"{spec.raw_md5}")
    return None


_MD5_CACHE: dict[tuple[str, int, int, bool], str] = {}


def _md5(path: Path, decompress: bool = False) -> str:
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns, decompress)
    if key not in _MD5_CACHE:
        digest = hashlib.md5(usedforsecurity=False)
        with (gzip.open if decompress else open)(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _MD5_CACHE[key] = digest.hexdigest()
    return _MD5_CACHE[key]


# Optional libraries whose absence only makes the outputs poorer, never a verdict different
# (nbformat, which reading a notebook needs, is a grader error instead: conformance/grade/intake/notebooks.py).
DEGRADING_EXTRAS = {"matplotlib": "the report pages have no plots", "tqdm": "no progress bar"}


def missing_extras() -> list[str]:
    """One notice per missing library of ``DEGRADING_EXTRAS`` (for the log, before grading)."""
    from conformance.grade.intake.notebooks import GRADE_EXTRA

    notices = []
    for module, effect in DEGRADING_EXTRAS.items():
        try:
            importlib.import_module(module)
        except ImportError:
            notices.append(f"note: {module} is not installed, so {effect} ({GRADE_EXTRA})")
    return notices


def disk_problem(directory: str | None = None) -> str | None:
    """Why runs could not write their files here (None when there is room)."""
    directory = directory or tempfile.gettempdir()
    try:
        free = shutil.disk_usage(directory).free
    except OSError as exc:
        return f"temp directory {directory} is unusable: {exc.strerror or exc}"
    if free < MIN_FREE_BYTES:
        return (f"only {free // (1024 * 1024)} MiB free in the temp directory {directory} "
                f"(at least {MIN_FREE_BYTES // (1024 * 1024)} MiB needed); free space or set TMPDIR")
    return None


def probe_sandbox(config: Any) -> tuple[str, str]:
    """(state, detail) of the sandbox a suite run with ``config`` gets on this machine.

    Starts a real isolated worker on the reference module in a child process with the same
    environment as the suite's runs (so the same ``--isolate-sandbox`` mode and limits).
    Raises ``RuntimeError`` with the reason when no worker can be started at all.
    """
    if not config.isolate:
        return "off", "candidates run inside the suite's process (--no-isolate)"
    try:
        proc = subprocess.run([sys.executable, "-m", "conformance.grade.run.preflight", "--probe-sandbox"],
                              cwd=REPO_ROOT, env=child_env(config), stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=PROBE_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"the sandbox probe could not run: {exc}") from None
    lines = proc.stdout.decode("utf-8", "replace").strip().splitlines()
    try:
        answer = json.loads(lines[-1])
    except (IndexError, ValueError):
        tail = (proc.stdout + proc.stderr).decode("utf-8", "replace")[-2000:]
        raise RuntimeError(f"the sandbox probe failed (exit {proc.returncode}):\n{tail}") from None
    if answer.get("error"):
        raise RuntimeError(f"no isolated worker could be started: {answer['error']}")
    return str(answer["state"]), str(answer.get("detail", ""))


def _probe_here() -> dict[str, Any]:
    """Child side of ``probe_sandbox``: start a worker on the reference, say what it got."""
    from conformance.isolation.candidate import IsolatedCandidate

    cand = IsolatedCandidate.load(str(REFERENCE_MODULE))
    try:
        if cand.load_error:
            return {"error": cand.load_error}
        active = cand.sandbox.get("active", {}) or {}
        detail = cand.describe()
        if cand.limits.sandbox == "off":
            return {"state": "off", "detail": detail}
        engaged = bool(active.get("namespaces")) and bool(cand.sandbox.get("drop"))
        return {"state": "engaged" if engaged else "degraded", "detail": detail}
    finally:
        cand.close()


def check_environment(config: Any, expected_suite: str | None = None, *, sandbox: bool = True) -> Preflight:
    """Every check of the module docstring, on this machine, for runs with ``config``."""
    from conformance.report import suite_version

    result = Preflight(checkout=str(REPO_ROOT), suite_version=suite_version())
    if expected_suite and result.suite_version != expected_suite:
        result.problems.append(f"the project files in {REPO_ROOT} hold suite version {result.suite_version}, "
                               f"but the batch grades with {expected_suite}: install the same "
                               "release or commit everywhere the jobs run")
    if config.require_mnist:
        problem = mnist_problem(config.mnist_dir)
        if problem:
            result.problems.append(problem)
    problem = disk_problem()
    if problem:
        result.problems.append(problem)
    if sandbox:
        try:
            result.sandbox, result.sandbox_detail = probe_sandbox(config)
        except RuntimeError as exc:
            result.sandbox = "unknown"
            result.problems.append(f"sandbox: {exc}")
        else:
            problem = sandbox_problem(result.sandbox, config, result.sandbox_detail)
            if problem:
                result.problems.append(problem)
    return result


def sandbox_problem(state: str, config: Any, detail: str = "") -> str | None:
    """Why runs in this sandbox state must not be graded (None when they may)."""
    if config.isolate and config.sandbox == "off" and os.geteuid() != 0:
        return ("--isolate-sandbox off needs the grader to run as root: only root can run the worker "
                "as its own unprivileged uid, so that it cannot read the grader's files (the project's "
                "reference, rubric, data) or write where results go, and so that every process of "
                "the run can be killed and verified gone (conformance/SECURITY.md)")
    if state == "degraded" and config.isolate and config.sandbox != "off":
        return (f"the sandbox is degraded ({detail or 'resource limits only'}): grade as root on Linux "
                "with namespaces available, or accept limits only with --isolate-sandbox off")
    return None


# One verdict per process and settings: a batch or a Dask worker checks itself once.
_CACHE: dict[tuple[str, str | None, str | None], Preflight] = {}
_CACHE_LOCK = threading.Lock()


def ensure_environment(config: Any, expected_suite: str | None = None) -> Preflight:
    """``check_environment``, once per process and settings (the disk is re-checked each call:
    it fills up during a batch)."""
    key = (config.key(), config.mnist_dir, expected_suite)
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
        if cached is None:
            cached = _CACHE[key] = check_environment(config, expected_suite)
    problem = disk_problem()
    if problem and cached.ok:
        return Preflight(host=cached.host, python=cached.python, checkout=cached.checkout,
                         suite_version=cached.suite_version, sandbox=cached.sandbox,
                         sandbox_detail=cached.sandbox_detail, problems=[problem])
    return cached


def forget() -> None:
    """Drop the cached verdicts (tests; a grader that fixed its environment)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def worker_preflight(config: Any, expected_suite: str | None) -> dict[str, Any]:
    """Run on each Dask worker (``client.run``): its own verdict, as plain data."""
    return ensure_environment(config, expected_suite).to_dict()


if __name__ == "__main__":
    if sys.argv[1:] == ["--probe-sandbox"]:
        try:
            print(json.dumps(_probe_here()))
        except Exception as exc:  # noqa: BLE001 - the parent reports it as the probe's failure
            print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        sys.exit(0)
    sys.exit("usage: python -m conformance.grade.run.preflight --probe-sandbox")
