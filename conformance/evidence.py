"""Evidence as data: what a check found, recorded per test and carried on its report.

A check that names a catalogued mistake, or a generic finding (a function that returns wrong
values no catalogued mistake reproduces, that crashes, or that returns the wrong structure),
records a ``Finding``: key, function, the inputs it was observed on, and for a generic finding
the mistakes whose replay on the same inputs reproduces it. The findings of a failing test
travel on its report (user property ``evidence``, schema ``EVIDENCE_SCHEMA``; the JSON report
and the grader read only that, never a message's wording).

Per-test state, never module state: the recorder of the running test lives in a context
variable set by the hooks around each test call (``recording``). A hypothesis test runs many
examples and only the last one's failure is the verdict, so the recorder forgets what earlier
examples found whenever a new example starts (``_same_example``).
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator, Sequence

EVIDENCE_SCHEMA = "backprop-conformance-evidence/1"
# "named": a catalogued mistake (or a pair) whose replay on the exact engine reproduces what the
# candidate returned on these inputs. "generic": the function's outputs are wrong (or it crashed,
# or returned the wrong structure) and no catalogued mistake alone reproduces that.
KINDS = ("named", "generic")


@dataclass(frozen=True)
class Finding:
    key: str  # a catalogue key (conformance.diagnosis.diagnosis_keys)
    function: str  # the candidate's function it is about ("" for none)
    kind: str  # one of KINDS
    case: str = ""  # the inputs it was observed on (the case's repr, or the call's "where")
    # Generic findings: the catalogued mistakes whose replay on the same inputs reproduces this
    # failure too (a crash, the same shapes, or every tensor where too little is non-zero to
    # tell them apart). Computed by the suite from the inputs, never from the candidate's text.
    consistent: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["consistent"] = list(self.consistent)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Finding":
        return cls(key=str(data["key"]), function=str(data.get("function", "")),
                   kind=str(data.get("kind", "named")), case=str(data.get("case", "")),
                   consistent=tuple(str(k) for k in data.get("consistent", ()) or ()))


@dataclass
class Recorder:
    """The findings of one test (of its last hypothesis example), in order, without repeats."""

    findings: list[Finding] = field(default_factory=list)
    case: str = ""  # the inputs of the candidate call in progress (set by conformance.calls)
    # Why the test skips, when the suite itself decides it (SKIP_KINDS): a skip without a kind
    # (e.g. one raised from inside the candidate's code) is never a neutral one.
    skip_kind: str = ""
    _example: object = None

    def add(self, finding: Finding) -> None:
        self._same_example()
        if finding not in self.findings:
            self.findings.append(finding)

    def at(self, case: str) -> None:
        self._same_example()
        self.case = case

    def _same_example(self) -> None:
        """Drop what an earlier hypothesis example found: only the last one is the verdict."""
        try:
            from hypothesis.control import current_build_context

            data = current_build_context().data
        except Exception:  # noqa: BLE001 - no hypothesis example is running
            return
        if data is not self._example:
            self._example = data
            self.findings.clear()
            self.case = ""


_CURRENT: contextvars.ContextVar[Recorder | None] = contextvars.ContextVar("conformance_evidence", default=None)


@contextmanager
def recording() -> Iterator[Recorder]:
    """The recorder of one test call (conformance.hooks wraps each test in it)."""
    recorder = Recorder()
    token = _CURRENT.set(recorder)
    try:
        yield recorder
    finally:
        _CURRENT.reset(token)


@contextmanager
def tentative() -> Iterator[Recorder]:
    """Findings recorded inside go to a recorder of their own; the caller keeps them
    (``keep``) only when what they explain becomes part of the verdict."""
    outer = _CURRENT.get()
    inner = Recorder(case=outer.case if outer else "")
    token = _CURRENT.set(inner)
    try:
        yield inner
    finally:
        _CURRENT.reset(token)


def keep(findings: Sequence[Finding]) -> None:
    for finding in findings:
        record(finding)


# The skips the contract allows a candidate: an optional function it does not define, one it
# declares a helper of its own (CONFORMANCE_OPT_OUT), or a check the instructor's declared
# interface cannot give (``interface_limit``: --declaration, the same for the whole class,
# conformance/declaration.py). The grader reads the kind, never the reason.
SKIP_KINDS = ("optional_absent", "opted_out", "interface_limit")
# A check limited by the module's OWN declaration (CONFORMANCE = {...}): said and recorded,
# never neutral: a student's declaration cannot earn points by limiting what is checked.
SELF_DECLARED = "self_declared"


def note_skip(kind: str) -> None:
    """The running test is about to skip for ``kind`` (one of SKIP_KINDS, or SELF_DECLARED)."""
    if kind not in SKIP_KINDS + (SELF_DECLARED,):
        raise ValueError(f"unknown skip kind {kind!r} (known: {', '.join(SKIP_KINDS + (SELF_DECLARED,))})")
    recorder = _CURRENT.get()
    if recorder is not None:
        recorder.skip_kind = kind


def record(finding: Finding) -> None:
    recorder = _CURRENT.get()
    if recorder is not None:
        recorder.add(finding)


def current_case() -> str:
    recorder = _CURRENT.get()
    return recorder.case if recorder is not None else ""


def at_case(case: str) -> None:
    """The candidate call about to run is on ``case``: findings recorded next are about it."""
    recorder = _CURRENT.get()
    if recorder is not None:
        recorder.at(case)


def findings_of(properties: Any) -> list[Finding]:
    """The findings a report's properties carry (the JSON report's ``properties``)."""
    evidence = (properties or {}).get("evidence") if isinstance(properties, dict) else None
    if not isinstance(evidence, dict) or evidence.get("schema") != EVIDENCE_SCHEMA:
        return []
    out = []
    for item in evidence.get("findings") or []:
        if isinstance(item, dict) and isinstance(item.get("key"), str):
            try:
                out.append(Finding.from_dict(item))
            except (KeyError, TypeError, ValueError):
                continue
    return out


def as_property(findings: Sequence[Finding]) -> dict[str, Any]:
    return {"schema": EVIDENCE_SCHEMA, "findings": [f.as_dict() for f in findings]}


def skip_text(longrepr: Any) -> str:
    """Why a test was skipped, from its report's ``longrepr``, as the suite's skip said it
    (the JSON report caps it; the summary groups by it)."""
    reason = str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr or "")
    return reason.removeprefix("Skipped: ")
