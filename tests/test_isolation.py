"""The isolated candidate: same verdicts as in-process, a wire protocol that trusts nothing,
limits that end misbehaving workers with a precise reason, and a grader that never runs the
candidate's code."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from conformance.candidate import CandidateError, InProcessCandidate
from conformance.isolation import CandidateRaised, IsolatedCandidate, Limits
from conformance.isolation import candidate as candidate_module
from conformance.isolation import process, wire
from conformance.isolation.locate import locate
from tests.helpers import REPO_ROOT, run_pytest
from tests.leftovers import processes_under
from tests.sandbox_off import private_project, readable_python_prefix
from tools.catalogue import materialize
from tools.kill_matrix import RunOptions, run_variant

REFERENCE_SOURCE = REPO_ROOT / "conformance" / "reference" / "mlp.py"
ADVERSARIAL = Path(__file__).resolve().parent / "adversarial"


def _params(sizes=(4, 5, 3), seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((a, b)), rng.standard_normal(b)) for a, b in zip(sizes[:-1], sizes[1:])]


def _submission(tmp_path: Path, body: str, name: str = "student") -> Path:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(body))
    return path


@pytest.fixture
def isolated(tmp_path: Path):
    """Load a submission written from source text as an IsolatedCandidate (closed after)."""
    opened = []

    def load(body: str, limits: Limits = Limits(call_timeout=10, session_timeout=60), name="student"):
        cand = IsolatedCandidate.load(str(_submission(tmp_path, body, name)))
        cand.limits = limits
        opened.append(cand)
        return cand

    yield load
    for cand in opened:
        cand.close()


@pytest.fixture(scope="module")
def reference_pair(tmp_path_factory):
    path = tmp_path_factory.mktemp("ref") / "student_ref.py"
    path.write_bytes(REFERENCE_SOURCE.read_bytes())
    iso, inproc = IsolatedCandidate.load(str(path)), InProcessCandidate.load(str(path))
    yield iso, inproc
    iso.close()


# --------------------------------------------------------------------------- same answers


def test_isolated_results_equal_in_process_results_bit_for_bit(reference_pair) -> None:
    iso, inproc = reference_pair
    assert iso.load_error is None and iso.isolated and not inproc.isolated
    assert (iso.module_name, iso.path, iso.sha256) == (inproc.module_name, inproc.path, inproc.sha256)
    X, params = np.random.default_rng(1).standard_normal((7, 4)), _params()
    Y = np.eye(3)[[0, 1, 2, 0, 1, 2, 0]]
    for mode in (iso, inproc):
        assert [mode.has(f) for f in ("forward", "backward", "train", "nope")] == [True, True, True, False]
    acts_i, pre_i = iso.call("forward", X, params)
    acts_p, pre_p = inproc.call("forward", X, params)
    grads_i = iso.call("backward", acts_i, pre_i, Y, params)
    grads_p = inproc.call("backward", acts_p, pre_p, Y, params)
    for got, want in zip(acts_i + pre_i + [a for g in grads_i for a in g],
                         acts_p + pre_p + [a for g in grads_p for a in g]):
        assert type(got) is np.ndarray and got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)  # same code, same inputs: identical bits
    assert type(grads_i) is list and type(grads_i[0]) is tuple
    loss = iso.call("cross_entropy", acts_i[-1], Y)
    assert type(loss) is type(inproc.call("cross_entropy", acts_p[-1], Y)) and loss > 0


def test_call_and_inspect_returns_the_workers_argument_copies(isolated) -> None:
    cand = isolated("""
        import numpy as np
        def forward(X, params):
            X *= 2.0               # mutates its input: the suite must be able to see that
            params[0] = (params[0][0], params[0][1] + 1.0)
            return [X], []
        def backward(a, z, Y, params):
            return []
    """)
    X, params = np.ones((2, 3)), _params((3, 2))
    result, after = cand.call_and_inspect("forward", X, params)
    assert type(after) is tuple and len(after) == 2
    np.testing.assert_array_equal(after[0], 2.0 * np.ones((2, 3)))
    np.testing.assert_array_equal(after[1][0][1], params[0][1] + 1.0)
    np.testing.assert_array_equal(X, np.ones((2, 3)))  # the suite's own data never changes
    assert result[0][0] is after[0]  # aliasing inside one answer survives the trip


def test_argument_layouts_and_read_only_flags_reach_the_candidate(isolated) -> None:
    cand = isolated("""
        import numpy as np
        def forward(X, params):
            W = params[0][0]
            flags = [X.flags.c_contiguous, X.flags.f_contiguous, X.flags.writeable,
                     W.flags.c_contiguous, W.flags.f_contiguous]
            return [np.array(flags, dtype=np.float64), np.array(X.strides, dtype=np.float64)], []
        def backward(a, z, Y, params):
            return []
    """)
    base = np.arange(24.0).reshape(4, 6)
    view = base[:, ::2]
    readonly = np.ones((3, 3))
    readonly.flags.writeable = False
    for X, W in ((view, np.asfortranarray(np.ones((3, 2)))), (readonly, np.ones((3, 2)))):
        (flags, strides), _ = cand.call("forward", X, [(W, np.zeros(2))])
        assert list(flags.astype(bool)) == [X.flags.c_contiguous, X.flags.f_contiguous,
                                            X.flags.writeable, W.flags.c_contiguous, W.flags.f_contiguous]
        assert tuple(strides.astype(int)) == X.strides


def test_namedtuples_and_numpy_scalars_cross_as_their_plain_equivalents(isolated) -> None:
    cand = isolated("""
        import collections
        import numpy as np
        Pair = collections.namedtuple("Pair", "dW db")
        def forward(X, params):
            return [X], []
        def backward(a, z, Y, params):
            return [Pair(np.zeros((2, 2)), np.zeros(2))]
        def cross_entropy(Y_hat, Y):
            return np.float32(0.25)
    """)
    grads = cand.call("backward", [], [], np.zeros((1, 2)), [])
    assert type(grads[0]) is tuple and len(grads[0]) == 2
    loss = cand.call("cross_entropy", np.zeros((1, 2)), np.zeros((1, 2)))
    assert type(loss) is np.float32 and loss == np.float32(0.25)


def test_lying_objects_arrive_as_inert_markers_that_fail_type_checks(isolated) -> None:
    cand = isolated("""
        import numpy as np
        class Agreeable(np.ndarray):
            def __eq__(self, other):
                return True
        class Chameleon:
            def __array__(self, dtype=None, copy=None):
                return np.zeros(3)
            def __eq__(self, other):
                return True
            def __float__(self):
                return 0.0
        def forward(X, params):
            return [np.zeros(3).view(Agreeable), Chameleon(), np.array([object()]), {1, 2}], []
        def backward(a, z, Y, params):
            return []
    """)
    acts, _ = cand.call("forward", np.zeros((1, 3)), [])
    for value, name in zip(acts, ["Agreeable", "Chameleon", "ndarray", "set"]):
        assert isinstance(value, wire.ForeignValue) and type(value).__name__ == name
        assert type(value) is not np.ndarray and not isinstance(value, np.ndarray)
        assert value != value.__class__ and value != 0
        with pytest.raises(TypeError):
            float(value)
        with pytest.raises(TypeError):
            len(value)
        assert np.asarray(value).dtype == object  # never a numeric array


# --------------------------------------------------------------------------- failures


def test_candidate_exceptions_come_back_with_type_message_and_traceback(isolated) -> None:
    cand = isolated("""
        import numpy as np
        def forward(X, params):
            return [X], []
        def backward(a, z, Y, params):
            return np.ones((2, 3)) @ np.ones((2, 3))
    """)
    with pytest.raises(CandidateRaised) as info:
        cand.call("backward", [], [], np.zeros(1), [])
    err = info.value
    assert isinstance(err, CandidateError) and err.function == "backward"
    assert err.exc_type == "ValueError" and "matmul" in err.exc_message
    assert "student.py" in err.traceback_text and "line 6, in backward" in err.traceback_text
    assert err.reason.startswith("ValueError: matmul")
    cand.call("forward", np.zeros((1, 1)), [])  # the worker survives candidate exceptions


def test_timeout_kills_the_worker_and_the_next_call_gets_a_fresh_one(isolated) -> None:
    cand = isolated("""
        import numpy as np
        CALLS = []
        def forward(X, params):
            CALLS.append(1)
            return [np.array([float(len(CALLS))])], []
        def backward(a, z, Y, params):
            while True:
                pass
    """, Limits(call_timeout=1, session_timeout=30))
    assert cand.call("forward", np.zeros(1), [])[0][0][0] == 1.0
    with pytest.raises(CandidateError, match=r"timeout after 1 s \(per-call limit\); the worker was killed"):
        cand.call("backward", [], [], np.zeros(1), [])
    assert cand.call("forward", np.zeros(1), [])[0][0][0] == 1.0  # fresh worker: module state reset
    # A function that hung is not called again (each call would burn the same limit), and
    # neither is the suite's SGD loop, which calls it; other functions still run.
    used, starts = cand._used, cand._starts
    with pytest.raises(CandidateError, match=r"not run: backward\(\) already hung in an earlier check "
                                             r"\(timeout after 1 s\)"):
        cand.call("backward", [], [], np.zeros(1), [])
    with pytest.raises(CandidateError, match=r"run_sgd\(\): not run: backward\(\) already hung"):
        cand.run_sgd(np.zeros((2, 1)), np.ones((2, 1)), [], lr=0.1, epochs=1, batch_size=2, seed=0)
    assert (cand._used, cand._starts) == (used, starts)  # no worker was asked: no budget spent
    assert cand.call("forward", np.zeros(1), [])[0][0][0] == 2.0


def test_session_budget_stops_all_further_calls(isolated) -> None:
    cand = isolated("""
        def _hang(*args):
            while True:
                pass
        forward = backward = relu = softmax = cross_entropy = init_params = _hang
    """, Limits(call_timeout=1, session_timeout=3))
    reasons = []
    for function in ("forward", "relu", "softmax", "cross_entropy", "init_params"):
        with pytest.raises(CandidateError) as info:
            cand.call(function, 0)
        reasons.append(info.value.reason)
        if "exhausted" in reasons[-1]:
            break
    assert reasons[0].startswith("timeout after 1 s (per-call limit)")
    assert "session time budget of 3 s" in reasons[-1], reasons
    # Each timed-out call spent ~1 s of the 3 s budget: at most 3 ran before it was exhausted
    # (the budget is measured, so no wall-clock bound is asserted here).
    assert len(reasons) <= 4 and cand._used >= 3, (reasons, cand._used)
    with pytest.raises(CandidateError, match=r"session time budget of 3 s exhausted"):
        cand.call("backward", 0, 0, 0, 0)


@pytest.mark.parametrize("crash, reason", [
    ("import ctypes; ctypes.string_at(0)", r"killed by signal SIGSEGV while running forward\(\)"),
    ("import os; os._exit(0)", r"exited with status 0 while running forward\(\)"),
    ("import os; os._exit(3)", r"exited with status 3 while running forward\(\)"),
    ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", r"killed by signal SIGKILL"),
])
def test_a_dying_worker_is_explained_and_replaced(isolated, crash: str, reason: str) -> None:
    cand = isolated(f"""
        def forward(X, params):
            print("last words before the crash", flush=True)
            {crash}
        def backward(a, z, Y, params):
            return 7.0
    """)
    with pytest.raises(CandidateError, match=reason) as info:
        cand.call("forward", 0, [])
    assert "last words before the crash" in info.value.reason  # the tail of its output
    assert cand.call("backward", 0, 0, 0, 0) == 7.0


def test_garbage_on_the_protocol_pipe_is_invalid_output(isolated) -> None:
    cand = isolated("""
        import os
        def forward(X, params):
            for fd in range(3, 64):
                try:
                    os.write(fd, b"BPW2" + b"\\x00\\x00\\x00\\x08" + bytes(8) + b"not json")
                except OSError:
                    pass
            return [], []
        def backward(a, z, Y, params):
            return 1.5
    """)
    with pytest.raises(CandidateError, match="invalid output from the worker"):
        cand.call("forward", 0, [])
    assert cand.call("backward", 0, 0, 0, 0) == 1.5


def test_forks_threads_network_and_the_repository_are_out_of_reach(isolated, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("namespaces and the privilege drop need root (see conformance/SECURITY.md)")
    cand = isolated(f"""
        import os, socket, threading
        def probe(what):
            try:
                what()
                return "allowed"
            except Exception as exc:
                return type(exc).__name__
        def forward(X, params):
            return {{
                "fork": probe(os.fork),
                "thread": probe(lambda: threading.Thread(target=print).start()),
                "net": probe(lambda: socket.create_connection(("1.1.1.1", 53), timeout=1)),
                "repo": probe(lambda: open({str(REFERENCE_SOURCE)!r}).read()),
                "elsewhere": probe(lambda: os.listdir({str(tmp_path)!r})),
                "tmp": os.listdir("/tmp"),
                "uid": os.getuid(),
                "proc": sorted(p for p in os.listdir("/proc") if p.isdigit()),
            }}, []
        def backward(a, z, Y, params):
            return []
    """)
    seen, _ = cand.call("forward", 0, [])
    assert seen["fork"] == "BlockingIOError" and seen["thread"] == "RuntimeError"
    assert seen["net"] == "OSError"
    assert seen["repo"] == "FileNotFoundError" and seen["elsewhere"] == "FileNotFoundError"
    # /tmp is an empty tmpfs except for what is bound back: the sandbox directory and, when the
    # Python installation or the site-packages live under /tmp (a venv there), their top folder.
    bound = [Path(sys.base_prefix).resolve(), *map(Path, process._site_dirs()), cand._dir]
    allowed = {b.relative_to("/tmp").parts[0] for b in bound if b.is_relative_to("/tmp")}
    assert set(seen["tmp"]) <= allowed and (cand._dir.name in seen["tmp"]) == cand._dir.is_relative_to("/tmp")
    assert seen["uid"] >= 0x10000000
    assert len(seen["proc"]) == 1  # its own process only: the grader and other workers are invisible


def _forged_answer(descriptor_expr: str, blob_len_expr: str) -> str:
    """Candidate code that writes its own answer frame straight to the worker's response pipe
    (its fd number is in sys.argv), bypassing the worker's encoder and its limits."""
    return f"""
        import json, os, struct, sys
        import numpy as np
        def forward(X, params):
            data = json.dumps({{"ok": True, "value": {descriptor_expr}}}).encode()
            blob_len = {blob_len_expr}
            os.write(int(sys.argv[2]), struct.pack(">4sIQ", b"BPW2", len(data), blob_len) + data)
            view = memoryview(bytes(blob_len))
            while view:  # (a refused frame is never read: the grader kills us mid-write)
                view = view[os.write(int(sys.argv[2]), view[:1 << 20]):]
            return [X], []
        def backward(a, z, Y, params):
            return 2.5
    """


