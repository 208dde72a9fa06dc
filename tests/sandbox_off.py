"""A machine where ``--isolate-sandbox off`` as root can hold its promise, for tests.

Without namespaces the worker (its own uid) is kept out of the grader's files by permissions
alone, and it checks that itself before the candidate runs: it must read the Python
installation and numpy, and must not reach the project or the grader's folders. A developer
machine often fails both (a pyenv Python under ``/root``, mode 0700; a world-readable
checkout), which the grader rightly refuses. So these tests run the grader

- from a private copy of the project (under pytest's tmp_path, mode 0700 above it), and
- behind ``unshare --mount`` where each folder above the Python installation that other users
  cannot enter (``/root``) is replaced by a world-enterable tmpfs with the installation bound
  back: what a container with a system Python looks like. Nothing outside the test's own
  mount namespace changes.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
UNSHARE = shutil.which("unshare")

needs_root_off = pytest.mark.skipif(
    UNSHARE is None or os.geteuid() != 0 or not sys.platform.startswith("linux"),
    reason="--isolate-sandbox off as root needs root, Linux and unshare")


def _blocked_ancestors() -> list[tuple[Path, Path]]:
    """(folder other users cannot enter, its child on the way to what the worker needs)."""
    needed = {Path(sys.base_prefix).resolve(), Path(sysconfig.get_paths()["purelib"]).resolve()}
    out: list[tuple[Path, Path]] = []
    for path in needed:
        chain = [*reversed(path.parents), path]
        for parent, child in zip(chain, chain[1:]):
            if not parent.stat().st_mode & 0o001 and (parent, child) not in out:
                out.append((parent, child))
                break
    return out


def readable_python_prefix(tmp_path: Path, *, own_pids: bool = False) -> list[str]:
    """Command prefix: run the rest in a private mount namespace where other users can reach
    the Python installation and not the developer's checkout (skips the test without unshare).

    ``own_pids``: also in a PID namespace of its own (with its own /proc), as a container is:
    the worker (no namespaces of its own when off) then sees the command lines of the run's
    processes only, not those of whatever else runs on this machine. Those may name another
    world-readable copy of the project (another clone, a CI checkout under /tmp) that no
    container holds and that the cover below does not reach. Only where what the worker sees
    of other processes is the point: a namespace's processes all die with its first one, which
    would hide a process of the run that outlived it."""
    if UNSHARE is None:
        pytest.skip("--isolate-sandbox off as root is tried behind unshare (not installed)")
    blocked = _blocked_ancestors()
    lines = ["set -e"]
    for i, (parent, child) in enumerate(blocked):
        hold = tmp_path / f"hold{i}"
        hold.mkdir()
        q = {k: shlex.quote(str(v)) for k, v in (("p", parent), ("c", child), ("h", hold))}
        lines += [f"mount --bind {q['c']} {q['h']}", f"mount -t tmpfs -o mode=755 tmpfs {q['p']}",
                  f"mkdir -p {q['c']}", f"mount --bind {q['h']} {q['c']}"]
    # The developer's checkout and its neighbours (other clones on a shared machine) are not
    # the grader's files (those are the private copy the test runs): cover the top folder
    # holding the checkout (just the checkout when that folder also holds the test's own
    # files, e.g. /tmp), keeping a virtualenv that lives inside it, so that a reference an
    # attack finds there does not stand for one that reached the grader's. A container has
    # no such copies.
    venv = Path(sys.prefix).resolve()
    covers: list[Path] = []
    checkouts = [REPO]
    if sys.prefix != sys.base_prefix and (venv.parent / "conformance" / "reference").is_dir():
        checkouts.append(venv.parent)  # the clone whose virtualenv runs the test (not REPO's)
    for checkout in checkouts:
        if len(checkout.parents) < 2:
            continue  # never cover a top-level folder's parent, "/"
        top = checkout.parents[len(checkout.parents) - 2]
        covers.append(checkout if top in tmp_path.resolve().parents else top)
    covers = [c for c in dict.fromkeys(covers) if not any(o in c.parents for o in covers)]
    hold = tmp_path / "hold-venv"
    hold.mkdir()
    q = {k: shlex.quote(str(v)) for k, v in (("v", venv), ("h", hold))}
    keep_venv = any(c in venv.parents for c in covers)
    if keep_venv:
        lines.append(f"mount --bind {q['v']} {q['h']}")
    lines += [f"mount -t tmpfs -o mode=755 tmpfs {shlex.quote(str(c))}" for c in covers]
    if keep_venv:
        lines += [f"mkdir -p {q['v']}", f"mount --bind {q['h']} {q['v']}"]
    lines.append('exec "$@"')
    pids = ["--pid", "--fork", "--kill-child", "--mount-proc"] if own_pids else []
    return [UNSHARE, "--mount", "--propagation", "private", *pids, "--", "sh", "-c", "\n".join(lines), "sh"]


def private_project(tmp_path: Path) -> Path:
    """A copy of the project's suite, reference and grader in a folder only root can enter
    (what a Gradescope bundle's ``source/project`` is once the autograder runs)."""
    from conformance.grade.gradescope import _project_files

    dest = tmp_path / "project"
    for path in _project_files(REPO):
        target = dest / path.relative_to(REPO)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    tmp_path.chmod(0o700)
    return dest
