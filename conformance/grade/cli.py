"""``python -m conformance.grade SUBMISSIONS --out OUT [-j N] [--dask tcp://host:8786]``.

Exit status: 0 every submission has a final status; 3 some submissions ended in a grader
error (named on the last line; no grade, retried by the next run); 2 nothing was graded
(bad arguments, failed preflight or baseline); 130 interrupted (Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from conformance.invocation import InvocationError, check_extra_args
from conformance.grade.batch import BatchError, BatchOptions, grade_batch
from conformance.grade.score.rubric import DEFAULT_RUBRIC, RubricError
from conformance.grade.run.jobs import FINAL_STATUSES, GradeConfig


def _positive(kind: type):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value
    return parse


def add_sandbox_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--isolate-sandbox", dest="sandbox", choices=("require", "off"), default="require",
                   help="require (default): refuse to grade unless candidates run in private "
                        "namespaces as an unprivileged user (needs root on Linux); off: no "
                        "namespaces, for containers that block them; still run as root, the "
                        "worker gets its own unprivileged uid and the run refuses to start if "
                        "that uid can reach the grader's files (recorded as 'off' for every run)")


class PrintDefaultRubric(argparse.Action):
    """Like --version: prints and exits before the required arguments are asked for."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        sys.stdout.write(DEFAULT_RUBRIC.read_text(encoding="utf-8"))
        parser.exit()


def build_parser(prog: str = "python -m conformance.grade") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        allow_abbrev=False,
        prog=prog,
        description="Grade a folder of submissions with the conformance suite: SQLite gradebook, "
                    "CSV, Gradescope results.json, JUnit XML and an HTML report in OUT.",
        # What the module docstring promises, where a user looks for it.
        epilog="Entries that are not gradable submissions (unsupported, no_module, invalid_submission) "
               "get no score and stay out of the mean, listed apart. Exit status: 0 every submission "
               "has a final status; 3 some ended in a grader error (retried by the next run); 2 nothing "
               "was graded (bad arguments, failed preflight or baseline); 130 interrupted.")
    p.add_argument("submissions", metavar="SUBMISSIONS", type=Path,
                   help="folder holding per student a .py file, a notebook, a .zip or a folder "
                        "(an LMS bulk download as it is); every entry gets a row")
    p.add_argument("--out", required=True, type=Path, help="output folder (created; reused to resume)")
    p.add_argument("-j", "--jobs", type=_positive(int), default=1,
                   help="submissions graded in parallel on this machine (default 1)")
    p.add_argument("--dask", metavar="ADDRESS",
                   help="send the per-submission jobs to this Dask scheduler, e.g. tcp://host:8786 "
                        "(each worker needs this commit checked out and installed with the 'dask' "
                        "extra, MNIST, and root for the sandbox; a worker failing its preflight "
                        "takes no jobs)")
    p.add_argument("--module", metavar="NAME.py",
                   help="module file inside each student folder or zip (default: its only .py file, else "
                        "the one named mlp.py, else the only one defining forward and backward)")
    p.add_argument("--roster", type=Path, default=None, metavar="roster.csv",
                   help="class list with columns id,name,email: rows and exports carry the student id "
                        "(LMS bulk-download names are matched by user id)")
    p.add_argument("--declaration", type=Path, default=None, metavar="FILE",
                   help="the assignment's conventions (conformance/ADAPTERS.md); default: the section's "
                        "interface. A submission's own CONFORMANCE literal never counts")
    p.add_argument("--rubric", type=Path, default=None,
                   help="rubric TOML (default: the shipped one; --print-default-rubric prints it)")
    p.add_argument("--print-default-rubric", action=PrintDefaultRubric, nargs=0,
                   help="print the shipped rubric, with its rationale, and exit: write it to a file "
                        "to reweight (... --print-default-rubric > my_rubric.toml; --rubric my_rubric.toml)")
    p.add_argument("--timeout", type=_positive(float), default=300.0,
                   help="wall-clock limit in seconds for one submission's whole suite run (default 300)")
    # The suite's calls work on arrays of at most a few thousand entries: milliseconds for
    # any correct style (even pure-Python loops), so 30 s leaves a >1000x margin for a loaded
    # machine while a hanging function costs one slot only 30 s (it is not called again).
    # Training calls (the MNIST loop, the candidate's train) have their own, longer limit.
    p.add_argument("--call-timeout", type=_positive(float), default=30.0, metavar="SECONDS",
                   help="limit for one non-training call to an isolated candidate (default 30); "
                        "MNIST training runs get the isolation's training limit")
    p.add_argument("--mnist-dir", default=os.environ.get("BACKPROP_MNIST_DIR"),
                   help="folder with the four MNIST files (default $BACKPROP_MNIST_DIR, then the cache)")
    isolation = p.add_mutually_exclusive_group()
    # `check --isolate` habits: grading always isolates, so the flag is accepted and changes nothing.
    isolation.add_argument("--isolate", dest="isolate", action="store_true", default=True,
                           help="the default: grading always runs candidates isolated (not needed)")
    isolation.add_argument("--no-isolate", dest="isolate", action="store_false",
                           help="run candidates inside the suite's process (ONLY for trusted code)")
    add_sandbox_option(p)
    p.add_argument("--profile", default="grading",
                   help="hypothesis profile (default 'grading': derandomized, the same cases for everyone)")
    p.add_argument("--no-require-mnist", dest="require_mnist", action="store_false",
                   help="do not fail the MNIST checks when the data is missing (they are skipped)")
    p.add_argument("--pytest-arg", dest="pytest_args", action="append", default=[], metavar="ARG",
                   help="extra argument for the suite's pytest run (repeatable), e.g. --pytest-arg=-m "
                        "--pytest-arg='not mnist'")
    p.add_argument("--no-baseline", dest="baseline", action="store_false",
                   help="skip grading the reference first (it must otherwise earn full marks)")
    p.add_argument("--retry", default="", metavar="STATUS,...",
                   help=f"re-run stored submissions with these statuses ({', '.join(FINAL_STATUSES)})")
    p.add_argument("--force", action="store_true", help="re-run every submission")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.add_argument("--override", action="append", default=[], type=parse_override,
                   metavar='NAME=SCORE,"REASON"',
                   help="set a submission's score by hand, with the reason (stored in grades.sqlite, "
                        "shown in grades.csv, results.json and its page; it holds for these exact "
                        "bytes: a resubmission is graded again); repeatable")
    p.add_argument("--similarity-threshold", type=float, default=None, metavar="0..1",
                   help="also compare the class's code (copydetect) and flag pairs at or above this "
                        "score; staff-only pages in OUT/staff/similarity/")
    p.add_argument("--template", type=Path, action="append", default=[], metavar="FILE",
                   help="code every student was given, excluded from the comparison (repeatable)")
    p.add_argument("--textbook", type=Path, default=None, metavar="FILE",
                   help="the textbook section text, its code excluded and copies of it named "
                        "(default: $BACKPROP_SECTION_FILE)")
    return p


