"""Training benchmark: ``python -m tools.bench [--epochs N] [--repeat R] [--dtype ...]``.

Measures, in one run and for each dtype (float64 and float32 by default):

* the reference's wall time for the section's recipe (784-128-10, batch 64, lr 0.5,
  10 epochs on MNIST, test accuracy after each epoch) and the section's own code on the
  same data (extracted from the section text, see conformance/reference/section.py);
* the useful work: the matmul FLOPs of forward + backward of every batch and of the
  per-epoch test evaluation (2*m*n*k per product), hence the achieved GFLOP/s;
* the practical ceiling: plain NumPy running exactly those matmuls, with the same shapes
  and memory layouts, back to back and nothing else;
* the ratio achieved/ceiling (target: >= 60% in float32) and reference/section speed
  (target: the reference is never slower).

Numbers depend on the machine and on what else runs on it: the load average is printed,
and so is the BLAS in use (via threadpoolctl when installed). OpenBLAS knobs such as
OPENBLAS_CORETYPE / OPENBLAS_NUM_THREADS are reported, never changed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import time
from typing import Callable

import numpy as np

from conformance.reference import mlp
from conformance.reference.mnist import MNISTError, load_mnist, one_hot
from conformance.reference.section import SectionNotFound, load_section

SIZES = [784, 128, 10]
LR, BATCH = 0.5, 64
TARGET_CEILING_FRACTION = 0.6  # of the matmul ceiling, float32


def matmul_flops(n_train: int, n_test: int, sizes: list[int], batch: int, epochs: int) -> float:
    """FLOPs of every matrix product one training run performs (2*m*n*k each)."""
    layers = list(zip(sizes[:-1], sizes[1:]))
    per_row_forward = sum(n_in * n_out for n_in, n_out in layers)
    # backward: dW for every layer, delta @ W.T for every layer but the first
    per_row_backward = per_row_forward + sum(n_in * n_out for n_in, n_out in layers[1:])
    del batch  # every row is in exactly one batch; the batch size does not change the count
    return 2.0 * epochs * (n_train * (per_row_forward + per_row_backward) + n_test * per_row_forward)


def matmul_ceiling(X: np.ndarray, X_test: np.ndarray, sizes: list[int], batch: int,
                   epochs: int) -> tuple[float, float]:
    """(wall, CPU) seconds of just the training's matmuls, same shapes and memory layouts."""
    dtype = X.dtype.type
    rng = np.random.default_rng(0)
    Ws = [rng.standard_normal((n_in, n_out)).astype(dtype) for n_in, n_out in zip(sizes[:-1], sizes[1:])]
    n = X.shape[0]
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(epochs):
        for i in range(0, n, batch):
            acts = [X[i : i + batch]]
            for W in Ws:  # forward products
                acts.append(acts[-1] @ W)
            delta = acts[-1]
            for layer in reversed(range(len(Ws))):  # backward products
                acts[layer].T @ delta  # dW
                if layer > 0:
                    delta = delta @ Ws[layer].T
        A = X_test
        for W in Ws:  # evaluation
            A = A @ W
    return time.perf_counter() - start, time.process_time() - cpu_start


def time_training(train: Callable, X, Y, X_test, Y_test, params, epochs: int,
                  **kwargs) -> tuple[tuple[float, float], list, str]:
    """((wall, CPU) seconds, trained params, printed output) of one run on fresh params."""
    fresh = [(W.copy(), b.copy()) for W, b in params]
    out = io.StringIO()
    start, cpu_start = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(out):
        trained = train(X, Y, X_test, Y_test, fresh, lr=LR, epochs=epochs, batch_size=BATCH, **kwargs)
    return (time.perf_counter() - start, time.process_time() - cpu_start), trained, out.getvalue()


