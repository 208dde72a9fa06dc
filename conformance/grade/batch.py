"""Grade a folder of submissions: plan (reuse what is unchanged), run, record, report.

Order of work:
1. validate arguments, load the rubric, find the submissions;
2. preflight where the jobs run (this machine, or every Dask worker: data, disk, sandbox,
   suite version; conformance/grade/run/preflight.py), then the baseline: the reference implementation
   is graded first, where the jobs run (once per suite version and settings; stored), and must
   earn full marks with this rubric, otherwise nothing is graded (a missing MNIST copy or a
   rubric area with no tests would fail every student);
3. per submission: a stored run of the same bytes under the same suite and settings is
   reused (re-scored if the rubric changed); the rest run in parallel (threads driving
   subprocesses, or Dask futures) and each result is committed as soon as it arrives;
4. CSV, per-submission Gradescope JSON and JUnit, HTML report, one-line summary; submissions
   whose run failed on the grader's side (status "error") are named at the end and make the
   command exit non-zero: they have no grade yet and are run again next time.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, cast

from conformance.report import suite_version as compute_suite_version
from conformance.grade.publish.gradebook import Gradebook, StoredRun
from conformance.grade.publish.html_report import STAFF_DIR, write_report
from conformance.grade.intake.lms import RosterError, load_roster
from conformance.grade.publish.outputs import GradedSubmission, Override, message_line, write_class_csvs, write_submission_files
from conformance.grade.run.preflight import Preflight, ensure_environment, missing_extras, worker_preflight
from conformance.grade.score.rubric import Baseline, Rubric, load_rubric, score
from conformance.grade.run.jobs import FINAL_STATUSES, GradeConfig, Job, JobResult
from conformance.grade.run.runner import environment_failure, kill_all_live, reference_job, run_job
from conformance.grade.intake.sanitize import clean_name
from conformance.grade.intake.submissions import ClassIntake, Submission, SubmissionsError, scan_class

if TYPE_CHECKING:  # imported where it runs: only a batch that compares code needs it
    from conformance.grade.score.similarity import SimilarityReport


class BatchError(Exception):
    """The batch cannot be graded fairly (bad arguments, the reference fails the suite)."""


@dataclass
class BatchOptions:
    submissions: Path
    out: Path
    config: GradeConfig = field(default_factory=GradeConfig)
    jobs: int = 1
    dask: str | None = None
    module: str | None = None
    rubric: Path | None = None
    baseline: bool = True
    retry: tuple[str, ...] = ()
    force: bool = False
    progress: bool = True
    roster: Path | None = None
    overrides: tuple[tuple[str, float, str], ...] = ()  # (submission, score, reason)
    similarity_threshold: float | None = None  # compare the class's code (staff-only pages)
    templates: tuple[Path, ...] = ()  # code every student was given: boilerplate
    textbook: Path | None = None  # the section text (default $BACKPROP_SECTION_FILE)


@dataclass
class BatchSummary:
    out: Path
    total: int = 0
    ran: int = 0
    rescored: int = 0
    unchanged: int = 0
    statuses: Counter = field(default_factory=Counter)
    mean_score: float = 0.0
    max_score: float = 0.0
    seconds: float = 0.0
    interrupted: bool = False
    graded: list[GradedSubmission] = field(default_factory=list)

    @property
    def grader_errors(self) -> list[GradedSubmission]:
        return [g for g in self.graded if g.status == "error"]

    def _apart(self) -> str:
        """The entries left out of the mean (not gradable: no score), named."""
        apart = [g.name for g in self.graded if not g.ran and g.override is None]
        if not apart:
            return ""
        return (f" over {len(self.graded) - len(apart) - len(self.grader_errors)} scored; not gradable, no score: "
                f"{', '.join(apart[:10])}{' ...' if len(apart) > 10 else ''}")

    def line(self) -> str:
        kinds = ", ".join(f"{n} {s}" for s, n in sorted(self.statuses.items()))
        text = (f"{self.total} submissions in {self.seconds:.1f} s ({self.ran} run, {self.rescored} "
                f"re-scored, {self.unchanged} unchanged): {kinds}; mean score "
                f"{self.mean_score:.2f}/{self.max_score:g}{self._apart()} -> {self.out / STAFF_DIR / 'index.html'} "
                f"(staff only); each student's results.json and report.html are in "
                f"{self.out / 'submissions'}")
        errors = self.grader_errors
        if errors:
            first = message_line(errors[0].message)[:300]
            text += (f"\nGRADER ERROR: {len(errors)} submission(s) could not be graded because the "
                     f"grader or its environment failed (not the students): "
                     f"{', '.join(g.name for g in errors[:10])}{' ...' if len(errors) > 10 else ''}. "
                     f"They have no grade; fix the cause and run the same command again to retry "
                     f"them. First cause: {first}")
        return text


def validate_paths(submissions: Path, out: Path) -> tuple[Path, Path]:
    submissions, out = Path(submissions).resolve(), Path(out).resolve()
    if not submissions.is_dir():
        raise BatchError(f"SUBMISSIONS {submissions}: "
                         + ("not a directory" if submissions.exists() else "no such directory"))
    if out == submissions or submissions in out.parents:
        raise BatchError(f"--out {out}: must not be inside SUBMISSIONS ({submissions}); its "
                         "folders would be graded as students next time")
    if out.exists() and not out.is_dir():
        raise BatchError(f"--out {out}: exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise BatchError(f"--out {out}: cannot write there ({exc.strerror or exc})") from None
    return submissions, out


def problem_result(sub: Submission) -> JobResult:
    """The row of a submission that cannot be run (no module, unreadable)."""
    return JobResult(name=sub.name, sha256=sub.sha256, status=sub.problem_status,
                     message=sub.problem or "", started_at=time.time())


def ensure_baseline(book: Gradebook, rubric: Rubric, config: GradeConfig, suite: str,
                    run: Callable[[Job], JobResult]) -> Baseline:
    """Grade the reference where the jobs run (or reuse its stored run); it must earn full
    marks, with at least one check it passed in every group that has points, in a sandbox
    that is not degraded (unless --isolate-sandbox off). Returns its tests (each submission
    is expected to run them) and its skips."""
    stored = book.baseline(suite, config.key())
    if stored is None:
        result = run(reference_job(config, suite))
        run_id = book.add_run(result, suite, config.key(), submission=False)
        if result.status == "graded":
            book.set_baseline(suite, config.key(), run_id)
        stored = book.get_run(run_id)
    assert stored is not None
    if stored.status != "graded" or not stored.report:
        raise BatchError(f"the reference implementation could not be graded ({stored.status}): "
                         f"{stored.message.strip()[:3000]}\nFix the environment (e.g. MNIST data: "
                         "--mnist-dir or BACKPROP_MNIST_DIR) before grading students.")
    if config.isolate and config.sandbox != "off" and stored.sandbox == "degraded":
        raise BatchError("the reference's run had a degraded sandbox (resource limits only, no private "
                         "file system or privilege drop): grade as root on Linux with namespaces, or "
                         "pass --isolate-sandbox off to accept limits only (recorded per run)")
    tests = stored.report["tests"]
    baseline = Baseline.from_tests(tests)
    grade = score(rubric, "graded", tests, baseline)
    lines = []
    for gs in grade.groups:
        if gs.score < gs.max_score - 1e-9:
            why = gs.note or "; ".join(f"{t['nodeid']} {t['outcome']}: {t.get('summary', '')[:300]}"
                                      for t in gs.failed[:3])
            lines.append(f"  {gs.group.key}: {gs.score:g}/{gs.max_score:g} ({why})")
        elif gs.max_score > 0 and not gs.passed:
            # Points for checks that never run here (all skipped: e.g. no MNIST data without
            # --require-mnist) would be free points for every submission.
            reason = gs.skipped[0].get("skip_reason", "") if gs.skipped else "no test"
            lines.append(f"  {gs.group.key}: the reference passed no check of it (skipped: {reason[:300]})")
    if lines:
        raise BatchError(f"the reference implementation scores {grade.score:g}/{grade.max_score:g} "
                         f"with rubric {rubric.source}; grading students now would be unfair:\n"
                         + "\n".join(lines) + "\nFix the rubric (areas/tests that exist in this suite) "
                         "or the environment; --no-baseline skips this check.")
    return baseline


def _execute_local(jobs: list[Job], workers: int) -> Iterator[JobResult]:
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="grade")
    futures = [pool.submit(run_job, job) for job in jobs]
    try:
        for fut in as_completed(futures):
            yield fut.result()  # run_job never raises for a submission's behaviour
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


class LocalExecutor:
    """Jobs run here, in threads driving suite subprocesses; this machine preflights itself."""

    def __init__(self, workers: int, config: GradeConfig, suite: str, log: Callable[[str], None]):
        self.workers = workers
        check = ensure_environment(config, suite)
        if not check.ok:
            raise BatchError(check.explain())
        log(f"preflight: {check.explain()}")

    def run_one(self, job: Job) -> JobResult:
        return run_job(job)

    def run_all(self, jobs: list[Job]) -> Iterator[JobResult]:
        return _execute_local(jobs, self.workers)

    def close(self) -> None:
        pass


class DaskExecutor:
    """Jobs run on a Dask cluster. Every worker preflights itself (its own interpreter,
    checkout, data, disk and sandbox); only the workers that pass take jobs."""

    def __init__(self, address: str, config: GradeConfig, suite: str, log: Callable[[str], None]):
        try:
            from distributed import Client
        except ImportError:
            raise BatchError("--dask needs the optional extra: pip install 'backprop-conformance[dask]'") from None
        try:
            self.client = Client(address, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise BatchError(f"--dask {address}: cannot reach the scheduler ({exc})") from None
        try:
            self.workers = self._preflight_workers(config, suite, log)
        except BaseException:
            self.client.close()
            raise

    def _preflight_workers(self, config: GradeConfig, suite: str, log: Callable[[str], None]) -> list[str]:
        try:
            answers = self.client.run(worker_preflight, config, suite)
        except Exception as exc:  # noqa: BLE001 - a worker that cannot even run the check
            raise BatchError(f"--dask: the workers' preflight failed: {type(exc).__name__}: {exc}") from None
        if not answers:
            raise BatchError("--dask: the cluster has no workers")
        good = []
        for address, answer in sorted(answers.items()):
            check = Preflight(**answer)
            if check.ok:
                good.append(address)
                log(f"preflight: worker {address}: {check.explain()}")
            else:
                log(f"preflight: worker {address} takes no jobs: {check.explain()}")
        if not good:
            raise BatchError(f"--dask: no worker passed its preflight ({len(answers)} checked; see above)")
        return good

    def _submit(self, job: Job):
        return self.client.submit(run_job, job, pure=False, workers=self.workers,
                                  allow_other_workers=False)

    def run_one(self, job: Job) -> JobResult:
        return self._finish(self._submit(job), job)

    def run_all(self, jobs: list[Job]) -> Iterator[JobResult]:
        from distributed import as_completed as dask_completed

        futures = {self._submit(job): job for job in jobs}
        for fut in dask_completed(futures):
            yield self._finish(fut, futures[fut])

    @staticmethod
    def _finish(fut, job: Job) -> JobResult:
        try:
            return fut.result()
        except Exception as exc:  # noqa: BLE001 - a lost worker is the grader's failure
            return JobResult(name=job.name, sha256=job.sha256, status="error",
                             message=f"grader error (not the submission's): dask task failed: "
                                     f"{type(exc).__name__}: {exc}")

    def close(self) -> None:
        self.client.close()


def _progress(total: int, enabled: bool):
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="sub", desc="grading", disable=not enabled or total == 0,
                dynamic_ncols=True, file=sys.stderr)


def _graded(sub: Submission, run: StoredRun | JobResult, rubric: Rubric, suite: str,
            baseline: Baseline | None, book: Gradebook | None = None) -> GradedSubmission:
    tests = (run.report or {}).get("tests", []) if run.report else []
    grade = score(rubric, run.status, tests, baseline, run.message)
    run_summary = (run.report or {}).get("summary") if run.report else None
    override = book.override_for(sub.name, sub.sha256) if book is not None else None
    return GradedSubmission(name=sub.name, slug=sub.slug, sha256=sub.sha256, status=run.status,
                            message=run.message, grade=grade, duration=run.duration, tests=tests,
                            suite_version=suite, rubric=rubric, junit_xml=run.junit_xml,
                            output_tail=run.output_tail, source=sub.source, intake=sub.intake,
                            sandbox=run.sandbox,
                            run_summary=run_summary if isinstance(run_summary, dict) else {},
                            override=(Override(override[1], override[2], grade.score, override[0])
                                      if override is not None and run.status in FINAL_STATUSES
                                      else None))


def _still_final(stored: StoredRun, config: GradeConfig, suite: str) -> bool:
    """A stored final run is reused only if today's classification agrees: a run recorded by
    an older grader under a failed environment (missing MNIST, no report from an isolated
    run) is graded again instead of keeping its score."""
    if stored.report is None:
        return not (stored.status == "crashed" and config.isolate)
    probe = Job(name=stored.name, sha256=stored.sha256, files={}, module="", config=config,
                suite_version=suite)
    return environment_failure(stored.report, probe) is None


class _Interrupt:
    """SIGTERM behaves like Ctrl-C: stop, kill the suite processes, keep what is committed."""

    def __enter__(self) -> None:
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, self._raise)

    @staticmethod
    def _raise(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)


def grade_batch(opts: BatchOptions, argv: Iterable[str] = (),
                log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> BatchSummary:
    started = time.time()
    sub_root, out = validate_paths(opts.submissions, opts.out)
    if opts.jobs < 1:
        raise BatchError(f"-j {opts.jobs}: must be at least 1")
    rubric = load_rubric(opts.rubric)
    similarity = _similarity_inputs(opts)
    try:
        roster = load_roster(opts.roster) if opts.roster else None
        intake = scan_class(sub_root, opts.module, roster)
    except (SubmissionsError, RosterError) as exc:
        raise BatchError(str(exc)) from None
    subs = intake.submissions
    _refuse_unreadable(subs)
    overrides = _check_overrides(opts.overrides, subs, rubric)
    if intake.ignored:
        log(f"ignored (OS clutter): {', '.join(intake.ignored)}")
    for notice in missing_extras():
        log(notice)
    suite = compute_suite_version()
    book = Gradebook(out / "grades.sqlite")
    summary = BatchSummary(out=out, total=len(subs), max_score=rubric.max_score)
    try:
        with _Interrupt():
            for name, points, reason in overrides:
                book.add_override(name, next(s.sha256 for s in subs if s.name == name), points, reason)
                log(f"override: {name} = {points:g} ({reason})")
            _grade_all(_ClassBatch(opts, subs, rubric, suite, book, summary, log, intake, similarity),
                       list(argv))
    except KeyboardInterrupt:
        summary.interrupted = True
        kill_all_live()  # the suite runs live in their own sessions: Ctrl-C does not reach them
        raise
    finally:
        book.close()
    for sub in summary.graded:
        write_submission_files(out, sub)  # cheap; restores files deleted since the last run
    summary.statuses = Counter(g.status for g in summary.graded)
    scores = [g.score for g in summary.graded if g.scored]  # not-gradable entries and grader errors: no score
    summary.mean_score = sum(scores) / len(scores) if scores else 0.0
    summary.seconds = time.time() - started
    return summary


def _refuse_unreadable(subs: list[Submission]) -> None:
    """Preflight of the intake: a submission this grader cannot read for want of an optional
    library (notebooks without nbformat) stops the batch before anything is graded, instead
    of leaving rows without a grade."""
    # Only a missing library stops the batch; any other intake error is its own row's (retried).
    unreadable = [s for s in subs if s.problem_status == "error" and s.missing_library]
    if unreadable:
        names = ", ".join(s.name for s in unreadable[:10]) + (" ..." if len(unreadable) > 10 else "")
        reason = (unreadable[0].problem or "").removeprefix("grader error (not the submission's): ")
        raise BatchError(f"preflight: this grader cannot read {len(unreadable)} submission(s) ({names}): "
                         f"{reason}. Nothing was graded; install it and run the same command again.")


def _check_overrides(overrides: Iterable[tuple[str, float, str]], subs: list[Submission],
                     rubric: Rubric) -> list[tuple[str, float, str]]:
    names = {s.name for s in subs}
    out = []
    for name, points, reason in overrides:
        if name not in names:
            raise BatchError(f"--override {name}=...: no submission is named {name!r}")
        if not 0 <= points <= rubric.max_score:
            raise BatchError(f"--override {name}={points:g}: the score must be between 0 and "
                             f"{rubric.max_score:g} (the rubric's maximum)")
        if not reason.strip():
            raise BatchError(f"--override {name}={points:g}: give the reason, e.g. "
                             f"--override {name}={points:g},\"regraded by hand\"")
        out.append((name, float(points), reason.strip()))
    return out


def _similarity_inputs(opts: BatchOptions) -> tuple[list[str], str | None] | None:
    """(templates, textbook code) when the batch compares the class's code; read before any
    grading, so a missing file or library stops the batch before it starts."""
    if opts.similarity_threshold is None:
        return None
    from conformance.grade.score.similarity import SimilarityError, _copydetect, textbook_code

    if not 0 < opts.similarity_threshold <= 1:
        raise BatchError(f"--similarity-threshold {opts.similarity_threshold:g}: must be in (0, 1]")
    try:
        _copydetect()
        templates = [Path(p).read_text(encoding="utf-8") for p in opts.templates]
        return templates, textbook_code(opts.textbook)
    except (SimilarityError, OSError) as exc:
        raise BatchError(f"--similarity-threshold: {exc}") from None


def _similarity(out: Path, subs: list[Submission], threshold: float,
                inputs: tuple[list[str], str | None]) -> SimilarityReport:
    """Compare the code the intake extracted (notebooks converted), pages in OUT/staff/."""
    from conformance.grade.score.similarity import compare_class, own_code, write_pages

    # All of a submission's own code (helpers too), not only its module: a copy moved into a
    # helper is still a copy, and so is one that does not import (no module chosen, a notebook
    # that cannot run as Python).
    sources = {s.name: code for s in subs if (code := own_code(s.files))}
    report = compare_class(sources, inputs[0], inputs[1], threshold)
    write_pages(report, sources, out / STAFF_DIR / "similarity")
    return report


@dataclass
class _ClassBatch:
    """What every step of grading a class works with: the options, the submissions, the
    rubric and suite version, the gradebook and summary it records into, and the log."""

    opts: BatchOptions
    subs: list[Submission]
    rubric: Rubric
    suite: str
    book: Gradebook
    summary: BatchSummary
    log: Callable[[str], None]
    intake: ClassIntake | None = None
    similarity: tuple[list[str], str | None] | None = None


def _grade_all(batch: _ClassBatch, argv: list[str]) -> None:
    """Steps 2-4 of the module docstring; fills ``summary`` (also when interrupted)."""
    opts, config, suite = batch.opts, batch.opts.config, batch.suite
    batch.book.add_rubric(batch.rubric)
    batch_id = batch.book.start_batch(argv, suite, batch.rubric.hash, config.key(), len(batch.subs))
    executor = (DaskExecutor(opts.dask, config, suite, batch.log) if opts.dask
                else LocalExecutor(opts.jobs, config, suite, batch.log))
    try:
        _grade_with(executor, batch, batch_id)
    finally:
        executor.close()


def _grade_with(executor: LocalExecutor | DaskExecutor, batch: _ClassBatch, batch_id: int) -> None:
    baseline = None
    if batch.opts.baseline:
        batch.log("grading the reference implementation first (baseline), where the jobs run ...")
        baseline = ensure_baseline(batch.book, batch.rubric, batch.opts.config, batch.suite, executor.run_one)
    done: dict[str, GradedSubmission] = {}
    to_run = _reuse_or_plan(batch, baseline, done)
    bar = _progress(len(to_run), batch.opts.progress)
    results = executor.run_all(to_run)
    interrupted = True
    try:
        _record_results(results, batch, baseline, done, bar)
        interrupted = False
    finally:
        if interrupted:
            kill_all_live()
        if bar is not None:
            bar.close()
        getattr(results, "close", lambda: None)()
        # Whatever happened, the class files reflect every committed result.
        _finish_batch(batch, done, batch_id, interrupted)


def _reuse_or_plan(batch: _ClassBatch, baseline: Baseline | None,
                   done: dict[str, GradedSubmission]) -> list[Job]:
    """Per submission, in order: reuse its stored run (re-scored if the rubric changed), record
    why it cannot run, or plan its job; returns the jobs to run."""
    to_run: list[Job] = []
    for sub in batch.subs:
        stored = _reusable_run(batch, sub)
        if stored is not None:
            done[sub.name] = _reuse(batch, sub, stored, baseline)
        elif sub.problem:
            _record(batch, baseline, done, problem_result(sub), sub)
            batch.summary.ran += 1
        else:
            assert sub.module is not None
            to_run.append(Job(name=sub.name, sha256=sub.sha256, files=sub.files,
                              module=sub.module, config=batch.opts.config, suite_version=batch.suite))
    return to_run


def _reusable_run(batch: _ClassBatch, sub: Submission) -> StoredRun | None:
    """The stored run of the same bytes under the same suite and settings, still final today."""
    opts, config = batch.opts, batch.opts.config
    stored = None if opts.force else batch.book.reusable_run(sub.name, sub.sha256, batch.suite,
                                                              config.key(), opts.retry)
    if stored is not None and not _still_final(stored, config, batch.suite):
        stored = None
    return stored


def _reuse(batch: _ClassBatch, sub: Submission, stored: StoredRun,
           baseline: Baseline | None) -> GradedSubmission:
    """A stored run graded with this rubric: its stored grade, else a new one (re-scored)."""
    book, rubric = batch.book, batch.rubric
    graded = _graded(sub, stored, rubric, batch.suite, baseline, book)
    book.keep_bytes(sub.sha256, sub.files)
    graded.grade_id = book.grade_for(stored.id, rubric.hash)
    if graded.grade_id is None:
        graded.grade_id = book.add_grade(stored.id, sub.name, rubric, batch.suite, stored.status,
                                         graded.grade)
        batch.summary.rescored += 1
    else:
        batch.summary.unchanged += 1
    return graded


def _record(batch: _ClassBatch, baseline: Baseline | None, done: dict[str, GradedSubmission],
            result: JobResult, sub: Submission) -> None:
    """Commit a new run: the run, the bytes, the grade, the student's files."""
    book = batch.book
    # A run of another suite version (files edited during the batch, a Dask worker with
    # another checkout) was already classified "error" where it ran (runner.classify).
    run_id = book.add_run(result, batch.suite, batch.opts.config.key(), source=sub.source)
    book.keep_bytes(sub.sha256, sub.files)
    graded = _graded(sub, result, batch.rubric, batch.suite, baseline, book)
    graded.grade_id = book.add_grade(run_id, sub.name, batch.rubric, batch.suite, result.status, graded.grade)
    write_submission_files(batch.summary.out, graded)
    done[sub.name] = graded


