"""The isolated worker: runs ONE candidate module and answers the grader's calls.

Started by ``conformance.isolation.process`` as ``python -s -S -B worker.py REQ_FD RESP_FD``
with a minimal environment built by the grader (not ``-I``/``-E``: its PYTHONHASHSEED must
count). It imports nothing from the project: ``wire.py`` and the suite's SGD loop
(``conformance/sgd_loop.py``) are loaded by file path / from source text BEFORE any
candidate code runs. Order of business:

1. read the configuration frame (plain JSON, parsed with the stdlib only);
2. set sys.path to the stdlib plus the site-packages holding numpy/scipy (no ``site``:
   ``.pth`` files such as the project's editable-install hook are never processed);
3. if root and allowed: new mount, network, IPC, UTS and PID namespaces; every non-system
   directory of the file system hidden behind empty tmpfs mounts, the Python installation
   and the sandbox bound back (read-only), the scratch dir a size-limited tmpfs, the
   project's own packages (wherever they are installed) covered by empty read-only mounts;
4. split into a *keeper* (this process, trusted, root: it waits and mirrors how the worker
   ended), an *init* (pid 1 of the new PID namespace, trusted, root, killed with the keeper)
   and the *worker* itself (pid 2). Whatever the candidate does, it cannot outlive the
   keeper: when the grader dies the keeper gets SIGKILL (parent-death signal), which kills
   the init, and the kernel kills every process of a PID namespace whose init is gone.
   Without namespaces the keeper is a child subreaper that kills the worker's leftovers;
5. in the worker: resource limits, ``no_new_privs``, then drop to a fresh unprivileged
   uid/gid (so RLIMIT_NPROC=1 forbids any child process or thread);
6. import the candidate from its private copy and report which functions it has;
7. serve requests until told to exit or the grader goes away.

Everything after step 6 runs with hostile code in the process, so the grader treats all
that comes out of this process as untrusted data (see wire.py and SECURITY.md).
"""

import json
import os
import struct
import sys

# Type checkers read the names below; at run time nothing is imported (not even typing: the
# worker loads only what it must before the candidate runs).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MAGIC = b"BPW2"  # wire.MAGIC (this file cannot import wire before sys.path is set)


def _read_config(fd):
    prefix = _read_exact(fd, 16)
    magic, json_len, blob_len = struct.unpack(">4sIQ", prefix)
    if magic != MAGIC or blob_len != 0:
        raise SystemExit("worker: bad configuration frame")
    return json.loads(_read_exact(fd, json_len))


def _read_exact(fd, n):
    data = b""
    while len(data) < n:
        chunk = os.read(fd, n - len(data))
        if not chunk:
            raise SystemExit("worker: grader closed the pipe during start-up")
        data += chunk
    return data


# --------------------------------------------------------------------------- sandbox (root)

CLONE_NEWNS, CLONE_NEWNET, CLONE_NEWIPC, CLONE_NEWUTS = 0x00020000, 0x40000000, 0x08000000, 0x04000000
CLONE_NEWPID = 0x20000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 36, 38


def _libc():
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)

    def call(name, *args):
        if getattr(libc, name)(*args) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"{name}{args!r}: {os.strerror(err)}")

    return call


