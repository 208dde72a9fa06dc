"""Time the quick MNIST check for the reference (target: <= 3 s on the project machine).

    python -m tools.bench_mnist [--data-dir DIR] [--repeat 3] [--epochs 1]

Prints the data-loading time (once per pytest session) and, per repetition, the time of
what conformance/test_mnist.py's quick check does: one epoch of the suite's SGD loop on the
quick check's calibrated training rows (``train_rows`` in fixtures/mnist_thresholds.json,
``--rows`` to change) with the reference's forward/backward (784-128-10, lr 0.5, batch 64)
and the test-set accuracy.
It measures twice: with the BLAS thread pool as configured, and limited to one thread
(threadpoolctl, if installed): on a busy 2-core machine OpenBLAS's spinning threads can make
these small matrix products several times slower than a single thread.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time

TARGET_SECONDS = 3.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, prog="python -m tools.bench_mnist", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None, help="MNIST directory (default: the loader's)")
    parser.add_argument("--repeat", type=int, default=3, help="timed repetitions (best is reported)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs per repetition")
    parser.add_argument("--rows", type=int, default=None,
                        help="training rows (default: the quick check's calibrated train_rows)")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.epochs < 1:
        parser.error("--repeat and --epochs must be at least 1")

    from conformance.sgd_loop import sgd
    from conformance.test_mnist import THRESHOLDS_FILE
    from conformance.reference import mlp
    from conformance.reference.mnist import load_mnist, one_hot, to_unit_float

    rows = args.rows or json.loads(THRESHOLDS_FILE.read_text())["quick"]["train_rows"]
    started = time.perf_counter()
    data = load_mnist(args.data_dir, download=False, progress=False, pixels=True)
    X_train, Y_train = to_unit_float(data.X_train[:rows]), one_hot(data.y_train[:rows])
    X_test, Y_test = to_unit_float(data.X_test), one_hot(data.y_test)
    print(f"training rows: {rows}")
    print(f"load MNIST (once per session): {time.perf_counter() - started:.2f} s")
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        threadpool_info, threadpool_limits = None, None
    configs: list[tuple[str, object]] = [("BLAS threads as configured", contextlib.nullcontext())]
    if threadpool_limits is not None:
        threads = sorted({p.get("num_threads") for p in threadpool_info()} - {None})
        configs[0] = (f"BLAS threads as configured ({threads})", contextlib.nullcontext())
        configs.append(("BLAS limited to 1 thread", threadpool_limits(limits=1)))
    else:
        print("threadpoolctl not installed: measuring only the configured BLAS threads")
    for label, limit in configs:
        times = []
        with limit:  # type: ignore[attr-defined]
            for rep in range(args.repeat):
                started = time.perf_counter()
                params = sgd(mlp.forward, mlp.backward, X_train, Y_train,
                             mlp.init_params([784, 128, 10], 0), lr=0.5, epochs=args.epochs,
                             batch_size=64, seed=42)
                trained = time.perf_counter() - started
                acc = mlp.accuracy(X_test, Y_test, params)
                total = time.perf_counter() - started
                times.append(total)
                print(f"{label}, run {rep + 1}: train {trained:.2f} s + evaluate "
                      f"{total - trained:.2f} s = {total:.2f} s, test accuracy {acc:.4f}")
        best = min(times)
        target = TARGET_SECONDS * args.epochs
        verdict = "within" if best <= target else "OVER"
        print(f"quick check, {label}, best of {args.repeat}: {best:.2f} s ({verdict} the "
              f"{target:.0f} s target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