def test_huge_answers_are_refused_before_the_grader_reads_them(isolated) -> None:
    honest = isolated("""
        import numpy as np
        def forward(X, params):
            return [np.zeros((3 << 20,))], []   # 24 MiB
        def backward(a, z, Y, params):
            return []
    """, Limits(max_result_mb=8))
    with pytest.raises(CandidateError, match="cannot cross the isolation boundary: WireError: value holds "
                                             "more than 8388608 bytes of arrays"):
        honest.call("forward", 0, [])
    # A forged frame that announces 200 MiB: refused from its 16-byte prefix, never read.
    forged = isolated(_forged_answer('{"v": {"t": "none"}, "a": [["<f8", [26214400], "C"]]}', "200 << 20"),
                      Limits(max_result_mb=8, call_timeout=10, session_timeout=60))
    with pytest.raises(CandidateError, match=r"invalid output from the worker .*payload of 209715200 bytes "
                                             r"exceeds the 8388608-byte limit \(refused before reading it\)"):
        forged.call("forward", 0, [])
    assert forged.call("backward", 0, 0, 0, 0) == 2.5  # a fresh worker, the grader unharmed
    # The limit grows with the arguments (relu(X) is X's size), so big legitimate answers pass.
    X = np.ones(3 << 20)
    assert honest.call("forward", X, [])[0][0].nbytes == 24 << 20


