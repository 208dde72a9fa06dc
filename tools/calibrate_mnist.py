"""Calibrate the MNIST accuracy thresholds from the reference over many seeds.

    python -m tools.calibrate_mnist [--seeds 10] [--epochs 10] [--data-dir DIR] [--out FILE]
    python -m tools.calibrate_mnist --quick-only     # recalibrate the quick check, keep the full one

For each seed s the reference trains the section's recipe (784-128-10, lr 0.5, batch 64,
float64) on the first ``TRAIN_ROWS`` training images (the split conformance/test_mnist.py
uses: the last 10,000 are handed to a candidate's train() as its validation data, the test
images never reach candidate code) from ``init_params(seed=s)`` with shuffle seed
``SHUFFLE_SEED_BASE + s``, and the test accuracy is recorded after every epoch (the full
check). The quick check is one epoch on the first ``QUICK_ROWS`` images (200 steps, a quarter
of the cost), calibrated by its own runs over ``QUICK_SEEDS`` seeds (cheap, so more of them).
Its size was chosen from the reference's spread (20 seeds each, threshold as below): 6,400 rows
give mean 0.887, std 0.021, threshold 0.770; 12,800 give 0.919, 0.012, 0.841; 19,200 give
0.936, 0.009, 0.888. 12,800 keeps the threshold far above a backward that learns nothing
(~0.1) at a quarter of the full epoch's cost; the replay of the loop's steps, not the
threshold, is what holds each step to exact SGD.

Threshold = min over seeds - margin, margin = max(MARGIN_STDS * std, MARGIN_FLOOR). Why: a
correct candidate computes with different rounding (summation order, float32, ReLU'(0)),
which sends SGD down a different trajectory that behaves like another seed; the threshold
must sit below the seed-to-seed spread with room to spare (the minimum of 10 draws is
already about 1.5 std below the mean, so the threshold is about 4.5 std below it: a
correct run falls under it with probability ~1e-5 under a normal model), while the bugs it
exists to catch cost whole percentage points or more. The floor keeps the margin sensible
if the observed spread happens to be tiny. Results go to fixtures/mnist_thresholds.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "fixtures" / "mnist_thresholds.json"
TRAIN_ROWS = 50_000  # = conformance/test_mnist.py FIT_ROWS
RECIPE = {"layer_sizes": [784, 128, 10], "lr": 0.5, "batch_size": 64, "dtype": "float64",
          "train_rows": TRAIN_ROWS}
QUICK_EPOCHS = 1
QUICK_ROWS = 12_800  # 200 steps of 64: see the module docstring
QUICK_SEEDS = 20
FULL_EPOCHS = 10
SHUFFLE_SEED_BASE = 1000
MARGIN_STDS = 3.0
MARGIN_FLOOR = 0.005  # half a percentage point


def threshold_entry(accuracies: list[float], epochs: int) -> dict:
    """Summary statistics and the derived threshold for one check."""
    mean = statistics.fmean(accuracies)
    std = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
    margin = max(MARGIN_STDS * std, MARGIN_FLOOR)
    return {
        "epochs": epochs,
        "accuracies": [round(a, 6) for a in accuracies],
        "mean": round(mean, 6),
        "std": round(std, 6),
        "min": round(min(accuracies), 6),
        "max": round(max(accuracies), 6),
        "margin": round(margin, 6),
        "threshold": round(min(accuracies) - margin, 4),
    }


def _load(data_dir: str | None) -> tuple:
    from conformance.reference.mnist import load_mnist, one_hot

    data = load_mnist(data_dir, progress=False)
    return data.X_train, one_hot(data.y_train), data.X_test, one_hot(data.y_test)


def calibrate_quick(n_seeds: int, data_dir: str | None) -> dict:
    """The quick check's entry: one epoch on the first QUICK_ROWS images, per seed."""
    from conformance.reference.mlp import accuracy, init_params, train

    X_train, Y_train, X_test, Y_test = _load(data_dir)
    accuracies = []
    for seed in range(n_seeds):
        params = init_params(RECIPE["layer_sizes"], seed)
        train(X_train[:QUICK_ROWS], Y_train[:QUICK_ROWS], X_test, Y_test, params, lr=RECIPE["lr"],
              epochs=QUICK_EPOCHS, batch_size=RECIPE["batch_size"],
              shuffle_seed=SHUFFLE_SEED_BASE + seed, verbose=False)
        accuracies.append(accuracy(X_test, Y_test, params))
        print(f"quick, seed {seed}: {accuracies[-1]:.4f}", flush=True)
    return {**threshold_entry(accuracies, QUICK_EPOCHS), "train_rows": QUICK_ROWS}


