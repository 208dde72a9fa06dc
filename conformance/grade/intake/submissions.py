"""Intake: every entry of a class folder becomes exactly one row (or is listed on one).

What students and LMS downloads really hand in, mixed freely in SUBMISSIONS:

- ``alice.py``: one module;
- ``bob/`` or ``walter.zip``: a folder or archive holding the module (``--module``, else its
  only top-level ``.py`` file; a single wrapping folder inside a zip is looked through);
- ``yolanda_ng.ipynb`` (also inside a folder or zip): converted by conformance.grade.intake.notebooks,
  definitions only; what was dropped is listed on the student's page;
- anything else (``zack_hw3.PY``, ``notes.txt``, ``report.pdf``, a hidden ``.x.py``, a
  symlink, a special file): a row with status ``unsupported`` or ``invalid_submission``
  and the reason;
- OS and tool clutter (``.DS_Store``, ``__MACOSX``, ``Thumbs.db``, ``._*``, ``.git``,
  ``__pycache__``, ``.ipynb_checkpoints``): ignored and listed once (intake.csv, the log).

LMS bulk-download names (conformance.grade.intake.lms) give each entry its LMS user; several entries of
one user are one student: the newest counts and the others are listed on that row.
Without an LMS prefix a name is only a file name: two entries that map to the same row
name (``carol.py`` and ``carol/``) are *ambiguous*: both are graded under their full entry
names, flagged on both rows, and neither gets a roster id. Row names are unique
(case-insensitively) and each row's output slug is unique too, so no entry can write into
another student's ``submissions/<slug>/`` or report page.

Everything a student controls is hostile: file names (escaped by conformance.grade.intake.sanitize
before they are used anywhere; the raw bytes stay recoverable in intake.csv), symlinks
(never followed), sizes and member counts (bounded before reading), archive member paths
(``..``, absolute paths, links: the archive is refused), archives that expand out of
proportion (ratio, overlapping and nested bombs: refused, ``_refuse_bombs``). Notebooks are
parsed only in a bounded child process (conformance.grade.intake.notebooks). ``load_submission`` never
raises for an entry's sake: whatever fails while reading one entry is that entry's row, with
the reason, and the class goes on. A submission is read into memory once, so the grade, the
hash and what the suite runs are the same bytes.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import unicodedata
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import cast

from conformance.grade.intake.lms import LmsName, Roster, Student, newest_key, parse_lms_name
from conformance.grade.intake.bounded import MissingDependency, NotebookError, NotebookGraderError
from conformance.grade.intake.notebooks import extract
from conformance.grade.intake.sanitize import clean_name, raw_hex

MAX_FILE_BYTES = 2 * 1024 * 1024  # one source file; a real MLP module is a few kB
# A notebook carries its outputs (plots as base64 images, long training logs): tens of MB are
# normal. Only its code is kept, so notebooks have their own, larger bounds.
MAX_NOTEBOOK_BYTES = 32 * 1024 * 1024
MAX_NOTEBOOK_TOTAL = 64 * 1024 * 1024  # all notebooks of one folder or archive
MAX_TOTAL_BYTES = 8 * 1024 * 1024  # a student folder or archive, all kept files together
MAX_FILES = 200  # kept files of one folder or archive
MAX_WALK_ENTRIES = 5000  # entries looked at in one student folder (kept or not)
MAX_ARCHIVE_BYTES = 64 * 1024 * 1024  # the .zip file itself
MAX_ARCHIVE_MEMBERS = 2000
MAX_ARCHIVE_EXPANDED = 256 * 1024 * 1024  # all members together, as the archive declares them
# A member that expands more than MAX_RATIO-fold to over RATIO_MIN_BYTES is a bomb: source and
# notebooks deflate 2-10-fold, base64 plots hardly at all; only padding reaches 100-fold.
MAX_RATIO = 100
RATIO_MIN_BYTES = 1024 * 1024
MAX_NESTING = 1  # an archive inside the submitted one is left out unread; one more level is a bomb
# .npz is a zip the sandboxed worker may unpack (np.load): checked like any nested archive.
ZIP_SUFFIXES = (".zip", ".npz", ".jar", ".whl", ".egg", ".nupkg", ".ipa", ".apk")
ARCHIVE_SUFFIXES = ZIP_SUFFIXES + (".gz", ".tgz", ".bz2", ".tbz2", ".xz", ".txz", ".lzma", ".7z", ".rar",
                                   ".tar")
CODE_SUFFIXES = (".py", ".ipynb")  # an oversized one refuses the submission; data files are left out
SOURCE_SUFFIXES = (".py", ".ipynb", ".txt", ".json", ".csv", ".npy", ".npz", ".toml", ".md")
OS_CLUTTER = {".DS_Store", "__MACOSX", "Thumbs.db", "desktop.ini", ".ipynb_checkpoints",
              "__pycache__", ".git", ".svn", ".hg", ".idea", ".vscode", ".Trashes", ".Spotlight-V100"}
GRADABLE_KINDS = ("py", "ipynb", "zip", "folder")
# Report pages live beside index.html: a student may not be called "index".
RESERVED_SLUGS = {"index", "con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)),
                  *(f"lpt{i}" for i in range(10))}


class SubmissionsError(Exception):
    """The SUBMISSIONS argument cannot be graded at all (not one student's problem)."""


class _Refused(ValueError):
    """A submission that cannot be read (size, archive safety); its row says why."""


@dataclass
class IntakeInfo:
    """Where a row came from, for grades.csv, the LMS export and the student's page."""

    entry: str = ""  # the entry's name, cleaned (raw bytes: intake.csv)
    kind: str = ""  # py | ipynb | zip | folder | other | hidden | symlink | special
    student_id: str = ""
    student_name: str = ""
    email: str = ""
    late: bool = False
    superseded: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    student: Student | None = None


@dataclass
class Submission:
    """One student's work, read into memory. ``problem`` set means it cannot be run; it still
    gets a row (status ``problem_status``) like every other submission."""

    name: str
    source: str  # the path it was read from, for the instructor
    files: dict[str, bytes] = field(default_factory=dict)  # relative posix path -> content
    module: str | None = None  # relative path of the module to judge, a key of ``files``
    problem: str | None = None
    problem_status: str = "no_module"
    intake: IntakeInfo = field(default_factory=IntakeInfo)
    assigned_slug: str | None = None
    # status "error" because this grader lacks a library (nbformat): the batch refuses to start.
    # Any other "error" of the intake (a reader process that could not run) is one row's.
    missing_library: bool = False

    @property
    def sha256(self) -> str:
        """Hash of exactly what is graded: the module file alone for a one-file submission
        (equal to the suite's candidate sha256), else every file with its path."""
        if self.module is not None and len(self.files) == 1:
            return hashlib.sha256(self.files[self.module]).hexdigest()
        digest = hashlib.sha256()
        for rel in sorted(self.files):
            digest.update(rel.encode("utf-8", "surrogateescape") + b"\0"
                          + hashlib.sha256(self.files[rel]).digest())
        digest.update(b"module\0" + (self.module or "").encode("utf-8", "surrogateescape"))
        if self.problem:  # two unreadable entries must not share one stored run
            digest.update(b"problem\0" + self.problem.encode("utf-8", "surrogateescape"))
        return digest.hexdigest()

    @property
    def slug(self) -> str:
        return self.assigned_slug or slugify(self.name)


_SAFE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,59}$")
_LOOKS_HASHED = re.compile(r"-[0-9a-f]{10}$")


