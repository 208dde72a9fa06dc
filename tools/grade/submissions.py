"""Find the submissions in a folder and read them into self-contained, hashable jobs.

Two layouts, mixed freely: ``SUBMISSIONS/alice.py`` (one module per student) or
``SUBMISSIONS/bob/<module>`` (a folder per student; the module name is ``--module``, or
the folder's only top-level ``.py`` file). Everything a student controls is hostile: file
names (shell, HTML and spreadsheet metacharacters), symlinks, sizes. A submission is read
into memory once, so the grade, the hash and what the suite runs are the same bytes.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

MAX_FILE_BYTES = 2 * 1024 * 1024  # one source file; a real MLP module is a few kB
MAX_TOTAL_BYTES = 8 * 1024 * 1024  # a student folder, all files together
MAX_FILES = 200
IGNORED_NAMES = {"__pycache__", ".ipynb_checkpoints", ".DS_Store", "__MACOSX"}


class SubmissionsError(Exception):
    """The SUBMISSIONS argument cannot be graded at all (not one student's problem)."""


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

    @property
    def sha256(self) -> str:
        """Hash of exactly what is graded: the module file alone for a one-file submission
        (equal to the suite's candidate sha256), else every file with its path."""
        if self.module is not None and len(self.files) == 1:
            return hashlib.sha256(self.files[self.module]).hexdigest()
        digest = hashlib.sha256()
        for rel in sorted(self.files):
            digest.update(rel.encode() + b"\0" + hashlib.sha256(self.files[rel]).digest())
        digest.update(b"module\0" + (self.module or "").encode())
        return digest.hexdigest()

    @property
    def slug(self) -> str:
        return slugify(self.name)


def slugify(name: str) -> str:
    """A file-name-safe, collision-free token for ``name`` (used for output paths)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name).strip("._")[:60] or "submission"
    if safe != name:  # the name was changed: a hash suffix keeps different names apart
        safe += "-" + hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return safe


def _ignored(path: Path) -> bool:
    return path.name in IGNORED_NAMES or path.name.startswith(".")


def _read_file(path: Path) -> bytes:
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ValueError(f"{path.name} is {size} bytes (limit {MAX_FILE_BYTES})")
    return path.read_bytes()


def _read_folder(sub: Submission, folder: Path) -> None:
    """Read the student's folder (regular files only; symlinks are never followed)."""
    total = 0
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part in IGNORED_NAMES or part.startswith(".") for part in rel.parts):
            continue
        if path.is_symlink() or not path.is_file():
            continue
        if path.suffix not in (".py", ".txt", ".json", ".csv", ".npy", ".npz", ".toml", ".md"):
            continue
        if len(sub.files) >= MAX_FILES:
            raise ValueError(f"more than {MAX_FILES} files")
        data = _read_file(path)
        total += len(data)
        if total > MAX_TOTAL_BYTES:
            raise ValueError(f"the files total more than {MAX_TOTAL_BYTES} bytes")
        sub.files[rel.as_posix()] = data


def load_submission(entry: Path, module: str | None = None, name: str | None = None) -> Submission:
    """Read one submission: a ``.py`` file, or a folder holding ``module`` (or exactly one
    top-level ``.py`` file when ``module`` is None)."""
    sub = Submission(name=name or (entry.stem if entry.is_file() else entry.name), source=str(entry))
    try:
        if entry.is_file():
            if entry.suffix != ".py":
                raise ValueError(f"{entry.name} is not a .py file")
            sub.files[entry.name] = _read_file(entry)
            sub.module = entry.name
            return sub
        _read_folder(sub, entry)
    except (OSError, ValueError) as exc:
        sub.files.clear()
        sub.problem, sub.problem_status = f"cannot read the submission: {exc}", "invalid_submission"
        return sub
    top_level = sorted(rel for rel in sub.files if "/" not in rel and rel.endswith(".py"))
    if module is not None:
        if module in sub.files:
            sub.module = module
        else:
            found = ", ".join(top_level) or "no .py file"
            sub.problem = f"the folder has no {module} (found: {found})"
    elif len(top_level) == 1:
        sub.module = top_level[0]
    else:
        found = ", ".join(top_level) or "no .py file"
        sub.problem = (f"cannot tell which file is the module (found: {found}); "
                       "name it with --module")
    return sub


def discover(root: Path, module: str | None = None) -> list[Submission]:
    """Every submission under ``root``, sorted by name; raises SubmissionsError when
    ``root`` is not a folder of submissions."""
    root = Path(root)
    if not root.exists():
        raise SubmissionsError(f"SUBMISSIONS {root}: no such directory")
    if not root.is_dir():
        raise SubmissionsError(f"SUBMISSIONS {root}: not a directory (expected a folder holding "
                               "one .py file or one folder per student)")
    if module is not None and (Path(module).name != module or not module.endswith(".py")):
        raise SubmissionsError(f"--module {module!r}: expected a file name like mlp.py")
    entries = [p for p in sorted(root.iterdir()) if not _ignored(p)
               and (p.is_dir() or p.suffix == ".py")]
    if not entries:
        raise SubmissionsError(f"SUBMISSIONS {root}: no .py files and no student folders in it")
    subs = [load_submission(p, module) for p in entries]
    # alice.py and alice/ would share a name: fall back to the entry names for those.
    by_name: dict[str, list[Submission]] = {}
    for sub in subs:
        by_name.setdefault(sub.name, []).append(sub)
    for clashing in (group for group in by_name.values() if len(group) > 1):
        for sub in clashing:
            sub.name = Path(sub.source).name
    return sorted(subs, key=lambda s: s.name)