def blas_description() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        config = getattr(np, "__config__", None)
        blas = getattr(config, "CONFIG", {}).get("Build Dependencies", {}).get("blas", {})
        name = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
        return f"{name} (install threadpoolctl to see the kernel and thread count)"
    pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    return "; ".join(f"{p.get('internal_api')} {p.get('version')} kernel={p.get('architecture')} "
                     f"threads={p.get('num_threads')}" for p in pools) or "no BLAS found by threadpoolctl"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench",
                                     description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--epochs", type=int, default=10, help="epochs per training run (default 10)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement, best kept (default 1)")
    parser.add_argument("--dtype", choices=("float64", "float32", "both"), default="both")
    parser.add_argument("--data-dir", default=None, help="MNIST folder (default: as conformance.reference.mnist finds it)")
    parser.add_argument("--no-section", action="store_true", help="skip timing the section's own code")
    parser.add_argument("--threads", type=int, default=None,
                        help="limit BLAS threads for this run (needs threadpoolctl); on a busy machine "
                        "--threads 1 and the CPU column give the steadiest comparison")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.repeat < 1 or (args.threads is not None and args.threads < 1):
        parser.error("--epochs, --repeat and --threads must be positive integers")
    limits = contextlib.nullcontext()
    if args.threads is not None:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            parser.error("--threads needs threadpoolctl: pip install threadpoolctl")
        limits = threadpool_limits(limits=args.threads, user_api="blas")
    with limits:
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        data = load_mnist(args.data_dir, progress=True)
    except MNISTError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    section = None
    if not args.no_section:
        try:
            section = load_section()
        except SectionNotFound as exc:
            print(f"note: not timing the section's code: {exc}")

    load = os.getloadavg()[0]
    cores = os.cpu_count() or 1
    print(f"numpy {np.__version__}; BLAS: {blas_description()}")
    knobs = {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS_", "OMP_", "MKL_"))}
    print(f"BLAS environment: {knobs or 'none set'}; cores {cores}; load average {load:.2f}"
          + ("  <-- other work is running: timings are pessimistic" if load > 1.0 else ""))
    flops = matmul_flops(len(data.X_train), len(data.X_test), SIZES, BATCH, args.epochs)
    print(f"recipe: {'-'.join(map(str, SIZES))}, batch {BATCH}, lr {LR}, {args.epochs} epochs; "
          f"matmul work {flops / 1e9:.1f} GFLOP per run\n")

    header = (f"{'dtype':8} {'code':10} {'wall s':>8} {'CPU s':>8} {'GFLOP/s':>8} {'of ceiling':>10} "
              f"{'test acc':>9}")
    print(header)
    print("-" * len(header))
    verdicts = []
    for dtype_name in (("float64", "float32") if args.dtype == "both" else (args.dtype,)):
        dtype = np.dtype(dtype_name).type
        X, X_test = data.X_train.astype(dtype), data.X_test.astype(dtype)
        Y, Y_test = one_hot(data.y_train).astype(dtype), one_hot(data.y_test).astype(dtype)
        params = mlp.init_params(SIZES, seed=0, dtype=dtype)
        contenders: dict[str, tuple[Callable, dict]] = {"reference": (mlp.train, {"verbose": True})}
        if section is not None:
            contenders["section"] = (section.train, {})
        # Interleave the runs (ceiling, reference, section, ceiling, ...) and keep each one's
        # best, so a burst of other work on the machine hits all of them alike.
        best = {name: (float("inf"), float("inf")) for name in ("matmuls", *contenders)}
        results: dict[str, tuple[list, str]] = {}
        for _ in range(args.repeat):
            best["matmuls"] = min(best["matmuls"], matmul_ceiling(X, X_test, SIZES, BATCH, args.epochs))
            for name, (train, kwargs) in contenders.items():
                seconds, trained, printed = time_training(train, X, Y, X_test, Y_test, params,
                                                          args.epochs, **kwargs)
                best[name] = min(best[name], seconds)
                results[name] = (trained, printed)
        ceiling, ref_time = best["matmuls"][0], best["reference"][0]
        rows = [("matmuls", best["matmuls"], float("nan"))]
        rows += [(name, best[name], mlp.accuracy(X_test, Y_test, results[name][0])) for name in contenders]
        sec_time = best["section"][0] if "section" in best else None
        if section is not None and results["section"][1] != results["reference"][1]:
            verdicts.append(f"{dtype_name}: WARNING the reference printed other accuracies than "
                            "the section's code")
        for name, (seconds, cpu), acc in rows:
            acc_text = "" if np.isnan(acc) else f"{acc:.4f}"
            print(f"{dtype_name:8} {name:10} {seconds:8.2f} {cpu:8.2f} {flops / seconds / 1e9:8.1f} "
                  f"{ceiling / seconds:10.0%} {acc_text:>9}")
        wall_fraction = ceiling / ref_time
        cpu_fraction = best["matmuls"][1] / best["reference"][1]
        if dtype_name == "float32":
            met = "met" if wall_fraction >= TARGET_CEILING_FRACTION else "NOT met"
            verdicts.append(f"float32: reference at {wall_fraction:.0%} of the matmul ceiling by wall "
                            f"time, {cpu_fraction:.0%} by CPU time (target {TARGET_CEILING_FRACTION:.0%} "
                            f"by wall time: {met})")
        if sec_time is not None:
            speed = sec_time / ref_time
            cpu_speed = best["section"][1] / best["reference"][1]
            verdicts.append(f"{dtype_name}: reference {speed:.2f}x the speed of the section's code by "
                            f"wall time, {cpu_speed:.2f}x by CPU time" + ("" if speed >= 1 else " (SLOWER)"))
    print()
    for verdict in verdicts:
        print(verdict)
    return 0


if __name__ == "__main__":
    sys.exit(main())