def slugify(name: str) -> str:
    """A file-name-safe token for ``name`` (output paths), injective by construction: a name
    is used as is only when it is lower-case ASCII ``[a-z0-9._-]``, does not end like a
    hashed slug and is not reserved (``index``, Windows device names); every other name gets
    ``-`` and 10 hex digits of its hash, so a student cannot take a classmate's slug by
    naming a file after it. (``discover`` also checks the whole class for collisions.)"""
    if _SAFE.match(name) and not _LOOKS_HASHED.search(name) and not name.endswith(".") \
            and name.split(".")[0] not in RESERVED_SLUGS:
        return name
    safe = re.sub(r"[^a-z0-9._-]", "_", name.lower()).strip("._")[:50] or "submission"
    return safe + "-" + hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:10]


# -- one entry --------------------------------------------------------------------------


def _is_clutter(name: str) -> bool:
    return name in OS_CLUTTER or name.startswith("._")


def _kind(path: Path) -> str:
    try:
        mode = path.lstat().st_mode
    except OSError:
        return "special"
    if stat.S_ISLNK(mode):
        return "symlink"
    if path.name.startswith("."):
        return "hidden"
    if stat.S_ISDIR(mode):
        return "folder"
    if not stat.S_ISREG(mode):
        return "special"
    # .py is exact (Python imports only lower-case .py on case-sensitive systems); notebooks
    # and archives are read by the grader itself, so their case does not matter.
    if path.suffix == ".py":
        return "py"
    return {".ipynb": "ipynb", ".zip": "zip"}.get(path.suffix.lower(), "other")


def _size_limit(name: str) -> int:
    return MAX_NOTEBOOK_BYTES if name.lower().endswith(".ipynb") else MAX_FILE_BYTES


def _read_file(path: Path) -> bytes:
    """A regular file's bytes, opened without following a symlink and size-checked first."""
    limit = _size_limit(path.name)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > limit:
            raise _Refused(f"{clean_name(path.name)} is {size} bytes (limit {limit})")
        return handle.read(limit + 1)


def _keep_member(rel: PurePosixPath) -> str | None:
    """Why a file of a folder or archive is left out (None: kept)."""
    if any(_is_clutter(part) for part in rel.parts):
        return "OS clutter"
    if any(part.startswith(".") for part in rel.parts):
        return "hidden"
    if rel.suffix not in SOURCE_SUFFIXES:
        return f"not a source file ({clean_name(rel.suffix or 'no extension')})"
    return None


def _add(sub: Submission, rel: str, data: bytes, total: list[int]) -> None:
    """Keep one file; ``total`` is [bytes of other files, bytes of notebooks] so far."""
    if len(sub.files) >= MAX_FILES:
        raise _Refused(f"more than {MAX_FILES} source files")
    if len(data) > _size_limit(rel):
        raise _Refused(f"{clean_name(rel)} is over {_size_limit(rel)} bytes")
    notebook = rel.lower().endswith(".ipynb")
    total[notebook] += len(data)
    if total[0] > MAX_TOTAL_BYTES:
        raise _Refused(f"the files total more than {MAX_TOTAL_BYTES} bytes")
    if total[1] > MAX_NOTEBOOK_TOTAL:
        raise _Refused(f"the notebooks total more than {MAX_NOTEBOOK_TOTAL} bytes")
    sub.files[rel] = data


