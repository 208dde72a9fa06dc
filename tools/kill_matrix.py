"""Print the kill matrix: the conformance suite's verdict on every catalogue variant.

    python -m tools.kill_matrix                 # all variants, areas except mnist, 2 at a time
    python -m tools.kill_matrix -k relu -k ok_  # only variants whose name contains a pattern
    python -m tools.kill_matrix --mnist --isolate --keep /tmp/km

Exit status 0 when every buggy variant fails in its areas with messages that name no bug it
does not have (the misleading-hint count, target 0, is printed next to the kill count) and
every correct one passes everything; 1 otherwise (the problems, with the suite's messages, are printed after the
matrix). Same machinery as tests/test_kill_matrix.py.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from tests.kill_matrix import DEFAULT_TIMEOUT, RunOptions, VariantRun, build_kill_matrix
from tests.variants import REFERENCE_CONTROL, materialize


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.kill_matrix",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", "--only", action="append", default=[], metavar="PATTERN",
                        help="run only variants whose name contains PATTERN (repeatable)")
    parser.add_argument("-j", "--jobs", type=int, default=2, help="parallel runs (default 2)")
    parser.add_argument("--mnist", action="store_true",
                        help="also run the mnist area (needs the data; adds minutes)")
    parser.add_argument("--isolate", action="store_true", help="judge variants with --isolate")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help=f"seconds per variant run (default {DEFAULT_TIMEOUT:.0f})")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="write variants, JUnit reports and logs into DIR and keep them")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    if args.timeout <= 0:
        parser.error(f"--timeout must be positive, got {args.timeout}")
    if args.keep is not None and args.keep.exists() and not args.keep.is_dir():
        parser.error(f"--keep {args.keep}: exists and is not a directory")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kill_matrix_") as scratch:
        root = args.keep or Path(scratch)
        variants = materialize(root / "variants")
        if args.only:
            chosen = [v for v in variants if any(p in v.name for p in args.only)]
            if not chosen:
                print(f"no variant name contains any of {args.only}", file=sys.stderr)
                return 2
            # The control (the unpatched reference) defines which skips are normal.
            variants = chosen + [v for v in variants if v.name == REFERENCE_CONTROL
                                 and v not in chosen]
        progress = None
        if not args.quiet:
            try:
                from tqdm import tqdm

                progress = tqdm(total=len(variants), unit="variant", file=sys.stderr)
            except ImportError:  # optional extra; plain output without it
                pass

        def on_done(run: VariantRun) -> None:
            if progress is not None:
                progress.set_postfix_str(run.variant.name, refresh=False)
                progress.update()

        options = RunOptions(mnist=args.mnist, isolate=args.isolate, timeout=args.timeout)
        matrix = build_kill_matrix(variants, root / "runs", options, jobs=args.jobs,
                                   on_done=on_done)
        if progress is not None:
            progress.close()
    print(matrix.render())
    problems = matrix.problems()
    for problem in problems:
        print("\n" + "=" * 100 + "\n" + problem)
    if args.keep:
        print(f"\nvariants, JUnit reports and logs kept in {args.keep}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
