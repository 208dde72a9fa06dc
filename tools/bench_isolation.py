"""How much does ``--isolate`` cost? Prints the numbers; asserts nothing.

    python -m tools.bench_isolation             # suite (non-MNIST) + call latency
    python -m tools.bench_isolation --mnist     # + one MNIST training epoch in both modes

1. the conformance suite without the MNIST area, in-process vs ``--isolate`` (subprocess
   ``pytest``; median of ``--repeat`` runs); the target is isolated <= 1.5 x in-process;
2. one small ``forward`` call's round trip (the per-call overhead of the pipe protocol);
3. moving MNIST-sized arrays (60000 x 784 float64) to the worker and back;
4. with ``--mnist``: one epoch of the suite's SGD loop (``run_sgd``) in both modes. The
   worker uses one BLAS thread; the in-process numbers use whatever numpy is configured for.
Timings on a shared machine are noisy: compare runs made at the same time.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def _grading_profile_args() -> list[str]:
    pattern = re.compile(r"register_profile\(\s*['\"]grading['\"]")
    found = any(pattern.search(p.read_text(errors="replace")) for p in (REPO / "conformance").glob("*.py"))
    return ["--hypothesis-profile", "grading"] if found else []


def time_suite(impl: Path, isolate: bool, repeat: int) -> tuple[float, str]:
    from conformance.invocation import SUITE_ROOT, suite_command, suite_env

    # The grader's own command (conformance.invocation), so the overhead measured is the real one.
    cmd = suite_command(impl, ["-m", "not mnist", "-q", *_grading_profile_args(),
                               *(["--isolate"] if isolate else [])])
    times, last = [], ""
    for _ in range(repeat):
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=SUITE_ROOT, env=suite_env(), capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        last = (proc.stdout.strip().splitlines() or ["?"])[-1]
    return statistics.median(times), last


def time_calls(impl: Path, n: int) -> tuple[float, float]:
    from conformance.candidate import InProcessCandidate
    from conformance.isolation import IsolatedCandidate

    rng = np.random.default_rng(0)
    X = rng.standard_normal((16, 8))
    params = [(rng.standard_normal((8, 16)), np.zeros(16)), (rng.standard_normal((16, 4)), np.zeros(4))]
    results = []
    for cand in (InProcessCandidate.load(str(impl)), IsolatedCandidate.load(str(impl))):
        try:
            for _ in range(20):
                cand.call("forward", X, params)
            start = time.perf_counter()
            for _ in range(n):
                cand.call("forward", X, params)
            results.append((time.perf_counter() - start) / n)
        finally:
            cand.close()
    return results[0], results[1]


def time_transfer() -> float:
    from conformance.isolation import IsolatedCandidate

    X = np.random.default_rng(0).random((60000, 784))
    cand = IsolatedCandidate.load(str(REPO / "conformance" / "reference" / "mlp.py"))
    try:
        cand.call("relu", X[:10])
        start = time.perf_counter()
        back = cand.call("relu", X)
        elapsed = time.perf_counter() - start
        assert back.shape == X.shape
    finally:
        cand.close()
    return elapsed


def time_mnist(impl: Path) -> tuple[float, float, str]:
    from conformance.candidate import InProcessCandidate
    from conformance.isolation import IsolatedCandidate
    from conformance.reference.mlp import init_params
    from conformance.reference.mnist import load_mnist, one_hot

    data = load_mnist(download=False, progress=False)
    Y = one_hot(data.y_train)
    times, peak = [], "?"
    for cand in (InProcessCandidate.load(str(impl)), IsolatedCandidate.load(str(impl))):
        try:
            start = time.perf_counter()
            cand.run_sgd(data.X_train, Y, init_params([784, 128, 10], 0), lr=0.5, epochs=1,
                         batch_size=64, seed=42)
            times.append(time.perf_counter() - start)
            worker = getattr(cand, "_worker", None)
            if worker is not None:
                status = Path(f"/proc/{worker.proc.pid}/status").read_text()
                peak = next((line.split(":")[1].strip() for line in status.splitlines()
                             if line.startswith("VmPeak")), "?")
        finally:
            cand.close()
    return times[0], times[1], peak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="suite runs per mode (median; default 3)")
    parser.add_argument("--calls", type=int, default=500, help="calls for the latency test (default 500)")
    parser.add_argument("--mnist", action="store_true", help="also time one MNIST epoch (needs the data)")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.calls < 1:
        parser.error("--repeat and --calls must be positive")

    with tempfile.TemporaryDirectory(prefix="bench-isolation-") as tmp:
        impl = Path(tmp) / "student.py"  # a copy: judged like a submission, by path
        shutil.copyfile(REPO / "conformance" / "reference" / "mlp.py", impl)
        print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}")
        plain, plain_tail = time_suite(impl, False, args.repeat)
        isolated, iso_tail = time_suite(impl, True, args.repeat)
        print(f"suite without MNIST, in-process : {plain:6.2f} s   ({plain_tail})")
        print(f"suite without MNIST, --isolate  : {isolated:6.2f} s   ({iso_tail})")
        ratio = isolated / plain
        print(f"  ratio {ratio:.2f}x (target <= 1.5x: {'met' if ratio <= 1.5 else 'NOT met'})")
        inproc_call, iso_call = time_calls(impl, args.calls)
        print(f"one small forward call: in-process {inproc_call * 1e6:8.1f} us, "
              f"isolated {iso_call * 1e6:8.1f} us (round trip)")
        print(f"60000x784 float64 (376 MB) to the worker and back: {time_transfer():.2f} s")
        if args.mnist:
            inproc, iso, peak = time_mnist(impl)
            print(f"MNIST, 1 epoch of the suite's SGD loop: in-process {inproc:.1f} s, "
                  f"isolated {iso:.1f} s ({iso / inproc:.2f}x; worker VmPeak {peak})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
