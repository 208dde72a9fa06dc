"""LMS bulk downloads: file-name conventions, the roster, the gradebook import CSV.

File names of a bulk download (the LMS writes the prefix; the student chose only the tail):

- Canvas ("Download Submissions"): ``<name>_<userid>_<submissionid>_<file>``, with ``late_``
  after the name for a late submission (``smithbob_late_340934_208490284_mlp.py``). A file
  resubmitted under the same name gets a ``-N`` suffix before its extension (``mlp-1.py``).
- Moodle ("Download all submissions"): ``<Full Name>_<participantid>_assignsubmission_file_<file>``
  or, downloaded into folders, a folder ``<Full Name>_<participantid>_assignsubmission_file_``.
- Blackboard ("Assignment File Download"): ``<assignment>_<username>_attempt_<YYYY-MM-DD-HH-MM-SS>_<file>``
  plus a receipt ``..._attempt_<timestamp>.txt``; a ``LATE`` token next to the timestamp is
  read as the late marker when present.

Several entries of one LMS user: the newest counts. Newest = the latest Blackboard attempt
timestamp, then the highest Canvas resubmission number, then the latest modification time
(then the name, so the choice never depends on listing order). Gradable entries (.py,
.ipynb, .zip, folders) win over anything else the student uploaded (a PDF write-up).

The roster (``--roster roster.csv``) has columns ``id``, ``name``, ``email`` (more are
allowed, e.g. ``sis_user_id``, ``sis_login_id``, ``section`` for the Canvas export). An
entry is matched to the roster by its LMS user id (or Blackboard username = id or the
e-mail's local part); without an LMS prefix only by a roster name (case, accents, ``_ . -``
vs spaces and first/last order ignored), never by an id or e-mail (a stray ``12345.py``
is not student 12345), and never at the expense of a student the LMS names identified
(conformance.grade.intake.submissions keeps the id on the LMS row);
an LMS entry whose user id is not in the roster falls back to its name part (Moodle's full
name, Canvas's "lastfirst"). A match must be unique; otherwise it is reported on the row
and no id is given.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from conformance.grade.intake.sanitize import clean_name, csv_cell

_CANVAS = re.compile(r"^(?P<name>[^_]+)_(?:(?P<late>late)_)?(?P<uid>\d+)_(?P<sid>\d+)_(?P<file>.+)$",
                     re.IGNORECASE)
_MOODLE = re.compile(r"^(?P<name>.+?)_(?P<uid>\d+)_assignsubmission_(?:file|onlinetext)_(?P<file>.*)$")
_BLACKBOARD = re.compile(r"^(?P<assignment>.+?)_(?P<uid>[^_]+)_attempt_"
                         r"(?P<ts>\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2})(?P<late>_late)?"
                         r"(?:_(?P<file>.+)|(?P<receipt>\.txt))$", re.IGNORECASE)
_RESUBMISSION = re.compile(r"-(\d+)$")


class RosterError(ValueError):
    """The roster file cannot be used (named in the message)."""


@dataclass(frozen=True)
class LmsName:
    lms: str  # "canvas" | "moodle" | "blackboard"
    user: str  # the LMS's user id (Blackboard: username)
    display: str  # the name part the LMS wrote
    file: str  # the student's own file name (empty for a Moodle folder)
    late: bool = False
    resubmission: int = 0  # Canvas -N suffix
    timestamp: str = ""  # Blackboard attempt time, sortable text
    receipt: bool = False  # Blackboard's .txt receipt, not a student file

    @property
    def key(self) -> str:
        return f"{self.lms}:{self.user}"


def _canvas(name: str) -> tuple[int, LmsName] | None:
    if m := _CANVAS.match(name):
        stem, dot, _ = m["file"].rpartition(".")
        resub = _RESUBMISSION.search(stem if dot else m["file"])
        return m.start("file"), LmsName("canvas", m["uid"], m["name"], m["file"], bool(m["late"]),
                                        resubmission=int(resub.group(1)) if resub else 0)
    return None


def _moodle(name: str) -> tuple[int, LmsName] | None:
    if m := _MOODLE.match(name):
        return m.start("file"), LmsName("moodle", m["uid"], m["name"], m["file"])
    return None


def _blackboard(name: str) -> tuple[int, LmsName] | None:
    if m := _BLACKBOARD.match(name):
        end = m.start("file") if m["file"] is not None else m.start("receipt")
        return end, LmsName("blackboard", m["uid"], m["uid"], m["file"] or "", bool(m["late"]),
                            timestamp=m["ts"], receipt=bool(m["receipt"]))
    return None


def parse_lms_name(name: str) -> LmsName | None:
    """The LMS fields of a bulk-download entry name, or None for any other name.

    The LMS writes the prefix and the student chooses the tail, which may itself look like a
    classmate's prefix in another LMS's format (``evil_1006_2_Bob_1004_assignsubmission_file_x``).
    Every pattern takes its leftmost match, and of the formats that match, the one whose
    prefix ends first is the LMS's own: the tail can never decide whose entry it is."""
    found = [f for parse in (_canvas, _moodle, _blackboard) if (f := parse(name)) is not None]
    return min(found, key=lambda f: f[0])[1] if found else None


def newest_key(lms: LmsName | None, mtime: float, name: str) -> tuple:
    """Sort key of one student's entries: the last one is the newest (module docstring)."""
    if lms is None:
        return ("", 0, mtime, name)
    return (lms.timestamp, lms.resubmission, mtime, name)