def test_many_tiny_arrays_are_refused_and_decoding_is_charged_to_the_session(isolated, monkeypatch) -> None:
    honest = isolated("""
        import numpy as np
        def forward(X, params):
            return [np.zeros(1) for _ in range(65000)], []
        def backward(a, z, Y, params):
            return [np.zeros(1) for _ in range(3)]
    """, Limits(max_arrays=100, call_timeout=10, session_timeout=60))
    with pytest.raises(CandidateError, match="value holds more than 100 arrays"):
        honest.call("forward", 0, [])
    forged = isolated(_forged_answer(
        '{"v": {"t": "list", "v": [{"t": "nd", "i": i} for i in range(65000)]}, "a": [["<f8", [1], "C"]] * 65000}',
        "64 * 64999 + 8"), Limits(max_arrays=4096, call_timeout=10, session_timeout=60))
    with pytest.raises(CandidateError, match="value holds 65000 arrays, more than the limit of 4096"):
        forged.call("forward", 0, [])
    # Decoding an answer counts against the candidate's session budget.
    slow_decode = wire.decode_tree

    def decode_taking_a_second(*args, **kwargs):
        time.sleep(1.0)
        return slow_decode(*args, **kwargs)

    monkeypatch.setattr(wire, "decode_tree", decode_taking_a_second)
    used = honest._used
    assert len(honest.call("backward", 0, 0, 0, 0)) == 3
    assert honest._used - used >= 1.0


