"""Did a change of the grader change what it writes? Compare two output folders file by file.

    python -m tools.compare_grading BEFORE_OUT AFTER_OUT

Both folders come from ``backprop-conformance grade`` on the same submissions (for a refactor:
the variant catalogue, graded once on the old commit and once on the new one). Every file is
compared byte for byte; the gradebook database (``grades.sqlite*``: run ids, timings) is
skipped, its content is what grades.csv and the per-submission files show. For each file that
differs the first differing lines are printed. Exit status 0 when every file is identical,
1 otherwise.

Any change to the suite's code changes its suite version (a content hash written into every
result, so stored grades are never mixed with another suite's), so a refactor compares with
``--mask-suite-version``: that value is masked on both sides wherever it is written (and the
report pages' ``grade-key``, a hash of everything a page shows, the version included), and its
change is printed.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from pathlib import Path

SKIPPED = ("grades.sqlite",)  # a database: ids and timings differ between two runs by nature
SHOWN_LINES = 12
SUITE_VERSION = re.compile(rb'("suite_version": ")([0-9a-f]+)(")')
PAGE_KEY = re.compile(rb'(<meta name="grade-key" content=")([0-9a-f]+)(")')


def versions_in(data: bytes) -> set[bytes]:
    return {m.group(2) for m in SUITE_VERSION.finditer(data)}


def masked(data: bytes, versions: set[bytes]) -> bytes:
    """``data`` with every suite version in ``versions`` and the page key masked."""
    for version in versions:
        data = data.replace(version, b"<suite version>")
    return PAGE_KEY.sub(rb"\1<page key>\3", data)


def files_of(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.startswith(SKIPPED)}


def first_difference(before: bytes, after: bytes) -> str:
    try:
        old, new = before.decode("utf-8").splitlines(), after.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        return f"    (binary: {len(before)} bytes -> {len(after)} bytes)"
    diff = [line for line in difflib.unified_diff(old, new, lineterm="", n=0) if not line.startswith(("---", "+++"))]
    shown = [f"    {line[:200]}" for line in diff[:SHOWN_LINES]]
    if len(diff) > SHOWN_LINES:
        shown.append(f"    ... {len(diff) - SHOWN_LINES} more diff lines")
    return "\n".join(shown)


def compare(before: Path, after: Path, mask_suite_version: bool = False) -> list[str]:
    """One entry per difference: a file only on one side, or a file whose bytes differ."""
    old, new = files_of(before), files_of(after)
    versions: set[bytes] = set()
    if mask_suite_version:
        versions = set().union(*(versions_in(p.read_bytes()) for p in [*old.values(), *new.values()]))
    problems = [f"only in {before}: {name}" for name in sorted(old.keys() - new.keys())]
    problems += [f"only in {after}: {name}" for name in sorted(new.keys() - old.keys())]
    for name in sorted(old.keys() & new.keys()):
        a, b = old[name].read_bytes(), new[name].read_bytes()
        if mask_suite_version:
            a, b = masked(a, versions), masked(b, versions)
        if a != b:
            problems.append(f"differs: {name}\n{first_difference(a, b)}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.compare_grading", allow_abbrev=False,
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path, help="output folder of the grader before the change")
    parser.add_argument("after", type=Path, help="output folder of the grader after the change")
    parser.add_argument("--mask-suite-version", action="store_true",
                        help="compare with the suite version masked (it changes with any code change)")
    args = parser.parse_args(argv)
    for folder in (args.before, args.after):
        if not (folder / "grades.csv").is_file():
            parser.error(f"{folder} is not a grader output folder (it has no grades.csv)")
    problems = compare(args.before, args.after, args.mask_suite_version)
    total = len(files_of(args.after))
    if args.mask_suite_version:
        old = set().union(*(versions_in(p.read_bytes()) for p in files_of(args.before).values()))
        new = set().union(*(versions_in(p.read_bytes()) for p in files_of(args.after).values()))
        print(f"suite version: {b', '.join(sorted(old)).decode() or '-'} -> {b', '.join(sorted(new)).decode() or '-'} (masked)")
    for line in problems:
        print(line)
    print(f"{total} files compared: {'identical' if not problems else f'{len(problems)} differences'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