def calibrate(n_seeds: int, epochs: int, data_dir: str | None) -> dict:
    from conformance.reference.mlp import accuracy, init_params, train

    X_train, Y_train, X_test, Y_test = _load(data_dir)
    runs = []
    for seed in range(n_seeds):
        shuffle_seed = SHUFFLE_SEED_BASE + seed
        curve: list[float] = []
        started = time.perf_counter()
        params = init_params(RECIPE["layer_sizes"], seed)
        shuffling = np.random.default_rng(shuffle_seed)  # one stream: the draws of one N-epoch run
        for _ in range(epochs):
            train(X_train[:TRAIN_ROWS], Y_train[:TRAIN_ROWS], X_test, Y_test, params,
                  lr=RECIPE["lr"], epochs=1, batch_size=RECIPE["batch_size"], shuffle_seed=shuffling,
                  verbose=False)
            curve.append(accuracy(X_test, Y_test, params))
        seconds = time.perf_counter() - started
        runs.append({"init_seed": seed, "shuffle_seed": shuffle_seed,
                     "test_accuracy_per_epoch": [round(a, 6) for a in curve],
                     "seconds": round(seconds, 1)})
        print(f"seed {seed}: " + " ".join(f"{a:.4f}" for a in curve) + f"  ({seconds:.0f} s)",
              flush=True)
    result = {
        "description": "MNIST test-accuracy thresholds for conformance/test_mnist.py, calibrated "
                       "from the reference by tools/calibrate_mnist.py",
        "recipe": RECIPE,
        "method": f"threshold = min over seeds - margin; margin = max({MARGIN_STDS} * std, "
                  f"{MARGIN_FLOOR}); seeds: init_params(seed=s), shuffle seed "
                  f"{SHUFFLE_SEED_BASE} + s; trained on the first train_rows training images "
                  f"(quick: {QUICK_ROWS}, full: {TRAIN_ROWS}); accuracy on the 10,000 test images",
        "quick": calibrate_quick(max(n_seeds, QUICK_SEEDS), data_dir),
        "runs": runs,
        "generated_by": {"numpy": np.__version__, "python": platform.python_version(),
                         "machine": platform.machine()},
    }
    if epochs >= FULL_EPOCHS:
        full = [r["test_accuracy_per_epoch"][FULL_EPOCHS - 1] for r in runs]
        result["full"] = threshold_entry(full, FULL_EPOCHS)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, prog="python -m tools.calibrate_mnist", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10, help="number of seeds (>= 10 for real use)")
    parser.add_argument("--epochs", type=int, default=FULL_EPOCHS,
                        help=f"epochs per run; < {FULL_EPOCHS} calibrates only the quick check")
    parser.add_argument("--data-dir", default=None, help="MNIST directory (default: the loader's)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the JSON")
    parser.add_argument("--quick-only", action="store_true",
                        help="recalibrate only the quick check; the rest of --out is kept")
    args = parser.parse_args(argv)
    if args.seeds < 2:
        parser.error("--seeds must be at least 2 (a spread needs two runs; use >= 10)")
    if args.epochs < QUICK_EPOCHS:
        parser.error("--epochs must be at least 1")
    if args.quick_only:
        try:
            result = json.loads(args.out.read_text())
        except (OSError, ValueError) as exc:
            parser.error(f"--quick-only updates an existing {args.out}, which cannot be read: {exc}")
        result["quick"] = calibrate_quick(max(args.seeds, QUICK_SEEDS), args.data_dir)
        result["recipe"] = RECIPE
        result["method"] = result["method"].split("; trained on")[0] + (
            f"; trained on the first train_rows training images (quick: {QUICK_ROWS}, full: "
            f"{TRAIN_ROWS}); accuracy on the 10,000 test images")
    else:
        result = calibrate(args.seeds, args.epochs, args.data_dir)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"quick threshold {result['quick']['threshold']}"
          + (f", full threshold {result['full']['threshold']}" if "full" in result else "")
          + f" -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
