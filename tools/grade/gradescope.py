"""Gradescope autograder entry: grade /autograder/submission into /autograder/results/results.json.

A Gradescope ``run_autograder`` script can be just::

    #!/usr/bin/env bash
    cd /autograder/source && python3 -m tools.grade.gradescope

The submission folder is graded like one student folder of a batch (``--module`` names the
file when the student uploads several), with the same suite run, limits and rubric.
A results.json is always written, whatever the submission does; the exit status is 0
unless the arguments or the rubric are wrong (then the autograder itself is broken).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from conformance.report import suite_version
from tools.grade.outputs import GradedSubmission, gradescope_results, write_atomic
from tools.grade.rubric import RubricError, load_rubric, score
from tools.grade.runner import GradeConfig, Job, JobResult, run_job
from tools.grade.submissions import load_submission


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tools.grade.gradescope", description=__doc__.splitlines()[0])
    p.add_argument("--submission", type=Path, default=Path("/autograder/submission"),
                   help="the student's uploaded files (default /autograder/submission)")
    p.add_argument("--results", type=Path, default=Path("/autograder/results/results.json"),
                   help="where to write results.json (default /autograder/results/results.json)")
    p.add_argument("--module", help="the module's file name when the upload holds several .py files")
    p.add_argument("--rubric", type=Path, default=None, help="rubric TOML (default: the shipped one)")
    p.add_argument("--timeout", type=float, default=300.0, help="wall-clock limit of the suite run (s)")
    p.add_argument("--mnist-dir", default=os.environ.get("BACKPROP_MNIST_DIR"),
                   help="folder with the four MNIST files (default $BACKPROP_MNIST_DIR, then the cache)")
    p.add_argument("--no-isolate", dest="isolate", action="store_false",
                   help="run the candidate in the suite's process (NOT for student code)")
    p.add_argument("--profile", default="grading", help="hypothesis profile (default grading)")
    p.add_argument("--pytest-arg", dest="pytest_args", action="append", default=[], metavar="ARG")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        rubric = load_rubric(args.rubric)
    except RubricError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.submission.is_dir():
        print(f"error: --submission {args.submission}: no such directory", file=sys.stderr)
        return 2
    config = GradeConfig(timeout=args.timeout, isolate=args.isolate, hypothesis_profile=args.profile or None,
                         mnist_dir=args.mnist_dir, extra_args=tuple(args.pytest_args))
    sub = load_submission(args.submission, args.module, name="submission")
    if sub.problem or sub.module is None:
        result = JobResult(name=sub.name, sha256=sub.sha256, status=sub.problem_status,
                           message=sub.problem or "no module")
    else:
        result = run_job(Job(name=sub.name, sha256=sub.sha256, files=sub.files, module=sub.module,
                             config=config))
    tests = result.report["tests"] if result.report else []
    graded = GradedSubmission(
        name=sub.name, slug=sub.slug, sha256=sub.sha256, status=result.status, message=result.message,
        grade=score(rubric, result.status, tests, None, result.message), duration=result.duration,
        tests=tests, suite_version=suite_version(), rubric=rubric, intake=sub.intake)
    write_atomic(args.results, json.dumps(gradescope_results(graded), indent=1))
    print(f"{result.status}: {graded.grade.score:g}/{graded.grade.max_score:g} -> {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
