"""What one grading job is: the settings a suite run takes (``GradeConfig``), its input
(``Job``: the submission's bytes), its result (``JobResult``), the statuses a result can have,
and the suite command and environment a job runs with. Plain data, shared by the preflight
(which runs the same command on the reference) and the runner."""

from __future__ import annotations

import hashlib
import json
import os
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from conformance.invocation import suite_command, suite_env
from conformance.isolation.process import PRIVATE_ENV

REPO_ROOT = Path(__file__).resolve().parents[3]
REFERENCE_MODULE = REPO_ROOT / "conformance" / "reference" / "mlp.py"


# Statuses a re-run keeps: each is the submission's own doing. Everything the grader or its
# environment caused (no space, no report, a worker or sandbox that could not start, missing
# MNIST, another suite version) is "error": not a grade, reported loudly, retried next run.
FINAL_STATUSES = ("graded", "import_error", "timeout", "crashed", "no_module", "invalid_submission",
                  "unsupported")
STATUS_HELP = {
    "graded": "the suite ran to the end",
    "import_error": "the module could not be imported or lacks forward/backward",
    "timeout": "the whole run exceeded the time limit and was killed",
    "crashed": "the suite's run ended abnormally because of the submission (e.g. it killed the "
               "in-process suite, or its report contradicts the run)",
    "no_module": "no module to judge was found in the submission",
    "invalid_submission": "the submission could not be read or was refused (size, archive safety, link)",
    "unsupported": "the entry is not a .py module, notebook, zip or folder (the row says why)",
    "error": "the grader or its environment failed, not the submission (no score; retried on "
             "the next run)",
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
    # "require": refuse to run candidates without namespaces and privilege drop (a degraded
    # sandbox is a grader error); "off": no namespaces, asked for explicitly (as root the worker
    # still drops to its own uid and must not reach the grader's files: conformance/SECURITY.md).
    sandbox: str = "require"
    # Interpreter of the suite runs; empty: the one running the job (on a Dask worker, the
    # worker's own, never a path sent by the client).
    python: str = ""
    # The instructor's declaration of the assignment's conventions (conformance/ADAPTERS.md), as
    # TOML text: data that travels to Dask workers as it is. "": the section's interface.
    declaration: str = ""

    def key(self) -> str:
        """Hash of the settings that can change a verdict (not the interpreter path)."""
        relevant = {"timeout": self.timeout, "isolate": self.isolate,
                    "profile": self.hypothesis_profile, "require_mnist": self.require_mnist,
                    "extra_args": list(self.extra_args), "call_timeout": self.call_timeout}
        if self.sandbox != "require":  # keeps the keys of runs stored before this setting existed
            relevant["sandbox"] = self.sandbox
        if self.declaration:  # likewise
            relevant["declaration"] = hashlib.sha256(self.declaration.encode()).hexdigest()
        return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Job:
    name: str
    sha256: str
    files: dict[str, bytes]
    module: str
    config: GradeConfig
    suite_version: str | None = None  # the suite the batch grades with; checked where the job runs


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
    sandbox: str = "unknown"  # engaged / degraded / off / unknown (see conformance/grade/run/preflight.py)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pytest_command(config: GradeConfig, module_path: Path, report: Path, junit: Path) -> list[str]:
    """The suite's hardened command (conformance.invocation: the submission is only ever
    ``--impl=PATH``, configuration and plugins are the suite's own); run it with
    ``cwd=SUITE_ROOT`` and ``child_env``."""
    extra = ["--conformance-report", str(report), f"--junitxml={junit}",
             "-q", "--no-header", "-o", "console_output_style=classic"]
    if config.isolate:
        extra.append("--isolate")
    if config.require_mnist:
        extra.append("--require-mnist")
    if config.hypothesis_profile:
        extra += ["--hypothesis-profile", config.hypothesis_profile]
    if config.mnist_dir:
        extra += ["--mnist-dir", str(Path(config.mnist_dir).resolve())]
    # Only the instructor's declaration counts: theirs, or "section", so a submission's own
    # CONFORMANCE literal is always ignored. Written beside the report (the grader's folder).
    from conformance.declaration import suite_args as declaration_args

    declared = None
    if config.declaration:
        declared = report.parent / "declaration.toml"
        declared.write_text(config.declaration, encoding="utf-8")
    extra += declaration_args(declared)
    return suite_command(module_path, [*extra, *config.extra_args], python=config.python)


SGD_SHARE = 0.4  # of the run's time limit, per MNIST training run (the reference needs < 1 s)


def child_env(config: GradeConfig, multi_file: bool = False) -> dict[str, str]:
    env = suite_env()  # no PYTEST_ADDOPTS/PYTEST_PLUGINS/PYTHONPATH/..., no plugin autoloading
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # never leave candidate bytecode behind
    env["PYTHONHASHSEED"] = "0"  # the same run on every machine
    # One BLAS thread per suite process: parallelism comes from -j (N processes on N cores would
    # otherwise oversubscribe the CPU), and the arithmetic no longer depends on the core count.
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")
    if config.mnist_dir:
        env["BACKPROP_MNIST_DIR"] = str(Path(config.mnist_dir).resolve())
    if config.isolate:
        env["BACKPROP_ISOLATE_SANDBOX"] = config.sandbox
        # Budgets of the isolated candidate (read by conformance.isolation from the pytest
        # process's environment). The session budget stays below the hard wall-clock limit, so a
        # submission that hangs in some calls still finishes its run with the checks it passed,
        # instead of being killed with nothing.
        if config.call_timeout:
            env["BACKPROP_ISOLATE_CALL_TIMEOUT"] = f"{config.call_timeout:g}"
        env.setdefault("BACKPROP_ISOLATE_SESSION_TIMEOUT", f"{max(5.0, 0.8 * config.timeout):g}")
        # Each MNIST training (the suite's loop, the candidate's train) gets 40% of the run, so
        # both fit in the session budget (80%): a loop too slow for the quick check (numerical
        # gradients: hours) fails the MNIST area, which runs last (conformance/hooks.py), and
        # the run still ends with its other checks judged instead of being killed.
        env.setdefault("BACKPROP_ISOLATE_SGD_TIMEOUT", f"{max(5.0, SGD_SHARE * config.timeout):g}")
    # The grader's files a worker without namespaces (--isolate-sandbox off as root) must be
    # unable to reach; it verifies that itself before the candidate runs (conformance/isolation).
    private = [p for p in os.environ.get(PRIVATE_ENV, "").split(os.pathsep) if p]
    if config.mnist_dir:
        private.append(str(Path(config.mnist_dir).resolve()))
    if private:
        env[PRIVATE_ENV] = os.pathsep.join(private)
    if multi_file:
        # A student folder may import its own helper modules: the isolated worker gets a copy of
        # the whole folder (which holds that student's files and nothing else).
        env["BACKPROP_ISOLATE_COPY_DIR"] = "1"
    return env
