"""Rubric: how test outcomes become points (a TOML file; ``default_rubric.toml`` ships).

Scoring rules (the contract stated in ``default_rubric.toml`` too):

- Points are given per check area (a conformance module: interface, gradients, ...) and,
  optionally, per test: a ``[[tests]]`` rule claims the tests whose node id matches its
  glob and scores them on its own; an area scores the tests no rule claimed.
- ``partial_credit = "fraction"``: points x passed / counted; ``"all_or_nothing"``: all
  points when every counted test passed, else 0.
- Counted tests are the passed, failed and errored ones. A skipped test is neutral with
  ``skipped = "neutral"`` when the skip is one the contract allows: the suite recorded it as
  an optional function's absence or opt-out, or a check the instructor's declared interface
  cannot give (property "skip_kind", conformance.evidence.SKIP_KINDS; never ``self_declared``,
  a limit the submission's own declaration asked for), or the
  reference run skipped it too (a check not requested in this environment). Any other skip
  counts as failed: a skip is never a way to earn points. With ``skipped = "failed"``
  every skip counts as failed. A group whose tests were all neutral skips earns its points.
- A test the reference run had but the submission's run lacks (the run stopped, the
  candidate could not load) counts as failed. A group with no test at all earns nothing.
- A submission that was not graded (import error, timeout, crash, ...) earns 0 everywhere.

Scoring by root cause (``[bugs.<key>] points = ...``): the suite records on each failing test
the keys of the catalogued mistakes its evidence names (property "diagnoses", see
conformance/diagnosis.py). A priced key found in any failing test is *charged* once: its
points are deducted from the total. The failures that record it (or one of its symptoms) are
*explained*: they do not count in their area, so one mistake costs its price and nothing more.
A failure that records no charged key is explained by nothing (a cheap mistake found elsewhere
in its area does not waive it). Areas score only the failures no charged mistake explains
(the fallback). Keys of one ``family`` (one mistake the evidence may name two ways) are
charged once, at the family's highest price. A generic finding about one function
(``backward_wrong``, ``backward_crash``, ... see conformance/diagnosis.py GENERIC_KEYS) is free
where a specific mistake of the same function accounts for the same failing test (the test
names it, or the suite found it consistent with the failure on those inputs; for a crash or
a wrong structure, only a mistake also named where values were compared, since a crash is
explained from the exception's text and a structure from shapes the candidate chose): it is
that mistake's symptom. A generic finding no named mistake accounts
for makes its function cost at least the generic price (the specific prices count towards
it), so naming a cheap mistake on purpose never lowers a grade. The total never goes below 0.

What a reader sees (the total is the same; this is how it is shown): each charged mistake's
points are *taken from* the groups where it shows (where a failing test names it or one of its
symptoms, and the end-to-end areas whose failures it explains), in proportion to the points
they hold and never more. A group's ``score`` is therefore the points it earned:
its ``fallback`` (what its checks earn with the explained failures left out) minus its
``deductions``. The group scores add up to the total, except for ``Grade.beyond_areas``: the
part of a price larger than the groups where the mistake shows (deducted from the total
only). A group whose checks failed is never "passed", whatever a mistake explains.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from conformance import tomlfile
from conformance.mistakes import AREAS

DEFAULT_RUBRIC = Path(__file__).with_name("default_rubric.toml")
VISIBILITIES = ("hidden", "after_due_date", "after_published", "visible")
PARTIAL_CREDIT = ("fraction", "all_or_nothing")
SKIP_POLICIES = ("neutral", "failed")
KNOWN_AREAS = AREAS  # conformance/mistakes.py: the one list of check areas
MISSING_MESSAGE = ("this check did not run for this submission (the run stopped early or the "
                   "candidate could not be loaded)")


class RubricError(Exception):
    """The rubric file is unusable; the message names the file and the key."""


@dataclass(frozen=True)
class Group:
    """Something that earns points: a check area, or a ``[[tests]]`` rule."""

    key: str  # area name, or "test:<match>"
    title: str
    points: float
    visibility: str
    partial_credit: str
    area: str | None = None  # set for areas
    match: str | None = None  # set for test rules


@dataclass(frozen=True)
class BugPrice:
    """A diagnosed mistake and what it costs (``[bugs.<key>]``)."""

    key: str
    title: str
    points: float
    family: str


@dataclass
class Rubric:
    name: str
    areas: list[Group]
    rules: list[Group]
    skipped: str
    visibility: str  # the results.json top-level visibility
    source: str  # where it was read from
    data: dict[str, Any] = field(repr=False, default_factory=dict)
    bugs: dict[str, BugPrice] = field(default_factory=dict)
    hide_hints: bool = False  # Gradescope: the summary and diagnoses only after the due date
    text: str = ""  # the rubric file as read (kept in the gradebook for the audit trail)

    @property
    def groups(self) -> list[Group]:
        return self.areas + self.rules

    @property
    def max_score(self) -> float:
        return float(sum(g.points for g in self.groups))

    @property
    def area_names(self) -> list[str]:
        return [g.area for g in self.areas if g.area]

    @property
    def hash(self) -> str:
        """Content hash of the parsed rubric: comments and layout do not change a grade."""
        return hashlib.sha256(json.dumps(self.data, sort_keys=True).encode()).hexdigest()[:16]

    def group_of(self, nodeid: str, area: str) -> Group | None:
        for rule in self.rules:
            if rule.match and fnmatch.fnmatchcase(nodeid, rule.match):
                return rule
        for group in self.areas:
            if group.area == area:
                return group
        return None


def _text(table: dict, key: str, where: str) -> str | None:
    value = table.get(key)
    if value is not None and not isinstance(value, str):
        raise RubricError(f"{where}: {key} must be a string, got {value!r}")
    return value


def _choice(table: dict, key: str, choices: tuple, where: str, default: str) -> str:
    value = table.get(key, default)
    if value not in choices:
        raise RubricError(f"{where}: {key} = {value!r}; choose one of {', '.join(choices)}")
    return value


def _points(table: dict, where: str) -> float:
    points = table.get("points")
    if isinstance(points, bool) or not isinstance(points, (int, float)) or not points >= 0:
        raise RubricError(f"{where}: points must be a number >= 0, got {points!r}")
    return float(points)


def parse_rubric(data: dict[str, Any], source: str = "<rubric>",
                 known_areas: Iterable[str] = KNOWN_AREAS) -> Rubric:
    """Validate a parsed TOML rubric; every problem is a RubricError naming the key."""
    known = set(known_areas)
    _refuse_unknown_top_keys(data, source)
    default_pc = _choice(data, "partial_credit", PARTIAL_CREDIT, source, "fraction")
    default_vis = _choice(data, "visibility", VISIBILITIES, source, "visible")
    areas = _parse_areas(data.get("areas"), source, known, default_vis, default_pc)
    rules = _parse_test_rules(data.get("tests", []), source, default_vis, default_pc)
    hide = _hide_hints(data, source)
    rubric = Rubric(
        name=_text(data, "name", source) or Path(source).stem, areas=areas, rules=rules,
        skipped=_choice(data, "skipped", SKIP_POLICIES, source, "neutral"),
        visibility=_choice(data, "results_visibility", VISIBILITIES, source, "visible"),
        source=source, data=data, bugs=_bug_prices(data.get("bugs", {}), source, data.get("bug_prices")),
        hide_hints=hide)
    _check_total(data.get("total"), rubric, source)
    return rubric


def _refuse_unknown_top_keys(data: dict[str, Any], source: str) -> None:
    allowed_top = {"name", "partial_credit", "skipped", "visibility", "results_visibility",
                   "areas", "tests", "total", "bugs", "bug_prices", "hide_hints_until_due"}
    unknown = sorted(set(data) - allowed_top)
    if unknown:
        raise RubricError(f"{source}: unknown key(s) {', '.join(unknown)} "
                          f"(allowed: {', '.join(sorted(allowed_top))})")


def _scored_group(table: dict, where: str, default_vis: str, default_pc: str, *, key: str,
                  title: str, area: str | None = None, match: str | None = None) -> Group:
    """A group from its table: title (else ``title``), points, visibility, partial credit,
    read in that order (the first bad one is the error)."""
    return Group(
        key=key, area=area, match=match, title=_text(table, "title", where) or title,
        points=_points(table, where),
        visibility=_choice(table, "visibility", VISIBILITIES, where, default_vis),
        partial_credit=_choice(table, "partial_credit", PARTIAL_CREDIT, where, default_pc))


def _parse_areas(areas_table: Any, source: str, known: set[str], default_vis: str,
                 default_pc: str) -> list[Group]:
    """The ``[areas.<name>]`` tables: one group per check area, at least one."""
    if not isinstance(areas_table, dict) or not areas_table:
        raise RubricError(f"{source}: needs an [areas.<name>] table per check area "
                          f"(areas: {', '.join(KNOWN_AREAS)})")
    areas = []
    for area, table in areas_table.items():
        where = f"{source}: [areas.{area}]"
        if area not in known:
            raise RubricError(f"{where}: not a check area of this suite "
                              f"(known: {', '.join(sorted(known))})")
        if not isinstance(table, dict):
            raise RubricError(f"{where}: must be a table with points = ...")
        extra = sorted(set(table) - {"points", "title", "visibility", "partial_credit"})
        if extra:
            raise RubricError(f"{where}: unknown key(s) {', '.join(extra)}")
        areas.append(_scored_group(table, where, default_vis, default_pc, key=area, area=area, title=area))
    return areas


def _parse_test_rules(tests: Any, source: str, default_vis: str, default_pc: str) -> list[Group]:
    """The ``[[tests]]`` tables: one group per rule, named by its match."""
    if not isinstance(tests, list):
        raise RubricError(f"{source}: tests must be an array of tables ([[tests]])")
    rules = []
    for i, table in enumerate(tests):
        where = f"{source}: [[tests]] #{i + 1}"
        if not isinstance(table, dict):
            raise RubricError(f"{where}: must be a table")
        extra = sorted(set(table) - {"match", "points", "title", "visibility", "partial_credit"})
        if extra:
            raise RubricError(f"{where}: unknown key(s) {', '.join(extra)}")
        match = _text(table, "match", where)
        if not match:
            raise RubricError(f"{where}: needs match = \"<test node id or glob>\"")
        rules.append(_scored_group(table, where, default_vis, default_pc, key=f"test:{match}",
                                   match=match, title=match))
    return rules


def _hide_hints(data: dict[str, Any], source: str) -> bool:
    hide = data.get("hide_hints_until_due", False)
    if not isinstance(hide, bool):
        raise RubricError(f"{source}: hide_hints_until_due must be true or false, got {hide!r}")
    return hide


def _check_total(total: Any, rubric: Rubric, source: str) -> None:
    """``total``, when given, must be what the groups' points add up to."""
    if total is not None and (isinstance(total, bool) or not isinstance(total, (int, float))
                              or abs(total - rubric.max_score) > 1e-9):
        raise RubricError(f"{source}: total = {total} but the points add up to {rubric.max_score:g}")