def test_the_scratch_directory_is_a_bounded_private_tmpfs(isolated, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the scratch tmpfs needs the namespaces (root); see conformance/SECURITY.md")
    cand = isolated("""
        import os
        def forward(X, params):
            written, error = 0, ""
            try:
                for i in range(10000):   # many files of 1 MiB: a per-file limit does not bound this
                    with open(f"fill-{i}", "wb") as f:
                        f.write(b"x" * (1 << 20))
                    written += 1
            except OSError as exc:
                error = exc.strerror
            return {"written": written, "error": error, "cwd": os.getcwd()}, []
        def backward(a, z, Y, params):
            return sorted(os.listdir("."))
    """, Limits(scratch_mb=8, call_timeout=20, session_timeout=60))
    cand._kill_worker()  # the worker started at load had the default scratch size
    seen, _ = cand.call("forward", 0, [])
    assert seen["error"] == "No space left on device" and seen["written"] <= 8  # 8 MiB of 1 MiB files
    assert seen["cwd"] == str(cand._dir / "work")
    # The grader's disk never saw those bytes, and a fresh worker starts with an empty scratch.
    on_disk = sum(f.stat().st_size for f in cand._dir.rglob("*") if f.is_file())
    assert on_disk < (1 << 20), f"{on_disk} bytes reached the grader's disk"
    cand._kill_worker()
    assert cand.call("backward", 0, 0, 0, 0) == []


def _grader_script(body: str) -> str:
    return "import numpy as np\nfrom conformance.isolation import IsolatedCandidate, Limits\n" + textwrap.dedent(body)


@pytest.mark.parametrize("sandbox", ["auto", "off"])
@pytest.mark.parametrize("end", ["grader killed", "grader terminated", "call timed out"])
def test_nothing_of_a_submission_outlives_its_run(tmp_path: Path, sandbox: str, end: str) -> None:
    """The worker cleared its parent-death signal, ignores SIGTERM and left the session (and,
    where it may, forked a child that did the same); then its grader is SIGKILLed, or its call
    times out. Nothing of it may survive (with namespaces: its PID namespace dies with the
    init; without: the keeper, a subreaper, kills it and its orphans)."""
    isolate_dir, prefix, cwd = tmp_path / "isolate", [], REPO_ROOT
    if sandbox == "off" and os.geteuid() == 0:
        # Off as root: the worker still runs as its own uid, so it must reach the sandbox
        # folder and the Python installation, and not the project (tests/sandbox_off.py).
        prefix, cwd = readable_python_prefix(tmp_path), private_project(tmp_path)
        isolate_dir = Path(tempfile.mkdtemp(prefix="isolate-"))
        isolate_dir.chmod(0o711)
    submission = tmp_path / "survivor.py"
    submission.write_bytes((ADVERSARIAL / "survive_parent.py").read_bytes())
    grader = subprocess.Popen(
        [*prefix, sys.executable, "-c", _grader_script(f"""
            cand = IsolatedCandidate.load({str(submission)!r})
            print("loaded:", cand.load_error, flush=True)
            try:
                cand.call("forward", np.zeros(1), [])  # hangs (until killed, or for 3 s)
            except Exception as exc:
                print(type(exc).__name__, str(exc)[:80], flush=True)
            input()  # the run is over but the grader lives on: nothing of the worker may
        """)], cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env=dict(os.environ, BACKPROP_ISOLATE_DIR=str(isolate_dir), BACKPROP_ISOLATE_SANDBOX=sandbox,
                 BACKPROP_ISOLATE_CALL_TIMEOUT="3"), text=True)
    try:
        assert grader.stdout.readline().strip() == "loaded: None"
        assert processes_under(isolate_dir, wait=0), "the worker should be running now"
        if end == "grader killed":
            grader.kill()
        elif end == "grader terminated":  # `timeout pytest ...`: the grader cleans up, then dies
            grader.terminate()
            assert grader.wait(timeout=30) == -signal.SIGTERM
            assert not list(isolate_dir.glob("bp-isolate-*")), "the sandbox copy outlived its grader"
        else:
            assert grader.stdout.readline().startswith("CandidateError forward(): timeout after 3 s")
        assert not processes_under(isolate_dir, wait=10), f"processes outlived their run ({end})"
    finally:
        grader.kill()
        grader.wait()
    # What is left on disk belongs to whoever made BACKPROP_ISOLATE_DIR (the batch runner
    # removes it); it holds the copy of the submission and nothing the worker can still touch.
    shutil.rmtree(isolate_dir)


def _project_probe(python: str, cwd: Path, tmp_path: Path) -> dict:
    """Run the import_project attack against the grader that ``python`` runs (editable or
    regular install); returns what it reached."""
    submission = tmp_path / "import_project.py"
    submission.write_bytes((ADVERSARIAL / "import_project.py").read_bytes())
    proc = subprocess.run(
        [python, "-c", _grader_script(f"""
            import json, conformance
            cand = IsolatedCandidate.load({str(submission)!r})
            print(json.dumps({{"load_error": cand.load_error, "conformance": conformance.__file__,
                              "sandbox": cand.sandbox_record()}}))
            cand.close()
        """)], cwd=cwd, capture_output=True, text=True, timeout=300,
        env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "BACKPROP_IMPL")})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_project_is_unreachable_from_an_editable_install(tmp_path: Path) -> None:
    seen = _project_probe(sys.executable, tmp_path, tmp_path)
    assert Path(seen["conformance"]).is_relative_to(REPO_ROOT)  # (this venv's install is editable)
    assert "nothing of the project is reachable" in (seen["load_error"] or ""), seen


