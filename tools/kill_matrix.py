"""The kill matrix: the conformance suite's verdict on every catalogue variant.

    python -m tools.kill_matrix                 # all variants, areas except mnist, 2 at a time
    python -m tools.kill_matrix -k relu -k ok_  # only variants whose name contains a pattern
    python -m tools.kill_matrix --mnist --isolate --keep /tmp/km

Exit status 0 when every buggy variant fails in its areas with messages that name no bug it
does not have (the misleading-hint count, target 0, is printed next to the kill count) and
every correct one passes everything; 1 otherwise (the problems, with the suite's messages, are
printed after the matrix).

Each variant (``tools.catalogue``) is judged by a separate pytest process running the suite's
hardened command (``conformance.invocation``, the same one ``backprop-conformance check`` and
the grader run: nothing beside the variant is read), whose JUnit XML gives the outcome of every
test; a test's check area is its module name minus ``test_``. An area *failed* when any of
its tests failed or errored, *passed* when at least one passed and none failed, and was
*not run* otherwise (all skipped, deselected, or the module does not exist yet).

The library half (``build_kill_matrix``, ``run_variant``, ``judge``) is used by
tests/test_kill_matrix.py (the self-test) and the project's other self-tests; ``main`` is the
command. Needs a clone: the catalogue is not in the wheel.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Literal

from conformance.invocation import SUITE_ROOT, suite_command, suite_env
try:
    from tools.catalogue import AREAS, REFERENCE_CONTROL, REPO_ROOT, Variant, materialize
except ModuleNotFoundError as exc:  # installed from the wheel, which leaves the catalogue out
    if exc.name != "tools.catalogue":
        raise
    raise ModuleNotFoundError("the kill matrix needs a clone of the project: the variant catalogue "
                              "(tools/catalogue/) is not in the wheel", name=exc.name) from exc

Outcome = Literal["failed", "passed", "skipped"]
SUITE_DIR = REPO_ROOT / "conformance"
OPTIONAL_FUNCTIONS = ("init_params", "relu", "softmax", "cross_entropy", "train")
MESSAGE_CAP = 20000  # characters kept per failure message: the diagnosis sits below the table
# How the suite words a skip its declared interface imposes (conformance/calls.py interface_limit).
INTERFACE_LIMIT_REASON = "interface limit of the declared conventions"
DEFAULT_TIMEOUT = 600.0  # seconds per variant run; far above the suite's few seconds


@dataclass(frozen=True)
class CaseResult:
    nodeid: str
    area: str | None  # None when the test is not in a conformance/test_<area>.py module
    outcome: Outcome
    message: str = ""  # failure/error text or skip reason


@dataclass
class VariantRun:
    variant: Variant
    tests: list[CaseResult] = field(default_factory=list)
    returncode: int | None = None
    duration: float = 0.0
    error: str | None = None  # the run itself went wrong (timeout, usage error, no report)
    output_tail: str = ""  # last lines of the pytest output, for diagnosing run errors
    report: list[dict] | None = None  # the JSON report's per-test records (what the grader scores)

    def area_outcome(self, area: str) -> Outcome:
        outcomes = {t.outcome for t in self.tests if t.area == area}
        if "failed" in outcomes:
            return "failed"
        return "passed" if "passed" in outcomes else "skipped"

    def failures(self, area: str | None = None) -> list[CaseResult]:
        return [t for t in self.tests if t.outcome == "failed" and (area is None or t.area == area)]

    def skips(self) -> list[CaseResult]:
        return [t for t in self.tests if t.outcome == "skipped"]


@dataclass(frozen=True)
class RunOptions:
    mnist: bool = False  # also run the mnist area (needs the data; slower)
    isolate: bool = False  # judge each variant with --isolate
    timeout: float = DEFAULT_TIMEOUT
    extra_args: tuple[str, ...] = ()


def suite_areas() -> list[str]:
    """The check areas the suite has right now (conformance/test_<area>.py files)."""
    present = {p.stem.removeprefix("test_") for p in SUITE_DIR.glob("test_*.py")}
    return [a for a in AREAS if a in present] + sorted(present - set(AREAS))


def suite_version() -> str:
    """Short hash of the last commit touching conformance/, plus '+dirty' for local edits."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                                  timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    commit = git("log", "-1", "--format=%h", "--", "conformance") or "unknown"
    return commit + ("+dirty" if git("status", "--porcelain", "--", "conformance") else "")