def _bug_prices(table: Any, source: str, defaults: Any = None) -> dict[str, BugPrice]:
    """[bugs.<key>] tables, over the catalogue's default prices when ``bug_prices =
    "catalogue"`` (conformance/mistakes.py), else alone."""
    from conformance.diagnosis import diagnosis_keys
    from conformance.mistakes import MISTAKES
    from conformance.summary import cause_text

    if not isinstance(table, dict):
        raise RubricError(f"{source}: bugs must be tables ([bugs.<key>] points = ...)")
    if defaults not in (None, "catalogue"):
        raise RubricError(f'{source}: bug_prices = {defaults!r}; the only value is "catalogue" '
                          "(the default prices of conformance/mistakes.py), or leave it out")
    known = diagnosis_keys()
    prices = {m.key: BugPrice(key=m.key, title=m.title or cause_text(m.key), points=float(m.price),
                              family=m.family or m.key)
              for m in MISTAKES} if defaults == "catalogue" else {}
    for key, entry in table.items():
        where = f"{source}: [bugs.{key}]"
        if key not in known:
            raise RubricError(f"{where}: not a diagnosis key of this suite (known: {', '.join(known)})")
        if not isinstance(entry, dict):
            raise RubricError(f"{where}: must be a table with points = ...")
        extra = sorted(set(entry) - {"points", "title", "family"})
        if extra:
            raise RubricError(f"{where}: unknown key(s) {', '.join(extra)}")
        prices[key] = BugPrice(key=key, title=_text(entry, "title", where) or cause_text(key),
                               points=_points(entry, where),
                               family=_text(entry, "family", where) or key)
    return prices


