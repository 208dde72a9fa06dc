"""Time entry-wise finite differences of the exact loss: the suite's engine against two baselines.

    python -m tools.bench_fd                 # 533 / 2,098 / 8,970 / 101,770 parameters
    python -m tools.bench_fd --batch 32 --repeat 3

For each network every entry of every tensor gets a central difference (+-h and +-2h, kink
retries), exactly what the gradients area does for small networks and ``--fd-full`` does
for a developer's real one. Compared with:

- ``loop``: a plain per-entry Python loop over the same exact float64 loss (two full forward
  passes per entry, the +-h pair only, so it is the cheaper half of the work);
- ``dense``: the previous vectorised engine (one dense perturbed copy of the tensor per entry,
  each a full matmul), O(P^2) memory traffic, skipped above 10,000 parameters.

Above ``--loop-sample`` parameters the loop is timed on that many entries and scaled up
(printed as such). Prints numbers only; no test asserts a time. Target: the engine
>= 10x faster than the loop at every size, and <= 10 s for the section's 784-128-10 network.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from conformance.cases import make_case
from conformance.exact import exact_loss, magnitudes
from conformance.gradcheck import fd_tensor

NETWORKS = ([16, 24, 5], [32, 32, 24, 10], [64, 64, 64, 10], [784, 128, 10])
DENSE_MAX_PARAMS = 10_000


def n_params(sizes: list[int]) -> int:
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


def time_engine(case, directions_dense: bool) -> float:
    mags = magnitudes(case.X, case.Y, case.params)
    start = time.perf_counter()
    for layer, (W, b) in enumerate(case.params):
        for kind, theta in (("W", W), ("b", b)):
            dirs = np.eye(theta.size).reshape((theta.size,) + theta.shape) if directions_dense else None
            fd_tensor(case.X, case.Y, case.params, layer, kind, mags, directions=dirs)
    return time.perf_counter() - start


def time_loop(case, sample: int) -> tuple[float, int]:
    """Seconds for the per-entry loop over at most ``sample`` entries, and how many it did."""
    params = [(W.copy(), b.copy()) for W, b in case.params]
    tensors = [t for pair in params for t in pair]
    total = sum(t.size for t in tensors)
    picks = np.random.default_rng(0).permutation(total)[:sample] if total > sample else np.arange(total)
    offsets = np.cumsum([0] + [t.size for t in tensors])
    start = time.perf_counter()
    for flat in picks:
        k = int(np.searchsorted(offsets, flat, side="right") - 1)
        theta, j = tensors[k].reshape(-1), flat - offsets[k]
        old = theta[j]
        h = 6e-6 * max(1.0, abs(old))
        theta[j] = old + h
        up = exact_loss(case.X, case.Y, params)
        theta[j] = old - h
        down = exact_loss(case.X, case.Y, params)
        theta[j] = old
        _ = (up - down) / (2 * h)
    return time.perf_counter() - start, len(picks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench_fd",
                                     description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--batch", type=int, default=16, help="rows per case (default 16)")
    parser.add_argument("--repeat", type=int, default=3, help="best of N for the engine (default 3)")
    parser.add_argument("--loop-sample", type=int, default=10_000,
                        help="time the loop on at most this many entries, then scale (default 10000)")
    args = parser.parse_args(argv)
    if args.batch < 1 or args.repeat < 1 or args.loop_sample < 1:
        parser.error("--batch, --repeat and --loop-sample must be positive")
    print(f"batch {args.batch}; engine best of {args.repeat}; loop over the exact float64 loss")
    print(f"{'network':>16} {'params':>8} {'engine s':>9} {'loop s':>9} {'speed-up':>9} {'dense s':>9}")
    worst = float("inf")
    for sizes in NETWORKS:
        case = make_case(sizes, batch=args.batch, seed=0)
        P = n_params(sizes)
        engine = min(time_engine(case, False) for _ in range(args.repeat))
        loop, done = time_loop(case, args.loop_sample)
        loop_full = loop * P / done
        scaled = "" if done == P else f" (scaled from {done} entries)"
        dense = f"{time_engine(case, True):9.3f}" if P <= DENSE_MAX_PARAMS else f"{'skipped':>9}"
        speedup = loop_full / engine
        worst = min(worst, speedup)
        print(f"{'-'.join(map(str, sizes)):>16} {P:>8,} {engine:9.3f} {loop_full:9.3f} {speedup:8.1f}x {dense}{scaled}")
    print(f"smallest speed-up over the loop: {worst:.1f}x (target >= 10x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
