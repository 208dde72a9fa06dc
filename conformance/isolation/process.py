"""Grader side of one worker process: start it locked down, talk to it with deadlines,
capture its output within a cap, kill it and explain how it died."""

from __future__ import annotations

import errno
import hashlib
import fcntl
import json
import os
import secrets
import signal
import struct
import subprocess
import sys
import sysconfig
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from conformance.isolation import wire
from conformance.isolation.options import Limits

HERE = Path(__file__).resolve().parent
WORKER_SCRIPT = HERE / "worker.py"
WIRE_SCRIPT = HERE / "wire.py"
# Directories the worker keeps seeing when the sandbox hides the rest of the file system.
SYSTEM_DIRS = {"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc", "dev", "proc", "sys"}
EXTRA_HIDDEN = ["/dev/shm", "/dev/mqueue"]
UID_RANGE = (0x10000000, 0x7FFF0000)  # fresh ids no account uses: no shared process count, no files
# The project's one installed package (the reference and the grader are inside it): never
# importable or readable by a candidate, however the project is installed (editable: the
# repository; regular: next to numpy in site-packages).
PROJECT_PACKAGES = ("conformance",)
SCRATCH_FILES = 4096  # files + directories the worker's scratch tmpfs may hold


# A full or read-only disk, no memory, no file descriptors: the grader's environment failed, not
# the candidate. Raised before the candidate ran, they end the run as a grader error (pytest
# exit status 4, which conformance.grade retries), never as the student's import error.
GRADER_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.ENOMEM, errno.EMFILE, errno.ENFILE})


class GraderEnvironmentError(pytest.UsageError):
    """The isolation cannot run on this machine right now (no disk space, no namespaces...)."""

    def __init__(self, what: str) -> None:
        super().__init__(f"grader error (not the candidate's fault; retry when fixed): {what}")