def _left_out_note(left_out: dict[str, int], where: str) -> list[str]:
    if not left_out:
        return []
    return [f"left out of the {where}: " + ", ".join(f"{n} {why}" for why, n in sorted(left_out.items()))]


def _read_folder(sub: Submission, folder: Path) -> None:
    """Read the student's folder: regular source files only; symlinks are never followed."""
    left_out: dict[str, int]  # why -> how many entries
    why: str | None  # why an entry is left out (None: kept)
    total, seen, left_out = [0, 0], 0, {}
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        here = Path(dirpath)
        kept_dirs = []
        for name in sorted(dirnames):
            if _is_clutter(name) or name.startswith(".") or (here / name).is_symlink():
                why = "symlink (not followed)" if (here / name).is_symlink() else "hidden or OS clutter"
                left_out[why] = left_out.get(why, 0) + 1
            else:
                kept_dirs.append(name)
        dirnames[:] = kept_dirs
        for name in sorted(filenames):
            seen += 1
            if seen > MAX_WALK_ENTRIES:
                raise _Refused(f"the folder holds more than {MAX_WALK_ENTRIES} files")
            path = here / name
            rel = PurePosixPath(path.relative_to(folder).as_posix())
            why = _keep_member(rel)
            if why is None and (path.is_symlink() or not path.is_file()):
                why = "symlink or special file (not followed)"
            if why is None and rel.suffix not in CODE_SUFFIXES and path.stat().st_size > MAX_FILE_BYTES:
                why = "data files over the size limit"
            if why:
                left_out[why] = left_out.get(why, 0) + 1
                continue
            data = _read_file(path)
            if rel.suffix.lower() in ZIP_SUFFIXES:  # kept data that is an archive (.npz): no bomb
                _refuse_nested_bytes(data, clean_name(rel.as_posix(), 200))
            _add(sub, rel.as_posix(), data, total)
    sub.intake.notes += _left_out_note(left_out, "folder")


def _refuse_nested_bytes(data: bytes, shown: str) -> None:
    try:
        inner = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return  # not an archive after all: only ever read as data
    with inner:
        _refuse_bombs(inner, f" of the archive {shown!r} inside it", 1, [0, 0])


def _member_path(info: zipfile.ZipInfo) -> PurePosixPath:
    raw = info.filename.replace("\\", "/")
    shown = clean_name(info.filename, 200)
    if raw.startswith("/") or re.match(r"^[A-Za-z]:", raw):
        raise _Refused(f"archive member {shown!r} has an absolute path (path traversal): refused")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise _Refused(f"archive member {shown!r} points outside the archive (path traversal): refused")
    return PurePosixPath(*parts) if parts else PurePosixPath(".")


def _refuse_bombs(archive: zipfile.ZipFile, where: str, depth: int, budget: list[int]) -> None:
    """Refuse an archive that expands out of proportion, whatever its shape: too many members
    or bytes declared (``budget`` counts them over nested archives too), members whose data
    overlap (a non-recursive bomb), a member that expands more than MAX_RATIO-fold (a ratio
    bomb), or archives nested more than MAX_NESTING deep or themselves bombs (a nested bomb).
    Left-out members count too: a bomb is refused, not ignored."""
    infos = archive.infolist()
    _refuse_over_budget(infos, where, budget)
    _refuse_overlapping(infos, where)
    for info in infos:
        shown = clean_name(info.filename, 200)
        _refuse_ratio_bomb(info, shown, where)
        suffix = PurePosixPath(info.filename.replace("\\", "/")).suffix.lower()
        if suffix not in ARCHIVE_SUFFIXES or info.is_dir():
            continue
        _refuse_nested_bomb(archive, info, suffix, shown, where, depth, budget)


def _refuse_over_budget(infos: list[zipfile.ZipInfo], where: str, budget: list[int]) -> None:
    """Count the members and their declared sizes into ``budget``; refuse past the limits."""
    budget[0] += len(infos)
    budget[1] += sum(i.file_size for i in infos)
    if budget[0] > MAX_ARCHIVE_MEMBERS:
        raise _Refused(f"zip bomb refused: {budget[0]} members{where} (limit {MAX_ARCHIVE_MEMBERS})")
    if budget[1] > MAX_ARCHIVE_EXPANDED:
        raise _Refused(f"zip bomb refused: the members{where} expand to {budget[1]} bytes "
                       f"(limit {MAX_ARCHIVE_EXPANDED})")


def _refuse_overlapping(infos: list[zipfile.ZipInfo], where: str) -> None:
    """Refuse members whose compressed data overlap (a non-recursive bomb)."""
    # The local header is 30 bytes and the name (as stored: UTF-8 when flagged, else cp437);
    # its extra field and a data descriptor only make the real span longer.
    spans = sorted((i.header_offset, i.header_offset + 30 + len(i.orig_filename.encode(
        "utf-8" if i.flag_bits & 0x800 else "cp437", "replace")) + i.compress_size, i.filename) for i in infos)
    for (start, end, name), (next_start, _, next_name) in zip(spans, spans[1:]):
        if next_start < end:
            raise _Refused(f"zip bomb refused: the members {clean_name(name, 100)!r} and "
                           f"{clean_name(next_name, 100)!r}{where} share their compressed data")


