"""Benchmark the batch grader: ``python -m tools.bench_grade [-n 40] [-j 2]``.

Builds a class of mixed submissions (correct variants, single-bug variants, hostile ones
from tests/adversarial), grades it with ``python -m conformance.grade`` exactly as an instructor
would (isolated, grading profile, quick MNIST check required), then grades it again
unchanged. Prints the throughput of both runs against the targets (>= 30 submissions per
minute with -j 2 on 2 idle cores; an unchanged re-run in seconds), where a submission's time
goes (per check area, from each submission's JUnit report, and the rest: interpreter start,
collection, the worker's start and teardown), and a fairness check: every correct variant
must earn full marks and every buggy one less.
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ADVERSARIAL = REPO / "tests" / "adversarial"
TARGET_PER_MINUTE = 30.0


def build_class(dest: Path, n: int, n_hostile: int) -> dict[str, str]:
    """``n`` submissions in ``dest``: about a quarter correct, the hostile ones, the rest buggy.
    Returns name -> kind (correct, buggy, hostile)."""
    sys.path.insert(0, str(REPO))
    from tools.catalogue import materialize

    pool = dest.parent / "pool"
    variants = materialize(pool)
    correct = [v for v in variants if v.kind == "correct"]
    buggy = [v for v in variants if v.kind == "buggy"]
    hostile = sorted(ADVERSARIAL.glob("*.py"))[:n_hostile] if ADVERSARIAL.is_dir() else []
    n_correct = min(len(correct), max(1, n // 4))
    n_buggy = max(0, n - n_correct - len(hostile))
    picked_buggy = [buggy[round(i * len(buggy) / n_buggy)] for i in range(n_buggy)] if n_buggy else []
    picked_buggy = list(dict.fromkeys(picked_buggy))
    while len(picked_buggy) < n_buggy:  # more submissions than distinct bugs: repeat some
        picked_buggy.append(buggy[len(picked_buggy) % len(buggy)])
    kinds: dict[str, str] = {}
    dest.mkdir(parents=True)
    for i, v in enumerate(correct[:n_correct] + picked_buggy):
        name = f"{v.name}" if v.name not in kinds else f"{v.name}_{i}"
        shutil.copy(v.path, dest / f"{name}.py")
        kinds[name] = v.kind
    for path in hostile:
        shutil.copy(path, dest / f"hostile_{path.name}")
        kinds[f"hostile_{path.stem}"] = "hostile"
    return kinds


def grade(subs: Path, out: Path, jobs: int, extra: list[str]) -> tuple[float, float, str]:
    """Run the grader; returns (wall seconds, CPU seconds of the whole process tree, summary)."""
    cmd = [sys.executable, "-m", "conformance.grade", str(subs), "--out", str(out), "-j", str(jobs),
           "--no-progress", *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"grader failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu, proc.stdout.strip()


def run_durations(out: Path) -> dict[str, float]:
    """Seconds of each submission's current run (the gradebook; grades.csv has no timings)."""
    with sqlite3.connect(out / "grades.sqlite") as db:
        return {name: float(seconds or 0.0) for name, seconds in db.execute(
            "SELECT c.submission, r.duration FROM current_grades c JOIN runs r ON r.id = c.run_id")}