@pytest.mark.slow
def test_the_project_is_unreachable_from_a_regular_install(tmp_path: Path) -> None:
    """``pip install .`` puts conformance/ (the reference included) into the same site-packages as numpy."""
    if os.geteuid() != 0:
        pytest.skip("without root only `import conformance` is refused: the files stay readable "
                    "(conformance/SECURITY.md)")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    ours = Path(np.__file__).resolve().parent.parent
    for entry in ours.iterdir():  # this venv's packages (hard links where possible), minus the project
        if entry.name.startswith(("__editable__", "backprop_conformance", "reference", "conformance",
                                  "tools", "__pycache__")):
            continue
        copy = site / entry.name
        if entry.is_dir():
            shutil.copytree(entry, copy, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(entry, copy)
    source = tmp_path / "source"  # setuptools builds in the tree: never in the repository
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "MANIFEST.in"):
        shutil.copy(REPO_ROOT / name, source / name)
    for name in ("conformance", "fixtures"):  # fixtures: conformance.fixtures
        shutil.copytree(REPO_ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    installed = subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                                "--no-index", str(source)], capture_output=True, text=True, timeout=600)
    if installed.returncode != 0:
        # Offline, without the `wheel` package (setuptools < 70.1 needs it to build): lay the
        # packages out exactly as the wheel would, from pyproject.toml's package list.
        assert "bdist_wheel" in installed.stderr, installed.stderr[-3000:]
        shutil.copytree(source / "conformance", site / "conformance")
        shutil.copytree(source / "fixtures", site / "conformance" / "fixtures")
    assert (site / "conformance" / "reference" / "mlp.py").is_file() and (site / "numpy").is_dir()
    seen = _project_probe(python, tmp_path, tmp_path)
    assert Path(seen["conformance"]).resolve().is_relative_to(site.resolve())
    assert "nothing of the project is reachable" in (seen["load_error"] or ""), seen
    assert seen["sandbox"]["protections"]["project_files_hidden"] is True


def _link_or_copy(src, dst) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


# --------------------------------------------------------------------------- loading


def test_the_grader_locates_but_never_executes_the_candidate(tmp_path: Path, monkeypatch) -> None:
    marker = tmp_path / "executed-in-grader"
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    # Each file tries to leave a mark; the worker cannot write there (the directory is hidden
    # from it), and the grader must never run these files at all.
    hostile = f"try:\n    open({str(marker)!r}, 'a').write('ran')\nexcept OSError:\n    pass\n"
    (package / "__init__.py").write_text(hostile)
    (package / "sub" / "__init__.py").write_text(hostile)
    (package / "sub" / "mlp.py").write_text(REFERENCE_SOURCE.read_text() + hostile)
    monkeypatch.chdir(tmp_path)
    located = locate("pkg.sub.mlp")
    assert located.file == package / "sub" / "mlp.py" and located.copy_from == package
    cand = IsolatedCandidate.load("pkg.sub.mlp")
    try:
        assert cand.load_error is None and cand.module_name == "pkg.sub.mlp"
        assert cand.path == package / "sub" / "mlp.py"
        assert "pkg" not in sys.modules and "pkg.sub.mlp" not in sys.modules
        assert not marker.exists()
        assert cand.call("relu", np.array([-1.0, 2.0])).tolist() == [0.0, 2.0]
    finally:
        cand.close()


def test_a_grader_side_failure_is_a_grader_error_never_the_students(tmp_path: Path, monkeypatch) -> None:
    path = _submission(tmp_path, REFERENCE_SOURCE.read_text())

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(candidate_module.tempfile, "mkdtemp", disk_full)
    with pytest.raises(pytest.UsageError, match=r"grader error \(not the candidate's fault.*No space left"):
        IsolatedCandidate.load(str(path))
    monkeypatch.undo()
    monkeypatch.setenv("BACKPROP_ISOLATE_SANDBOX", "require")
    monkeypatch.setenv("BACKPROP_ISOLATE_DIR", str(tmp_path / "isolate"))
    monkeypatch.setattr(process.os, "geteuid", lambda: 1000)  # "not root"
    with pytest.raises(pytest.UsageError, match="grader error .*--isolate-sandbox require"):
        IsolatedCandidate.load(str(path))
    assert (tmp_path / "isolate").is_dir() and not list((tmp_path / "isolate").iterdir())  # cleaned up