def _refuse_ratio_bomb(info: zipfile.ZipInfo, shown: str, where: str) -> None:
    """Refuse a member that expands more than MAX_RATIO-fold to over RATIO_MIN_BYTES."""
    if info.file_size > RATIO_MIN_BYTES and info.file_size > MAX_RATIO * max(info.compress_size, 1):
        raise _Refused(f"zip bomb refused: the member {shown!r}{where} expands "
                       f"{info.file_size // max(info.compress_size, 1)}-fold "
                       f"({info.compress_size} -> {info.file_size} bytes; limit {MAX_RATIO}-fold)")


def _refuse_nested_bomb(archive: zipfile.ZipFile, info: zipfile.ZipInfo, suffix: str, shown: str, where: str,
                        depth: int, budget: list[int]) -> None:
    """Refuse an archive member nested too deep, a nested zip that is a bomb itself, or
    compressed data that expands past the budget or out of proportion."""
    inner_where = f" of the archive {shown!r} inside{where or ' it'}"
    if depth + 1 > MAX_NESTING:
        raise _Refused(f"nested zip bomb refused: {shown!r}{where} is an archive nested "
                       f"{depth + 2} deep (limit: an archive inside the submitted one)")
    try:
        with archive.open(info) as member:
            data = member.read(MAX_ARCHIVE_BYTES + 1)
    except (zipfile.BadZipFile, RuntimeError, NotImplementedError, EOFError, OSError,
            zlib.error, ValueError):
        return  # never unpacked, never graded: harmless
    if suffix in ZIP_SUFFIXES:
        try:
            inner = zipfile.ZipFile(io.BytesIO(data))
        except (zipfile.BadZipFile, OSError, EOFError, ValueError):
            return
        with inner:
            _refuse_bombs(inner, inner_where, depth + 1, budget)
        return
    expanded = _stream_size(data, suffix, MAX_ARCHIVE_EXPANDED - budget[1] + 1)
    budget[1] += expanded
    if budget[1] > MAX_ARCHIVE_EXPANDED or (
            expanded > RATIO_MIN_BYTES and expanded > MAX_RATIO * max(len(data), 1)):
        raise _Refused(f"nested zip bomb refused: {shown!r}{where} is compressed data that "
                       f"expands to {expanded}{'+' if budget[1] > MAX_ARCHIVE_EXPANDED else ''} "
                       f"bytes from {len(data)}")


def _stream_size(data: bytes, suffix: str, cap: int) -> int:
    """How far compressed ``data`` expands, decompressed in chunks and never beyond ``cap``."""
    import bz2
    import lzma

    total = 0
    try:
        if suffix in (".gz", ".tgz"):
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            pending = data
            while pending and not inflater.eof and total < cap:
                chunk = inflater.decompress(pending, 1 << 20)
                pending = inflater.unconsumed_tail
                total += len(chunk)
                if not chunk and pending == data:
                    break
            return total
        if suffix in (".bz2", ".tbz2"):
            stream: bz2.BZ2Decompressor | lzma.LZMADecompressor = bz2.BZ2Decompressor()
        elif suffix in (".xz", ".txz", ".lzma"):
            stream = lzma.LZMADecompressor()
        else:
            return 0  # a format this module never unpacks (.7z, .rar, .tar): left out unread
        pending = data
        while not stream.eof and total < cap:
            chunk = stream.decompress(pending, 1 << 20)
            pending = b""
            total += len(chunk)
            if not chunk and stream.needs_input:
                break
    except (zlib.error, OSError, EOFError, ValueError, lzma.LZMAError):
        pass
    return total


