"""Turn stored test results into what a student and an instructor read.

The suite's failure messages end with a diagnosis when a known bug matches
("... your gradients equal those of an implementation that forgets the 1/B ...").
``diagnoses`` pulls those sentences out so the class overview can count them.
"""

from __future__ import annotations

import math
import re
from typing import Any

from tools.grade.rubric import GroupScore

# Sentences of the suite's messages that name a diagnosed bug (conformance/diagnosis.py and
# the relu_index/stability messages). Group 1 is the bug's description.
DIAGNOSIS_PATTERNS = [
    re.compile(r"equals? those of (?:an? )?(?:implementation|code|version) (?:that|which) (.+)",
               re.IGNORECASE),
    re.compile(r"(?:this is )?the (?:typical )?symptom of (.+)", re.IGNORECASE),
    re.compile(r"^\s*diagnos(?:is|ed)\s*:\s*(.+)", re.IGNORECASE),
    re.compile(r"missing guard\s*:\s*(.+)", re.IGNORECASE),
]
# Where the bug's name ends and the explanation (line pattern, shapes) begins.
DIAGNOSIS_END = re.compile(r": | \(`|\.$|\. ")
MAX_DIAGNOSIS_CHARS = 160
OUTPUT_FAILURE_CHARS = 4000  # per failing check in a Gradescope output
MAX_LISTED_FAILURES = 15


def _clean_diagnosis(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    end = DIAGNOSIS_END.search(text)
    if end:
        text = text[:end.start()]
    return text.strip().rstrip(".:;,")[:MAX_DIAGNOSIS_CHARS]


def diagnoses(message: str) -> list[str]:
    """The diagnosed bugs named in one failure message, in order, without duplicates."""
    found: list[str] = []
    for line in message.splitlines():
        for pattern in DIAGNOSIS_PATTERNS:
            match = pattern.search(line)
            if match:
                text = _clean_diagnosis(match.group(1))
                if text and text not in found:
                    found.append(text)
                break
    return found


def diagnoses_of(test: dict[str, Any]) -> list[str]:
    return diagnoses(test.get("message") or test.get("summary") or "")


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


def group_output(gs: GroupScore) -> str:
    """Gradescope ``output`` of one scored group: counts, each failing check with its
    message and diagnosis, skipped checks with their reason."""
    lines = [f"{gs.group.title}: {gs.score:g}/{gs.max_score:g} points"]
    if gs.note:
        lines.append(gs.note)
    counted = len(gs.passed) + len(gs.failed)
    if counted or gs.skipped:
        lines.append(f"{len(gs.passed)} of {counted} checks passed"
                     + (f", {len(gs.skipped)} skipped" if gs.skipped else ""))
    for test in gs.failed[:MAX_LISTED_FAILURES]:
        lines.append("")
        lines.append(f"FAILED {short_name(test['nodeid'])}")
        found = diagnoses_of(test)
        if found:
            lines.append("  diagnosis: " + "; ".join(found))
        lines.append(_indent(failure_text(test)))
    if len(gs.failed) > MAX_LISTED_FAILURES:
        lines.append(f"\n... and {len(gs.failed) - MAX_LISTED_FAILURES} more failing checks")
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