def load_rubric(path: Path | None = None) -> Rubric:
    path = Path(path) if path is not None else DEFAULT_RUBRIC
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RubricError(f"--rubric {path}: cannot read it ({exc.strerror or exc})") from None
    try:
        data = tomlfile.loads(text)
    except tomlfile.TOMLDecodeError as exc:
        raise RubricError(f"--rubric {path}: not valid TOML ({exc})") from None
    rubric = parse_rubric(data, str(path))
    rubric.text = text
    return rubric


# -- scoring ------------------------------------------------------------------------------


@dataclass
class GroupScore:
    group: Group
    score: float
    passed: list[dict] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)  # failed, errored or missing tests
    skipped: list[dict] = field(default_factory=list)
    explained: list[dict] = field(default_factory=list)  # failures a charged mistake explains
    note: str = ""  # why the group earned nothing, when no test explains it
    fallback: float = 0.0  # what its checks earn, the failures a charged mistake explains left out
    deductions: dict[str, float] = field(default_factory=dict)  # mistake key -> points taken here

    @property
    def max_score(self) -> float:
        return self.group.points

    @property
    def failing(self) -> list[dict]:
        """Every check of the group that did not pass, whether a charged mistake explains it or not."""
        return self.failed + self.explained

    @property
    def status(self) -> str:
        """"passed" only when no check failed and every point was earned."""
        full = self.score >= self.max_score - 1e-9
        return "passed" if full and not self.failing else "failed"