def phase_split(out: Path, durations: dict[str, float]) -> str:
    """Mean seconds per submission in each check area (the gradebook's per-test durations)
    and outside the tests, over the submissions in ``durations``."""
    totals: dict[str, float] = {}
    with sqlite3.connect(out / "grades.sqlite") as db:
        runs = db.execute("SELECT c.submission, c.run_id FROM current_grades c").fetchall()
        counted = 0
        for name, run_id in runs:
            tests = db.execute("SELECT area, duration FROM test_results WHERE run_id=?", (run_id,)).fetchall()
            if name not in durations or not tests:
                continue
            counted += 1
            inside = 0.0
            for area, seconds in tests:
                totals[area] = totals.get(area, 0.0) + float(seconds or 0.0)
                inside += float(seconds or 0.0)
            totals["outside tests"] = totals.get("outside tests", 0.0) + max(0.0, durations[name] - inside)
    if not counted:
        return "per-phase split: no test results found"
    parts = sorted(totals.items(), key=lambda kv: -kv[1])
    return (f"per-phase split (mean s per submission over {counted}): "
            + ", ".join(f"{area} {seconds / counted:.2f}" for area, seconds in parts))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.bench_grade",
                                description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("-n", type=int, default=40, help="submissions in the class (default 40)")
    p.add_argument("-j", "--jobs", type=int, default=2, help="parallel submissions (default 2)")
    p.add_argument("--hostile", type=int, default=8, help="hostile submissions among them (default 8)")
    p.add_argument("--keep", type=Path, default=None, help="keep the class and outputs in this folder")
    p.add_argument("grader_args", nargs="*", help="extra arguments for conformance.grade (after --)")
    args = p.parse_args(argv)
    if "BACKPROP_MNIST_DIR" not in os.environ and (REPO.parent / "shared" / "mnist").is_dir():
        os.environ["BACKPROP_MNIST_DIR"] = str(REPO.parent / "shared" / "mnist")
    root = Path(tempfile.mkdtemp(prefix="bench-grade-")) if args.keep is None else args.keep
    try:
        kinds = build_class(root / "subs", args.n, args.hostile)
        counts = {k: list(kinds.values()).count(k) for k in ("correct", "buggy", "hostile")}
        print(f"class: {len(kinds)} submissions ({counts['correct']} correct, {counts['buggy']} buggy, "
              f"{counts['hostile']} hostile); -j {args.jobs}; cores: {os.cpu_count()}; "
              f"load average {os.getloadavg()[0]:.1f}", flush=True)
        first, cpu, summary = grade(root / "subs", root / "out", args.jobs, args.grader_args)
        n = len(kinds)
        cores = min(args.jobs, os.cpu_count() or 1)
        print(f"first run:    {first:7.1f} s wall  {n / first * 60:6.1f} submissions/min measured "
              f"(target >= {TARGET_PER_MINUTE:g}; includes the reference baseline run)\n"
              f"              {cpu:7.1f} s CPU   {cpu / (n + 1):6.1f} s CPU per submission -> "
              f"{cores * 60 * n / cpu:6.1f} submissions/min projected on {cores} idle "
              f"cores (the measured rate is only meaningful on an idle machine)\n  {summary}",
              flush=True)
        again, cpu_again, summary = grade(root / "subs", root / "out", args.jobs, args.grader_args)
        print(f"unchanged re-run: {again:5.1f} s wall, {cpu_again:.1f} s CPU (target: seconds)\n  {summary}")
        with open(root / "out" / "grades.csv", newline="", encoding="utf-8-sig") as handle:
            rows = {r["submission"]: r for r in csv.DictReader(handle)}
        unfair = [n for n, k in kinds.items() if k == "correct" and rows[n]["score"] != rows[n]["max_score"]]
        missed = [n for n, k in kinds.items() if k != "correct" and rows[n]["score"] == rows[n]["max_score"]]
        statuses = {}
        for name, kind in kinds.items():
            statuses.setdefault(kind, {}).setdefault(rows[name]["status"], 0)
            statuses[kind][rows[name]["status"]] += 1
        print(f"statuses by kind: {statuses}")
        print("fairness: every correct variant earned full marks" if not unfair else
              f"FALSE POSITIVES (correct code marked down): {unfair}")
        print("every buggy/hostile submission lost points" if not missed else
              f"NOT CAUGHT (full marks for a bug): {missed}")
        buggy_scores = sorted((float(rows[n]["score"]), n, rows[n]["mistakes"])
                              for n, k in kinds.items() if k == "buggy")
        print("default-rubric score of each single-mistake submission (target: loses 5 to 50 "
              "points):\n" + "\n".join(f"  {points:6.2f}  {n}  {mistakes or '(area fallback)'}"
                                       f"{'' if 50 <= points <= 95 else '  OUT OF BAND'}"
                                       for points, n, mistakes in buggy_scores))
        durations = run_durations(root / "out")
        print(phase_split(root / "out", durations))
        per_sub = sorted(((d, n) for n, d in durations.items()), reverse=True)[:5]
        print("slowest submissions: " + ", ".join(f"{n} {d:.1f} s" for d, n in per_sub))
        if args.keep is not None:
            print(f"outputs kept in {root / 'out'}")
        return 1 if unfair else 0
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
