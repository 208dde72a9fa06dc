"""Training benchmark: ``python -m tools.bench [--epochs N] [--repeat R] [--dtype ...]``.

Measures, in one run and for each dtype (float64 and float32 by default):

* the reference's wall time for the section's recipe (784-128-10, batch 64, lr 0.5,
  10 epochs on MNIST, test accuracy after each epoch) and the section's own code on the
  same data (extracted from the section text, see tools/section.py);
* the useful work: the matmul FLOPs of forward + backward of every batch and of the
  per-epoch test evaluation (2*m*n*k per product), hence the achieved GFLOP/s;
* the practical ceiling: plain NumPy running exactly those matmuls, with the same shapes
  and memory layouts, back to back and nothing else;
* the ratio achieved/ceiling (target: >= 50% in float32) and reference/section speed
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

from reference import mlp
from reference.mnist import MNISTError, load_mnist, one_hot
from tools.section import SectionNotFound, load_section

SIZES = [784, 128, 10]
LR, BATCH = 0.5, 64
TARGET_CEILING_FRACTION = 0.5  # of the matmul ceiling, float32


def matmul_flops(n_train: int, n_test: int, sizes: list[int], batch: int, epochs: int) -> float:
    """FLOPs of every matrix product one training run performs (2*m*n*k each)."""
    layers = list(zip(sizes[:-1], sizes[1:]))
    per_row_forward = sum(n_in * n_out for n_in, n_out in layers)
    # backward: dW for every layer, delta @ W.T for every layer but the first
    per_row_backward = per_row_forward + sum(n_in * n_out for n_in, n_out in layers[1:])
    del batch  # every row is in exactly one batch; the batch size does not change the count
    return 2.0 * epochs * (n_train * (per_row_forward + per_row_backward) + n_test * per_row_forward)


def matmul_ceiling(X: np.ndarray, X_test: np.ndarray, sizes: list[int], batch: int, epochs: int,
                   repeat: int) -> float:
    """Best wall time over ``repeat`` runs of just the training's matmuls, same shapes/layouts."""
    dtype = X.dtype.type
    rng = np.random.default_rng(0)
    Ws = [rng.standard_normal((n_in, n_out)).astype(dtype) for n_in, n_out in zip(sizes[:-1], sizes[1:])]
    n = X.shape[0]
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(epochs):
            for i in range(0, n, batch):
                A = X[i : i + batch]
                acts = [A]
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
        best = min(best, time.perf_counter() - start)
    return best


def time_training(train: Callable, X, Y, X_test, Y_test, params, epochs: int, repeat: int,
                  **kwargs) -> tuple[float, float, str]:
    """(best wall time, final params' test accuracy, printed output) over ``repeat`` runs."""
    best, printed, trained = float("inf"), "", params
    for _ in range(repeat):
        fresh = [(W.copy(), b.copy()) for W, b in params]
        out = io.StringIO()
        start = time.perf_counter()
        with contextlib.redirect_stdout(out):
            trained = train(X, Y, X_test, Y_test, fresh, lr=LR, epochs=epochs, batch_size=BATCH, **kwargs)
        best, printed = min(best, time.perf_counter() - start), out.getvalue()
    return best, mlp.accuracy(X_test, Y_test, trained), printed


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
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10, help="epochs per training run (default 10)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement, best kept (default 1)")
    parser.add_argument("--dtype", choices=("float64", "float32", "both"), default="both")
    parser.add_argument("--data-dir", default=None, help="MNIST folder (default: as reference.mnist finds it)")
    parser.add_argument("--no-section", action="store_true", help="skip timing the section's own code")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.repeat < 1:
        parser.error("--epochs and --repeat must be positive integers")

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
          + ("  <-- other work is running: timings are pessimistic" if load > 0.5 else ""))
    flops = matmul_flops(len(data.X_train), len(data.X_test), SIZES, BATCH, args.epochs)
    print(f"recipe: {'-'.join(map(str, SIZES))}, batch {BATCH}, lr {LR}, {args.epochs} epochs; "
          f"matmul work {flops / 1e9:.1f} GFLOP per run\n")

    header = f"{'dtype':8} {'code':10} {'time s':>8} {'GFLOP/s':>8} {'of ceiling':>10} {'test acc':>9}"
    print(header)
    print("-" * len(header))
    verdicts = []
    for dtype_name in (("float64", "float32") if args.dtype == "both" else (args.dtype,)):
        dtype = np.dtype(dtype_name).type
        X, X_test = data.X_train.astype(dtype), data.X_test.astype(dtype)
        Y, Y_test = one_hot(data.y_train).astype(dtype), one_hot(data.y_test).astype(dtype)
        params = mlp.init_params(SIZES, seed=0, dtype=dtype)
        ceiling = matmul_ceiling(X, X_test, SIZES, BATCH, args.epochs, args.repeat)
        rows = [("matmuls", ceiling, float("nan"))]
        ref_time, ref_acc, ref_out = time_training(mlp.train, X, Y, X_test, Y_test, params, args.epochs,
                                                   args.repeat, verbose=True)
        rows.append(("reference", ref_time, ref_acc))
        sec_time = None
        if section is not None:
            sec_time, sec_acc, sec_out = time_training(section.train, X, Y, X_test, Y_test, params,
                                                       args.epochs, args.repeat)
            rows.append(("section", sec_time, sec_acc))
            if sec_out != ref_out:
                verdicts.append(f"{dtype_name}: WARNING the reference printed other accuracies than "
                                "the section's code")
        for name, seconds, acc in rows:
            acc_text = "" if np.isnan(acc) else f"{acc:.4f}"
            print(f"{dtype_name:8} {name:10} {seconds:8.2f} {flops / seconds / 1e9:8.1f} "
                  f"{ceiling / seconds:10.0%} {acc_text:>9}")
        fraction = ceiling / ref_time
        if dtype_name == "float32":
            met = "met" if fraction >= TARGET_CEILING_FRACTION else "NOT met"
            verdicts.append(f"float32: reference at {fraction:.0%} of the matmul ceiling "
                            f"(target {TARGET_CEILING_FRACTION:.0%}: {met})")
        if sec_time is not None:
            speed = sec_time / ref_time
            verdicts.append(f"{dtype_name}: reference {speed:.2f}x the speed of the section's code"
                            + ("" if speed >= 1 else " (SLOWER)"))
    print()
    for verdict in verdicts:
        print(verdict)
    return 0


if __name__ == "__main__":
    sys.exit(main())