def test_load_errors_match_the_in_process_wording(tmp_path: Path) -> None:
    incomplete = _submission(tmp_path, "def forward(X, params):\n    return [X], []\n", "incomplete")
    broken = _submission(tmp_path, "import numpy as np\nraise RuntimeError('boom at import')\n", "broken")
    for path, expected in ((incomplete, "does not define the required function(s) backward"),
                           (broken, "RuntimeError: boom at import")):
        iso = IsolatedCandidate.load(str(path))
        try:
            assert iso.load_error is not None and expected in iso.load_error
        finally:
            iso.close()
        assert expected in (InProcessCandidate.load(str(path)).load_error or "")
    missing = IsolatedCandidate.load(str(tmp_path / "nowhere.py"))
    assert "no such file" in (missing.load_error or "")


# --------------------------------------------------------------------------- the wire


def _frame_roundtrip(header: dict, blob: bytes = b"", max_blob: int = 1 << 20):
    r, w = os.pipe()
    try:
        wire.write_frame(w, header, blob)
        return wire.read_frame(r, max_blob=max_blob, deadline=None)
    finally:
        os.close(r)
        os.close(w)


def _decode(descriptor, blob: bytes = b"", **limits):
    limits.setdefault("max_bytes", 1 << 20)
    return wire.decode_tree(descriptor, bytearray(blob), **limits)


def _encoded(value, **limits):
    descriptor, parts = wire.encode_tree(value, max_bytes=1 << 30, **limits)
    return json.loads(json.dumps(descriptor)), b"".join(bytes(memoryview(p).cast("B")) for p in parts)


def test_wire_round_trips_every_whitelisted_dtype_layout_and_python_scalar() -> None:
    shared = np.ones((2, 2))
    value = [np.arange(6.0).reshape(2, 3), np.asfortranarray(np.ones((3, 2), np.float32)),
             np.array(3, dtype=np.int16), np.zeros((0, 4)), np.arange(5, dtype=">f8"),
             np.array([True, False]), np.array([1 + 2j], np.complex64), np.float16([0.5]),
             np.uint64([2**63]), np.arange(12)[::3], shared, shared, np.float32(0.25),
             (1.5, -0.0, float("nan"), float("inf"), 7, -(10**40), None, True, "text"), {"k": [1.0]}]
    descriptor, blob = _encoded(value)
    back = _decode(descriptor, blob, max_bytes=len(blob))
    for got, want in zip(back[:12], value[:12]):
        assert type(got) is np.ndarray and got.dtype == want.dtype.newbyteorder("=")
        np.testing.assert_array_equal(got, want)
    assert back[1].flags.f_contiguous and not back[1].flags.c_contiguous  # F order kept
    assert back[10] is back[11]  # aliasing inside one value survives the trip
    assert type(back[12]) is np.float32 and back[12] == np.float32(0.25)
    floats = back[13]
    assert floats[0] == 1.5 and str(floats[1]) == "-0.0" and np.isnan(floats[2]) and floats[3] == np.inf
    assert floats[4:] == (7, -(10**40), None, True, "text") and back[14] == {"k": [1.0]}


def _array_value(n: int, entry=None) -> tuple[dict, bytes]:
    """A descriptor of ``n`` float64 arrays of one element each (``entry`` overrides them)."""
    table = [entry or ["<f8", [1], "C"]] * n
    tree = {"t": "list", "v": [{"t": "nd", "i": i} for i in range(n)]}
    size = (n - 1) * wire.ALIGN + 8 if n else 0
    return {"v": tree, "a": table}, bytes(size)


