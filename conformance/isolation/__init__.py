"""Run an untrusted candidate in a locked-down worker process (``pytest --isolate``).

The grader (the pytest process that decides verdicts) never imports or executes candidate
code: ``IsolatedCandidate`` locates the module on disk, copies it into a private sandbox
directory and talks to a worker process over pipes, validating everything that comes back
(see ``wire.py``). Threat model and limits: conformance/SECURITY.md.

The names below are resolved on first use (PEP 562): initialising this package imports none
of its modules, so a module of it that imports a sibling (``conformance.isolation.wire``)
never runs the facade, and ``--help`` stays free of numpy.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {"CandidateRaised": "candidate", "IsolatedCandidate": "candidate",
           "Limits": "options", "add_isolation_options": "options"}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)
