"""``IsolatedCandidate``: the Candidate protocol, served by a locked-down worker process."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, cast

import pytest

from conformance.candidate import (
    OPTIONAL_FUNCTIONS,
    REQUIRED_FUNCTIONS,
    CandidateError,
    CandidateRaised,
    candidate_label,
    file_sha256,
)
from conformance.isolation import wire
from conformance.isolation.locate import Located, copy_candidate, locate
from conformance.isolation.options import Limits, scratch_parent
from conformance.isolation.process import (
    GRADER_ERRNOS,
    GraderEnvironmentError,
    WorkerDied,
    WorkerProcess,
    sandbox_record,
    survivors_problem,
)

# Asked once at start-up; anything else is asked on demand.
KNOWN_FUNCTIONS = list(REQUIRED_FUNCTIONS + OPTIONAL_FUNCTIONS) + ["accuracy"]
MAX_RESTARTS = 20
# The suite's own code the worker runs on the candidate's side (run_sgd): self-contained, so
# the worker executes its source without importing ``conformance`` (hidden from the candidate).
SGD_LOOP_FILE = Path(__file__).resolve().parent.parent / "sgd_loop.py"
# conformance/tracer.py: the line tracer of conformance/localise.py (the "trace" request)
TRACER_FILE = Path(__file__).resolve().parent.parent / "tracer.py"
# conformance/adapters.py: a declared candidate seen through the section's interface,
# built inside the worker around the candidate's module (the grader only sends the declaration).
ADAPTERS_FILE = Path(__file__).resolve().parent.parent / "adapters.py"
WORKER_PRELOAD = {"conformance/sgd_loop.py": SGD_LOOP_FILE.read_text(),
                  "conformance/tracer.py": TRACER_FILE.read_text(),
                  "conformance/adapters.py": ADAPTERS_FILE.read_text()}
# Candidate functions that train a network get the training time limit, not the per-call one.
TRAINING_FUNCTIONS = {"train"}


_OPEN: "weakref.WeakValueDictionary[int, IsolatedCandidate]" = weakref.WeakValueDictionary()


def _close_all_on_sigterm() -> None:
    """``timeout pytest ...`` ends pytest with SIGTERM, which skips pytest_unconfigure: close the
    open candidates (workers stopped, sandbox copies removed), then die of SIGTERM as before.
    Installed only over the default action, from the main thread."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
        return

    def close_then_die(signum: int, frame: Any) -> None:
        for cand in list(_OPEN.values()):
            try:
                cand.close()
            except BaseException:  # noqa: BLE001 - interrupted mid-call: die all the same
                pass
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, close_then_die)


