"""Run an untrusted candidate in a locked-down worker process (``pytest --isolate``).

The grader (the pytest process that decides verdicts) never imports or executes candidate
code: ``IsolatedCandidate`` locates the module on disk, copies it into a private sandbox
directory and talks to a worker process over pipes, validating everything that comes back
(see ``wire.py``). Threat model and limits: conformance/SECURITY.md.
"""

from conformance.isolation.candidate import CandidateRaised, IsolatedCandidate
from conformance.isolation.options import Limits, add_isolation_options

__all__ = ["CandidateRaised", "IsolatedCandidate", "Limits", "add_isolation_options"]