def _fold(text: str) -> str:
    """Case-, accent- and separator-insensitive form of a name, for roster matching."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(re.split(r"[\s_.\-]+", plain)).strip()


@dataclass(frozen=True)
class Student:
    id: str
    name: str
    email: str = ""
    extra: tuple[tuple[str, str], ...] = ()

    def get(self, column: str) -> str:
        return dict(self.extra).get(column, "")


@dataclass
class Roster:
    source: str
    students: list[Student] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.by_id = {s.id: s for s in self.students}
        self._keys: dict[str, set[str]] = {}  # ids, e-mails and names: for LMS user names
        self._names: dict[str, set[str]] = {}  # names only: for file names without an LMS prefix
        for s in self.students:
            words = _fold(s.name).split()
            # Canvas writes "lastfirst" ("Bob Smith" -> smithbob); people write either order.
            compact = {"".join(words), "".join(words[-1:] + words[:-1])} if words else set()
            for key in {_fold(s.name), *compact} - {""}:
                self._names.setdefault(key, set()).add(s.id)
            for key in {s.id.casefold(), s.email.split("@")[0].casefold() if s.email else "",
                        _fold(s.name), s.email.casefold(), *compact} - {""}:
                self._keys.setdefault(key, set()).add(s.id)

    def _by_name(self, text: str) -> set[str]:
        return self._names.get(_fold(text), set()) | self._names.get(_fold(text).replace(" ", ""), set())

    def match(self, lms: LmsName | None, stem: str) -> tuple[Student | None, str]:
        """The roster student of an entry and, when there is none, why (for the row)."""
        if lms is not None:
            if lms.user in self.by_id:
                return self.by_id[lms.user], ""
            if lms.lms == "blackboard":
                found = self._keys.get(lms.user.casefold(), set())
                if len(found) == 1:
                    return self.by_id[next(iter(found))], ""
            # The LMS's user id is authoritative; its name part only when the roster was not
            # exported with the LMS's ids (Moodle "Full Name", Canvas "lastfirst").
            names = self._by_name(lms.display)
            if len(names) == 1 and lms.lms in ("moodle", "canvas"):
                return self.by_id[next(iter(names))], ""
            return None, f"{lms.lms} user {clean_name(lms.user)} is not in the roster {self.source}"
        # Without an LMS prefix a name is whatever someone typed: a stray "12345.py" or
        # "jsmith.py" must never take a roster id, so only a student's full name matches.
        found = self._by_name(stem)
        if len(found) == 1:
            return self.by_id[next(iter(found))], ""
        if len(found) > 1:
            return None, (f"the name matches {len(found)} roster students "
                          f"({', '.join(sorted(clean_name(i) for i in found))}); no id given")
        return None, f"the name matches no roster student in {self.source}"


def load_roster(path: Path) -> Roster:
    """Read ``roster.csv`` (UTF-8, a BOM allowed: Excel writes one)."""
    path = Path(path)
    reader = csv.DictReader(io.StringIO(_roster_text(path)))
    header = _roster_header(reader, path)
    students = _roster_students(reader, header, path)
    if not students:
        raise RosterError(f"--roster {path}: no students in it")
    return Roster(source=path.name, students=students)


def _roster_text(path: Path) -> str:
    """The roster file as text; RosterError when it is missing or not UTF-8."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise RosterError(f"--roster {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RosterError(f"--roster {path}: cannot read it as UTF-8 text ({exc})") from None


def _roster_header(reader: csv.DictReader, path: Path) -> dict[str, str]:
    """The header's columns, case-folded, to their names as written; RosterError without id and name."""
    header = {(h or "").strip().casefold(): h for h in reader.fieldnames or []}
    missing = [c for c in ("id", "name") if c not in header]
    if missing:
        raise RosterError(f"--roster {path}: no column {', '.join(missing)} (found: "
                          f"{', '.join(clean_name(h) for h in header) or 'nothing'}); expected "
                          "a header line id,name,email")
    return header


def _roster_students(reader: csv.DictReader, header: dict[str, str], path: Path) -> list[Student]:
    """One Student per line with an id; RosterError for a line with data but no id, or an id twice."""
    students, seen = [], set()
    for line, row in enumerate(reader, start=2):
        def get(column: str, row: dict = row) -> str:
            original = header.get(column)
            return (row.get(original) or "").strip() if original else ""
        sid = get("id")
        if not sid:
            if any((v or "").strip() for v in row.values() if isinstance(v, str)):
                raise RosterError(f"--roster {path}, line {line}: empty id")
            continue
        if sid in seen:
            raise RosterError(f"--roster {path}, line {line}: id {clean_name(sid)!r} appears twice")
        seen.add(sid)
        extra = tuple((k, get(k)) for k in header if k not in ("id", "name", "email"))
        students.append(Student(id=sid, name=get("name"), email=get("email"), extra=extra))
    return students


CANVAS_COLUMNS = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]


def canvas_csv(rows: Iterable[tuple[str, str, float | None, Student | None]], assignment: str,
               points: float) -> str:
    """Canvas gradebook import CSV: ``Student, ID, SIS User ID, SIS Login ID, Section`` and
    one assignment column (a new column name creates the assignment on import), with the
    ``Points Possible`` line Canvas writes in its own exports. ``rows`` are (display name,
    student id, score or None, roster entry); a None score (grader error) is left blank."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CANVAS_COLUMNS + [csv_cell(assignment)])
    writer.writerow(["Points Possible", "", "", "", "", f"{points:g}"])
    for name, sid, points_earned, student in rows:
        writer.writerow([csv_cell(student.name if student else name), csv_cell(sid),
                         csv_cell(student.get("sis_user_id") if student else ""),
                         csv_cell(student.get("sis_login_id") if student else ""),
                         csv_cell(student.get("section") if student else ""),
                         "" if points_earned is None else f"{points_earned:g}"])
    return "\ufeff" + buf.getvalue()