class WorkerDied(Exception):
    """The worker is gone or unusable; ``reason`` says why, in the student's terms.
    ``grader_side``: it failed before any candidate code could run (the machine's fault: a
    grader error, never a verdict). Typed here, where it happens, never read from the text."""

    def __init__(self, reason: str, grader_side: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.grader_side = grader_side


class OutputTrap:
    """Drains the worker's stdout+stderr so it can never block on a full pipe, keeping the
    first and last ``cap // 2`` bytes and counting the rest."""

    def __init__(self, fd: int, cap: int) -> None:
        self.fd, self.head_cap, self.tail_cap = fd, cap // 2, cap - cap // 2
        self.head, self.tail = bytearray(), bytearray()
        self.total = 0
        self.thread = threading.Thread(target=self._drain, name="isolated-worker-output", daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                os.close(self.fd)
                return
            self.total += len(chunk)
            room = self.head_cap - len(self.head)
            if room > 0:
                self.head += chunk[:room]
                chunk = chunk[room:]
            if chunk:
                self.tail += chunk
                del self.tail[: max(0, len(self.tail) - self.tail_cap)]

    def tail_text(self, limit: int = 1500) -> str:
        data = bytes(self.head + self.tail) if self.total <= self.head_cap + self.tail_cap else bytes(self.tail)
        text = data[-limit:].decode("utf-8", "replace")
        return "".join(c if c.isprintable() or c in "\n\t" else "?" for c in text)


def sandbox_plan(limits: Limits) -> dict[str, Any]:
    """What the worker can do to lock itself down on this machine. As root the worker always
    drops to its own unprivileged uid, even with ``--isolate-sandbox off`` (setuid needs no
    namespaces): "off" only gives up the namespaces, never the privilege drop."""
    root = os.geteuid() == 0
    if limits.sandbox == "off":
        return {"namespaces": False, "drop": root, "why": "--isolate-sandbox off"}
    if not root:
        if limits.sandbox == "require":
            raise WorkerDied("--isolate-sandbox require: the grader must run as root to create "
                             "namespaces and drop privileges", grader_side=True)
        return {"namespaces": False, "drop": False,
                "why": "not root: resource limits only (see conformance/SECURITY.md)"}
    return {"namespaces": sys.platform.startswith("linux"), "drop": True, "why": ""}


# What the sandbox record says is in force; "engaged" means all of them.
PROTECTIONS = ("separate_process", "resource_limits", "private_file_system", "no_network",
               "pid_namespace", "privilege_drop", "bounded_scratch", "project_files_hidden")


def sandbox_record(limits: Limits, sandbox: dict[str, Any]) -> dict[str, Any]:
    """The sandbox state of a run, for the JSON report and the terminal header: ``engaged``
    (every protection of PROTECTIONS in force), ``degraded`` (a worker ran, but without
    some: not root, no namespaces), ``off`` (``--isolate-sandbox off``: limits only).
    ``started`` is False when no worker was ever started (what is shown is then the plan)."""
    plan = sandbox if sandbox else sandbox_plan_quiet(limits)
    active = sandbox.get("active") or {}
    started = bool(active)
    namespaces = bool(active.get("namespaces")) if started else bool(plan.get("namespaces"))
    protections = {
        "separate_process": True,
        "resource_limits": True,
        "private_file_system": namespaces,
        "no_network": (active.get("network") is False) if started else namespaces,
        "pid_namespace": bool(active.get("pid_namespace")) if started else namespaces,
        "privilege_drop": bool(plan.get("drop")) and (not started or (active.get("uid") or 0) >= UID_RANGE[0]),
        "bounded_scratch": namespaces,
        "project_files_hidden": namespaces,
    }
    state = ("off" if limits.sandbox == "off"
             else "engaged" if all(protections.values()) else "degraded")
    return {"state": state, "mode": limits.sandbox, "started": started,
            "protections": protections,
            "missing": [name for name in PROTECTIONS if not protections[name]],
            "why": str(plan.get("why", "")),
            "uid": active.get("uid"),
            "scratch_bytes": (limits.scratch_mb << 20) if namespaces else None,
            "hidden_dirs": len(active.get("hidden", [])),
            "limits": {"call_timeout": limits.call_timeout, "sgd_timeout": limits.sgd_timeout,
                       "session_timeout": limits.session_timeout, "memory_mb": limits.memory_mb,
                       "output_bytes": limits.output_bytes, "max_result_mb": limits.max_result_mb,
                       "max_arrays": limits.max_arrays, "scratch_mb": limits.scratch_mb}}


def sandbox_plan_quiet(limits: Limits) -> dict[str, Any]:
    try:
        return sandbox_plan(limits)
    except WorkerDied as exc:
        return {"namespaces": False, "drop": False, "why": exc.reason}


# Set by conformance/grade/run/runner.py: the one uid every worker of a graded run gets (dedicated to the
# run, so the runner can kill and count every process of it before any verdict is written),
# the seed of the run's randomness (the submission's sha256) and the grader's own paths the
# worker's uid must be unable to reach when no namespace hides them (os.pathsep-separated).
UID_ENV = "BACKPROP_ISOLATE_UID"
SEED_ENV = "BACKPROP_ISOLATE_SEED"
PRIVATE_ENV = "BACKPROP_ISOLATE_PRIVATE"


def run_uid() -> int | None:
    """The uid chosen for this run by the grader (``BACKPROP_ISOLATE_UID``), or None."""
    value = os.environ.get(UID_ENV, "").strip()
    if not value:
        return None
    try:
        uid = int(value)
    except ValueError:
        raise GraderEnvironmentError(f"{UID_ENV}={value!r} is not an integer uid") from None
    if not UID_RANGE[0] <= uid < UID_RANGE[1]:
        raise GraderEnvironmentError(f"{UID_ENV}={uid} is outside the workers' uid range "
                                     f"[{UID_RANGE[0]:#x}, {UID_RANGE[1]:#x})")
    return uid


def fresh_uid() -> int:
    """A uid no account and no other run uses (random in UID_RANGE)."""
    return secrets.randbelow(UID_RANGE[1] - UID_RANGE[0]) + UID_RANGE[0]


def run_seed(sha256: str | None) -> str:
    """Hex seed of everything seedable in the worker: the graded submission's sha256 (the
    runner's, covering every file of it), else the candidate file's. Same bytes, same draws."""
    value = os.environ.get(SEED_ENV, "").strip().lower() or (sha256 or "").lower()
    if len(value) < 16 or any(c not in "0123456789abcdef" for c in value):
        return hashlib.sha256(value.encode()).hexdigest()
    return value


def private_paths() -> list[str]:
    """The grader's files a worker without namespaces must not reach: the project (checkout
    or installed packages) and what the grader names in ``BACKPROP_ISOLATE_PRIVATE`` (the
    Gradescope root, rubric, MNIST, its output folders). Checked by the worker itself, as its
    own uid, before any candidate code runs."""
    found = [p for p in project_locations() if not p.endswith(".dist-info")]  # metadata: not secret
    repo = HERE.parent.parent
    if (repo / "pyproject.toml").is_file() and (repo / "conformance").is_dir():  # a checkout
        found.append(str(repo.resolve()))
    found += [p for p in os.environ.get(PRIVATE_ENV, "").split(os.pathsep) if p.strip()]
    out: list[str] = []
    for path in found:
        real = os.path.realpath(path)
        if os.path.exists(real) and real not in out:
            out.append(real)
    return out


def _hidden_dirs() -> list[str]:
    hide = [e.path for e in os.scandir("/") if e.is_dir(follow_symlinks=False) and e.name not in SYSTEM_DIRS]
    return sorted(hide) + EXTRA_HIDDEN


def project_locations() -> list[str]:
    """Every directory holding the project's packages, fixtures or install metadata, as seen
    from this (the grader's) process: covered inside the worker's namespace, and refused by
    the worker's import system without one."""
    import importlib.util

    found: list[Path] = []
    for name in PROJECT_PACKAGES:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        for place in (spec.submodule_search_locations or []) if spec is not None else []:
            found.append(Path(place))
    repo = HERE.parent.parent
    found += [repo / "fixtures", repo / "tests", repo / "tools"]  # a clone's (tools: the variant catalogue)
    for site in _site_dirs():
        found += Path(site).glob("backprop_conformance-*.dist-info")
    out: list[str] = []
    for path in found:
        real = str(path.resolve())
        if path.is_dir() and real not in out:
            out.append(real)
    return out


def _site_dirs() -> list[str]:
    import importlib.util

    dirs = []
    for name in ("numpy", "scipy"):
        found = importlib.util.find_spec(name)
        if found is not None and found.origin:
            site = str(Path(found.origin).resolve().parent.parent)
            if site not in dirs:
                dirs.append(site)
    for key in ("purelib", "platlib"):
        path = str(Path(sysconfig.get_paths()[key]).resolve())
        if path not in dirs:
            dirs.append(path)
    return dirs


class WorkerProcess:
    """One running worker. Not thread-safe (pytest calls tests one at a time)."""

    def __init__(self, *, limits: Limits, sandbox_dir: Path, candidate: dict[str, Any],
                 functions: list[str], deadline: float, preload: dict[str, str] | None = None) -> None:
        """``preload``: suite code the worker executes before the candidate is imported (file
        name -> source), e.g. the SGD loop it runs on the candidate's side."""
        self.limits = limits
        plan = sandbox_plan(limits)
        workdir = sandbox_dir / "work"
        workdir.mkdir(mode=0o700, exist_ok=True)
        uid = gid = None
        self.survivors: list[int] = []
        if plan["drop"]:
            uid = gid = run_uid() or fresh_uid()
            # The uid may be the run's (one per graded run): nothing of it may still run when
            # a new worker takes it, or the old process could signal or ptrace the new one.
            left = kill_uid(uid)
            if left:
                raise GraderEnvironmentError(f"processes of the worker uid {uid} survive SIGKILL "
                                             f"(pids {left[:5]}): no new worker is started")
            os.chown(workdir, uid, gid)
        self.uid = uid
        base_prefix = str(Path(sys.base_prefix).resolve())
        site_dirs = _site_dirs()
        project = project_locations()
        keep = [[base_prefix, False]] + [[d, False] for d in site_dirs] + [[str(sandbox_dir), True]]
        config = {
            "grader_pid": os.getpid(),
            "project_packages": list(PROJECT_PACKAGES),
            "project_dirs": project,
            "wire_path": str(WIRE_SCRIPT),
            "preload": dict(preload or {}),
            "site_dirs": site_dirs,
            "candidate": candidate,
            "functions": functions,
            "sandbox": {"namespaces": plan["namespaces"], "uid": uid, "gid": gid,
                        "hide": _hidden_dirs() if plan["namespaces"] else [], "keep": keep,
                        "project": project if plan["namespaces"] else [],
                        # Without namespaces only permissions keep the worker out: it checks, as
                        # its own uid, that it cannot reach these, and can reach what it needs.
                        "private": private_paths() if plan["drop"] and not plan["namespaces"] else [],
                        "seed": run_seed(candidate.get("sha256")),
                        "workdir": str(workdir),
                        "scratch": {"bytes": limits.scratch_mb << 20, "files": SCRATCH_FILES}},
            "limits": {"cpu_seconds": int(limits.session_timeout) + 1,
                       "address_space": limits.memory_mb << 20,
                       "file_size": min(64, limits.scratch_mb) << 20, "open_files": 256},
        }
        req_r, self.req_w = os.pipe()
        self.resp_r, resp_w = os.pipe()
        out_r, out_w = os.pipe()
        for fd in (self.req_w, resp_w):
            try:  # 1 MiB pipes: MNIST-sized arrays cross in far fewer context switches
                fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 1 << 20)
            except (OSError, AttributeError):
                pass
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(workdir), "TMPDIR": str(workdir),
               "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               # str/bytes hashing seeded from the submission: set order is the same in every
               # run of the same bytes, and may differ between submissions (never a verdict).
               "PYTHONHASHSEED": str(int(run_seed(candidate.get("sha256"))[:8], 16))}
        self.started = time.monotonic()
        try:
            self.proc = subprocess.Popen(
                # Not -I/-E: they would ignore PYTHONHASHSEED. The environment is the one built
                # above and nothing else (no PYTHONPATH/PYTHONHOME/...); -s: no user site; the
                # worker drops its own folder from sys.path before anything is imported.
                [sys.executable, "-s", "-S", "-B", str(WORKER_SCRIPT), str(req_r), str(resp_w)],
                stdin=subprocess.DEVNULL, stdout=out_w, stderr=out_w, pass_fds=(req_r, resp_w),
                cwd=str(workdir), env=env, start_new_session=True, close_fds=True)
        finally:
            for fd in (req_r, resp_w, out_w):
                os.close(fd)
        self.output = OutputTrap(out_r, limits.output_bytes)
        self.plan = plan
        self.hello: dict[str, Any] = {}
        self.alive = True
        try:
            data = json.dumps(config).encode()
            wire._write_all(self.req_w, struct.pack(">4sIQ", wire.MAGIC, len(data), 0) + data)
            self.hello, _ = self._read(deadline, "importing the candidate", max_blob=0)
        except WorkerDied:
            raise
        except OSError as exc:
            raise self._die(f"the worker failed to start: {exc}", grader_side=True) from None
        except wire.WireError as exc:  # garbage on the protocol pipe: the import may have written it
            raise self._die(f"invalid output from the worker while importing the candidate: {exc}") from None
        if self.hello.get("op") != "hello":
            raise self._die("invalid output: the worker's first message is not a greeting")
        if "setup_error" in self.hello:
            raise self._die(f"the sandbox could not be set up: {str(self.hello['setup_error'])[:500]}",
                            grader_side=True)

    # ----------------------------------------------------------------- requests

    def request(self, header: dict, blob: Any, deadline: float, doing: str, *,
                max_answer: int) -> tuple[dict, bytearray]:
        """Send one request; read its answer, refusing (unread) one whose arrays exceed
        ``max_answer`` bytes."""
        try:
            wire.write_frame(self.req_w, header, blob)
        except OSError:
            raise self._die(f"the worker was gone before {doing}") from None
        return self._read(deadline, doing, max_blob=max_answer)

    def _read(self, deadline: float, doing: str, *, max_blob: int) -> tuple[dict, bytearray]:
        try:
            return wire.read_frame(self.resp_r, max_blob=max_blob, deadline=deadline)
        except wire.WireTimeout:
            raise self._die(None, timed_out=True, doing=doing) from None
        except wire.PeerClosed:
            raise self._die(None, doing=doing) from None
        except wire.WireError as exc:
            raise self._die(f"invalid output from the worker while {doing}: {exc}") from None

    # ----------------------------------------------------------------- ending

    def _die(self, reason: str | None, *, timed_out: bool = False, doing: str = "",
             grader_side: bool = False) -> WorkerDied:
        """Kill the worker (if it still runs) and build the error that explains its end."""
        if timed_out:
            self.kill()
            return WorkerDied(reason or f"timeout while {doing}")
        if reason is None:  # it closed the pipe: wait briefly for its exit status
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            else:  # it is gone, so its output pipe ends: drain it all ("last words") first
                self.output.thread.join(timeout=5)
            reason = self.describe_exit(doing)
        self.kill()
        return WorkerDied(reason, grader_side=grader_side)

    def describe_exit(self, doing: str) -> str:
        code = self.proc.poll()
        if code is None:
            text = f"the worker closed its protocol pipe while {doing}"
        elif code < 0:
            sig = signal.Signals(-code)
            text = f"the worker was killed by signal {sig.name} while {doing}"
            if sig == signal.SIGXCPU:
                text += f" (CPU time limit of {self.limits.session_timeout:g} s exceeded)"
            elif sig == signal.SIGSEGV:
                text += " (segmentation fault: invalid memory access, e.g. through ctypes)"
            elif sig == signal.SIGKILL:
                text += " (killed from outside: out of memory?)"
        else:
            text = (f"the worker exited with status {code} while {doing}: the candidate ended the "
                    f"process (sys.exit / os._exit / exit()) instead of returning")
        tail = self.output.tail_text()
        if tail.strip():
            text += "\nlast output of the worker:\n" + tail
        return text

    def kill(self) -> None:
        if not self.alive:
            return
        self.alive = False
        for fd in (self.req_w, self.resp_r):
            try:
                os.close(fd)
            except OSError:
                pass
        # The keeper first: on SIGTERM it kills the worker and every process re-parented to it
        # (without namespaces), or, with them, its death takes the init and so the whole PID
        # namespace along. Then SIGKILL whatever of the group and the uid is left.
        try:
            self.proc.terminate()
            self.proc.wait(timeout=2)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.kill()
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        if self.uid is not None:
            self.survivors = kill_uid(self.uid)
            if self.survivors:
                SURVIVORS.append((self.uid, self.survivors))

    def close(self) -> None:
        if self.alive:
            try:
                wire.write_frame(self.req_w, {"op": "exit"})
                self.proc.wait(timeout=1)
            except (OSError, subprocess.TimeoutExpired, wire.WireError):
                pass
        self.kill()
        self.output.thread.join(timeout=2)