@pytest.mark.parametrize("descriptor, blob, error", [
    ({"t": "nd", "i": 0}, b"", "not a {v, a} descriptor"),
    ({"v": {"t": "nd", "i": 0}, "a": []}, b"", "missing array"),
    ({"v": {"t": "eval", "v": "__import__('os')"}, "a": []}, b"", "unknown value kind"),
    ({"v": {"t": "list", "v": "not a list"}, "a": []}, b"", "malformed list"),
    ({"v": {"t": "ref", "i": 0}, "a": [["<f8", [], "C"]]}, bytes(8), "not seen yet"),
    ({"v": {"t": "int", "v": "9" * 100}, "a": []}, b"", "unknown value kind"),
    ({"v": {"t": "float", "v": "1e999"}, "a": []}, b"", "malformed float"),
    ({"v": {"t": "list", "v": [{"t": "none"}] * (wire.MAX_NODES + 1)}, "a": []}, b"", "too large"),
    ({"v": {"t": "list", "v": [{"t": "nd", "i": 0}, {"t": "nd", "i": 0}]}, "a": [["<f8", [1], "C"]]},
     bytes(8), "used twice"),
    ({"v": {"t": "none"}, "a": "not a table"}, b"", "array table is not a list"),
    ({"v": {"t": "none"}, "a": [["|O", [1], "C"]]}, bytes(8), "may not cross"),
    ({"v": {"t": "none"}, "a": [["<U4", [1], "C"]]}, bytes(16), "may not cross"),
    ({"v": {"t": "none"}, "a": [["|V8", [1], "C"]]}, bytes(8), "may not cross"),
    ({"v": {"t": "none"}, "a": [["<M8[s]", [1], "C"]]}, bytes(8), "may not cross"),
    ({"v": {"t": "none"}, "a": [["<f8", [-1], "C"]]}, b"", "bad shape"),
    ({"v": {"t": "none"}, "a": [["<f8", [True], "C"]]}, bytes(8), "bad shape"),
    ({"v": {"t": "none"}, "a": [["<f8", [1.0], "C"]]}, bytes(8), "bad shape"),
    ({"v": {"t": "none"}, "a": [["<f8", [1] * 33, "C"]]}, bytes(8), "bad shape"),
    ({"v": {"t": "none"}, "a": [["<f8", [1], "K"]]}, bytes(8), "bad order"),
    ({"v": {"t": "none"}, "a": [["<f8", [1], "C", 0]]}, bytes(8), "malformed entry"),
    ({"v": {"t": "none"}, "a": [["<f8", [9], "C"]]}, bytes(32), "need 72 bytes but 32 were sent"),
    ({"v": {"t": "none"}, "a": [["<f8", [1], "C"]]}, bytes(4096), "need 8 bytes but 4096 were sent"),
    ({"v": {"t": "none"}, "a": [["<f8", [1 << 40, 1 << 40], "C"]]}, b"", "exceed the 1048576-byte limit"),
])
def test_wire_rejects_malformed_values(descriptor, blob, error) -> None:
    with pytest.raises(wire.WireError, match=re.escape(error)):
        _decode(descriptor, blob)


def test_wire_caps_array_count_and_bytes_before_building_anything(monkeypatch) -> None:
    built = []
    monkeypatch.setattr(np, "frombuffer", lambda *a, **k: built.append(1))  # must not be reached
    descriptor, blob = _array_value(65_000)
    with pytest.raises(wire.WireError, match="holds 65000 arrays, more than the limit of 4096"):
        _decode(descriptor, blob, max_bytes=1 << 30, max_arrays=4096)
    descriptor, blob = _array_value(2, ["<f8", [1 << 17], "C"])
    with pytest.raises(wire.WireError, match="exceed the 1048576-byte limit"):
        _decode(descriptor, bytes(2 << 20))
    assert not built
    monkeypatch.undo()
    with pytest.raises(wire.WireError, match="more than 10 arrays"):
        wire.encode_tree([np.zeros(1) for _ in range(11)], max_bytes=1 << 20, max_arrays=10)
    with pytest.raises(wire.WireError, match="more than 100 bytes"):
        wire.encode_tree([np.zeros(100)], max_bytes=100)


_KEYS = st.sampled_from(["t", "v", "i", "k", "a", "layout", "ro", "type", "module", "why"])
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8)
    | st.sampled_from(["nd", "ref", "float", "npscalar", "list", "tuple", "dict", "int", "str",
                       "foreign", "<f8", ">i4", "|b1", "C", "F", "nan", "v", "a", "t", "i", "k"]),
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(_KEYS, children, max_size=4)),
    max_leaves=30)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(tree=_JSON, table=_JSON, blob=st.binary(max_size=256))
def test_wire_fuzz_arbitrary_descriptors_only_ever_raise_wire_error(tree, table, blob) -> None:
    for descriptor in ({"v": tree, "a": table}, tree):
        try:
            _decode(descriptor, blob, max_bytes=4096, max_arrays=16)
        except wire.WireError:
            pass


_SMALL_ARRAYS = st.lists(hnp.arrays(st.sampled_from(sorted(wire.DTYPES)),
                                    hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)),
                         max_size=4)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(value=_SMALL_ARRAYS, data=st.data())
def test_wire_fuzz_mutated_valid_values_decode_or_raise_wire_error(value, data) -> None:
    descriptor, blob = _encoded([value, {"x": 1.5}])
    text = bytearray(json.dumps(descriptor).encode())
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(text) - 1))
        text[at] = data.draw(st.sampled_from(b'0123456789-[]{},":tnfaeCF<>|'))
    try:
        mutated = json.loads(bytes(text))
    except ValueError:
        return  # read_frame rejects it as "not valid JSON" (test_frames_reject_garbage_and_time_out)
    cut = data.draw(st.integers(0, len(blob)))
    for candidate_blob in (blob, blob[:cut], blob + bytes(data.draw(st.integers(0, 70)))):
        try:
            _decode(mutated, candidate_blob, max_bytes=1 << 20, max_arrays=64)
        except wire.WireError:
            pass


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(value=_SMALL_ARRAYS)
def test_wire_fuzz_round_trip_is_exact(value) -> None:
    descriptor, blob = _encoded(value)
    back = _decode(descriptor, blob, max_bytes=len(blob), max_arrays=len(value))
    assert len(back) == len(value)
    for got, want in zip(back, value):
        assert got.shape == want.shape and got.dtype == want.dtype.newbyteorder("=")
        np.testing.assert_array_equal(got, want)


def test_frames_refuse_oversize_payloads_before_reading_them() -> None:
    with pytest.raises(wire.WireError, match="exceeds the 10-byte limit"):
        _frame_roundtrip({"op": "x"}, b"0123456789ab", max_blob=10)
    r, w = os.pipe()
    try:  # a header that promises 1 TiB and sends nothing: refused at once, nothing allocated
        os.write(w, struct.pack(">4sIQ", wire.MAGIC, 2, 1 << 40) + b"{}")
        with pytest.raises(wire.WireError, match="refused before reading it"):
            wire.read_frame(r, max_blob=1 << 20, deadline=time.monotonic() + 5)
    finally:
        os.close(r)
        os.close(w)