def has_grading_profile() -> bool:
    """Whether the suite registers the derandomised ``grading`` hypothesis profile."""
    # Registration may go through a constant (GRADING_PROFILE = "grading"), so look for both.
    name = re.compile(r"['\"]grading['\"]")
    for path in SUITE_DIR.rglob("*.py"):
        text = path.read_text(errors="replace")
        if "register_profile(" in text and name.search(text):
            return True
    return False


def areas_run(options: RunOptions) -> list[str]:
    return [a for a in suite_areas() if options.mnist or a != "mnist"]


def pytest_command(variant: Variant, junit: Path, options: RunOptions,
                   report: Path | None = None) -> list[str]:
    # The hardened command of every verdict (conformance.invocation): adversarial submissions
    # go through this runner too, so nothing beside them may be read.
    cmd = ["-q", "--junitxml", str(junit)]
    if report is not None:  # the same run's JSON report: the default rubric's score
        cmd += ["--conformance-report", str(report)]
    if has_grading_profile():
        cmd += ["--hypothesis-profile", "grading"]
    if options.mnist:
        cmd += ["--require-mnist"]  # an unfound dataset must show, not skip quietly
    else:
        cmd += ["-m", "not mnist"]
    if options.isolate:
        cmd += ["--isolate"]
    if variant.declaration is not None:  # judged through its declaration, as the grader would
        cmd += [f"--declaration={variant.declaration}"]
    return suite_command(variant.path, cmd + list(options.extra_args))


def _environment() -> dict[str, str]:
    env = suite_env()
    # Two variants run at once on a 2-core machine: one BLAS thread each avoids thrashing.
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONDONTWRITEBYTECODE="1")
    # As the grader does (conformance/grade/run/runner.py): an MNIST training run too slow for the quick
    # check (numerical gradients) fails the mnist area within the run's time, not the run.
    env.setdefault("BACKPROP_ISOLATE_SGD_TIMEOUT", "60")
    return env


def area_of(classname: str) -> str | None:
    """``conformance.test_gradients.TestX`` -> ``gradients``; None outside the suite."""
    parts = classname.split(".")
    for part in parts:
        if part.startswith("test_"):
            return part.removeprefix("test_")
    return None


def parse_junit(path: Path) -> list[CaseResult]:
    """Per-test outcomes from a pytest JUnit XML file (collection errors count as failures)."""
    results = []
    for case in ET.parse(path).getroot().iter("testcase"):
        classname, name = case.get("classname", ""), case.get("name", "")
        area = area_of(classname)
        if area is None and not classname:  # a module that failed to import: name is its path
            area = area_of(name.replace("/", ".").removesuffix(".py"))
        nodeid = f"{classname}::{name}" if classname else name
        outcome: Outcome = "passed"
        message = ""
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed"
                message = (child.get("message", "") + "\n" + (child.text or "")).strip()
                break
            if child.tag == "skipped":
                outcome = "skipped"
                message = child.get("message", "") or (child.text or "")
        results.append(CaseResult(nodeid, area, outcome, message[:MESSAGE_CAP]))
    return results