def _read_zip(sub: Submission, path: Path) -> None:
    """Read an uploaded archive in memory (nothing is extracted to disk): bounded size,
    member count and expansion; traversal, links and encrypted members refuse it whole."""
    size = path.lstat().st_size
    if size > MAX_ARCHIVE_BYTES:
        raise _Refused(f"the archive is {size} bytes (limit {MAX_ARCHIVE_BYTES})")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise _Refused(f"not a readable zip archive ({clean_name(exc, 200)})") from None
    with archive:
        infos = archive.infolist()
        _refuse_bombs(archive, "", 0, [0, 0])
        chosen: list[tuple[PurePosixPath, zipfile.ZipInfo]] = []
        names: set[str] = set()
        left_out: dict[str, int] = {}
        for info in infos:
            rel = _member_path(info)
            shown = clean_name(info.filename, 200)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise _Refused(f"archive member {shown!r} is a symbolic link: refused")
            if info.flag_bits & 0x1:
                raise _Refused(f"archive member {shown!r} is encrypted: refused")
            if info.is_dir() or rel == PurePosixPath("."):
                continue
            if rel.as_posix().casefold() in names:
                raise _Refused(f"archive member {shown!r} appears twice: refused")
            names.add(rel.as_posix().casefold())
            why = _keep_member(rel)
            if why:
                left_out[why] = left_out.get(why, 0) + 1
                continue
            if info.file_size > _size_limit(rel.name):
                if rel.suffix not in CODE_SUFFIXES:
                    left_out["data files over the size limit"] = left_out.get("data files over the size limit", 0) + 1
                    continue
                raise _Refused(f"archive member {shown!r} is {info.file_size} bytes "
                               f"(limit {_size_limit(rel.name)} per file)")
            chosen.append((rel, info))
        # One wrapping folder (walter.zip -> walter/mlp.py) is looked through.
        tops = {rel.parts[0] for rel, _ in chosen}
        strip = len(tops) == 1 and all(len(rel.parts) > 1 for rel, _ in chosen)
        total = [0, 0]
        for rel, info in chosen:
            try:
                with archive.open(info) as member:
                    data = member.read(_size_limit(rel.name) + 1)  # never more, whatever the header says
            except (zipfile.BadZipFile, RuntimeError, NotImplementedError, EOFError, OSError,
                    zlib.error, ValueError) as exc:
                raise _Refused(f"archive member {clean_name(info.filename, 200)!r} cannot be read "
                               f"({clean_name(exc, 200)})") from None
            _add(sub, PurePosixPath(*rel.parts[1:]).as_posix() if strip else rel.as_posix(), data, total)
    sub.intake.notes += _left_out_note(left_out, "archive")


def _convert_notebooks(sub: Submission) -> dict[str, tuple[str, str]]:
    """Every ``x.ipynb`` of a folder or archive becomes ``x.py`` (unless that exists). Returns
    the notebooks that cannot be graded: target -> (status, reason). A grader that cannot read
    notebooks at all raises MissingDependency: the module to judge, or one it imports, may be
    among them."""
    failed: dict[str, tuple[str, str]] = {}
    for rel in sorted(r for r in sub.files if r.endswith(".ipynb")):
        data = sub.files.pop(rel)
        target = rel[: -len(".ipynb")] + ".py"
        if target in sub.files:
            sub.intake.notes.append(f"{clean_name(rel)} not converted: {clean_name(target)} exists")
            continue
        try:
            extracted = extract(data)
        except NotebookError as exc:
            sub.intake.notes.append(f"{clean_name(rel)}: {exc}")
            failed[target] = (exc.status, f"{clean_name(rel)}: {exc}")
            continue
        sub.files[target] = extracted.code.encode("utf-8")
        sub.intake.notes += [f"{clean_name(rel)} -> {clean_name(target)}: {n}" for n in extracted.notes()]
        if extracted.problem():
            failed[target] = ("import_error", f"{clean_name(rel)}: {extracted.problem()}")
    return failed


def _notebook_problem(sub: Submission, failed: dict[str, tuple[str, str]]) -> None:
    """A notebook that could not be graded decides the row when it is (or would have been)
    the module to judge: its status and reason, not a generic "no module"."""
    if sub.module is not None and sub.module in failed:
        status, reason = failed[sub.module]
        if status == "import_error":  # converted, but a graded function uses a dropped name
            sub.problem, sub.problem_status = reason, status
        return
    if sub.module is None and failed:
        top = [t for t in failed if "/" not in t]
        if len(top) == 1 and not any("/" not in r and r.endswith(".py") for r in sub.files):
            sub.problem_status, sub.problem = failed[top[0]]
        else:
            sub.problem = f"{sub.problem}; " + "; ".join(reason for _, reason in failed.values())


def _choose_module(sub: Submission, module: str | None) -> None:
    top_level = sorted(rel for rel in sub.files if "/" not in rel and rel.endswith(".py"))
    if module is not None:
        if module in sub.files:
            sub.module = module
        else:
            found = ", ".join(clean_name(t) for t in top_level) or "no .py file"
            sub.problem = f"the folder has no {module} (found: {found})"
    elif len(top_level) == 1:
        sub.module = top_level[0]
    elif (clear := _clear_candidate(sub, top_level)) is not None:
        sub.module, why = clear
        sub.intake.notes.append(f"judged {clean_name(sub.module)} ({why}); the other .py files are its helpers")
    else:
        found = ", ".join(clean_name(t) for t in top_level) or "no .py file"
        sub.problem = (f"cannot tell which file is the module (found: {found}); "
                       "name it with --module")


ASSIGNMENT_MODULE = "mlp.py"  # the module the assignment asks for (Gradescope's default --module too)


def _clear_candidate(sub: Submission, top_level: list[str]) -> tuple[str, str] | None:
    """The one module of several that is clearly the submission (None when none is): the
    assignment's module name, else the only file defining both forward and backward."""
    if ASSIGNMENT_MODULE in top_level:
        return ASSIGNMENT_MODULE, "the assignment's module name"
    import ast

    defining = []
    for rel in top_level:
        try:  # parsed, never run; a file that does not parse defines nothing
            tree = ast.parse(sub.files[rel])
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        names = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
        if {"forward", "backward"} <= names:
            defining.append(rel)
    if len(defining) == 1:
        return defining[0], "the only file defining forward and backward"
    return None