@dataclass
class IsolatedCandidate:
    """The candidate runs in a separate worker; this object only ever holds plain data."""

    spec: str
    module_name: str = ""
    path: Path | None = None
    sha256: str | None = None
    load_error: str | None = None
    isolated: bool = True
    limits: Limits = field(default_factory=Limits)
    sandbox: dict[str, Any] = field(default_factory=dict)  # what protections were in force
    _located: Located | None = field(default=None, repr=False)
    _dir: Path | None = field(default=None, repr=False)
    _copy: dict[str, Any] = field(default_factory=dict, repr=False)
    _worker: WorkerProcess | None = field(default=None, repr=False)
    _functions: dict[str, bool] = field(default_factory=dict, repr=False)
    _used: float = 0.0  # wall-clock seconds spent in the worker so far
    _starts: int = 0
    _gave_up: str | None = field(default=None, repr=False)
    # function -> the timeout it hit. A function that hung once is not called again: every
    # further call would only burn the same limit (an infinite loop in backward would cost
    # one per-call timeout per check, and the whole session budget of a graded batch slot).
    _hung: dict[str, str] = field(default_factory=dict, repr=False)
    _owns_dir: bool = field(default=True, repr=False)  # False for a fresh_session's twin
    declaration: Any = None  # conformance/declaration.py, decided here, never by the worker

    @classmethod
    def load(cls, spec: str, config: pytest.Config | None = None,
             declaration_option: str | None = None) -> "IsolatedCandidate":
        cand = cls(spec=spec, limits=Limits.from_config(config))
        try:
            located = locate(spec, cand.limits.copy_dir)
            cand.module_name, cand.path, cand._located = located.module_name, located.file, located
            cand.sha256 = file_sha256(located.file)
            from conformance.declaration import resolve  # a DeclarationError is a usage error

            cand.declaration = resolve(declaration_option, located.file, cand.sha256)
            cand._dir = Path(tempfile.mkdtemp(prefix="bp-isolate-", dir=scratch_parent()))
            _OPEN[id(cand)] = cand
            _close_all_on_sigterm()
            # 0711: the worker (another uid; without namespaces it sees this very folder) can
            # enter it and read its copy by name, but no process can list the folder.
            cand._dir.chmod(0o711)
            (cand._dir / "candidate").mkdir(mode=0o755)
            root, file = copy_candidate(located, cand._dir / "candidate")
            cand._copy = {"module_name": located.module_name, "root": str(root),
                          "file": None if file is None else str(file), "sha256": cand.sha256}
            if cand.declaration is not None and not cand.declaration.is_section:
                cand._copy["declaration"] = cand.declaration.wire()  # data; the worker adapts
        except (OSError, ImportError) as exc:
            if isinstance(exc, OSError) and exc.errno in GRADER_ERRNOS:  # the grader's disk, not the code
                cand.close()
                raise GraderEnvironmentError(f"cannot prepare the isolation sandbox for {spec!r}: "
                                             f"{exc}") from None
            cand.load_error = f"importing candidate {spec!r} failed:\n{type(exc).__name__}: {exc}"
            return cand
        try:
            worker = cand._start("import", "importing the candidate")
        except CandidateError as exc:
            if getattr(exc, "grader_side", False):  # before any candidate code ran (typed at the source)
                cand.close()
                raise GraderEnvironmentError(f"isolated worker for {spec!r}: {exc.reason}") from None
            cand.load_error = f"importing candidate {spec!r} failed in the isolated worker: {exc.reason}"
            return cand
        hello = worker.hello
        if not hello.get("ok"):
            text = cand._original_paths(str(hello.get("load_error", "no reason given"))[-20000:])
            cand.load_error = f"importing candidate {spec!r} failed (in the isolated worker):\n{text}"
            cand.close()
            return cand
        missing = [f for f in REQUIRED_FUNCTIONS if not cand._functions.get(f)]
        if missing:
            cand.load_error = (
                f"candidate {spec!r} ({cand.path}) does not define the required "
                f"function(s) {', '.join(missing)}; see conformance/SPEC.md"
            )
        elif "declaration" not in cand._copy:  # read from the grader's copy of the source, never the worker
            from conformance.signature import signature_problem

            cand.load_error = signature_problem(cand.path)
            if cand.load_error:
                cand.close()
        return cand

    def _original_paths(self, text: str) -> str:
        """Tracebacks name the sandbox copy; show the student the file they handed in."""
        if self._dir is None or self._located is None:
            return text
        return text.replace(str(self._dir / "candidate") + "/", str(self._located.copy_from.parent) + "/")

    def describe(self) -> str:
        """One line for the pytest header: the sandbox state and which protections are in force."""
        record = sandbox_record(self.limits, self.sandbox)
        active = self.sandbox.get("active", {}) if self.sandbox else {}
        parts = [f"sandbox {record['state']}" + ("" if record["started"] else " (planned; no worker started)")]
        if record["protections"]["private_file_system"]:
            parts.append(f"private file system ({record['hidden_dirs']} directories hidden, the project's "
                         f"packages covered, scratch tmpfs {self.limits.scratch_mb} MiB), no network, "
                         "own PID namespace")
        else:
            parts.append(f"no namespaces ({record['why'] or 'not started'}): missing "
                         + ", ".join(record["missing"]))
        uid = active.get("uid")
        parts.append(f"uid {uid}, no child processes" if record["protections"]["privilege_drop"] else f"uid {uid}")
        lim = self.limits
        parts.append(f"limits {lim.call_timeout:g} s/call, {lim.sgd_timeout:g} s/training, "
                     f"{lim.session_timeout:g} s/session, {lim.memory_mb} MiB, output capped at "
                     f"{lim.output_bytes} bytes, answers {lim.max_result_mb} MiB + 2x arguments, "
                     f"{lim.max_arrays} arrays")
        return "; ".join(parts)

    def sandbox_record(self) -> dict[str, Any]:
        """The sandbox state for the JSON report (conformance/report.py)."""
        return sandbox_record(self.limits, self.sandbox)

    def __repr__(self) -> str:  # in messages: the file as the student knows it, nothing else
        return candidate_label(self)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # hypothesis' failing-example text
        printer.text(repr(self))

    # ----------------------------------------------------------------- worker lifecycle

    def _remaining(self, function: str) -> float:
        __tracebackhide__ = True
        remaining = self.limits.session_timeout - self._used
        if remaining <= 0:
            raise CandidateError(function, f"session time budget of {self.limits.session_timeout:g} s "
                                 "exhausted (--isolate-session-timeout): no further calls are made")
        return remaining

    def _start(self, function: str, doing: str) -> WorkerProcess:
        __tracebackhide__ = True
        if self._gave_up:
            raise CandidateError(function, self._gave_up)
        if self._starts >= MAX_RESTARTS:
            self._gave_up = f"the worker died {self._starts} times: no further calls are made"
            raise CandidateError(function, self._gave_up)
        problem = survivors_problem()
        if problem:  # the grader's failure, mid-session: end the run (exit 4), never fail a check
            pytest.exit(f"grader error (not the candidate's fault; retry when fixed): {problem}", returncode=4)
        self._starts += 1
        budget = min(self.limits.call_timeout, self._remaining(function))
        began = time.monotonic()
        try:
            # _dir is set: load() made it before its first start, the others follow a load
            # without load_error (_ensure_worker), and no call comes after close()
            worker = WorkerProcess(limits=self.limits, sandbox_dir=cast(Path, self._dir), candidate=self._copy,
                                   functions=KNOWN_FUNCTIONS, deadline=began + budget,
                                   preload=WORKER_PRELOAD)
        except WorkerDied as exc:
            reason = exc.reason
            if reason.startswith("timeout"):
                if budget < self.limits.call_timeout:
                    reason = (f"session time budget of {self.limits.session_timeout:g} s "
                              f"(--isolate-session-timeout) ran out while {doing}")
                else:
                    reason = (f"timeout after {budget:g} s while {doing} "
                              "(the module never finished importing)")
            error = CandidateError(function, reason)
            error.grader_side = exc.grader_side
            raise error from None
        finally:
            self._used += time.monotonic() - began
        self.sandbox = dict(worker.plan, **{"active": worker.hello.get("status", {})})
        if worker.hello.get("ok"):
            functions = worker.hello.get("functions")
            # The set of functions is fixed by the FIRST import: a module that defines fewer
            # functions when a fresh worker re-imports it (after it crashed its worker on an
            # input it would fail) must not turn those checks into "absent, skipped". A
            # function missing later is called anyway and fails in the worker.
            if isinstance(functions, dict) and not self._functions:
                self._functions = {str(k): v is True for k, v in functions.items() if k in KNOWN_FUNCTIONS}
            self._worker = worker
        else:
            worker.close()
            if self._starts > 1:  # imported before, fails now: treat as a crash of this call
                raise CandidateError(function, "the candidate failed to import in a fresh worker:\n"
                                     + str(worker.hello.get("load_error", ""))[-4000:])
        return worker

    def _ensure_worker(self, function: str) -> WorkerProcess:
        __tracebackhide__ = True
        if self.load_error:
            raise CandidateError(function, "the candidate could not be loaded")
        if self._worker is None or not self._worker.alive:
            self._worker = None
            self._start(function, "starting a fresh worker (the previous one was stopped)")
        assert self._worker is not None
        return self._worker

    # ----------------------------------------------------------------- the protocol

    def has(self, function: str) -> bool:
        __tracebackhide__ = True  # failures show the suite's call, not this plumbing
        if self.load_error and not self._functions:
            return False
        if function in self._functions:
            return self._functions[function]
        header = self._exchange(function, {"op": "has", "function": function}, b"", self.limits.call_timeout,
                                0)[0]
        self._functions[function] = header.get("has") is True
        return self._functions[function]

    def call(self, function: str, *args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        return self._call(function, args, kwargs, inspect=False)[0]

    def call_and_inspect(self, function: str, *args: Any, **kwargs: Any) -> tuple[Any, tuple]:
        __tracebackhide__ = True
        return self._call(function, args, kwargs, inspect=True)

    def run_sgd(self, X: Any, Y: Any, params: Any, *, lr: float, epochs: int, batch_size: int,
                seed: int, checkpoint_every: int | None = None) -> Any:
        __tracebackhide__ = True
        self._refuse_if_hung("run_sgd", ("forward", "backward"))  # the suite's loop calls both
        kwargs = {"lr": lr, "epochs": epochs, "batch_size": batch_size, "seed": seed,
                  "checkpoint_every": checkpoint_every}
        return self._send_call("run_sgd", {"op": "sgd"}, [X, Y, params], kwargs,
                               self.limits.sgd_timeout, inspect=False)[0]

    def call_traced(self, function: str, *args: Any) -> Any:
        """``function(*args)`` under the line tracer in the worker (conformance/tracer.py): what
        each line of the candidate's files assigned, as untrusted plain data for
        conformance/localise.py. Same limits as any call; the result is the record, not the
        function's value."""
        __tracebackhide__ = True
        if not self.has(function):
            raise CandidateError(function, f"candidate {self.module_name!r} has no function {function}")
        self._refuse_if_hung(function, (function,))
        return self._send_call(function, {"op": "trace", "function": function}, list(args), {},
                               self.limits.call_timeout, inspect=False)[0]

    def trace_root(self) -> tuple[str, Path] | None:
        """(the worker's folder of the candidate copy, the folder it was copied from): traced
        file names in the worker map to the student's files."""
        if self._dir is None or self._located is None:
            return None
        return str(self._dir / "candidate"), self._located.copy_from.parent

    def call_timed(self, function: str, *args: Any) -> tuple[Any, float | None]:
        """The call, and the worker's CPU seconds during it, read by the grader from the
        kernel's per-thread accounting (/proc/<pid>/task/*/schedstat): the candidate cannot
        report its own cost. Includes decoding the arguments and encoding the result."""
        __tracebackhide__ = True
        self._ensure_worker(function)
        worker = self._worker
        before = worker_cpu_seconds(worker)
        result = self._call(function, args, {}, inspect=False)[0]
        after = worker_cpu_seconds(worker) if self._worker is worker else None
        return result, (after - before) if before is not None and after is not None else None

    def _call(self, function: str, args: tuple, kwargs: dict, inspect: bool) -> tuple[Any, Any]:
        __tracebackhide__ = True
        if not self.has(function):
            raise CandidateError(function, f"candidate {self.module_name!r} has no function {function}")
        self._refuse_if_hung(function, (function,))
        timeout = self.limits.sgd_timeout if function in TRAINING_FUNCTIONS else self.limits.call_timeout
        result, after = self._send_call(function, {"op": "call", "function": function}, list(args),
                                        kwargs, timeout, inspect=inspect)
        return result, (tuple(after) if isinstance(after, list) else after)

    def _refuse_if_hung(self, function: str, depends_on: tuple[str, ...]) -> None:
        __tracebackhide__ = True
        for name in depends_on:
            if name in self._hung:
                raise CandidateError(function, f"not run: {name}() already hung in an earlier check "
                                     f"({self._hung[name]}); a function that hangs once is not "
                                     "called again")

    def _send_call(self, function: str, header: dict, args: list, kwargs: dict, timeout: float,
                   inspect: bool) -> tuple[Any, Any]:
        __tracebackhide__ = True
        tree, blob = wire.encode_tree([args, kwargs], max_bytes=1 << 40)
        max_answer = self._answer_limit(function, header, blob)
        header = dict(header, args=tree, inspect=inspect, max_answer=max_answer,
                      max_arrays=self.limits.max_arrays)
        reply, data = self._exchange(function, header, blob, timeout, max_answer)
        if reply.get("ok") is not True:
            if "invalid" in reply:
                raise CandidateError(function, "invalid output: the result cannot cross the isolation "
                                     f"boundary: {str(reply['invalid'])[:2000]}")
            raise self._raised(function, reply)
        began = time.monotonic()
        try:  # decoding is the candidate's cost: it counts against its session budget
            value = wire.decode_tree(reply.get("value"), data, max_bytes=max_answer,
                                     max_arrays=self.limits.max_arrays)
            if type(value) is not list or len(value) != 2:
                raise wire.WireError("the reply is not a [result, arguments] pair")
        except wire.WireError as exc:
            self._kill_worker()  # a worker that sends garbage is not trusted for later calls
            raise CandidateError(function, f"invalid output from the worker: {exc}") from None
        finally:
            del data
            self._used += time.monotonic() - began
        if inspect and type(value[1]) is not list:
            raise CandidateError(function, "invalid output from the worker: arguments missing")
        return value[0], value[1]

    def _answer_limit(self, function: str, header: dict, blob: list) -> int:
        """Bytes of arrays an answer may hold. A legitimate answer is the size of the call's
        arguments at most (relu(X) is X's size; call_and_inspect sends the arguments back
        too), beyond a floor for small calls; training calls answer with parameters only."""
        floor = self.limits.max_result_mb << 20
        if function in TRAINING_FUNCTIONS or header.get("op") == "sgd":
            return floor
        return floor + 2 * sum(memoryview(part).nbytes for part in blob)

    def _raised(self, function: str, reply: dict) -> CandidateError:
        exc_type = str(reply.get("exc_type", "Exception"))[:200]
        message = str(reply.get("message", ""))[:4000]
        error = CandidateRaised(function, exc_type, message,
                                self._original_paths(str(reply.get("traceback", ""))[-8000:]))
        if reply.get("memory") is True or exc_type == "MemoryError":
            error.reason += (f"\n(the isolated worker's address space is limited to "
                             f"{self.limits.memory_mb} MiB: --isolate-memory)")
            error.args = (f"{function}(): {error.reason}",)
        return error

    def _exchange(self, function: str, header: dict, blob: Any, timeout: float,
                  max_answer: int) -> tuple[dict, bytearray]:
        __tracebackhide__ = True
        worker = self._ensure_worker(function)
        budget = min(timeout, self._remaining(function))
        began = time.monotonic()
        try:
            return worker.request(header, blob, began + budget, f"running {function}()",
                                  max_answer=max_answer)
        except WorkerDied as exc:
            reason = exc.reason
            if reason.startswith("timeout"):
                if budget < timeout:
                    reason = (f"session time budget of {self.limits.session_timeout:g} s "
                              f"(--isolate-session-timeout) ran out after {budget:.3g} s of this "
                              "call; the worker was killed")
                else:
                    limit = "training" if timeout == self.limits.sgd_timeout else "per-call"
                    self._hung[function] = f"timeout after {budget:g} s"
                    reason = (f"timeout after {budget:g} s ({limit} limit); the worker was killed, "
                              "the next call starts a fresh one")
            error = CandidateError(function, reason)
            error.grader_side = exc.grader_side
            raise error from None
        finally:
            self._used += time.monotonic() - began

    @contextmanager
    def fresh_session(self) -> Iterator["IsolatedCandidate"]:
        """The same candidate served by a worker of its own, started fresh (a new process that
        imports the module again) and stopped at the end; its time counts against this
        session's budget. Two such sessions given the same calls have identical histories, so
        their answers may differ only by what the candidate draws from outside the seeded
        state (the clock, /dev/urandom, addresses): the determinism check."""
        __tracebackhide__ = True
        if self.load_error:
            raise CandidateError("forward", "the candidate could not be loaded")
        # One worker of a uid at a time (a graded run's workers share one uid, and a new worker
        # first kills whatever of its uid is left): this session's worker stops, and the next
        # call after the fresh session starts another.
        if self._worker is not None:
            self._worker.close()
            self._worker = None
        twin = replace(self, _worker=None, _starts=0, _gave_up=None, _hung=dict(self._hung),
                       _functions=dict(self._functions), _owns_dir=False, sandbox=dict(self.sandbox))
        try:
            yield twin
        finally:
            twin.close()
            self._used = max(self._used, twin._used)  # twin started from self._used

    def _kill_worker(self) -> None:
        if self._worker is not None:
            self._worker.kill()
            self._worker = None

    def close(self) -> None:
        if self._worker is not None:
            worker, self._worker = self._worker, None
            worker.close()
            problem = survivors_problem()
            if problem:  # something of the candidate may still act on what the grader does next
                raise GraderEnvironmentError(problem)
        if self._dir is not None:
            if self._owns_dir:
                shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


def worker_cpu_seconds(worker: WorkerProcess | None) -> float | None:
    """CPU time (user + system, seconds) consumed so far by the worker and every live process
    under it (so it holds however the worker is started, e.g. behind a PID-namespace init),
    from the kernel's per-thread scheduler statistics (nanoseconds). None if unreadable (not
    Linux, worker gone). With root the worker cannot start other processes or threads
    (RLIMIT_NPROC=1); without root, a child that already exited is no longer counted
    (SECURITY.md)."""
    if worker is None or getattr(worker, "proc", None) is None:
        return None
    root = worker.proc.pid
    children: dict[int, list[int]] = {}
    try:
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    with open(f"/proc/{entry.name}/stat") as stat:
                        ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue  # exited meanwhile
                children.setdefault(ppid, []).append(int(entry.name))
    except OSError:
        return None
    total, todo, seen_root = 0, [root], False
    while todo:
        pid = todo.pop()
        try:
            for task in Path(f"/proc/{pid}/task").iterdir():
                total += int((task / "schedstat").read_text().split()[0])
            seen_root |= pid == root
        except (OSError, ValueError, IndexError):
            pass
        todo += children.get(pid, [])
    return total / 1e9 if seen_root else None