def test_frames_reject_garbage_and_time_out() -> None:
    assert _frame_roundtrip({"op": "hi", "n": 1}, b"abc") == ({"op": "hi", "n": 1}, bytearray(b"abc"))
    r, w = os.pipe()
    try:
        os.write(w, b"JUNK" + b"\0" * 12)
        with pytest.raises(wire.WireError, match="bad frame magic"):
            wire.read_frame(r, max_blob=10, deadline=None)
        with pytest.raises(wire.WireTimeout):
            wire.read_frame(r, max_blob=10, deadline=time.monotonic() + 0.2)
    finally:
        os.close(r)
        os.close(w)


def test_limits_come_from_options_or_the_graders_environment(monkeypatch) -> None:
    monkeypatch.setenv("BACKPROP_ISOLATE_CALL_TIMEOUT", "2.5")
    monkeypatch.setenv("BACKPROP_ISOLATE_COPY_DIR", "yes")
    limits = Limits.from_config(None)
    assert limits.call_timeout == 2.5 and limits.copy_dir is True and limits.memory_mb == 4096
    monkeypatch.setenv("BACKPROP_ISOLATE_SANDBOX", "sometimes")
    with pytest.raises(pytest.UsageError, match="auto, require or off"):
        Limits.from_config(None)


# --------------------------------------------------------------------------- same verdicts


def _both_modes(variant, tmp_path: Path):
    # Back to back, so both runs judge the variant with the same suite version.
    return (run_variant(variant, tmp_path / "in-process", RunOptions(isolate=False, timeout=300)),
            run_variant(variant, tmp_path / "isolated", RunOptions(isolate=True, timeout=300)))


def _verdicts_in_both_modes(variants, tmp_path: Path) -> list[str]:
    with ThreadPoolExecutor(max_workers=2) as pool:  # threads only wait on subprocesses
        pairs = list(pool.map(lambda v: _both_modes(v, tmp_path), variants))
    problems = []
    for a, b in pairs:
        for run in (a, b):
            if run.error:
                problems.append(f"{run.variant.name}: run error {run.error}\n{run.output_tail}")
        va = {t.nodeid: t.outcome for t in a.tests}
        vb = {t.nodeid: t.outcome for t in b.tests}
        for nodeid in sorted(va.keys() | vb.keys()):
            if va.get(nodeid) != vb.get(nodeid):
                message = next((t.message for t in b.tests + a.tests
                                if t.nodeid == nodeid and t.outcome == "failed"), "")
                problems.append(f"{a.variant.name} {nodeid}: in-process {va.get(nodeid)}, "
                                f"isolated {vb.get(nodeid)}\n{message[:1500]}")
    return problems


def test_same_verdicts_on_a_few_variants(tmp_path: Path) -> None:
    variants = materialize(tmp_path / "variants")
    by_kind = {}
    for v in variants:
        by_kind.setdefault(v.kind, []).append(v)
    sample = by_kind["buggy"][:2] + by_kind["correct"][:2]
    problems = _verdicts_in_both_modes(sample, tmp_path)
    assert not problems, "\n\n".join(problems)


@pytest.mark.slow
def test_same_verdicts_on_the_whole_catalogue(tmp_path: Path) -> None:
    """Every variant, every test: the isolated verdict is the in-process verdict."""
    problems = _verdicts_in_both_modes(materialize(tmp_path / "variants"), tmp_path)
    assert not problems, f"{len(problems)} verdict differences:\n\n" + "\n\n".join(problems[:20])


def test_the_report_records_the_sandbox_state_of_each_kind_of_run(tmp_path: Path, reference_pair) -> None:
    from conformance.report import JsonReport

    iso, inproc = reference_pair
    off = JsonReport(tmp_path / "r.json", inproc).as_dict()["sandbox"]
    assert off["state"] == "off" and off["mode"] == "in-process"
    record = JsonReport(tmp_path / "r.json", iso).as_dict()["sandbox"]
    assert record == json.loads(json.dumps(record))  # plain JSON
    assert record["state"] == ("engaged" if os.geteuid() == 0 else "degraded") and record["started"]
    degraded = process.sandbox_record(Limits(sandbox="auto"), dict(iso.sandbox, active=dict(
        iso.sandbox["active"], namespaces=False, pid_namespace=False, network=True)))
    assert degraded["state"] == "degraded" and "private_file_system" in degraded["missing"]
    assert process.sandbox_record(Limits(sandbox="off"), {})["state"] == "off"


def test_pytest_option_runs_the_suite_isolated(tmp_path: Path) -> None:
    path = tmp_path / "student.py"
    path.write_bytes(REFERENCE_SOURCE.read_bytes())
    report = tmp_path / "report.json"
    proc = run_pytest("conformance/test_interface.py", "--impl", str(path), "--isolate",
                      "--conformance-report", str(report), cwd=REPO_ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "isolated worker" in proc.stdout
    data = json.loads(report.read_text())
    assert data["tests"]
    # The sandbox state is recorded per run (and shown in the header), whatever -q hides.
    sandbox = data["sandbox"]
    expected = "engaged" if os.geteuid() == 0 else "degraded"
    assert sandbox["state"] == expected and sandbox["started"] is True, sandbox
    assert (sandbox["missing"] == []) == (expected == "engaged")
    assert f"isolation: sandbox {expected}" in proc.stdout