def parse_override(text: str) -> tuple[str, float, str]:
    """``name=score,reason`` (the reason may contain commas)."""
    name, eq, rest = text.partition("=")
    points, comma, reason = rest.partition(",")
    try:
        value = float(points)
    except ValueError:
        value = math.nan
    if not eq or not name.strip() or not comma or not reason.strip() or math.isnan(value):
        raise argparse.ArgumentTypeError(
            f"{text!r}: write NAME=SCORE,\"REASON\", e.g. alice=85,\"regraded by hand\"")
    return name.strip(), value, reason.strip()


def _checked_retry(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[str, ...]:
    """The statuses of ``--retry``, each a final status."""
    retry = tuple(s.strip() for s in args.retry.split(",") if s.strip())
    bad = [s for s in retry if s not in FINAL_STATUSES]
    if bad:
        parser.error(f"--retry {','.join(bad)}: unknown status (choose from {', '.join(FINAL_STATUSES)})")
    return retry


def _check_option_combinations(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Options that are wrong on their own or together: refused before anything runs."""
    try:
        check_extra_args(args.pytest_args)
    except InvocationError as exc:
        parser.error(f"--pytest-arg: {exc}")
    if args.similarity_threshold is not None and not 0 < args.similarity_threshold <= 1:
        parser.error(f"--similarity-threshold {args.similarity_threshold:g}: must be in (0, 1]")
    if args.template and args.similarity_threshold is None:
        parser.error("--template only matters with --similarity-threshold")
    if args.dask and args.jobs != 1:
        parser.error("-j and --dask exclude each other: the Dask cluster decides the parallelism")


def _checked_mnist_dir(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str | None:
    if not args.mnist_dir:
        return None
    mnist = Path(args.mnist_dir).expanduser().resolve()
    if not mnist.is_dir():
        parser.error(f"--mnist-dir {args.mnist_dir}: no such directory")
    return str(mnist)


def _checked_declaration(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """The instructor's declaration as validated TOML text ("": the section's interface)."""
    if args.declaration is None:
        return ""
    from conformance.declaration import DeclarationError, instructor_text

    try:
        return instructor_text(args.declaration)
    except DeclarationError as exc:
        parser.error(str(exc))


def main(argv: list[str] | None = None, prog: str = "python -m conformance.grade") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    retry = _checked_retry(parser, args)
    _check_option_combinations(parser, args)
    mnist_dir = _checked_mnist_dir(parser, args)
    declaration = _checked_declaration(parser, args)
    config = GradeConfig(timeout=args.timeout, isolate=args.isolate, hypothesis_profile=args.profile or None,
                         require_mnist=args.require_mnist, mnist_dir=mnist_dir,
                         extra_args=tuple(args.pytest_args), call_timeout=args.call_timeout,
                         sandbox=args.sandbox, declaration=declaration)
    opts = BatchOptions(submissions=args.submissions, out=args.out, config=config, jobs=args.jobs,
                        dask=args.dask, module=args.module, rubric=args.rubric, baseline=args.baseline,
                        retry=retry, force=args.force, progress=args.progress, roster=args.roster,
                        overrides=tuple(args.override), similarity_threshold=args.similarity_threshold,
                        templates=tuple(args.template), textbook=args.textbook)
    try:
        summary = grade_batch(opts, argv=sys.argv if argv is None else argv)
    except (BatchError, RubricError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished submissions are saved in the gradebook; run the same command "
              "again to grade the rest", file=sys.stderr)
        return 130
    print(summary.line())
    return 3 if summary.grader_errors else 0