@dataclass
class BugCharge:
    """A priced mistake the evidence names in this submission: deducted once."""

    bug: BugPrice
    points: float  # deducted (0 for a family member charged through a pricier key)
    tests: list[str] = field(default_factory=list)  # node ids naming it
    taken: dict[str, float] = field(default_factory=dict)  # group key -> points taken from it
    beyond_areas: float = 0.0  # deducted from the total only: more than its groups held
    symptom_of: str = ""  # an uncharged key: the charged mistake it is a symptom of

    @property
    def below_zero(self) -> float:
        """The part of the price not deducted at all: the score stopped at 0."""
        return max(0.0, round(self.points - sum(self.taken.values()) - self.beyond_areas, 4))


@dataclass
class Grade:
    score: float
    max_score: float
    groups: list[GroupScore]
    charges: list[BugCharge] = field(default_factory=list)

    def area_scores(self) -> dict[str, float]:
        """Points earned per check area (charged mistakes taken out): with the rule groups and
        minus ``beyond_areas``, they add up to the score."""
        return {g.group.area: g.score for g in self.groups if g.group.area}

    @property
    def beyond_areas(self) -> float:
        """Points deducted from the total but from no group: prices above the points of the
        groups where their mistakes show (score = sum of group scores - this)."""
        return round(sum(c.beyond_areas for c in self.charges), 4)

    def deductions(self) -> dict[str, float]:
        return {c.bug.key: c.points for c in self.charges}


@dataclass(frozen=True)
class Baseline:
    """What the reference run did: every node id with its area, and which it skipped."""

    areas: dict[str, str]
    skipped: frozenset[str] = frozenset()

    @classmethod
    def from_tests(cls, tests: list[dict]) -> "Baseline":
        return cls(areas={t["nodeid"]: t["area"] for t in tests},
                   skipped=frozenset(t["nodeid"] for t in tests if t["outcome"] == "skipped"))


def neutral_skip(test: dict, baseline: Baseline | None) -> bool:
    """A skip the contract allows (see the module docstring): the suite recorded its kind as
    data (property "skip_kind"), never read from the reason's wording."""
    from conformance.evidence import SELF_DECLARED, SKIP_KINDS

    kind = (test.get("properties") or {}).get("skip_kind")
    if kind in SKIP_KINDS:
        return True
    if kind == SELF_DECLARED:  # a limit the submission's own declaration asked for: never neutral,
        return False           # with or without a reference run to compare with
    return baseline is None or test["nodeid"] in baseline.skipped


def score(rubric: Rubric, status: str, tests: list[dict], baseline: Baseline | None = None,
          status_message: str = "") -> Grade:
    """Points for one submission. ``tests`` are report records (nodeid, area, outcome, ...);
    ``baseline`` is the reference run (tests it ran count as failed when absent here; skips
    it shares are neutral). Pure and deterministic: the same inputs give the same grade."""
    by_group = _tests_by_group(rubric, tests)
    if status == "graded" and baseline:
        _add_missing_tests(rubric, by_group, baseline, tests)
    charges = _charges(rubric, by_group) if status == "graded" else []
    charged = {c.bug.key for c in charges}  # (symptoms included, at 0 points)
    waived = _waived_groups(rubric, by_group, charges)
    results = [GroupScore(group=group, score=0.0) for group in rubric.groups]
    for gs in results:
        group_tests = by_group[gs.group.key]
        _sort_outcomes(gs, group_tests, rubric.skipped, baseline, charged, gs.group.key in waived)
        _earn_fallback(gs, group_tests, status, status_message)
    total = round(max(0.0, sum(g.fallback for g in results) - sum(c.points for c in charges)), 4)
    _take_from_groups(charges, results, waived, total)
    return Grade(score=total, max_score=rubric.max_score, groups=results, charges=charges)