# (uid, pids) of every worker whose processes outlived SIGKILL in this process: from then on
# no candidate is run and no verdict is trusted here (IsolatedCandidate refuses to go on).
SURVIVORS: list[tuple[int, list[int]]] = []


def survivors_problem() -> str | None:
    """Why this grader may not go on (None when every worker's uid was verified empty)."""
    if not SURVIVORS:
        return None
    uid, pids = SURVIVORS[0]
    return f"processes of the worker uid {uid} survived SIGKILL (pids {pids[:5]}): nothing more is judged"


def uid_processes(uid: int) -> list[int]:
    """Pids of the live processes any of whose uids (real, effective, saved, fs) is ``uid``.
    Zombies are dead (they run nothing and go when reaped) and are not counted."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status") as handle:
                status = handle.read()
        except OSError:
            continue  # gone meanwhile
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if str(uid) in fields.get("Uid", "").split() and not fields.get("State", "").strip().startswith(("Z", "X")):
            found.append(int(entry.name))
    return found


def kill_uid(uid: int, patience: float = 10.0) -> list[int]:
    """SIGKILL every process of ``uid`` (the worker's private uid: every process of it is the
    run's) until none is left; returns the pids still alive after ``patience`` seconds
    (empty: verified gone). A process it forks meanwhile is caught by the next sweep."""
    give_up = time.monotonic() + patience
    while True:
        alive = uid_processes(uid)
        if not alive or time.monotonic() > give_up:
            return alive
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.02)
