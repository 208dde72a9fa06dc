"""Running pytest in a subprocess, the two ways the self-tests need it.

- ``run_suite(impl, ...)``: the hardened command every verdict uses
  (``conformance.invocation.suite_command`` / ``suite_env``: the suite's own configuration,
  nothing read beside the candidate or from the environment), as ``backprop-conformance
  check``, the grader and the kill matrix run it. For tests about what a verdict says.
- ``run_pytest(...)``: plain ``python -m pytest`` in a folder (the clone by default), reading
  what pytest finds there. For tests about the plain spellings README documents
  (``pytest conformance --impl=X``, ``pytest --pyargs conformance``) and about the clone's
  own configuration.

Both close stdin, capture the output as text and never raise for a failing run: each test
asserts on the exit status and output it cares about.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from conformance.invocation import SUITE_ROOT, suite_command, suite_env

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TIMEOUT = 600.0  # seconds; a hung run fails its test instead of the whole session


def run_command(cmd: Sequence[str], *, cwd: Path = REPO_ROOT, env: Mapping[str, str] | None = None,
                timeout: float = DEFAULT_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """``cmd`` in ``cwd`` with stdin closed and the output captured (undecodable bytes, which
    hostile submissions print on purpose, replaced rather than raising)."""
    return subprocess.run(list(cmd), cwd=cwd, env=None if env is None else dict(env),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace",
                          timeout=timeout)


def run_pytest(*args: str, cwd: Path = REPO_ROOT, env: Mapping[str, str] | None = None,
               timeout: float = DEFAULT_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Plain ``python -m pytest -p no:cacheprovider ARGS`` in ``cwd`` (no cache written into the
    clone); ``env`` defaults to this process's environment."""
    return run_command([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=cwd,
                       env=env, timeout=timeout)


def run_suite(impl: Path | str, *args: str, env: Mapping[str, str] | None = None,
              timeout: float = DEFAULT_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """The suite on ``impl``, the hardened way every verdict is reached; ``env`` defaults to
    ``suite_env()`` (this environment minus what would inject code or options)."""
    return run_command(suite_command(impl, list(args)), cwd=SUITE_ROOT,
                       env=suite_env() if env is None else env, timeout=timeout)