def _tests_by_group(rubric: Rubric, tests: list[dict]) -> dict[str, list[dict]]:
    """Each group's tests, in report order (a test no group claims scores nowhere)."""
    by_group: dict[str, list[dict]] = {g.key: [] for g in rubric.groups}
    for test in tests:
        group = rubric.group_of(test["nodeid"], test["area"])
        if group is not None:
            by_group[group.key].append(test)
    return by_group


def _add_missing_tests(rubric: Rubric, by_group: dict[str, list[dict]], baseline: Baseline,
                       tests: list[dict]) -> None:
    """A test the reference ran that this run lacks joins its group as "missing" (failed)."""
    seen = {test["nodeid"] for test in tests}
    for nodeid, area in sorted(baseline.areas.items()):
        if nodeid not in seen:
            group = rubric.group_of(nodeid, area)
            if group is not None:
                by_group[group.key].append({"nodeid": nodeid, "area": area, "outcome": "missing",
                                            "summary": MISSING_MESSAGE, "message": MISSING_MESSAGE})


def _waived_groups(rubric: Rubric, by_group: dict[str, list[dict]], charges: list[BugCharge]) -> set[str]:
    """The end-to-end groups whose failures are symptoms of the charged mistakes."""
    from conformance.diagnosis import function_of

    # An end-to-end group's failures are waived as symptoms only within what the mistakes of
    # its functions already cost: adding a cheap mistake on purpose can never raise a score.
    waived: set[str] = set()
    for group in rubric.groups:
        functions = END_TO_END_AREAS.get(group.area or "", ())
        budget = sum(c.points for c in charges if function_of(c.bug.key) in functions)
        budget -= sum(g.points for g in rubric.groups if g.key in waived
                      and set(END_TO_END_AREAS.get(g.area or "", ())) & set(functions))
        if functions and any(t["outcome"] in FAILING for t in by_group[group.key]) and group.points <= budget:
            waived.add(group.key)
    return waived


def _sort_outcomes(gs: GroupScore, tests: list[dict], skip_policy: str, baseline: Baseline | None,
                   charged: set[str], waived: bool) -> None:
    """File each of the group's tests as explained, passed, skipped (neutral) or failed."""
    for test in tests:
        # A failure is explained only by a mistake the suite found on that test (replay),
        # or as an end-to-end symptom within what its function's mistakes cost (waived).
        # (its own keys, or the mistakes whose replay on its inputs reproduces it)
        if test["outcome"] in FAILING and (charged & (set(diagnoses_of(test)) | set(consistent_of(test)))
                                           or waived):
            gs.explained.append(test)
        elif test["outcome"] == "passed":
            gs.passed.append(test)
        elif test["outcome"] == "skipped":
            if skip_policy == "neutral" and neutral_skip(test, baseline):
                gs.skipped.append(test)
            else:
                gs.failed.append({**test, "summary": f"skipped, which earns nothing here: "
                                  f"{test.get('skip_reason', '')}"})
        else:
            gs.failed.append(test)


def _earn_fallback(gs: GroupScore, tests: list[dict], status: str, status_message: str) -> None:
    """What the group's checks earn (``fallback``), or the note saying why they earn nothing."""
    counted = len(gs.passed) + len(gs.failed)
    if status != "graded":
        gs.note = status_message or f"not graded ({status})"
    elif not tests:
        gs.note = "no check of this group ran"
    elif counted == 0:
        gs.fallback = gs.group.points  # only neutral skips or explained failures
    elif gs.group.partial_credit == "fraction":
        gs.fallback = round(gs.group.points * len(gs.passed) / counted, 4)
    else:
        gs.fallback = gs.group.points if not gs.failed else 0.0


FAILING = ("failed", "error")
# Areas that exercise whole functions end to end (training on MNIST, timing backward): when a
# mistake of one of these functions is already charged, their failures are its symptoms, not a
# second mistake (one mistake costs once: a wrong backward also fails to train).
END_TO_END_AREAS = {"mnist": ("forward", "backward", "train"), "efficiency": ("backward",)}