def _unsupported(kind: str, entry: Path) -> str:
    shown = clean_name(entry.name)
    if kind == "hidden":
        return f"{shown}: a hidden file (its name starts with '.'), not graded"
    if kind == "symlink":
        return f"{shown}: a symbolic link; links are never followed"
    if kind == "special":
        return f"{shown}: not a regular file or folder"
    suffix = entry.suffix
    if suffix.lower() == ".py":
        return (f"{shown}: the extension {clean_name(suffix)!r} is not {suffix.lower()!r}; rename "
                "the file and grade again")
    return (f"{shown}: {clean_name(suffix) or 'no extension'} is not a Python module (.py), "
            "notebook (.ipynb), zip archive or folder")


def load_submission(entry: Path, module: str | None = None, name: str | None = None) -> Submission:
    """Read one entry: a ``.py`` file, a notebook, a zip archive or a folder holding ``module``
    (or exactly one top-level ``.py`` file when ``module`` is None). Anything else gives a
    Submission whose ``problem`` says why (status ``unsupported`` / ``invalid_submission``).
    Never raises for the entry's sake: every failure, the grader's included, is this row's."""
    entry = Path(entry)
    kind = _kind(entry)
    default = entry.stem if kind in ("py", "ipynb", "zip", "other") else entry.name
    sub = Submission(name=name or clean_name(default), source=str(entry),
                     intake=IntakeInfo(entry=clean_name(entry.name), kind=kind))
    try:
        _load(sub, entry, kind, module)
    except MissingDependency as exc:  # the grader's environment: no grade, retried next run
        _fail(sub, f"grader error (not the submission's): {exc}", "error")
        sub.missing_library = True
    except NotebookGraderError as exc:  # the machine, not the notebook: this row only, retried
        _fail(sub, f"grader error (not the submission's): {exc}", "error")
    except NotebookError as exc:
        _fail(sub, f"cannot grade the notebook: {exc}", exc.status)
    except (OSError, _Refused) as exc:
        reason = clean_name(exc) if isinstance(exc, OSError) else str(exc)
        _fail(sub, f"cannot read the submission: {reason}", "invalid_submission")
    except (RecursionError, MemoryError) as exc:  # bounded reads make these unlikely: still one row
        _fail(sub, f"cannot read the submission: it is too large or nested too deeply ({type(exc).__name__})",
              "invalid_submission")
    except Exception as exc:  # noqa: BLE001 - a grader bug must not stop the class: this row, loudly
        _fail(sub, f"grader error (not the submission's): reading it raised {type(exc).__name__}: "
                   f"{clean_name(exc, 300)}", "error")
    return sub


def _fail(sub: Submission, problem: str, status: str) -> None:
    sub.files.clear()
    sub.module = None
    sub.problem, sub.problem_status = problem, status


def _load(sub: Submission, entry: Path, kind: str, module: str | None) -> None:
    if kind == "py":
        # The file's own name only when it is plain (it is written to disk and shown by
        # pytest); the name never changes the graded bytes or their hash.
        target = entry.name if re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\.py", entry.name) else "submission.py"
        sub.files[target] = _read_file(entry)
        sub.module = target
        return
    if kind == "ipynb":
        extracted = extract(_read_file(entry))
        target = f"{entry.stem}.py" if entry.stem.isidentifier() else "notebook.py"
        sub.files[target] = extracted.code.encode("utf-8")
        sub.module = target
        sub.intake.notes += extracted.notes()
        if extracted.problem():
            sub.problem, sub.problem_status = extracted.problem(), "import_error"
        return
    if kind == "zip":
        _read_zip(sub, entry)
    elif kind == "folder":
        _read_folder(sub, entry)
    else:
        sub.problem, sub.problem_status = _unsupported(kind, entry), (
            "invalid_submission" if kind in ("symlink", "special") else "unsupported")
        return
    failed = _convert_notebooks(sub)
    _choose_module(sub, module)
    _notebook_problem(sub, failed)


# -- the class folder -------------------------------------------------------------------


@dataclass
class IntakeRecord:
    """One line of intake.csv: what happened to one entry of the class folder."""

    entry: str  # cleaned name
    raw_hex: str  # the exact bytes of the name
    kind: str
    outcome: str  # graded | superseded | unsupported | invalid | no_module | error | ignored | ambiguous
    row: str = ""  # the grades.csv row it belongs to
    detail: str = ""


@dataclass
class ClassIntake:
    submissions: list[Submission]
    records: list[IntakeRecord]
    ignored: list[str]  # OS clutter, cleaned names
    roster: Roster | None = None


@dataclass
class _Entry:
    path: Path
    kind: str
    lms: LmsName | None
    mtime: float


def _group_key(entry: _Entry) -> str:
    return entry.lms.key if entry.lms is not None else f"entry:{entry.path.name}"


def _counting(entries: list[_Entry]) -> tuple[_Entry, list[_Entry]]:
    """The entry that counts (gradable first, then newest) and the others, newest first."""
    def rank(e: _Entry) -> tuple:
        return (e.kind in GRADABLE_KINDS and not (e.lms and e.lms.receipt),
                newest_key(e.lms, e.mtime, e.path.name))
    ordered = sorted(entries, key=rank, reverse=True)
    return ordered[0], ordered[1:]


def _base_name(entry: _Entry) -> str:
    if entry.lms is not None:
        return f"{entry.lms.display}_{entry.lms.user}"
    if entry.kind in ("py", "ipynb", "zip", "other"):
        return entry.path.stem
    return entry.path.name