def _record_results(results: Iterator[JobResult], batch: _ClassBatch, baseline: Baseline | None,
                    done: dict[str, GradedSubmission], bar: Any) -> None:
    """Commit each result as it arrives, and show it on the progress bar."""
    by_name = {s.name: s for s in batch.subs}
    for result in results:
        _record(batch, baseline, done, result, by_name[result.name])
        batch.summary.ran += 1
        if bar is not None:
            bar.set_postfix_str(clean_name(f"{result.name[:20]}: {result.status}"), refresh=False)
            bar.update(1)


def _finish_batch(batch: _ClassBatch, done: dict[str, GradedSubmission], batch_id: int,
                  interrupted: bool) -> None:
    """The class's current grades, similarity pages (unless interrupted), class files, and the
    batch's end in the gradebook."""
    out, opts, summary, book = batch.summary.out, batch.opts, batch.summary, batch.book
    summary.graded = [done[s.name] for s in batch.subs if s.name in done]
    book.set_current([(g.name, g.grade_id, g.sha256, g.override.id if g.override else None)
                      for g in summary.graded if g.grade_id is not None])
    report = None
    if batch.similarity is not None and not interrupted:
        # (a threshold is set: batch.similarity is None without one, _similarity_inputs)
        report = _similarity(out, batch.subs, cast(float, opts.similarity_threshold), batch.similarity)
        batch.log(f"similarity: {len(report.pairs)} pairs at or above {opts.similarity_threshold:g}, "
                  f"{len(report.textbook_copies)} copies of the textbook -> {out / STAFF_DIR / 'similarity'}")
    for warning in _write_class_files(out, summary.graded, batch.rubric, batch.intake, report):
        batch.log(warning)
    book.finish_batch(batch_id, summary.ran, summary.rescored, summary.unchanged, interrupted)


def _write_class_files(out: Path, graded: list[GradedSubmission], rubric: Rubric,
                       intake: ClassIntake | None = None, similarity: SimilarityReport | None = None) -> list[str]:
    warnings = write_class_csvs(out, graded, rubric, intake)
    write_report(out, graded, similarity)
    return warnings
