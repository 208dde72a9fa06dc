"""Turn stored test results into what a student and an instructor read.

Diagnoses are data: the suite records on each failing test the keys of the mistakes its
evidence names (property "diagnoses"), and this module turns keys into sentences
(``conformance.summary.cause_text``, or the rubric's title). No English message is parsed,
so rewording a message changes neither a grade nor a count in the class overview.
"""

from __future__ import annotations

import math
from typing import Any

from tools.grade.rubric import Grade, GroupScore
from tools.grade.rubric import diagnoses_of as diagnosis_keys

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


def lead_lines(grade: Grade, run_summary: dict[str, Any] | None) -> list[str]:
    """What a student reads first: the mistakes charged (what to change), then the suite's
    end-of-run summary (areas, root causes with the line to change, patterns)."""
    lines = []
    charged = [c for c in grade.charges if c.points]
    if charged:
        lines.append("What to change (each mistake is charged once):")
        for charge in charged:
            lines.append(f"  - {charge.bug.title} [-{charge.points:g} points; seen in "
                         f"{', '.join(charge.areas)}]")
    symptoms = [c.bug.title for c in grade.charges if not c.points]
    if symptoms:
        lines.append("  Also seen, as symptoms of the mistakes above (not charged): "
                     + "; ".join(symptoms))
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


def group_output(gs: GroupScore, details: bool = True) -> str:
    """Gradescope ``output`` of one scored group: counts, then (with ``details``) each failing
    check with its message and diagnosis, skipped checks with their reason."""
    lines = [f"{gs.group.title}: {gs.score:g}/{gs.max_score:g} points"]
    if gs.note:
        lines.append(gs.note)
    counted = len(gs.passed) + len(gs.failed)
    if counted or gs.skipped or gs.explained:
        lines.append(f"{len(gs.passed)} of {counted} checks passed"
                     + (f", {len(gs.skipped)} skipped" if gs.skipped else "")
                     + (f", {len(gs.explained)} failing because of a mistake charged above (not "
                        "counted again here)" if gs.explained else ""))
    if not details:
        return "\n".join(lines)
    for test in (gs.failed + gs.explained)[:MAX_LISTED_FAILURES]:
        lines.append("")
        lines.append(f"FAILED {short_name(test['nodeid'])}")
        found = diagnoses_of(test)
        if found:
            lines.append("  diagnosis: " + "; ".join(found))
        lines.append(_indent(failure_text(test)))
    if len(gs.failed) + len(gs.explained) > MAX_LISTED_FAILURES:
        lines.append(f"\n... and {len(gs.failed) + len(gs.explained) - MAX_LISTED_FAILURES} more failing checks")
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