def _enter_namespaces(sandbox):
    """Hide the file system except what the candidate needs; no network; a new PID namespace
    for this process's children (the init forked next is its pid 1)."""
    libc = _libc()
    libc("unshare", CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWPID)
    libc("mount", b"none", b"/", None, MS_REC | MS_PRIVATE, None)
    hidden = []
    keep = [(path, rw, os.open(path, os.O_PATH | os.O_DIRECTORY)) for path, rw in sandbox["keep"]]
    for path in sorted(sandbox["hide"], key=len):
        if os.path.isdir(path) and not os.path.islink(path):
            libc("mount", b"tmpfs", path.encode(), b"tmpfs", MS_NOSUID | MS_NODEV,
                 b"size=1m,nr_inodes=4096,mode=755")
            hidden.append(path)
    for path, rw, fd in keep:
        if any(path == h or path.startswith(h.rstrip("/") + "/") for h in hidden):
            os.makedirs(path, mode=0o755, exist_ok=True)
            libc("mount", f"/proc/self/fd/{fd}".encode(), path.encode(), None, MS_BIND | MS_REC, None)
            flags = MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV | (0 if rw else MS_RDONLY)
            libc("mount", None, path.encode(), None, flags, None)
        os.close(fd)
    # The only writable place: a tmpfs of bounded size and file count, private to this worker
    # (it vanishes with the namespace), so filling it fails the candidate's own writes (ENOSPC)
    # and never the grader's disk or a classmate's.
    scratch = sandbox["scratch"]
    owner = "" if sandbox["uid"] is None else f",uid={sandbox['uid']},gid={sandbox['gid']}"
    libc("mount", b"tmpfs", sandbox["workdir"].encode(), b"tmpfs", MS_NOSUID | MS_NODEV,
         f"size={scratch['bytes']},nr_inodes={scratch['files']},mode=700{owner}".encode())
    # The project's own packages (reference, conformance, tools, fixtures) wherever they are
    # installed, even inside a directory bound back above (a regular `pip install .` puts them
    # next to numpy): covered by an empty read-only directory.
    covered = []
    for path in sandbox.get("project", []):
        if os.path.isdir(path) and not os.path.islink(path):
            libc("mount", b"tmpfs", path.encode(), b"tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                 b"size=4k,nr_inodes=2,mode=555")
            covered.append(path)
    return {"hidden": hidden, "project_hidden": covered, "scratch_bytes": scratch["bytes"],
            "scratch_files": scratch["files"]}


def _apply_limits(limits, dropping):
    import resource
    import signal

    def setl(which, soft, hard=None):
        hard = soft if hard is None else hard
        resource.setrlimit(which, (soft, hard))

    setl(resource.RLIMIT_CORE, 0)
    setl(resource.RLIMIT_CPU, limits["cpu_seconds"], limits["cpu_seconds"] + 2)
    setl(resource.RLIMIT_FSIZE, limits["file_size"])
    setl(resource.RLIMIT_NOFILE, limits["open_files"])
    if limits["address_space"]:
        setl(resource.RLIMIT_AS, limits["address_space"])
    if dropping:
        setl(resource.RLIMIT_NPROC, 1)  # per uid; the uid is fresh, so: no fork, no threads
    # Writing past RLIMIT_FSIZE raises OSError (EFBIG) instead of killing the worker.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def _drop_privileges(uid, gid):
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getuid() != uid or os.geteuid() != uid or os.getgid() != gid or os.getgroups():
        raise OSError(f"privileges not dropped: uid {os.getuid()}/{os.geteuid()}, gid {os.getgid()}")


def _check_reach(sandbox):
    """Without namespaces, only file permissions keep the worker (now its own uid) out of
    the grader's files: verify it, as that uid, before any candidate code runs. It must reach
    what it needs (Python, numpy, its copy of the candidate) and none of the grader's paths
    (the project, the Gradescope root, rubric, MNIST, output folders)."""
    problems = []
    for path, own in sandbox["keep"]:  # own: the sandbox folder, entered but not listed (0711)
        if not os.access(path, os.X_OK if own else os.R_OK | os.X_OK):
            problems.append(f"it cannot read {path}, which it needs (make it readable by every user)")
    for path in sandbox["private"]:
        reach = [what for what, mode in (("read", os.R_OK), ("write", os.W_OK), ("enter", os.X_OK))
                 if (mode != os.X_OK or os.path.isdir(path)) and os.access(path, mode)]
        if reach:
            problems.append(f"it can {'/'.join(reach)} the grader's {path} "
                            "(chmod o-rwx it, or a folder above it)")
    if problems:
        raise PermissionError(f"the worker's uid {os.getuid()} (no namespaces): " + "; ".join(problems))


class _SeededBytes:
    """A deterministic stand-in for os.urandom: SHA-256 in counter mode over the run's seed,
    so a submission that draws "true" randomness gets the same draws in every run."""

    def __init__(self, seed):
        import hashlib

        self.sha256, self.seed, self.counter = hashlib.sha256, seed, 0

    def __call__(self, size):
        size = int(size)  # os.urandom's own errors for bad sizes
        if size < 0:
            raise ValueError("negative argument not allowed")
        out = bytearray()
        while len(out) < size:
            self.counter += 1
            out += self.sha256(self.seed + self.counter.to_bytes(8, "big")).digest()
        return bytes(out[:size])


def _seed_everything(seed_hex):
    """Seed everything seedable from the submission's sha256, before its code runs: Python's
    ``random``, numpy's global generator, and the OS entropy Python and numpy draw through
    (os.urandom: ``secrets``, ``random.SystemRandom``, ``uuid4``, ``np.random.default_rng()``).
    The hash seed is set by the grader (PYTHONHASHSEED). What is left (the clock, reading
    /dev/urandom, addresses) is caught by the determinism check."""
    import random

    import numpy

    seed = bytes.fromhex(seed_hex)
    draw = _SeededBytes(seed)
    os.urandom = draw
    # SystemRandom (and so secrets, numpy's SeedSequence) draws here; a private name the stubs omit
    random._urandom = draw  # type: ignore[attr-defined]
    try:
        import posix

        posix.urandom = draw
    except ImportError:
        pass
    random.seed(seed)
    numpy.random.seed(int.from_bytes(seed[:4], "big"))


# --------------------------------------------------------------------------- keeper and init


def _close_protocol(req_fd, resp_fd):
    for fd in (req_fd, resp_fd):
        try:
            os.close(fd)
        except OSError:
            pass


def _die_with_parent(lifeline_fd=None):
    """SIGKILL when our parent dies; if it is already gone (it died before the prctl), go now."""
    import select

    _libc()("prctl", PR_SET_PDEATHSIG, 9, 0, 0, 0)
    if lifeline_fd is not None and select.select([lifeline_fd], [], [], 0)[0]:
        os._exit(70)  # EOF on the lifeline: the parent is gone


def _reap_until(child):
    """Wait for ``child``, reaping any other process handed to us meanwhile; return its status."""
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return None
        if pid == child:
            return status


def _kill_leftovers():
    """Kill every remaining child and reap it, until none is left (we are a subreaper: the
    orphans of the worker's children are re-parented to us, so nothing escapes by double-fork
    or setsid while we live)."""
    import signal

    me = str(os.getpid())
    for _ in range(100):
        found = False
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as handle:
                    ppid = handle.read().decode("ascii", "replace").rsplit(")", 1)[1].split()[1]
            except (OSError, IndexError):
                continue
            if ppid == me:
                found = True
                try:
                    os.kill(int(entry), signal.SIGKILL)
                except OSError:
                    pass
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            return
        if not found:
            return


def _mirror(status):
    """End this process the way the worker ended (the grader explains the end from it)."""
    import resource
    import signal

    if status is None:
        os._exit(70)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # SIGSEGV/SIGXCPU: no core file
        try:
            _libc()("prctl", 4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: not even to a core_pattern pipe
        except OSError:
            pass
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass
        os.kill(os.getpid(), sig)
        os._exit(128 + sig)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 70)


def _split(namespaced, req_fd, resp_fd, grader_pid):
    """Fork the process tree; returns only in the worker (the process that runs candidate
    code). The keeper (this process) and, with namespaces, the init never return."""
    import signal

    _die_with_parent()
    if grader_pid is not None and os.getppid() != grader_pid:
        os._exit(70)  # the grader died before the parent-death signal was armed
    if not namespaced:
        _libc()("prctl", PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        worker = os.fork()
        if worker == 0:
            return
        _close_protocol(req_fd, resp_fd)

        def on_term(signum, frame):  # grader gone (parent-death signal of the keeper)
            _kill_leftovers()
            os._exit(70)

        signal.signal(signal.SIGTERM, on_term)
        _libc()("prctl", PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        status = _reap_until(worker)
        _kill_leftovers()
        _mirror(status)
    status_r, status_w = os.pipe()
    life_r, life_w = os.pipe()
    init = os.fork()
    if init == 0:  # pid 1 of the new PID namespace
        os.close(status_r)
        os.close(life_w)
        try:
            _die_with_parent(life_r)
            # /proc of the new PID namespace; other users' processes (the init) stay hidden.
            _libc()("mount", b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, b"hidepid=2")
        except Exception as exc:  # noqa: BLE001
            _setup_failed(resp_fd, exc)
        worker = os.fork()
        if worker == 0:
            os.close(status_w)
            os.close(life_r)
            return
        _close_protocol(req_fd, resp_fd)
        status = _reap_until(worker)
        os.write(status_w, str(status if status is not None else -1).encode())
        os._exit(0)  # every other process of the namespace dies with us
    os.close(status_w)
    os.close(life_r)
    _close_protocol(req_fd, resp_fd)
    own = _reap_until(init)
    reported = b""
    while True:
        chunk = os.read(status_r, 64)
        if not chunk:
            break
        reported += chunk
    try:
        status = int(reported) if reported else own
    except ValueError:
        status = own
    _mirror(None if status == -1 else status)


def _setup_failed(resp_fd, exc):
    import struct as _struct

    data = json.dumps({"op": "hello", "setup_error": f"{type(exc).__name__}: {exc}"}).encode()
    try:
        os.write(resp_fd, _struct.pack(">4sIQ", MAGIC, len(data), 0) + data)
    finally:
        os._exit(3)


# --------------------------------------------------------------------------- main


def main():
    req_fd, resp_fd = int(sys.argv[1]), int(sys.argv[2])
    config = _read_config(req_fd)
    here = os.path.dirname(os.path.realpath(__file__))  # the project's: never the candidate's path
    sys.path[:] = ([p for p in sys.path if p and "site-packages" not in p and os.path.realpath(p) != here]
                   + config["site_dirs"])
    sys.dont_write_bytecode = True

    import importlib.util

    spec = importlib.util.spec_from_file_location("_bp_isolation_wire", config["wire_path"])
    assert spec is not None and spec.loader is not None  # the project's wire.py: a .py file always has both
    wire = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(wire)  # imports numpy, before any candidate code
    preloaded: "dict[str, Any]" = {}  # the suite's code the isolated candidate handed over (its SGD loop)
    for filename, source in config.get("preload", {}).items():
        if filename == "conformance/adapters.py":  # its own namespace: only its entry points are shared
            space = {"__name__": "_bp_adapters"}
            exec(compile(source, filename, "exec"), space)
            preloaded["adapt_module"], preloaded["declared_problems"] = space["adapt_module"], space["declared_problems"]
            continue
        exec(compile(source, filename, "exec"), preloaded)

    sandbox = config["sandbox"]
    status = {"namespaces": False, "pid_namespace": False, "uid": os.getuid(), "hidden": [],
              "project_hidden": [], "network": True, "scratch_bytes": None}
    try:
        if sandbox["namespaces"]:
            status.update(_enter_namespaces(sandbox))
            status["namespaces"], status["pid_namespace"], status["network"] = True, True, False
    except Exception as exc:  # noqa: BLE001 - report, never run the candidate half-sandboxed
        _setup_failed(resp_fd, exc)
    try:
        _split(sandbox["namespaces"], req_fd, resp_fd, config.get("grader_pid"))
    except Exception as exc:  # noqa: BLE001
        _setup_failed(resp_fd, exc)
    try:  # from here on: the worker process
        _apply_limits(config["limits"], dropping=sandbox["uid"] is not None)
        _libc()("prctl", PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        if sandbox["uid"] is not None:
            _drop_privileges(sandbox["uid"], sandbox["gid"])
            status["uid"] = os.getuid()
        _libc()("prctl", PR_SET_PDEATHSIG, 9, 0, 0, 0)  # belt and braces: the keeper kills us anyway
        if sandbox["uid"] is not None and not sandbox["namespaces"]:
            _check_reach(sandbox)
        os.chdir(sandbox["workdir"])
    except Exception as exc:  # noqa: BLE001 - report, never run the candidate half-sandboxed
        _setup_failed(resp_fd, exc)
    for fd in range(3, 1024):  # nothing but our two pipes stays open
        if fd not in (req_fd, resp_fd):
            try:
                os.close(fd)
            except OSError:
                pass
    _hide_project_modules(config.get("project_packages", []), config.get("project_dirs", []))
    if sandbox.get("seed"):
        _seed_everything(sandbox["seed"])
    Server(wire, preloaded, config, req_fd, resp_fd, status).run()


def _hide_project_modules(names, dirs):
    """``import reference`` (or conformance, tools) fails even when the project is installed in
    the same site-packages as numpy. With namespaces the files themselves are covered (an empty
    directory is left, which Python would import as an empty namespace package); without them
    this is the only barrier, and a determined candidate can still read the files by path
    (SECURITY.md: what cannot be enforced without root)."""
    import importlib.machinery

    names, roots = frozenset(names), tuple(os.path.realpath(d) for d in dirs)

    def hidden(location):
        real = os.path.realpath(location)
        return any(real == r or real.startswith(r.rstrip("/") + "/") for r in roots)

    class ProjectHidden:
        @staticmethod
        def find_spec(name, path=None, target=None):
            if path is not None or name not in names:
                return None
            found = importlib.machinery.PathFinder.find_spec(name)
            if found is None:
                return None
            places = list(found.submodule_search_locations or []) + ([found.origin] if found.origin else [])
            if any(hidden(place) for place in places if isinstance(place, str)):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

        @staticmethod
        def invalidate_caches():
            pass

    sys.meta_path.insert(0, ProjectHidden())


class Server:
    def __init__(self, wire, preloaded, config, req_fd, resp_fd, status):
        self.wire, self.preloaded, self.config = wire, preloaded, config
        self.req_fd, self.resp_fd, self.status = req_fd, resp_fd, status
        self.module: "Any" = None  # the candidate's module; run() serves calls only once it is set

    def send(self, header, blob=b""):
        self.wire.write_frame(self.resp_fd, header, blob)

    def run(self):
        self.send(self.import_candidate())
        if self.module is None:
            return
        while True:
            try:
                header, blob = self.wire.read_frame(self.req_fd, max_blob=1 << 40)
            except self.wire.PeerClosed:
                return
            op = header.get("op")
            if op == "exit":
                return
            if op == "has":
                self.send(self.answer(lambda header=header: {"ok": True, "has": self.has(header["function"])}))
                continue
            box = [blob]
            del blob  # the request's bytes live only as long as serve_call needs them
            self.serve_call(op, header, box)

    def has(self, name):
        return callable(getattr(self.module, name, None))

    def answer(self, produce):
        try:
            return produce()
        except BaseException as exc:  # noqa: BLE001
            return self.exception_header(exc)

    def import_candidate(self):
        import importlib
        import importlib.util
        import traceback

        cand = self.config["candidate"]
        sys.path.insert(0, cand["root"])
        importlib.invalidate_caches()
        try:
            if cand["file"] is not None:
                spec = importlib.util.spec_from_file_location(cand["module_name"], cand["file"])
                # a .py file (isolation/locate.py refuses any other path): it always has both
                assert spec is not None and spec.loader is not None
                module = importlib.util.module_from_spec(spec)
                sys.modules[cand["module_name"]] = module
                spec.loader.exec_module(module)
            else:
                module = importlib.import_module(cand["module_name"])
            declared = cand.get("declaration")
            if declared is not None:  # the declared conventions, adapted here
                problems = self.preloaded["declared_problems"](module, declared)
                if problems:
                    return {"op": "hello", "ok": False, "status": self.status,
                            "load_error": "the module does not fit its declared conventions: "
                                          + "; ".join(problems)}
                module = self.preloaded["adapt_module"](module, declared)
            functions = {name: self_has(module, name) for name in self.config["functions"]}
        except BaseException as exc:  # noqa: BLE001 - even SystemExit: it is the candidate's
            tb = exc.__traceback__
            importlib_dir = os.path.dirname(importlib.__file__)
            while tb is not None and (tb.tb_frame.f_code.co_filename in (__file__, "<string>")
                                      or tb.tb_frame.f_code.co_filename.startswith("<frozen")
                                      or os.path.dirname(tb.tb_frame.f_code.co_filename) == importlib_dir):
                tb = tb.tb_next  # the student's frames first: the worker's and importlib's are noise
            return {"op": "hello", "ok": False, "status": self.status,
                    "load_error": _safe(lambda exc=exc, tb=tb: "".join(
                        traceback.format_exception(type(exc), exc, tb)))}
        _flush()
        self.module = module
        return {"op": "hello", "ok": True, "status": self.status, "functions": functions}

    def exception_header(self, exc):
        import traceback

        _flush()
        tb = exc.__traceback__
        if tb is not None and tb.tb_next is not None:
            tb = tb.tb_next  # drop our own dispatch frame: the student sees their code first
        return {"ok": False, "exc_type": _safe(lambda: type(exc).__qualname__),
                "memory": isinstance(exc, MemoryError),
                "exc_module": _safe(lambda: type(exc).__module__),
                "message": _safe(lambda: str(exc))[:4000],
                "traceback": _safe(lambda: "".join(traceback.format_exception(type(exc), exc, tb)))[-8000:]}

    def serve_call(self, op, header, box):
        wire = self.wire
        try:
            args, kwargs = wire.decode_tree(header["args"], box.pop(), max_bytes=1 << 40,
                                            rebuild_layouts=True, copy=False)  # the grader's data
            if op == "call":
                function = getattr(self.module, header["function"])
                result = function(*args, **kwargs)
            elif op == "trace":  # conformance/localise.py: the same call under the line tracer
                if "traced_call" not in self.preloaded:
                    raise RuntimeError("the line tracer (conformance/tracer.py) was not preloaded")
                result = self.preloaded["traced_call"](getattr(self.module, header["function"]), args, kwargs,
                                                       [self.config["candidate"]["root"]])
            elif op == "sgd":
                if "sgd" not in self.preloaded:
                    raise RuntimeError("the suite's SGD loop (conformance/sgd_loop.py) was not preloaded")
                X, Y, params = args
                result = self.preloaded["sgd"](self.module.forward, self.module.backward, X, Y, params,
                                             **kwargs)
            else:
                raise RuntimeError(f"unknown request {op!r}")
        except BaseException as exc:  # noqa: BLE001 - candidate exceptions go back as data
            self.send(self.exception_header(exc))
            return
        _flush()
        try:
            value = [result, list(args) if header.get("inspect") else None]
            tree, data = wire.encode_tree(value, max_bytes=int(header["max_answer"]),
                                          max_arrays=int(header["max_arrays"]))
        except BaseException as exc:  # noqa: BLE001
            self.send({"ok": False, "invalid": _safe(lambda exc=exc: f"{type(exc).__name__}: {exc}")[:2000]})
            return
        self.send({"ok": True, "value": tree}, data)


def self_has(module, name):
    try:
        return callable(getattr(module, name, None))
    except Exception:  # noqa: BLE001 - a module __getattr__ may raise
        return False


def _safe(produce):
    try:
        return str(produce())
    except BaseException as exc:  # noqa: BLE001 - hostile __str__ / __repr__
        return f"<unprintable: {type(exc).__name__}>"


def _flush():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # noqa: BLE001
            pass


if __name__ == "__main__":
    main()
