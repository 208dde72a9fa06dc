"""The first screen: a summary at the end of every run, for the student to read first.

One line per check area (passed / failed / skipped and why), the root causes: the mistakes
the suite diagnosed (the keys it recorded on each failure, never phrases of the text), with the
line to change; the failures that follow from them; patterns across failures ("every failure
is on a network with 1 layer"), and findings that are not failures (precision). Printed last,
after pytest's own sections, so it is what a terminal shows when the run ends. The same content goes into the
JSON report's top-level ``summary`` (conformance/report.py) and from there to the grader's
pages. Deterministic: no durations, no paths, no addresses; two runs give the same text.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Generator, Iterable

import pytest

from conformance import calls, localise
from conformance.candidate import candidate_label
from conformance.contract import PrecisionFinding
from conformance.diagnosis import (
    GENERIC_KEYS,
    function_of,
)
from conformance.mistakes import AREAS, mistake
from conformance.evidence import skip_text

NAME = "conformance-summary"
AREA_ORDER = AREAS
MAX_UNEXPLAINED = 3
# What runs the candidate's forward and backward for a check that judges something else: its
# train (by the contract) and the suite's SGD loop. A mistake in forward or backward fails those
# checks too, so their failures follow from it.
RUNS_THROUGH = {"train": ("forward", "backward"), calls.SGD_LOOP: ("forward", "backward")}

def cause_text(key: str) -> str:
    """What a recorded key means, in one line with the change to make (conformance.mistakes)."""
    m = mistake(key)
    if m is None:
        return key
    if m.function in ("backward", "forward") and not m.generic:
        return f"your {m.cause}"
    return m.cause


# ------------------------------------------------------------------------ case shapes
@dataclass(frozen=True)
class Shape:
    layer_sizes: tuple[int, ...]
    batch: int
    layout: str

    @property
    def depth(self) -> int:
        return len(self.layer_sizes) - 1


def shape_of(case: Any) -> Shape | None:
    try:
        sizes = tuple(int(n) for n in case.layer_sizes)
        layout = re.search(r"layout='(\w+)'", case.recipe)
        return Shape(sizes, int(case.batch), layout.group(1) if layout else "C")
    except (AttributeError, TypeError, ValueError):
        return None


def _set(values: Iterable[int]) -> str:
    items = sorted(set(values))
    return ", ".join(str(v) for v in items[:-1]) + (" or " if len(items) > 1 else "") + str(items[-1])


def cross_failure_patterns(failing: list[Shape], passing: list[Shape]) -> list[str]:
    """Features shared by every failing case and by no passing case."""
    if len(failing) < 2 or not passing:
        return []
    out = []
    f_depths, p_depths = {s.depth for s in failing}, {s.depth for s in passing}
    if not f_depths & p_depths:
        which = (f"other than {_set(p_depths)} layer(s) (here {_set(f_depths)})" if len(p_depths) == 1
                 else f"{_set(f_depths)} layer(s)")
        out.append(f"every failure is on a network with {which}; every network with "
                   f"{_set(p_depths)} layer(s) passes: the contract requires 1 to 5 layers")
    f_classes, p_classes = {s.layer_sizes[-1] for s in failing}, {s.layer_sizes[-1] for s in passing}
    if not f_classes & p_classes:
        out.append(f"every failure has {_set(f_classes)} classes; every case with {_set(p_classes)} "
                   "classes passes: the contract requires 2 to 10 classes")
    checks = [
        (lambda s: 1 in s.layer_sizes[1:-1], "involve a width-1 hidden layer", "width 1"),
        (lambda s: s.batch == 1, "have a batch of one sample", "batch 1"),
        (lambda s: s.layout != "C", "have Fortran-ordered or non-contiguous inputs",
         "non-C-contiguous inputs"),
        (lambda s: s.layer_sizes[0] == 1, "have a single input feature", "1 input feature"),
    ]
    for has, says, _ in checks:
        if all(has(s) for s in failing) and not any(has(s) for s in passing):
            out.append(f"all failures {says}; every other case passes")
    return out


# --------------------------------------------------------------------------- records
@dataclass
class Record:
    nodeid: str
    area: str
    outcome: str = "passed"
    text: str = ""  # the failure's message as the student reads it
    skip_reason: str = ""
    cases: list[Shape] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)  # the mistakes its message names (diagnoses)
    consistent: list[str] = field(default_factory=list)  # mistakes whose replay reproduces its failure
    functions: set[str] = field(default_factory=set)  # the candidate functions it called

    def ran_through(self) -> set[str]:
        """The candidate functions this check ran only through train or the suite's loop."""
        return set().union(*(RUNS_THROUGH.get(f, ()) for f in self.functions))