def run_variant(variant: Variant, workdir: Path, options: RunOptions = RunOptions()) -> VariantRun:
    """Judge one variant with the suite in a subprocess; never raises for a bad run."""
    workdir.mkdir(parents=True, exist_ok=True)
    junit = workdir / f"{variant.name}.junit.xml"
    log = workdir / f"{variant.name}.log"
    report = workdir / f"{variant.name}.report.json"
    junit.unlink(missing_ok=True)
    report.unlink(missing_ok=True)
    run = VariantRun(variant)
    start = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen(pytest_command(variant, junit, options, report), cwd=SUITE_ROOT,
                                env=_environment(), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            run.returncode = proc.wait(timeout=options.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the whole group: pytest and any worker
            proc.wait()
            run.error = f"timeout: the suite ran longer than {options.timeout:.0f} s"
    run.duration = time.monotonic() - start
    run.output_tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
    if run.error is None:
        if run.returncode not in (0, 1):  # 2 interrupted, 3 internal error, 4 usage, 5 no tests
            run.error = f"pytest exited with status {run.returncode}"
        elif not junit.is_file():
            run.error = "pytest wrote no JUnit report"
    if junit.is_file():
        try:
            run.tests = parse_junit(junit)
        except ET.ParseError as exc:
            run.error = run.error or f"unreadable JUnit report: {exc}"
    if report.is_file():
        try:
            run.report = json.loads(report.read_text())["tests"]
        except (ValueError, KeyError) as exc:
            run.error = run.error or f"unreadable JSON report: {exc}"
    return run


def default_score(run: VariantRun, control: VariantRun | None) -> float | None:
    """The variant's score with the default rubric (conformance/grade/score/default_rubric.toml), the
    control's run as the baseline. An area the control did not run either (mnist, unless
    requested) earns its points: the matrix prices only what it ran."""
    if run.report is None or run.error or control is None or control.report is None:
        return None
    from conformance.grade.score.rubric import Baseline, load_rubric, score

    rubric = load_rubric()
    grade = score(rubric, "graded", run.report, Baseline.from_tests(control.report))
    ran = {t["area"] for t in control.report}
    unrun = sum(g.group.points for g in grade.groups if g.group.area and g.group.area not in ran)
    return round(min(rubric.max_score, grade.score + unrun), 2)


def run_catalogue(variants: Iterable[Variant], workdir: Path, options: RunOptions = RunOptions(),
                  *, jobs: int = 2, on_done: Callable[[VariantRun], None] | None = None,
                  ) -> list[VariantRun]:
    """Run every variant, ``jobs`` at a time; results in catalogue order."""
    variants = list(variants)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:  # threads only wait on processes
        futures = {pool.submit(run_variant, v, workdir, options): v.name for v in variants}
        done: dict[str, VariantRun] = {}
        for future in as_completed(futures):
            run = future.result()
            done[futures[future]] = run
            if on_done is not None:
                on_done(run)
    return [done[v.name] for v in variants]


# --- verdicts ---------------------------------------------------------------------------


def defined_functions(path: Path) -> set[str]:
    """Top-level function names a variant defines (read from its source, never executed)."""
    tree = ast.parse(path.read_text())
    names = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    names |= {t.id for n in tree.body if isinstance(n, ast.Assign)
              for t in n.targets if isinstance(t, ast.Name)}
    return names


def _shown_text(message: str) -> str:
    """The part of a failure a student reads: pytest's ``E`` lines (the assertion message), not
    the suite's source code around them; the whole text when there are none (pytest.fail)."""
    lines = [ln[1:].strip() for ln in message.splitlines() if ln.startswith("E ")]
    return "\n".join(lines) if lines else message


def misleading_hints(run: VariantRun) -> tuple[str, ...]:
    """One entry per (failed test, named bug) where a message names a bug or missing guard
    that the variant does not have (its BugSpec.names lists what it may be called)."""
    from conformance.diagnosis import named_bugs

    own = set(run.variant.own_names)
    out = []
    for t in run.failures():
        for key in sorted(named_bugs(_shown_text(t.message)) - own):
            out.append(f"{t.nodeid} names {key!r}")
    return tuple(out)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    summary: str  # one short phrase for the matrix
    problems: tuple[str, ...] = ()  # full explanations (with the suite's messages)
    unchecked: tuple[str, ...] = ()  # expected areas that did not run
    misleading: tuple[str, ...] = ()  # failure messages naming a bug the variant does not have


def judge(run: VariantRun, areas: list[str], control: VariantRun | None = None) -> Verdict:
    """Did the suite treat this variant as the catalogue says it must?

    Buggy: fails in every expected area that ran. Correct: no failure, no run error, and
    no skip beyond those the control (the unpatched reference) also gets, except skips of
    tests about an optional function the variant does not define.
    """
    v = run.variant
    if run.error:
        return Verdict(False, "RUN ERROR", (f"{v.name}: {run.error}\n{run.output_tail}",))
    if v.kind == "buggy":
        checked = [a for a in sorted(v.expected_areas, key=AREAS.index) if a in areas]
        unchecked = tuple(a for a in sorted(v.expected_areas, key=AREAS.index) if a not in areas)
        missed = [a for a in checked if run.area_outcome(a) != "failed"]
        if not checked:
            return Verdict(True, "not checked: " + ",".join(unchecked), (), unchecked)
        problems = [f"{v.name} ({v.description}) was NOT caught by the {a} area "
                    f"(outcome: {run.area_outcome(a)})" for a in missed]
        for pattern in v.expected_tests:
            area, _, text = pattern.partition("::")
            if area not in areas:
                continue
            matching = [t for t in run.tests if t.area == area and text in t.nodeid]
            if not matching:
                problems.append(f"{v.name}: no test of the {area} area matches {text!r} (the "
                                "suite renamed or dropped it: update tools/catalogue/buggy.py)")
                missed.append(pattern)
            elif not any(t.outcome == "failed" for t in matching):
                problems.append(f"{v.name} ({v.description}) was NOT caught by the tests "
                                f"matching {pattern!r}: "
                                + ", ".join(f"{t.nodeid} {t.outcome}" for t in matching))
                missed.append(pattern)
        wanted = v.expected_message.lower()
        if wanted and not any(wanted in t.message.lower() for t in run.failures()):
            problems.append(f"{v.name} ({v.description}) failed, but no failure message says "
                            f"{v.expected_message!r}: the suite should name the bug, not only "
                            "the symptom")
            missed.append("message")
        misleading = misleading_hints(run)
        if problems:
            return Verdict(False, "MISSED " + ",".join(missed), tuple(problems), unchecked, misleading)
        if misleading:
            return Verdict(False, f"MISLEADING x{len(misleading)}",
                           tuple(f"{v.name} ({v.description}): a message names a bug it does not "
                                 f"have: {m}" for m in misleading), unchecked, misleading)
        return Verdict(True, "killed", (), unchecked)
    problems = [f"{v.name} ({v.description}) FAILED {t.nodeid}:\n{t.message}"
                for t in run.failures()]
    allowed = {t.nodeid for t in control.skips()} if control is not None else set()
    from conformance.calls import _opt_outs

    opted = _opt_outs(str(v.path), None)
    absent = [f for f in OPTIONAL_FUNCTIONS if f not in defined_functions(v.path) or f in opted]
    for t in run.skips():
        if t.nodeid in allowed or any(f in t.message for f in absent):
            continue
        if v.declaration is not None and INTERFACE_LIMIT_REASON in t.message:
            continue  # a check its declared interface cannot give, said as such
        problems.append(f"{v.name} was SKIPPED in {t.nodeid} although the reference runs it "
                        f"and no absent optional function explains it: {t.message}")
    if problems:
        bad_areas = sorted({t.area or "?" for t in run.failures()}, key=str)
        label = "FALSE POSITIVE " + ",".join(bad_areas) if bad_areas else "UNEXPECTED SKIP"
        return Verdict(False, label, tuple(problems))
    return Verdict(True, "ok")


# --- the matrix ------------------------------------------------------------------------

SYMBOL = {"failed": "X", "passed": ".", "skipped": "s"}


def format_matrix(runs: list[VariantRun], areas: list[str], verdicts: dict[str, Verdict],
                  *, title: str = "") -> str:
    """variant x area: X failed, . passed, s all skipped, - not run; [ ] marks an area where
    the variant must fail; the last column says whether the suite behaved as required."""
    all_areas = list(AREAS) + [a for a in areas if a not in AREAS]
    name_width = max([len(r.variant.name) for r in runs] + [7])
    widths = [max(len(a), 3) for a in all_areas]
    head = f"{'variant':<{name_width}}  " + "  ".join(f"{a:^{w}}" for a, w in zip(all_areas, widths))
    lines = [title] if title else []
    lines += [head + "   time  score  verdict", "-" * (len(head) + 37)]
    control = next((r for r in runs if r.variant.name == "ok_reference_copy"), None)
    for kind in ("buggy", "correct"):
        for run in (r for r in runs if r.variant.kind == kind):
            cells = []
            for area, width in zip(all_areas, widths):
                if run.error:
                    symbol = "E"
                elif area not in areas:
                    symbol = "-"
                else:
                    symbol = SYMBOL[run.area_outcome(area)]
                cell = f"[{symbol}]" if area in run.variant.expected_areas else symbol
                cells.append(f"{cell:^{width}}")
            verdict = verdicts[run.variant.name]
            points = default_score(run, control)
            lines.append(f"{run.variant.name:<{name_width}}  " + "  ".join(cells)
                         + f"  {run.duration:5.1f}s  {'  -  ' if points is None else f'{points:5.1f}'}"
                         f"  {verdict.summary}")
    bad = [v for v in verdicts.values() if not v.ok]
    buggy = [r for r in runs if r.variant.kind == "buggy"]
    killed = sum(verdicts[r.variant.name].summary in ("killed",) or
                 verdicts[r.variant.name].summary.startswith("MISLEADING") for r in buggy)
    misleading = sum(len(verdicts[r.variant.name].misleading) for r in buggy)
    correct = [r for r in runs if r.variant.kind == "correct"]
    lines.append("-" * (len(head) + 37))
    lines.append(
        f"{killed}/{len(buggy)} buggy variants killed in their areas, {misleading} misleading "
        "hint(s) (a message naming a bug the variant does not have; target 0); "
        f"{sum(verdicts[r.variant.name].ok for r in correct)}/{len(correct)} correct variants "
        f"passed everything; {len(bad)} problem(s). Areas run: {', '.join(areas)}. "
        "Legend: X failed, . passed, s all skipped, - area not run (absent from the suite or "
        "excluded), E the run itself failed, [ ] = must fail there; score: the default rubric's "
        "points out of 100 (areas not run counted as earned).")
    return "\n".join(lines)


@dataclass
class KillMatrix:
    runs: list[VariantRun]
    areas: list[str]
    verdicts: dict[str, Verdict]
    version: str
    options: RunOptions

    def __repr__(self) -> str:  # pytest shows fixture values on failure: keep it one line
        bad = sum(not v.ok for v in self.verdicts.values())
        return f"<KillMatrix {len(self.runs)} variants, suite {self.version}, {bad} problem(s)>"

    def run_of(self, name: str) -> VariantRun:
        return next(r for r in self.runs if r.variant.name == name)

    def render(self) -> str:
        mode = "isolated" if self.options.isolate else "in-process"
        title = (f"kill matrix: suite {self.version}, {len(self.runs)} variants, {mode}, "
                 f"grading profile: {'yes' if has_grading_profile() else 'no (not in suite yet)'}")
        return format_matrix(self.runs, self.areas, self.verdicts, title=title)

    def problems(self) -> list[str]:
        return [p for v in self.verdicts.values() for p in v.problems]

    def score_of(self, name: str) -> float | None:
        control = next((r for r in self.runs if r.variant.name == REFERENCE_CONTROL), None)
        return default_score(self.run_of(name), control)


def build_kill_matrix(variants: list[Variant], workdir: Path, options: RunOptions = RunOptions(),
                      *, jobs: int = 2, on_done: Callable[[VariantRun], None] | None = None,
                      ) -> KillMatrix:
    runs = run_catalogue(variants, workdir, options, jobs=jobs, on_done=on_done)
    areas = areas_run(options)
    control = next((r for r in runs if r.variant.name == "ok_reference_copy"), None)
    verdicts = {r.variant.name: judge(r, areas, control) for r in runs}
    return KillMatrix(runs, areas, verdicts, suite_version(), options)


# --- the command ------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(allow_abbrev=False, prog="python -m tools.kill_matrix",
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
