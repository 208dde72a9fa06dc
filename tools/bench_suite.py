"""Time the conformance suite (everything but MNIST) against a candidate: total and per area.

    python -m tools.bench_suite                      # the reference, default profile, best of 3
    python -m tools.bench_suite --impl mymodule --profile grading --repeat 1

Runs the suite's own command (``conformance.invocation``: what ``backprop-conformance check``
and the grader run) with ``-m "not mnist"`` in a subprocess, so start-up and imports count as
they do for a user, reads pytest's per-test durations and sums them per check area. The
target is <= 5 s of wall-clock time for the reference with the default profile, and for the
verdict on each buggy variant of the catalogue (``--catalogue``). Prints numbers only: no
test asserts wall-clock time.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import resource
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 5.0
_DURATION = re.compile(r"^\s*([\d.]+)s\s+(?:call|setup|teardown)\s+conformance/test_(\w+)\.py::")


def run_once(impl: str | None, profile: str | None, extra: list[str]) -> tuple[float, float, dict[str, float], str]:
    from conformance.invocation import SUITE_ROOT, suite_command, suite_env

    options = ["-m", "not mnist", "-q", "--durations=0", "--durations-min=0"]
    if profile:
        options += ["--hypothesis-profile", profile]
    cmd = suite_command(impl or str(ROOT / "conformance" / "reference" / "mlp.py"), [*options, *extra])
    env = {**suite_env(), "PYTHONDONTWRITEBYTECODE": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=SUITE_ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    per_area: dict[str, float] = collections.defaultdict(float)
    for line in proc.stdout.splitlines():
        m = _DURATION.match(line)
        if m:
            per_area[m.group(2)] += float(m.group(1))
    summary = next((ln for ln in reversed(proc.stdout.splitlines()) if ln.strip()), "")
    return wall, cpu, dict(per_area), summary


def catalogue_distribution(profile: str | None, extra: list[str]) -> int:
    """Issue 15's second target: the verdict on buggy code. Every buggy variant of the
    catalogue once (non-MNIST suite, wall and CPU), then the distribution and the slowest."""
    import statistics
    import tempfile

    from tools.catalogue import materialize  # the catalogue needs a clone (not in the wheel)

    with tempfile.TemporaryDirectory(prefix="bench-suite-") as tmp:
        buggy = [v for v in materialize(Path(tmp), include_control=False) if v.kind == "buggy"]
        timings = []
        for variant in buggy:
            wall, cpu, _, _ = run_once(str(variant.path), profile, extra)
            timings.append((wall, cpu, variant.name))
    walls, cpus = sorted(t[0] for t in timings), sorted(t[1] for t in timings)

    def pct(values: list[float], q: float) -> float:
        return values[min(len(values) - 1, int(q * len(values)))]

    print(f"verdict on buggy code: {len(timings)} catalogue variants, -m 'not mnist', "
          f"profile={profile or 'conformance'}, one run each")
    for label, values in (("wall", walls), ("CPU", cpus)):
        print(f"  {label:<4} min {values[0]:5.2f}  median {statistics.median(values):5.2f}  "
              f"p90 {pct(values, 0.9):5.2f}  max {values[-1]:5.2f} s")
    over = [t for t in timings if t[0] > TARGET_SECONDS]
    print(f"  {len(timings) - len(over)}/{len(timings)} within the {TARGET_SECONDS:.0f} s target (wall); "
          f"load average {os.getloadavg()[0]:.1f}")
    for wall, cpu, name in sorted(timings, reverse=True)[:5]:
        print(f"  slowest: {name:<40} {wall:5.2f} s wall, {cpu:5.2f} s CPU")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench_suite",
                                     description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--impl", default=None, help="candidate (default: the reference)")
    parser.add_argument("--profile", default=None, help="hypothesis profile (default: conformance)")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the fastest is reported (default 3)")
    parser.add_argument("--catalogue", action="store_true",
                        help="time every buggy variant of the catalogue once (needs a clone: the catalogue is not in the wheel)")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    if args.catalogue:
        return catalogue_distribution(args.profile, args.pytest_args)
    if args.repeat < 1:
        parser.error(f"--repeat must be >= 1, got {args.repeat}")
    runs = [run_once(args.impl, args.profile, args.pytest_args) for _ in range(args.repeat)]
    wall, cpu, per_area, summary = min(runs, key=lambda r: r[0])
    print(f"conformance suite, -m 'not mnist', impl={args.impl or 'reference'}, "
          f"profile={args.profile or 'conformance'}, best of {args.repeat}")
    print(f"  pytest result: {summary}")
    for area, seconds in sorted(per_area.items(), key=lambda kv: -kv[1]):
        print(f"  {area:<12} {seconds:6.2f} s in tests")
    in_tests = sum(per_area.values())
    print(f"  {'(start-up, collection, imports)':<12} {wall - in_tests:6.2f} s")
    verdict = "within" if wall <= TARGET_SECONDS else "OVER"
    print(f"  total wall   {wall:6.2f} s  ({verdict} the {TARGET_SECONDS:.0f} s target; "
          f"all runs: {', '.join(f'{r[0]:.2f}' for r in runs)} s)")
    print(f"  total CPU    {cpu:6.2f} s  (user + sys of the pytest process: what the run costs "
          f"on an idle machine, whatever the load now; load average {os.getloadavg()[0]:.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