def _area_index(area: str) -> tuple[int, str]:
    return (AREA_ORDER.index(area) if area in AREA_ORDER else len(AREA_ORDER), area)


def area_of(nodeid: str, properties: Iterable[tuple[str, Any]] = ()) -> str:
    """A test's check area: its module's CONFORMANCE_AREA, carried as the "area" property
    (conformance/hooks.py; the grader scores by the same), else its file name minus test_."""
    area = dict(properties).get("area")
    if isinstance(area, str):
        return area
    module = nodeid.split("::", 1)[0].rsplit("/", 1)[-1].removesuffix(".py")
    return module.removeprefix("test_")


def _message(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    text = getattr(crash, "message", None)
    return str(text) if text else report.longreprtext


HEADLINE_CHARS = 300


def _headline(text: str) -> str:
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    first = re.sub(r"^[\w.]*(Error|Mismatch|Failed): ", "", first)
    return first if len(first) <= HEADLINE_CHARS else first[:HEADLINE_CHARS - 3] + "..."


KNOWN_PREFIXES = ("likely cause:", "diagnosis:", "finding:", "missing guard:", "next:")


KNOWN_CHARS = 320


def _known(text: str) -> str:
    """What the failure's own message already says about the cause: its first such line, with
    the lines it continues on (a diagnosis naming the mistake of some tensors goes on there)."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith(KNOWN_PREFIXES):
            indent = len(line) - len(line.lstrip())
            for more in lines[i + 1:]:
                if len(more) - len(more.lstrip()) <= indent or more.strip().startswith(KNOWN_PREFIXES):
                    break
                stripped += " " + more.strip()
            return stripped if len(stripped) <= KNOWN_CHARS else stripped[:KNOWN_CHARS - 3] + "..."
    return ""


class RunSummary:
    """pytest plugin: collects outcomes, the cases each test ran and precision findings."""

    NAME = NAME

    def __init__(self, config: pytest.Config):
        self.config = config
        self.records: dict[str, Record] = {}
        self.findings: Counter[str] = Counter()
        self.deselected: Counter[str] = Counter()  # area -> tests not run (-m, -k, load failure)
        self.declaration: Any = None  # the conventions judged with (set by the hooks; None: the section's)

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        for item in items:
            self.deselected[area_of(item.nodeid, item.user_properties)] += 1

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        calls.CASES_SEEN.clear()
        calls.FUNCTIONS_RUN.clear()
        yield
        shapes = [s for s in (shape_of(c) for c in calls.CASES_SEEN) if s is not None]
        record = self.records.setdefault(item.nodeid, Record(item.nodeid, area_of(item.nodeid, item.user_properties)))
        record.cases, record.functions = shapes, set(calls.FUNCTIONS_RUN)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        record = self.records.setdefault(report.nodeid, Record(report.nodeid, area_of(report.nodeid, report.user_properties)))
        if report.skipped and record.outcome == "passed":
            record.outcome = "skipped"
            record.skip_reason = skip_text(report.longrepr)
        elif report.failed and record.outcome in ("passed", "skipped"):
            record.outcome = "failed" if report.when == "call" else "error"
            record.text = _message(report)
            record.skip_reason = ""
            # (recorded by conformance/hooks.py from the suite's own diagnoses, never parsed:
            # lists of keys, str)
            properties: dict[str, Any] = dict(report.user_properties)
            record.keys = list(properties.get("diagnoses") or [])
            record.consistent = list(properties.get("consistent_with") or [])

    def pytest_warning_recorded(self, warning_message: Any, when: str, nodeid: str, location: Any) -> None:
        if isinstance(warning_message.message, PrecisionFinding):
            self.findings[str(warning_message.message)] += 1

    # ------------------------------------------------------------------ content
    def as_dict(self) -> dict[str, Any]:
        records = sorted(self.records.values(), key=lambda r: r.nodeid)
        areas: dict[str, dict[str, Any]] = {}
        names = sorted({r.area for r in records} | set(self.deselected), key=_area_index)
        for area in names:
            mine = [r for r in records if r.area == area]
            counts = Counter(r.outcome for r in mine)
            failed = counts["failed"] + counts["error"]
            outcome = ("failed" if failed else "passed" if counts["passed"]
                       else "skipped" if counts["skipped"] else "not run")
            areas[area] = {"outcome": outcome, "passed": counts["passed"], "failed": failed,
                           "skipped": counts["skipped"], "deselected": self.deselected[area],
                           "skip_reasons": sorted({r.skip_reason for r in mine if r.skip_reason})}
        causes: dict[str, dict[str, Any]] = {}
        failing_records = [r for r in records if r.outcome in ("failed", "error")]
        explain = Attribution(failing_records)
        consequences: dict[str, Any] = {"tests": 0, "areas": {}, "functions": []}
        unexplained = []
        for r in failing_records:
            for key in explain.causes_of(r):
                entry = causes.setdefault(key, {"bug": key, "text": cause_text(key), "tests": 0, "areas": []})
                entry["tests"] += 1
                if r.area not in entry["areas"]:
                    entry["areas"].append(r.area)
            if explain.causes_of(r):
                continue
            follows = explain.follows_from(r)
            if follows:
                consequences["tests"] += 1
                consequences["areas"][r.area] = consequences["areas"].get(r.area, 0) + 1
                consequences["functions"] = sorted(set(consequences["functions"]) | follows)
            else:
                unexplained.append({"test": r.nodeid, "area": r.area, "headline": _headline(r.text),
                                    "known": _known(r.text), "rank": _evidence_rank(r.keys)})
        failing = [r.cases[-1] for r in records if r.outcome == "failed" and r.cases]
        passing = [s for r in records if r.outcome == "passed" for s in r.cases]
        # (not the earlier cases of a failed test: hypothesis' shrinking tries failing ones too)
        root_causes = sorted(causes.values(), key=lambda c: (-c["tests"], c["bug"]))
        data = {
            "areas": areas,
            "root_causes": root_causes,
            "consequences": consequences,
            "unexplained": unexplained[:50],
            "patterns": cross_failure_patterns(failing, passing),
            "findings": [{"text": t, "checks": n} for t, n in sorted(self.findings.items())],
        }
        # each root cause's line in the student's files (text only; never a verdict)
        localise.attach(data, self._candidate(), {r.nodeid: r.keys for r in failing_records})
        data["lines"] = summary_lines(data, candidate_label(self._candidate()))
        return data

    def _candidate(self) -> Any:
        from conformance.candidate import CANDIDATE_KEY

        return self.config.stash.get(CANDIDATE_KEY, None)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_terminal_summary(self, terminalreporter: Any, exitstatus: int,
                                config: pytest.Config) -> Generator[None, object, object]:
        # Around every other terminal summary, pytest's "short test summary info" included:
        # what the student reads first is the last thing printed (before the one-line count).
        result = yield
        if self.records:
            terminalreporter.section("conformance summary")
            for line in self.as_dict()["lines"]:
                terminalreporter.line(line)
            from conformance.declaration import limits_of, summary_line

            declared = self.declaration  # the conventions judged with
            if declared is not None:
                terminalreporter.line(summary_line(declared))
                for why in limits_of(declared.values).values():
                    terminalreporter.line(f"  limited: {why}")
        return result


class Attribution:
    """Which failures a mistake explains, from the keys the suite recorded (hooks.py):

    - a failure whose message names catalogued mistakes (keys other than the generic
      findings, diagnosis.GENERIC_KEYS) has those as its causes; a generic finding whose
      inputs cannot tell mistakes apart has as causes those of its "consistent_with" mistakes
      that other failures name (replay reproduces it with them);
    - a failure naming nothing, in a check that ran forward or backward only through train or
      the suite's SGD loop, follows from those functions' failures when other checks find
      them wrong (the grader's idea: one mistake, failing end-to-end checks too, is charged
      once; conformance/grade/score/rubric.py END_TO_END_AREAS);
    - everything else, generic findings included, is a failure without a named cause: its
      own message says what is wrong (a generic finding may be evidence the named mistake
      does not explain).
    """

    def __init__(self, failing: list[Record]):
        self.wrong_functions = {function_of(k) for r in failing for k in r.keys} - {""}
        self.named = {k for r in failing for k in r.keys if k not in GENERIC_KEYS}

    def causes_of(self, record: Record) -> list[str]:
        """The named mistakes of this failure; for a generic finding that names none, the named
        mistakes (found elsewhere) whose replay on its own inputs reproduces it too."""
        named = sorted(k for k in record.keys if k not in GENERIC_KEYS)
        return named or sorted(set(record.consistent) & self.named)

    def follows_from(self, record: Record) -> set[str]:
        """The functions whose failures this one follows from (empty: it stands alone)."""
        return set() if record.keys else record.ran_through() & self.wrong_functions


def _evidence_rank(keys: list[str]) -> int:
    """Which failure of an area leads its line: wrong values or structure (they say what is
    wrong) before a failure naming nothing, before a crash (often only an unsupported shape)."""
    if any(k.endswith(("_wrong", "_structure")) for k in keys):
        return 0
    return 2 if any(k.endswith("_crash") for k in keys) else 1


def _short_reasons(reasons: list[str]) -> list[str]:
    """Skip reasons, with the per-function "defines no f / opts out of f" ones merged."""
    absent = sorted({m.group(1) for r in reasons for m in [re.search(r"defines no (\w+)", r)] if m})
    opted = sorted({m.group(1) for r in reasons for m in [re.search(r"opts out of (\w+)", r)] if m})
    rest = [r for r in reasons if "defines no " not in r and "opts out of " not in r]
    out = [f"the candidate defines no {', '.join(absent)} (optional)"] if absent else []
    out += [f"the candidate opts out of {', '.join(opted)}"] if opted else []
    return out + rest[:3]


def summary_lines(data: dict[str, Any], label: str) -> list[str]:
    areas = data["areas"]
    failed = [a for a, v in areas.items() if v["outcome"] == "failed"]
    ran = [a for a, v in areas.items() if v["outcome"] in ("passed", "failed")]  # skipped: no verdict
    verdict = (f"{len(failed)} of {len(ran)} check areas that ran FAILED ({', '.join(failed)})" if failed
               else f"every check area that ran passed ({len(ran)} areas)" if ran
               else "no check area ran (every check was skipped or not selected): no verdict")
    lines = [f"{label}: {verdict}"]
    width = max((len(a) for a in areas), default=8)
    for area, v in areas.items():
        parts = [f"{v['passed']} passed"] + ([f"{v['failed']} failed"] if v["failed"] else [])
        if v["skipped"]:
            parts.append(f"{v['skipped']} skipped")
        if v["deselected"]:
            parts.append(f"{v['deselected']} not selected")
        line = f"  {area:<{width}}  {v['outcome'].upper() if v['outcome'] == 'failed' else v['outcome']:<7} ({', '.join(parts)})"
        if v["skip_reasons"]:
            line += ": skipped because " + "; ".join(_short_reasons(v["skip_reasons"]))
        lines.append(line)
    if data["root_causes"]:
        lines.append("root causes named by the evidence (fix these first):")
        for c in data["root_causes"]:
            lines.append(f"  - {c['text']}  [{c['tests']} failing test(s) in {', '.join(c['areas'])}]")
            lines += localise.location_lines(c.get("location"))
    consequences = data.get("consequences") or {}
    if consequences.get("tests"):
        where = ", ".join(f"{area} {n}" for area, n in consequences["areas"].items())
        functions = " and ".join(consequences["functions"])
        fails = "fails its" if len(consequences["functions"]) == 1 else "fail their"
        lines.append(f"failing as a consequence ({consequences['tests']}: {where}): these checks train "
                     f"with your {functions} (through your train or the suite's SGD loop), and "
                     f"{functions} already {fails} own checks: not a separate mistake; fix "
                     f"{functions} first")
    for p in data["patterns"]:
        lines.append(f"pattern: {p}")
    if data["unexplained"]:
        n = len(data["unexplained"])
        lines.append(f"failures without a named cause ({n}); the leading message of each area says what is "
                     "wrong and where to look:")
        leading: dict[str, dict[str, Any]] = {}  # per area, its most telling failure
        for u in data["unexplained"]:
            if u["area"] not in leading or u.get("rank", 1) < leading[u["area"]].get("rank", 1):
                leading[u["area"]] = u
        for area in sorted(leading, key=_area_index)[:MAX_UNEXPLAINED]:
            u = leading[area]
            lines.append(f"  - {area}: {u['headline']}")
            if u["known"]:
                lines.append(f"      {u['known']}")
            lines += localise.location_lines(u.get("location"))
    for f in data["findings"]:
        lines.append(f"finding (not a failure, {f['checks']} check(s)): {f['text']}")
    return lines
