"""The SQLite gradebook (``OUT/grades.sqlite``): the batch's single source of truth.

Every finished submission is committed at once (one transaction per submission, WAL
journal), so a grader killed mid-batch loses only the submissions still running. A *run*
is one execution of the suite (keyed by submission sha256, suite version and run
settings); a *grade* is a run scored with a rubric. A changed rubric therefore re-scores
stored runs without running the suite again.

Audit trail: ``graded_bytes`` keeps the exact files judged (a zlib-compressed, deterministic
zip per sha256), ``rubrics`` the parsed rubric and its file's text (``grades.rubric_hash``
says which produced a grade), ``overrides`` every manual score with its reason (for one
submission's exact bytes), and ``current`` the grade rows of the last batch: the view
``current_grades`` reads them (override applied) and agrees with grades.csv row for row.
"""

from __future__ import annotations

import io
import json
import sqlite3
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from conformance.grade.publish.outputs import NOT_GRADABLE
from conformance.grade.score.rubric import Grade, Rubric
from conformance.grade.run.jobs import FINAL_STATUSES, JobResult

SCHEMA = """
CREATE TABLE IF NOT EXISTS submissions (
    name TEXT PRIMARY KEY, sha256 TEXT NOT NULL, source TEXT, updated_at REAL);
CREATE TABLE IF NOT EXISTS rubrics (hash TEXT PRIMARY KEY, name TEXT, source TEXT, data TEXT);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, sha256 TEXT NOT NULL,
    suite_version TEXT NOT NULL, config_key TEXT NOT NULL, status TEXT NOT NULL,
    message TEXT, exit_code INTEGER, duration REAL, started_at REAL, finished_at REAL,
    host TEXT, output_tail TEXT, report TEXT, junit_xml TEXT, sandbox TEXT);
CREATE INDEX IF NOT EXISTS runs_key ON runs (name, sha256, suite_version, config_key);
CREATE TABLE IF NOT EXISTS test_results (
    run_id INTEGER NOT NULL REFERENCES runs(id), nodeid TEXT NOT NULL, area TEXT NOT NULL,
    outcome TEXT NOT NULL, duration REAL, summary TEXT, message TEXT, skip_reason TEXT,
    properties TEXT, PRIMARY KEY (run_id, nodeid));
CREATE TABLE IF NOT EXISTS grades (
    id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id), name TEXT NOT NULL,
    rubric_hash TEXT NOT NULL REFERENCES rubrics(hash), suite_version TEXT NOT NULL,
    status TEXT NOT NULL, score REAL, max_score REAL, areas TEXT, graded_at REAL);
CREATE INDEX IF NOT EXISTS grades_name ON grades (name);
CREATE TABLE IF NOT EXISTS baselines (
    suite_version TEXT NOT NULL, config_key TEXT NOT NULL, run_id INTEGER NOT NULL,
    PRIMARY KEY (suite_version, config_key));
CREATE TABLE IF NOT EXISTS graded_bytes (
    sha256 TEXT PRIMARY KEY, codec TEXT NOT NULL, data BLOB NOT NULL, size INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS overrides (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, sha256 TEXT NOT NULL, score REAL NOT NULL,
    reason TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS current (
    name TEXT PRIMARY KEY, grade_id INTEGER NOT NULL REFERENCES grades(id), sha256 TEXT NOT NULL,
    override_id INTEGER REFERENCES overrides(id), position INTEGER NOT NULL);
DROP VIEW IF EXISTS current_grades;
CREATE VIEW current_grades AS
    SELECT c.name AS submission, c.sha256 AS sha256, g.status AS status,
           CASE WHEN o.score IS NOT NULL THEN o.score
                WHEN g.status IN ({not_gradable}) THEN NULL ELSE g.score END AS score, g.max_score AS max_score, g.score AS computed_score,
           o.reason AS override_reason, g.rubric_hash AS rubric_hash, r.name AS rubric_name,
           g.suite_version AS suite_version, g.areas AS areas, g.id AS grade_id, g.run_id AS run_id
    FROM current c JOIN grades g ON g.id = c.grade_id
    LEFT JOIN overrides o ON o.id = c.override_id
    LEFT JOIN rubrics r ON r.hash = g.rubric_hash
    ORDER BY c.position;
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY, started_at REAL, finished_at REAL, argv TEXT, suite_version TEXT,
    rubric_hash TEXT, config_key TEXT, submissions INTEGER, ran INTEGER, rescored INTEGER,
    unchanged INTEGER, interrupted INTEGER);
"""


# Recreated on every open: a gradebook written before entries that are not gradable had no
# score would otherwise keep a view that disagrees with grades.csv (outputs.NOT_GRADABLE).
SCHEMA = SCHEMA.replace("{not_gradable}", ", ".join(f"'{status}'" for status in NOT_GRADABLE))


