"""The isolated candidate: same verdicts as in-process, a wire protocol that trusts nothing,
limits that end misbehaving workers with a precise reason, and a grader that never runs the
candidate's code."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from conformance.candidate import CandidateError, InProcessCandidate
from conformance.isolation import CandidateRaised, IsolatedCandidate, Limits
from conformance.isolation import wire
from conformance.isolation.locate import locate
from tests.kill_matrix import RunOptions, run_variant
from tests.variants import REPO_ROOT, materialize

REFERENCE_SOURCE = REPO_ROOT / "reference" / "mlp.py"


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
    began = time.monotonic()
    with pytest.raises(CandidateError, match=r"not run: backward\(\) already hung in an earlier check "
                                             r"\(timeout after 1 s\)"):
        cand.call("backward", [], [], np.zeros(1), [])
    with pytest.raises(CandidateError, match=r"run_sgd\(\): not run: backward\(\) already hung"):
        cand.run_sgd(np.zeros((2, 1)), np.ones((2, 1)), [], lr=0.1, epochs=1, batch_size=2, seed=0)
    assert time.monotonic() - began < 0.5
    assert cand.call("forward", np.zeros(1), [])[0][0][0] == 2.0


def test_session_budget_stops_all_further_calls(isolated) -> None:
    cand = isolated("""
        def _hang(*args):
            while True:
                pass
        forward = backward = relu = softmax = cross_entropy = init_params = _hang
    """, Limits(call_timeout=1, session_timeout=3))
    began, reasons = time.monotonic(), []
    for function in ("forward", "relu", "softmax", "cross_entropy", "init_params"):
        with pytest.raises(CandidateError) as info:
            cand.call(function, 0)
        reasons.append(info.value.reason)
        if "exhausted" in reasons[-1]:
            break
    assert reasons[0].startswith("timeout after 1 s (per-call limit)")
    assert "session time budget of 3 s" in reasons[-1], reasons
    assert time.monotonic() - began < 3 + 4  # the budget, plus killing and restarting workers
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
                    os.write(fd, b"BPW1" + b"\\xff" * 12 + b"not json")
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
    assert seen["tmp"] == [cand._dir.name]
    assert seen["uid"] >= 0x10000000
    assert len(seen["proc"]) == 1  # its own process only: the grader and other workers are invisible


def test_a_huge_result_is_refused(isolated) -> None:
    cand = isolated("""
        import numpy as np
        def forward(X, params):
            return [np.zeros((3 << 20,))], []   # 24 MiB
        def backward(a, z, Y, params):
            return []
    """, Limits(max_result_mb=8))
    with pytest.raises(CandidateError, match="exceed.* 8388608-byte limit"):
        cand.call("forward", 0, [])


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


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def test_wire_writes_a_standard_npz_and_reads_numpy_s_own() -> None:
    arrays = {"a0": np.arange(6.0).reshape(2, 3), "a1": np.asfortranarray(np.ones((3, 2), np.float32)),
              "a2": np.array(3, dtype=np.int16), "a3": np.zeros((0, 4))}
    ours = bytes(wire.write_npz(arrays))
    with np.load(io.BytesIO(ours), allow_pickle=False) as loaded:
        for key, value in arrays.items():
            assert loaded[key].dtype == value.dtype
            np.testing.assert_array_equal(loaded[key], value)
    tree = {"t": "list", "v": [{"t": "nd", "i": i} for i in range(4)]}
    for blob in (ours, _npz(**arrays)):
        back = wire.decode_tree(tree, blob, max_bytes=1 << 20)
        for got, want in zip(back, arrays.values()):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("tree, blob, error", [
    ({"t": "nd", "i": 0}, b"", "missing array"),
    ({"t": "eval", "v": "__import__('os')"}, b"", "unknown value kind"),
    ({"t": "list", "v": "not a list"}, b"", "malformed list"),
    ({"t": "ref", "i": 0}, b"", "not seen yet"),
    ({"t": "int", "v": "9" * 100}, b"", "unknown value kind"),
    ({"t": "list", "v": [{"t": "none"}] * (wire.MAX_NODES + 1)}, b"", "too large"),
    ({"t": "nd", "i": 0}, b"PK\x03\x04 this is not a zip", "not a valid npz"),
])
def test_wire_rejects_malformed_trees(tree, blob, error) -> None:
    with pytest.raises(wire.WireError, match=error):
        wire.decode_tree(tree, blob or b"", max_bytes=1 << 20)


def test_wire_rejects_pickles_zip_bombs_lying_headers_and_oversize() -> None:
    tree = {"t": "nd", "i": 0}
    buf = io.BytesIO()
    np.save(buf, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    pickled = io.BytesIO()
    with zipfile.ZipFile(pickled, "w") as z:
        z.writestr("a0.npy", buf.getvalue())
    with pytest.raises(wire.WireError, match="may not cross"):
        wire.decode_tree(tree, pickled.getvalue(), max_bytes=1 << 20)
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("a0.npy", _npz_member(np.zeros(1 << 20)))
    with pytest.raises(wire.WireError, match="compressed"):
        wire.decode_tree(tree, bomb.getvalue(), max_bytes=1 << 30)
    lying = bytearray(_npz(a0=np.zeros(4)))
    at = lying.find(b"'shape': (4,)")
    lying[at:at + 13] = b"'shape': (9,)"
    with pytest.raises(wire.WireError, match="data bytes for shape"):
        wire.decode_tree(tree, bytes(lying), max_bytes=1 << 20)
    with pytest.raises(wire.WireError, match="exceed"):
        wire.decode_tree(tree, _npz(a0=np.zeros(1000)), max_bytes=100)
    with pytest.raises(wire.WireError, match="exceeds the 10-byte limit"):
        _frame_roundtrip({"op": "x"}, b"0123456789ab", max_blob=10)


def _npz_member(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


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


def test_pytest_option_runs_the_suite_isolated(tmp_path: Path) -> None:
    path = tmp_path / "student.py"
    path.write_bytes(REFERENCE_SOURCE.read_bytes())
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "conformance/test_interface.py", "--impl", str(path),
         "--isolate", "-p", "no:cacheprovider", "--conformance-report", str(report)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "isolated worker" in proc.stdout
    assert json.loads(report.read_text())["tests"]