def diagnoses_of(test: dict) -> list[str]:
    """The diagnosis keys the suite recorded on a test (property "diagnoses"); never parsed
    from the message, so rewording a message changes no grade."""
    keys = (test.get("properties") or {}).get("diagnoses") or []
    return [k for k in keys if isinstance(k, str)] if isinstance(keys, list) else []


def _charges(rubric: Rubric, by_group: dict[str, list[dict]]) -> list[BugCharge]:
    from conformance.diagnosis import GENERIC_KEYS, function_of

    found: dict[str, BugCharge] = {}
    failing = [t for tests in by_group.values() for t in tests if t["outcome"] in FAILING]
    for test in failing:
        for key in diagnoses_of(test):
            if key in rubric.bugs:
                charge = found.setdefault(key, BugCharge(bug=rubric.bugs[key], points=0.0))
                charge.tests.append(test["nodeid"])
    unexplained = _unexplained_generic(failing, GENERIC_KEYS, function_of,
                                       {key: bug.family for key, bug in rubric.bugs.items()})
    # Specific mistakes first, the family's priciest key pays. A generic finding about a
    # function with a named mistake is that mistake's symptom (listed, 0 points, its failures
    # explained) where the named mistake accounts for the failing call; where it does not (see
    # _unexplained_generic), the function costs at least the generic price: naming a cheap
    # mistake on purpose never makes a wrong backward cheaper than it is without it.
    ordered = sorted(found.values(), key=lambda c: (c.bug.key in GENERIC_KEYS, -c.bug.points, c.bug.key))
    named: dict[str, str] = {}  # function -> its first (priciest) specific mistake
    for charge in ordered:
        if charge.bug.key not in GENERIC_KEYS:
            named.setdefault(function_of(charge.bug.key) or charge.bug.key, charge.bug.key)
    families: dict[str, str] = {}  # family -> the key that pays for it
    specific_cost: dict[str, float] = {}  # function -> what its specific mistakes cost
    for charge in ordered:
        key = charge.bug.key
        function = GENERIC_KEYS.get(key)
        symptom_of = families.get(rubric.bugs[named[function]].family, named[function]) if function in named else ""
        if symptom_of and key not in unexplained:
            charge.symptom_of = symptom_of
        elif charge.bug.family in families:
            charge.symptom_of = families[charge.bug.family]
        elif function is None:
            families[charge.bug.family] = key
            charge.points = charge.bug.points
            specific_cost[function_of(key)] = specific_cost.get(function_of(key), 0.0) + charge.points
        else:
            families[charge.bug.family] = key
            charge.points = max(0.0, charge.bug.points - specific_cost.get(function, 0.0))
            if not charge.points:  # what the named mistakes cost already covers it
                charge.symptom_of = symptom_of
        charge.tests.sort()
    return ordered


def evidence_units(test: dict) -> list[tuple[list[str], list[str]]]:
    """(keys found, keys consistent with its generic findings) per set of inputs a test
    judged: a finding is explained only by what was found on the SAME inputs (replay is per
    example). Reports without typed evidence count as one unit (their keys and
    consistent_with)."""
    from conformance.evidence import findings_of

    findings = findings_of(test.get("properties"))
    if not findings:
        return [(diagnoses_of(test), consistent_of(test))]
    by_case: dict[str, tuple[list[str], list[str]]] = {}
    for finding in findings:
        keys, consistent = by_case.setdefault(finding.case, ([], []))
        keys.append(finding.key)
        consistent.extend(finding.consistent)
    return list(by_case.values())