# What grades.areas holds: each area's points earned, a charged mistake's share taken out
# (conformance/grade/score/rubric.py). A grade stored before (areas at their fallback points, the
# mistakes apart) is not reused: the run is scored again, so the view agrees with grades.csv.
AREAS_MEANING = "earned"


def _inserted_id(cur: sqlite3.Cursor) -> int:
    """The rowid the cursor's INSERT just made. sqlite3 types lastrowid as Optional (it is None
    before any INSERT); after a successful one into a rowid table it is always that row's id."""
    return int(cast(int, cur.lastrowid))


@dataclass
class StoredRun:
    id: int
    name: str
    sha256: str
    status: str
    message: str
    duration: float
    report: dict[str, Any] | None
    junit_xml: str | None
    output_tail: str
    sandbox: str = "unknown"


class Gradebook:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(runs)")}
        if "sandbox" not in columns:  # a gradebook written before runs recorded their sandbox
            self.db.execute("ALTER TABLE runs ADD COLUMN sandbox TEXT")
        for table, column in (("rubrics", "text"), ("grades", "deductions"), ("grades", "areas_meaning")):
            if column not in {row[1] for row in self.db.execute(f"PRAGMA table_info({table})")}:
                self.db.execute(f"ALTER TABLE {table} ADD COLUMN {column} TEXT")

    def close(self) -> None:
        self.db.close()

    def _tx(self) -> "_Transaction":
        return _Transaction(self.db)

    # -- writes ------------------------------------------------------------------------

    def add_rubric(self, rubric: Rubric) -> None:
        with self._tx():
            self.db.execute("INSERT OR IGNORE INTO rubrics (hash, name, source, data, text) "
                            "VALUES (?, ?, ?, ?, ?)", (rubric.hash, rubric.name, rubric.source,
                                                       json.dumps(rubric.data, sort_keys=True), rubric.text))

    def start_batch(self, argv: list[str], suite_version: str, rubric_hash: str, config_key: str,
                    submissions: int) -> int:
        with self._tx():
            cur = self.db.execute(
                "INSERT INTO batches (started_at, argv, suite_version, rubric_hash, config_key, "
                "submissions, interrupted) VALUES (?, ?, ?, ?, ?, ?, 1)",
                (time.time(), json.dumps(argv), suite_version, rubric_hash, config_key, submissions))
        return _inserted_id(cur)

    def finish_batch(self, batch_id: int, ran: int, rescored: int, unchanged: int,
                     interrupted: bool) -> None:
        with self._tx():
            self.db.execute("UPDATE batches SET finished_at=?, ran=?, rescored=?, unchanged=?, "
                            "interrupted=? WHERE id=?",
                            (time.time(), ran, rescored, unchanged, int(interrupted), batch_id))

    def add_run(self, result: JobResult, suite_version: str, config_key: str,
                source: str | None = None, submission: bool = True) -> int:
        """Store a finished run with its per-test results (one transaction)."""
        report = result.report
        with self._tx():
            cur = self.db.execute(
                "INSERT INTO runs (name, sha256, suite_version, config_key, status, message, "
                "exit_code, duration, started_at, finished_at, host, output_tail, report, junit_xml, "
                "sandbox) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (result.name, result.sha256, suite_version, config_key, result.status,
                 result.message, result.exit_code, result.duration, result.started_at, time.time(),
                 result.host, result.output_tail, json.dumps(report) if report else None,
                 result.junit_xml, result.sandbox))
            run_id = _inserted_id(cur)
            for t in (report or {}).get("tests", []):
                self.db.execute(
                    "INSERT INTO test_results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (run_id, t["nodeid"], t["area"], t["outcome"], t["duration"], t["summary"],
                     t["message"], t["skip_reason"], json.dumps(t["properties"])))
            if submission:
                self.db.execute("INSERT OR REPLACE INTO submissions VALUES (?, ?, ?, ?)",
                                (result.name, result.sha256, source, time.time()))
        return run_id

    def add_grade(self, run_id: int, name: str, rubric: Rubric, suite_version: str, status: str,
                  grade: Grade) -> int:
        with self._tx():
            cur = self.db.execute(
                "INSERT INTO grades (run_id, name, rubric_hash, suite_version, status, score, "
                "max_score, areas, graded_at, deductions, areas_meaning) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, name, rubric.hash, suite_version, status, grade.score, grade.max_score,
                 json.dumps(grade.area_scores()), time.time(), json.dumps(grade.deductions()),
                 AREAS_MEANING))
        return _inserted_id(cur)

    def keep_bytes(self, sha256: str, files: dict[str, bytes]) -> None:
        """Store the exact files judged (once per sha256): a deterministic zip, deflated."""
        if not files or self.db.execute("SELECT 1 FROM graded_bytes WHERE sha256=?",
                                        (sha256,)).fetchone():
            return
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
            for rel in sorted(files):
                archive.writestr(zipfile.ZipInfo(rel, date_time=(1980, 1, 1, 0, 0, 0)), files[rel],
                                 compress_type=zipfile.ZIP_DEFLATED)
        with self._tx():
            self.db.execute("INSERT OR IGNORE INTO graded_bytes VALUES (?, 'zip', ?, ?)",
                            (sha256, buf.getvalue(), sum(len(v) for v in files.values())))

    def graded_files(self, sha256: str) -> dict[str, bytes] | None:
        row = self.db.execute("SELECT data FROM graded_bytes WHERE sha256=?", (sha256,)).fetchone()
        if row is None:
            return None
        with zipfile.ZipFile(io.BytesIO(row[0])) as archive:
            return {name: archive.read(name) for name in archive.namelist()}

    def add_override(self, name: str, sha256: str, score: float, reason: str) -> int:
        latest = self.override_for(name, sha256)
        if latest is not None and latest[1:] == (score, reason):
            return latest[0]  # the same command run again
        with self._tx():
            cur = self.db.execute("INSERT INTO overrides (name, sha256, score, reason, created_at) "
                                  "VALUES (?, ?, ?, ?, ?)", (name, sha256, score, reason, time.time()))
        return _inserted_id(cur)

    def override_for(self, name: str, sha256: str) -> tuple[int, float, str] | None:
        """The latest override of these exact bytes: (id, score, reason)."""
        row = self.db.execute("SELECT id, score, reason FROM overrides WHERE name=? AND sha256=? "
                              "ORDER BY id DESC LIMIT 1", (name, sha256)).fetchone()
        return None if row is None else (int(row[0]), float(row[1]), str(row[2]))

    def set_current(self, rows: list[tuple[str, int, str, int | None]]) -> None:
        """The batch's rows, in grades.csv order: (name, grade id, sha256, override id)."""
        with self._tx():
            self.db.execute("DELETE FROM current")
            self.db.executemany("INSERT INTO current VALUES (?, ?, ?, ?, ?)",
                                [(*row, i) for i, row in enumerate(rows)])

    def set_baseline(self, suite_version: str, config_key: str, run_id: int) -> None:
        with self._tx():
            self.db.execute("INSERT OR REPLACE INTO baselines VALUES (?, ?, ?)",
                            (suite_version, config_key, run_id))

    # -- reads -------------------------------------------------------------------------

    def _run(self, row: tuple | None) -> StoredRun | None:
        if row is None:
            return None
        return StoredRun(id=row[0], name=row[1], sha256=row[2], status=row[3], message=row[4] or "",
                         duration=row[5] or 0.0, report=json.loads(row[6]) if row[6] else None,
                         junit_xml=row[7], output_tail=row[8] or "", sandbox=row[9] or "unknown")

    _RUN_COLS = "id, name, sha256, status, message, duration, report, junit_xml, output_tail, sandbox"

    def get_run(self, run_id: int) -> StoredRun | None:
        return self._run(self.db.execute(f"SELECT {self._RUN_COLS} FROM runs WHERE id=?",
                                         (run_id,)).fetchone())

    def reusable_run(self, name: str, sha256: str, suite_version: str, config_key: str,
                     retry: tuple[str, ...] = ()) -> StoredRun | None:
        """The latest finished run of these exact bytes under this suite and settings, unless
        its status is not final or is one the user asked to retry."""
        run = self._run(self.db.execute(
            f"SELECT {self._RUN_COLS} FROM runs WHERE name=? AND sha256=? AND suite_version=? "
            "AND config_key=? ORDER BY id DESC LIMIT 1",
            (name, sha256, suite_version, config_key)).fetchone())
        if run is None or run.status not in FINAL_STATUSES or run.status in retry:
            return None
        return run

    def grade_for(self, run_id: int, rubric_hash: str) -> int | None:
        row = self.db.execute("SELECT id FROM grades WHERE run_id=? AND rubric_hash=? AND areas_meaning=? "
                              "ORDER BY id DESC LIMIT 1", (run_id, rubric_hash, AREAS_MEANING)).fetchone()
        return None if row is None else int(row[0])

    def baseline(self, suite_version: str, config_key: str) -> StoredRun | None:
        row = self.db.execute("SELECT run_id FROM baselines WHERE suite_version=? AND config_key=?",
                              (suite_version, config_key)).fetchone()
        return None if row is None else self.get_run(int(row[0]))


class _Transaction:
    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
