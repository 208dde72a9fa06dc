"""Turn stored test results into what a student and an instructor read.

Diagnoses are data: the suite records on each failing test the keys of the mistakes its
evidence names (property "diagnoses"), and this module turns keys into sentences
(``conformance.summary.cause_text``, or the rubric's title). No English message is parsed,
so rewording a message changes neither a grade nor a count in the class overview.
"""

from __future__ import annotations

import math
from typing import Any

from conformance.grade.score.rubric import BugCharge, Grade, GroupScore
from conformance.grade.score.rubric import diagnoses_of as diagnosis_keys

OUTPUT_FAILURE_CHARS = 4000  # per failing check in a Gradescope output
MAX_LISTED_FAILURES = 15


def cause(key: str, grade: Grade | None = None) -> str:
    """One sentence for a diagnosis key: the rubric's title when it prices it, else the suite's."""
    if grade is not None:
        for charge in grade.charges:
            if charge.bug.key == key:
                return charge.bug.title
    from conformance.summary import cause_text

    return cause_text(key)


def diagnoses_of(test: dict[str, Any]) -> list[str]:
    """The sentences of the mistakes the suite diagnosed in one test."""
    return [cause(key) for key in diagnosis_keys(test)]


def group_label(gs: GroupScore) -> str:
    """A group as a reader knows it: its area, or a test rule's title."""
    return gs.group.area or gs.group.title


def deduction_text(charge: BugCharge, grade: Grade) -> str:
    """A charged mistake's points and the groups they were taken from:
    "-40 points, charged once: interface -6, gradients -14, ..."."""
    labels = {gs.group.key: group_label(gs) for gs in grade.groups}
    parts = [f"{labels.get(key, key)} -{points:g}" for key, points in charge.taken.items()]
    if charge.beyond_areas:
        parts.append(f"-{charge.beyond_areas:g} from the total beyond those areas (its price is more "
                     "than they hold)")
    if charge.below_zero:
        parts.append(f"{charge.below_zero:g} not deducted (the score stops at 0)")
    return f"-{charge.points:g} points, charged once: {', '.join(parts)}"


def explained_by(gs: GroupScore, grade: Grade) -> list[str]:
    """The charged mistakes behind a group's explained failures: those that took points
    from it, and those (or the mistake they are a symptom of) its failures name."""
    named = {key for test in gs.explained for key in diagnosis_keys(test)}
    keys = dict.fromkeys(gs.deductions)
    for charge in grade.charges:
        if charge.bug.key in named:
            keys.setdefault(charge.symptom_of or charge.bug.key)
    return list(keys)


def uncharged_text(charge: BugCharge) -> str:
    """Why a named key costs nothing: a symptom of a charged mistake, or priced 0."""
    if charge.symptom_of:
        return f"not charged: a symptom of {charge.symptom_of}"
    return "not charged (the rubric prices it 0)"


def lead_lines(grade: Grade, run_summary: dict[str, Any] | None) -> list[str]:
    """What a student reads first: the mistakes charged (what to change) and where their
    points were taken, then the suite's end-of-run summary (areas, root causes with the line
    to change, patterns)."""
    lines = []
    charged = [c for c in grade.charges if c.points]
    if charged:
        lines.append("What to change (each mistake is charged once, from the areas where it shows):")
        for charge in charged:
            lines.append(f"  - {charge.bug.title} [{deduction_text(charge, grade)}]")
    symptoms = [c for c in grade.charges if not c.points]
    if symptoms:
        lines.append("  Also seen: " + "; ".join(f"{c.bug.title} ({uncharged_text(c)})"
                                                for c in symptoms))
    summary_lines = (run_summary or {}).get("lines") or []
    if summary_lines:
        if lines:
            lines.append("")
        lines += [str(line) for line in summary_lines if isinstance(line, str)]
    return lines


def short_name(nodeid: str) -> str:
    """``conformance/test_gradients.py::test_x[case]`` -> ``test_gradients.py::test_x[case]``."""
    return nodeid.rsplit("/", 1)[-1]


def _indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