def _unexplained_generic(failing: list[dict], generic_keys: dict[str, str], function_of: Any,
                         family_of: dict[str, str]) -> set[str]:
    """Generic keys (backward_wrong, backward_crash, ...) found on a failing test that no
    specific mistake of the same function accounts for, on the same inputs.

    A specific key accounts for a generic finding when it was found on the same inputs too, or
    when the suite's replay of it on those inputs reproduces the failure (it crashes, returns
    those shapes, or fits every gradient: the finding's "consistent" keys) and it is named
    somewhere from values (its family, on inputs without a crash or a structure failure). A
    key found on the same inputs accounts for a crash or a wrong structure only under that
    condition too: a crash's explanation is read from the exception's text, which the
    candidate controls, and a structure's from shapes the candidate chose.
    """
    def unjudged(keys: list[str]) -> bool:  # a crash or a wrong structure: no value was compared
        return any(k in generic_keys and not k.endswith("_wrong") for k in keys)

    units = [unit for test in failing for unit in evidence_units(test)]
    # Named from values: on inputs where the candidate's numbers were compared (a name read
    # from an exception's text or from shapes alone confirms nothing).
    confirmed = {family_of.get(key, key) for keys, _ in units for key in keys
                 if key not in generic_keys and not unjudged(keys)}
    out = set()
    for keys, consistent_keys in units:
        for key in keys:
            if key not in generic_keys:
                continue
            function = generic_keys[key]
            named_here = [k for k in keys if k not in generic_keys
                          and (key.endswith("_wrong") or family_of.get(k, k) in confirmed)]
            consistent = [k for k in consistent_keys if family_of.get(k, k) in confirmed]
            if not any(function_of(k) == function for k in named_here + consistent):
                out.add(key)
    return out


def consistent_of(test: dict) -> list[str]:
    """The catalogued mistakes the suite found consistent with a test's crash or structure
    failure (property "consistent_with"; see conformance/diagnosis.py)."""
    keys = (test.get("properties") or {}).get("consistent_with") or []
    return [k for k in keys if isinstance(k, str)] if isinstance(keys, list) else []


def _take_from_groups(charges: list[BugCharge], groups: list[GroupScore], waived: set[str],
                      total: float) -> None:
    """Show each charged mistake where it shows: its points are taken from the groups where a
    failing test names it (or one of its symptoms) and from the end-to-end groups its function's
    failures were waived in, in proportion to what they hold. The mistakes with the least room
    go first, so two mistakes sharing a group both fit when they can. What no such group holds
    is ``beyond_areas`` (down to a total of 0). The total itself is unchanged."""
    from conformance.diagnosis import function_of

    def shows_in(charge: BugCharge) -> list[GroupScore]:
        keys = {charge.bug.key} | {c.bug.key for c in charges if c.symptom_of == charge.bug.key}
        function = function_of(charge.bug.key)
        return [gs for gs in groups
                if any(keys & set(diagnoses_of(t)) for t in gs.explained)
                or (gs.group.key in waived and function in END_TO_END_AREAS.get(gs.group.area or "", ()))]

    held = {gs.group.key: gs.fallback for gs in groups}
    where = {c.bug.key: shows_in(c) for c in charges if c.points}
    for charge in sorted((c for c in charges if c.points),
                         key=lambda c: (sum(held[gs.group.key] for gs in where[c.bug.key]), c.bug.key)):
        shares = split_points(charge.points, {gs.group.key: held[gs.group.key] for gs in where[charge.bug.key]})
        for gs in where[charge.bug.key]:
            if shares.get(gs.group.key):
                charge.taken[gs.group.key] = gs.deductions[charge.bug.key] = shares[gs.group.key]
                held[gs.group.key] = round(held[gs.group.key] - shares[gs.group.key], 4)
    for gs in groups:
        gs.score = held[gs.group.key]
    left = round(sum(held.values()) - total, 4)
    for charge in charges:
        charge.beyond_areas = max(0.0, min(round(charge.points - sum(charge.taken.values()), 4), left))
        left = round(left - charge.beyond_areas, 4)


POINT_UNITS = 10_000  # scores are kept to 4 decimals: split in whole units, so shares add up exactly
CENT = 100  # in units


def split_points(points: float, holdings: dict[str, float]) -> dict[str, float]:
    """Split ``points`` over the holders in proportion to what each holds, never more than it
    holds (all of it when the points exceed the total), by largest remainder: the shares add up
    exactly, ties go to the first key in sorted order. In whole cents when every holding is."""
    held = {key: round(value * POINT_UNITS) for key, value in holdings.items() if value > 0}
    room = sum(held.values())
    take = min(round(points * POINT_UNITS), room)
    if take <= 0:
        return {}
    step = CENT if take % CENT == 0 and all(u % CENT == 0 for u in held.values()) else 1
    shares = {key: take * units // room // step * step for key, units in held.items()}
    remainder = {key: take * held[key] - shares[key] * room for key in held}
    for key in sorted(held, key=lambda k: (-remainder[k], k))[:(take - sum(shares.values())) // step]:
        shares[key] += step
    return {key: units / POINT_UNITS for key, units in shares.items() if units}
