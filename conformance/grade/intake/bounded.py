"""The bounded child: hostile input (a notebook's JSON, code to normalise) is parsed in a
separate process that limits its own memory and CPU first, so a bomb costs that child, never
the grader. The caller names its own function (``"module:function"``, bytes in, plain data
out), so this module depends on no reader, and every failure comes back as one of intake's
typed errors: the input's own doing (``NotebookError``), the machine's
(``NotebookGraderError``), or a missing optional library (``MissingDependency``)."""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

from conformance.grade.intake.sanitize import clean_name

# A correct 32 MB notebook of plots needs ~250 MB.
CHILD_MEMORY = 768 * 1024 * 1024
CHILD_CPU_SECONDS = 30
CHILD_WALL_SECONDS = 180  # generous: a loaded machine is slow, and slowness is not the student's
INTAKE_PACKAGE = "conformance.grade.intake."  # the only functions the child runs


class NotebookError(ValueError):
    """The notebook cannot be graded; ``status`` is the row's status (its own doing)."""

    def __init__(self, message: str, status: str = "invalid_submission"):
        super().__init__(message)
        self.status = status


class NotebookGraderError(RuntimeError):
    """Reading the notebook failed for the grader's reasons (its child process could not run
    or was stopped by the machine): status ``error``, retried on the next run."""


class MissingDependency(RuntimeError):
    """The grader's environment lacks an optional library needed to read a submission: the
    grader's failure, never the submission's (status "error", not a grade)."""


_ROOT = Path(__file__).resolve().parents[3]  # holds the conformance package (a clone or site-packages)
_CHILD = ("import sys; sys.path.insert(0, sys.argv[1]); from conformance.grade.intake.bounded import "
          "_child_main; _child_main(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))")


def _limit_self(memory: int, cpu: int) -> None:
    import resource

    for which, value in ((resource.RLIMIT_AS, memory), (resource.RLIMIT_CPU, cpu),
                         (resource.RLIMIT_CORE, 0), (resource.RLIMIT_FSIZE, 0)):
        soft, hard = resource.getrlimit(which)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(which, (value, hard if which != resource.RLIMIT_CPU else value + 1))


def _function(target: str) -> Callable[[bytes], Any]:
    module, _, name = target.partition(":")
    if not module.startswith(INTAKE_PACKAGE) or not name.isidentifier():
        raise ValueError(f"not an intake function: {target!r}")
    return getattr(importlib.import_module(module), name)



def _child_main(target: str, memory: int, cpu: int) -> None:
    """The child: limits itself first, then reads the input from stdin and answers one JSON
    object on stdout (never raises: every failure is an answer)."""
    _limit_self(memory, cpu)
    data = sys.stdin.buffer.read()
    try:
        answer: dict = {"ok": _function(target)(data)}
    except NotebookError as exc:
        answer = {"refused": str(exc), "status": exc.status}
    except MissingDependency as exc:
        answer = {"missing": str(exc)}
    except MemoryError:
        answer = {"refused": f"reading it needs more than the grader's {memory >> 20} MB",
                  "status": "invalid_submission"}
    except RecursionError:
        answer = {"refused": "it is nested too deeply for the grader to read", "status": "invalid_submission"}
    except Exception as exc:  # noqa: BLE001 - any other failure is named, never a crash
        answer = {"refused": f"the grader could not read it ({type(exc).__name__}: {clean_name(exc, 200)})",
                  "status": "invalid_submission"}
    sys.stdout.write(json.dumps(answer))
    sys.stdout.flush()


def run_bounded(target: str, data: bytes, what: str) -> Any:
    """Run ``target`` ("package.module:function", a function of intake taking the input's
    bytes and returning plain data) on ``data`` in the bounded child; returns its answer. NotebookError: the input's own doing (memory, CPU, parser crash);
    NotebookGraderError: the machine's (no process, killed from outside, wall-clock timeout)."""
    try:
        proc = subprocess.run([sys.executable, "-I", "-c", _CHILD, str(_ROOT), target, str(CHILD_MEMORY),
                               str(CHILD_CPU_SECONDS)], input=data,
                              capture_output=True, timeout=CHILD_WALL_SECONDS, check=False,
                              env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"})
    except subprocess.TimeoutExpired:
        raise NotebookGraderError(f"reading {what} took more than {CHILD_WALL_SECONDS} s of wall-clock "
                                  "time without using its CPU limit (the machine is overloaded)") from None
    except OSError as exc:
        raise NotebookGraderError(f"cannot start the process that reads {what}: {clean_name(exc)}") from None
    if proc.returncode == 0:
        try:
            answer = json.loads(proc.stdout)
        except ValueError:
            answer = None
        if isinstance(answer, dict):
            if "ok" in answer:
                return answer["ok"]
            if "missing" in answer:
                raise MissingDependency(str(answer["missing"]))
            if "refused" in answer:
                raise NotebookError(str(answer["refused"]), str(answer.get("status", "invalid_submission")))
    if proc.returncode == -signal.SIGXCPU:  # the soft CPU limit (a kill would be the machine's)
        raise NotebookError(f"reading it took more than the grader's {CHILD_CPU_SECONDS} s of CPU time")
    if proc.returncode in (-signal.SIGSEGV, -signal.SIGBUS, -signal.SIGABRT):
        raise NotebookError(f"it crashed the grader's parser (signal {-proc.returncode})")
    tail = clean_name(proc.stderr.decode("utf-8", "replace")[-300:])
    if "MemoryError" in tail:
        raise NotebookError(f"reading it needs more than the grader's {CHILD_MEMORY >> 20} MB")
    raise NotebookGraderError(f"the process that reads {what} failed (exit {proc.returncode}): {tail}")