def _entry_label(entry: _Entry) -> str:
    return clean_name(entry.path.name) + ("/" if entry.kind == "folder" else "")


def scan_class(root: Path, module: str | None = None, roster: Roster | None = None) -> ClassIntake:
    """Every entry under ``root``: one Submission per row, sorted by name, and one intake
    record per entry; raises SubmissionsError when ``root`` is not a folder of submissions."""
    root = Path(root)
    _check_arguments(root, module)
    records: list[IntakeRecord] = []
    ignored: list[str] = []
    entries = _list_entries(root, records, ignored)
    groups = _group_by_student(entries, roster)
    lms_ids = {key.removeprefix("roster:") for key in groups if key.startswith("roster:")}
    subs: list[Submission] = []
    origin: dict[int, _Entry] = {}
    listed_on: list[tuple[IntakeRecord, Submission]] = []  # superseded entries and their row
    for group in groups.values():
        chosen, others = _counting(group)
        sub = _load_chosen(chosen, module)
        _list_superseded(sub, chosen, others, records, listed_on)
        _identify_student(sub, chosen, roster, lms_ids)
        origin[id(sub)] = chosen
        subs.append(sub)

    _make_names_unique(subs, origin)
    _drop_shared_ids(subs)
    _assign_slugs(subs, origin)
    records += [_row_record(sub, origin[id(sub)]) for sub in subs]
    for record, sub in listed_on:  # named once the row names are final
        record.row = sub.name
    records.sort(key=lambda r: r.entry)
    return ClassIntake(sorted(subs, key=lambda s: s.name), records, ignored, roster)


def _check_arguments(root: Path, module: str | None) -> None:
    """SubmissionsError unless ``root`` is a directory and ``module`` a plain .py file name."""
    if not root.exists():
        raise SubmissionsError(f"SUBMISSIONS {root}: no such directory")
    if not root.is_dir():
        raise SubmissionsError(f"SUBMISSIONS {root}: not a directory (expected a folder holding "
                               "one .py file, notebook, zip or folder per student)")
    if module is not None and (Path(module).name != module or not module.endswith(".py")):
        raise SubmissionsError(f"--module {module!r}: expected a file name like mlp.py")


def _list_entries(root: Path, records: list[IntakeRecord], ignored: list[str]) -> list[_Entry]:
    """The entries of ``root`` by name, OS clutter recorded as ignored; SubmissionsError when
    nothing else is there."""
    entries: list[_Entry] = []
    for path in sorted(root.iterdir()):
        if _is_clutter(path.name):
            ignored.append(clean_name(path.name))
            records.append(IntakeRecord(clean_name(path.name), raw_hex(path.name), "clutter", "ignored",
                                        detail="OS or tool clutter"))
            continue
        kind = _kind(path)
        try:
            mtime = path.lstat().st_mtime
        except OSError:
            mtime = 0.0
        lms = parse_lms_name(path.name) if kind != "hidden" else None
        entries.append(_Entry(path, kind, lms, mtime))
    if not entries:
        raise SubmissionsError(f"SUBMISSIONS {root}: no .py files, notebooks, zips or student folders in it"
                               + (f" (ignored: {', '.join(ignored)})" if ignored else ""))
    return entries


def _group_by_student(entries: list[_Entry], roster: Roster | None) -> dict[str, list[_Entry]]:
    """The entries of one student together: by roster id when the roster knows the LMS name,
    else by LMS user, else each entry alone."""
    groups: dict[str, list[_Entry]] = {}
    for entry in entries:
        key = _group_key(entry)
        if roster is not None and entry.lms is not None:
            student, _ = roster.match(entry.lms, entry.path.stem)
            if student is not None:
                key = f"roster:{student.id}"
        groups.setdefault(key, []).append(entry)
    return groups


def _load_chosen(chosen: _Entry, module: str | None) -> Submission:
    """Read the entry that counts; a late marker in its LMS name is noted."""
    sub = load_submission(chosen.path, module, name=clean_name(_base_name(chosen)))
    sub.intake.late = bool(chosen.lms and chosen.lms.late)
    if sub.intake.late:  # (so chosen.lms is set: late is read from it)
        sub.intake.notes.append(f"late: the {cast(LmsName, chosen.lms).lms} file name carries the late marker")
    return sub


def _list_superseded(sub: Submission, chosen: _Entry, others: list[_Entry], records: list[IntakeRecord],
                     listed_on: list[tuple[IntakeRecord, Submission]]) -> None:
    """The student's other entries: listed on the row and recorded as superseded, with why."""
    for other in others:
        why = "LMS receipt" if other.lms and other.lms.receipt else "older"
        if other.kind not in GRADABLE_KINDS and chosen.kind in GRADABLE_KINDS:
            why = "not gradable"
        sub.intake.superseded.append(f"{_entry_label(other)} ({why})")
        record = IntakeRecord(clean_name(other.path.name), raw_hex(other.path.name), other.kind,
                              "superseded", detail=f"{why}; counted: {_entry_label(chosen)}")
        records.append(record)
        listed_on.append((record, sub))
    if others:
        sub.intake.notes.append("several files from this student: the newest counts ("
                                f"{_entry_label(chosen)}); not graded: {', '.join(sub.intake.superseded)}")


