"""Find the candidate's source on disk WITHOUT importing it (the grader never executes it),
and copy it into the worker's sandbox."""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from conformance.candidate import not_found_text, resolve_spec

# A submission is source code, not a data dump: bounded so copying cannot fill the disk.
MAX_COPY_FILES = 500
MAX_COPY_BYTES = 50 << 20
_SKIP = {"__pycache__", ".git", ".hg", ".svn", ".venv", "venv", "node_modules"}


@dataclass(frozen=True)
class Located:
    module_name: str
    file: Path  # the module's source file (a package's __init__.py)
    copy_from: Path  # what to copy into the sandbox: that file, or the top-level package dir
    loaded_by_path: bool  # imported with spec_from_file_location (a .py path) or by name


def locate(spec: str, copy_dir: bool = False) -> Located:
    """Resolve an --impl value exactly like the in-process loader would find it."""
    module_name, path = resolve_spec(spec)
    if path is not None:
        if path.suffix != ".py":
            raise ImportError(f"--impl {spec!r}: only .py files can be isolated")
        return Located(module_name, path, path.parent if copy_dir else path, True)
    parts = module_name.split(".")
    if not all(p.isidentifier() for p in parts):
        raise ImportError(f"--impl {spec!r} is neither a .py path nor a dotted module name")
    search = [os.getcwd()] + [p for p in sys.path if p and p != os.getcwd()]
    for entry in search:
        base = Path(entry)
        if not base.is_dir():
            continue
        found = _find_in(base, parts)
        if found is not None:
            top = base / parts[0]
            copy_from = top if top.is_dir() else found
            return Located(module_name, found.resolve(), copy_from.resolve(), False)
    raise ModuleNotFoundError(not_found_text(module_name), name=module_name)  # (no traceback: no file)


def _find_in(base: Path, parts: list[str]) -> Path | None:
    *packages, last = parts
    directory = base
    for package in packages:
        directory = directory / package
        if not directory.is_dir():  # namespace packages (no __init__.py) are fine too
            return None
    as_package = directory / last / "__init__.py"
    if as_package.is_file():
        return as_package
    as_module = directory / f"{last}.py"
    if as_module.is_file():
        return as_module
    return None


def copy_candidate(located: Located, dest: Path) -> tuple[Path, Path | None]:
    """Copy the candidate into ``dest`` (read-only for the worker). Returns (sys.path root to
    put first, the copied file when it is loaded by path)."""
    src = located.copy_from
    budget = [MAX_COPY_FILES, MAX_COPY_BYTES]

    def take(size: int) -> None:
        budget[0] -= 1
        budget[1] -= size
        if budget[0] < 0 or budget[1] < 0:
            raise ImportError(f"candidate {src} is too large to isolate "
                              f"(more than {MAX_COPY_FILES} files or {MAX_COPY_BYTES >> 20} MiB)")

    def copy_file(s: Path, d: Path) -> None:
        take(s.stat().st_size)
        shutil.copyfile(s, d, follow_symlinks=True)
        os.chmod(d, 0o444)

    def copy_tree(s: Path, d: Path) -> None:
        d.mkdir(mode=0o755)
        for entry in sorted(s.iterdir()):
            if entry.name in _SKIP or entry.name.startswith("."):
                continue
            if entry.is_dir():
                copy_tree(entry, d / entry.name)
            elif entry.is_file():
                copy_file(entry, d / entry.name)

    if src.is_dir():
        target = dest / src.name
        copy_tree(src, target)
        if located.loaded_by_path:  # copied the file's whole directory: it is the sys.path root
            return target, target / located.file.name
        return dest, None
    copy_file(src, dest / src.name)
    return dest, (dest / src.name) if located.loaded_by_path else None
