"""Limits of the isolated worker and the pytest options that set them.

Each limit can be set by a pytest option (``--isolate-timeout`` ...) or, when the option is
not registered / not given, by an environment variable of the GRADER process
(``BACKPROP_ISOLATE_TIMEOUT`` ...; the worker never sees the grader's environment).
``conformance/plugin.py`` registers the options by calling ``add_isolation_options``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any

import pytest

# (field, option, type, default, help). Defaults are calibrated in SECURITY.md.
_OPTIONS: list[tuple[str, str, type, Any, str]] = [
    ("call_timeout", "--isolate-timeout", float, 60.0,
     "wall-clock seconds one call to the candidate may take (default 60)"),
    ("sgd_timeout", "--isolate-sgd-timeout", float, 300.0,
     "wall-clock seconds one MNIST training run may take (the suite's loop or the "
     "candidate's train; default 300)"),
    ("session_timeout", "--isolate-session-timeout", float, 1800.0,
     "wall-clock seconds the candidate may use over the whole session (default 1800)"),
    ("memory_mb", "--isolate-memory", int, 4096,
     "address-space limit of the worker in MiB (default 4096; one MNIST epoch peaks near 1 GiB)"),
    ("output_bytes", "--isolate-output", int, 1 << 20,
     "bytes of the candidate's stdout/stderr kept (the rest is dropped; default 1 MiB)"),
    ("max_result_mb", "--isolate-max-result", int, 64,
     "largest answer in MiB the grader reads from the worker, plus twice the size of the "
     "call's arguments (training calls, whose answer is parameters: this alone; default 64)"),
    ("scratch_mb", "--isolate-scratch", int, 64,
     "size in MiB of the worker's only writable directory, a private tmpfs when the sandbox is "
     "engaged (default 64; without namespaces only each file is limited, to the same size)"),
    ("max_arrays", "--isolate-max-arrays", int, 4096,
     "most arrays one answer of the worker may hold (default 4096)"),
    ("sandbox", "--isolate-sandbox", str, "auto",
     "auto: namespaces + privilege drop when root, else limits only; "
     "require: refuse to run without them; off: no namespaces (as root the worker still "
     "runs as its own uid, and refuses to run if that uid can reach the grader's files)"),
    ("copy_dir", "--isolate-copy-dir", bool, False,
     "copy the candidate's whole directory into the sandbox (multi-file submissions); "
     "default: only the candidate's file (or package)"),
]


# Where the grader makes each candidate's sandbox directory (bp-isolate-*): a directory the
# OUTER grader creates and removes (conformance/grade/run/runner.py), so the copies of student code are
# gone even when the suite's pytest is killed (timeout, Ctrl-C of the batch) and cannot
# clean up itself. Default: the temp directory.
SCRATCH_PARENT_ENV = "BACKPROP_ISOLATE_DIR"


def scratch_parent() -> str | None:
    """The directory to hold sandbox directories (created, private, if missing), or None."""
    value = os.environ.get(SCRATCH_PARENT_ENV)
    if not value:
        return None
    # 0711: a worker without namespaces (--isolate-sandbox off as root) runs as another uid and
    # must enter it to reach its own copy; it cannot list it (other runs' random names).
    os.makedirs(value, mode=0o711, exist_ok=True)
    return value


@dataclass(frozen=True)
class Limits:
    call_timeout: float = 60.0
    sgd_timeout: float = 300.0
    session_timeout: float = 1800.0
    memory_mb: int = 4096
    output_bytes: int = 1 << 20
    max_result_mb: int = 64
    scratch_mb: int = 64
    max_arrays: int = 4096
    sandbox: str = "auto"
    copy_dir: bool = False

    @classmethod
    def from_config(cls, config: pytest.Config | None) -> "Limits":
        values: dict[str, Any] = {}
        for name, option, kind, default, _ in _OPTIONS:
            value = None
            if config is not None:
                try:
                    value = config.getoption(name_of(option))
                except ValueError:  # option not registered
                    value = None
                if value is False and kind is bool:
                    value = None
            if value is None:
                env = os.environ.get("BACKPROP_ISOLATE_" + name.upper())
                if env is not None:
                    value = env.strip().lower() in ("1", "true", "yes") if kind is bool else kind(env)
            values[name] = default if value is None else value
        limits = cls(**values)
        limits.validate()
        return limits

    def validate(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value <= 0:
                raise pytest.UsageError(f"isolation limit {f.name} must be positive, got {value}")
        if self.sandbox not in ("auto", "require", "off"):
            raise pytest.UsageError(f"--isolate-sandbox must be auto, require or off, not {self.sandbox!r}")


def name_of(option: str) -> str:
    return option.lstrip("-").replace("-", "_")


def add_isolation_options(parser: pytest.Parser) -> None:
    """Register the --isolate-* limit options (call from the suite's pytest_addoption)."""
    group = parser.getgroup("conformance", "backprop conformance suite")
    for _, option, kind, default, help_text in _OPTIONS:
        if kind is bool:
            group.addoption(option, action="store_true", default=None, help=help_text)
        else:
            group.addoption(option, type=kind, default=None, metavar=kind.__name__.upper(),
                            help=help_text)