def failure_text(test: dict[str, Any], limit: int = OUTPUT_FAILURE_CHARS) -> str:
    """The part of a failure worth showing: the assertion/exception text (which carries the
    suite's explanation), not pytest's traceback of the test's own code."""
    text = (test.get("summary") or test.get("message") or "").strip()
    if len(text) > limit:
        text = text[:limit] + "\n[... cut ...]"
    return text


def group_output(gs: GroupScore, details: bool = True, grade: Grade | None = None) -> str:
    """Gradescope ``output`` of one scored group: points and counts (every failing check,
    those a charged mistake explains too), the points a charged mistake took here (named
    with ``details``), then (with ``details``) each failing check with its message and
    diagnosis, skipped checks with their reason."""
    lines = [f"{gs.group.title}: {gs.score:g}/{gs.max_score:g} points"]
    if gs.note:
        lines.append(gs.note)
    failing = gs.failing
    if gs.passed or failing or gs.skipped:
        lines.append(f"{len(gs.passed)} of {len(gs.passed) + len(failing)} checks passed, "
                     f"{len(failing)} failed" + (f", {len(gs.skipped)} skipped" if gs.skipped else ""))
    if gs.explained:
        lines.append(f"{len(gs.explained)} of these failures come from a diagnosed mistake, charged "
                     "once for all the areas where it shows:")
        for key, points in gs.deductions.items():
            what = f"{cause(key, grade)} ({key})" if details else "a diagnosed mistake"
            lines.append(f"  -{points:g} points here for {what}")
        if not gs.deductions:
            lines.append("  (none of its points were taken here)")
    if not details:
        return "\n".join(lines)
    for test in failing[:MAX_LISTED_FAILURES]:
        lines.append("")
        lines.append(f"FAILED {short_name(test['nodeid'])}")
        found = diagnoses_of(test)
        if found:
            lines.append("  diagnosis: " + "; ".join(found))
        lines.append(_indent(failure_text(test)))
    if len(failing) > MAX_LISTED_FAILURES:
        lines.append(f"\n... and {len(failing) - MAX_LISTED_FAILURES} more failing checks")
    for test in gs.skipped:
        lines.append(f"SKIPPED {short_name(test['nodeid'])}: {test.get('skip_reason', '')}")
    return "\n".join(lines)


def curves(tests: list[dict[str, Any]]) -> list[tuple[str, list[float], list[float]]]:
    """Learning curves recorded by tests with ``record_property``: a list of numbers, or a
    mapping with "x"/"y" (or "epoch"/"accuracy" ...) lists. Anything else is ignored."""
    found = []
    for test in tests:
        for name, value in sorted((test.get("properties") or {}).items()):
            if name in ("mnist_accuracy", "mnist_threshold"):
                continue  # single numbers, shown by mnist_results
            xs = ys = None
            if _numbers(value) and len(value) >= 2:
                ys, xs = value, list(range(1, len(value) + 1))
            elif isinstance(value, dict):
                lists = {k: v for k, v in value.items() if _numbers(v)}
                y_key = next((k for k in ("y", "accuracy", "acc", "test_accuracy", "loss")
                              if k in lists), None)
                x_key = next((k for k in ("x", "epoch", "epochs", "step", "steps", "batch")
                              if k in lists), None)
                if y_key:
                    ys = lists[y_key]
                    xs = lists[x_key] if x_key and len(lists[x_key]) == len(ys) else \
                        list(range(1, len(ys) + 1))
            if ys and len(ys) >= 1:
                found.append((f"{short_name(test['nodeid'])}: {name}", xs, ys))
    return found


def mnist_results(tests: list[dict[str, Any]]) -> list[tuple[str, float, float | None]]:
    """(check, accuracy, threshold) of every test that recorded ``mnist_accuracy``."""
    found = []
    for test in tests:
        props = test.get("properties") or {}
        acc, threshold = props.get("mnist_accuracy"), props.get("mnist_threshold")
        if _numbers([acc]):
            found.append((short_name(test["nodeid"]), float(acc),
                          float(threshold) if _numbers([threshold]) else None))
    return found


def _numbers(value: Any) -> bool:
    return (isinstance(value, list) and bool(value) and len(value) <= 100000
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                    for v in value))