def _identify_student(sub: Submission, chosen: _Entry, roster: Roster | None, lms_ids: set[str]) -> None:
    """The row's student: from the roster when there is one (or why none), else the LMS name's."""
    if roster is not None:
        student, why_not = roster.match(chosen.lms, chosen.path.stem)
        if student is not None and chosen.lms is None and student.id in lms_ids:
            # A plain name never takes (nor, by sharing it, blanks) the id of a student
            # the LMS's own file names identified.
            # (two statements, the message first: in one tuple assignment the type checker reads
            # student as the None it is given before the message that names the student)
            why_not = (f"the name matches roster student {clean_name(student.name)} "
                       f"({clean_name(student.id)}), whose LMS submission has the id; "
                       "none given to this entry")
            student = None
        if student is not None:
            sub.intake.student, sub.intake.student_id = student, student.id
            sub.intake.student_name, sub.intake.email = student.name, student.email
        else:
            sub.intake.notes.append(f"roster: {why_not}")
    elif chosen.lms is not None:
        sub.intake.student_id = clean_name(chosen.lms.user)
        sub.intake.student_name = clean_name(chosen.lms.display)


def _row_record(sub: Submission, chosen: _Entry) -> IntakeRecord:
    """The intake record of the entry a row was read from, with the row's outcome."""
    # Only an entry that reaches the suite is "graded"; the others say why not.
    outcome = ({"invalid_submission": "invalid"}.get(sub.problem_status, sub.problem_status)
               if sub.problem else "graded")
    if any(n.startswith("ambiguous") for n in sub.intake.notes):
        outcome = "ambiguous"
    return IntakeRecord(sub.intake.entry, raw_hex(chosen.path.name), chosen.kind, outcome,
                        row=sub.name, detail=(sub.problem or "")[:300])


def _same_name_key(name: str) -> str:
    """Names a person (or a case-insensitive, normalising file system) cannot tell apart."""
    return unicodedata.normalize("NFKC", name).casefold()


def _make_names_unique(subs: list[Submission], origin: dict[int, _Entry]) -> None:
    """Row names are unique case-insensitively. Entries that map to one name are ambiguous:
    each is renamed to its full entry name and flagged; nothing is merged."""
    by_name: dict[str, list[Submission]] = {}
    for sub in subs:
        by_name.setdefault(_same_name_key(sub.name), []).append(sub)
    for clashing in (g for g in by_name.values() if len(g) > 1):
        labels = ", ".join(sorted(_entry_label(origin[id(s)]) for s in clashing))
        for sub in clashing:
            shared = sub.name
            sub.name = _entry_label(origin[id(sub)])
            sub.intake.notes.append(f"ambiguous: the entries {labels} all map to the row {shared!r}; each "
                                    "is graded under its own entry name and none gets a roster id "
                                    "(decide by hand which one is the student's)")
            sub.intake.student, sub.intake.student_id = None, ""
            sub.intake.student_name = sub.intake.email = ""
    # Still equal (cleaning made two raw names alike): the raw name's hash keeps them apart.
    while True:
        seen: dict[str, Submission] = {}
        clash = False
        for sub in subs:
            key = _same_name_key(sub.name)
            if key in seen:
                clash = True
                sub.name += " #" + hashlib.sha256(os.fsencode(origin[id(sub)].path.name)).hexdigest()[:8]
                sub.intake.notes.append("ambiguous: another entry has the same printable name; "
                                        "the suffix is the hash of this entry's raw name")
            seen[_same_name_key(sub.name)] = sub
        if not clash:
            return


def _drop_shared_ids(subs: list[Submission]) -> None:
    """One roster id on several rows would merge two rows in the LMS: give it to none."""
    by_id: dict[str, list[Submission]] = {}
    for sub in subs:
        if sub.intake.student_id:
            by_id.setdefault(sub.intake.student_id, []).append(sub)
    for sid, group in by_id.items():
        if len(group) > 1:
            rows = ", ".join(sorted(s.name for s in group))
            for sub in group:
                sub.intake.student, sub.intake.student_id = None, ""
                sub.intake.student_name = sub.intake.email = ""
                sub.intake.notes.append(f"ambiguous: roster id {clean_name(sid)} matches the rows {rows}; "
                                        "given to none (decide by hand)")


def _assign_slugs(subs: list[Submission], origin: dict[int, _Entry]) -> None:
    """Unique output slugs, case-insensitively (macOS and Windows file systems)."""
    taken: set[str] = set()
    for sub in sorted(subs, key=lambda s: s.name):
        slug = slugify(sub.name)
        if slug.casefold() in taken:
            slug = f"{slug}-{hashlib.sha256(os.fsencode(origin[id(sub)].path.name)).hexdigest()[:10]}"
        if slug.casefold() in taken:  # only a hash collision: refuse rather than share a folder
            raise SubmissionsError(f"two submissions share the output name {slug}; rename one of them")
        taken.add(slug.casefold())
        sub.assigned_slug = slug


def discover(root: Path, module: str | None = None, roster: Roster | None = None) -> list[Submission]:
    """Every row of the class folder ``root`` (see ``scan_class``), sorted by name."""
    return scan_class(root, module, roster).submissions
