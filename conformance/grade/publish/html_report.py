"""Self-contained HTML report: a staff-only class overview and one page per submission.

Where they go: ``OUT/staff/index.html`` (the class: every student's name and score, the
mistakes counted once per student with links, the similarity report) is for staff only;
``OUT/submissions/<slug>/report.html`` sits next to that student's results.json and can be
handed out as is: it shows this submission's data only (no link to the overview or to another
student) and nothing that varies between two runs of the same bytes, so it is byte-identical
across runs.

The pages open from disk with no server and no network: plots are PNG data URIs drawn with
matplotlib, styles are inline, there is no script, and a Content-Security-Policy forbids
loading anything else. Every piece of submission-derived text (names, messages, output) is
HTML-escaped: a submission can put markup in its file name or its exception messages.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import statistics
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from conformance.report import MEASUREMENT_PROPERTIES
from conformance.grade.score.feedback import (
    cause,
    curves,
    deduction_text,
    explained_by,
    failure_text,
    mnist_results,
    short_name,
    uncharged_text,
)
from conformance.grade.publish.outputs import GradedSubmission, message_line, student_notes, write_atomic
from conformance.grade.score.rubric import Grade, GroupScore, Rubric

if TYPE_CHECKING:  # imported where it runs: only a report with a similarity section needs it
    from conformance.grade.score.similarity import SimilarityReport
from conformance.grade.score.rubric import diagnoses_of as diagnosis_keys
from conformance.grade.run.jobs import STATUS_HELP
from conformance.grade.intake.sanitize import html_escape as escape  # control/bidi characters escaped too

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:70em;
color:#222;padding:0 1em}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;
text-align:left;vertical-align:top}th{background:#f3f3f3}td.num{text-align:right}
.graded{color:#176f2c}.bad{color:#b00020;font-weight:600}
pre{background:#f7f7f7;border:1px solid #e3e3e3;padding:.6em;white-space:pre-wrap;
overflow-wrap:anywhere;max-height:30em;overflow:auto}
img{max-width:100%;height:auto}.muted{color:#666;font-size:.9em}
"""
MAX_TABLE_ROWS = 2000
MAX_PAGE_FAILURES = 40
STAFF_DIR = "staff"
STUDENT_PAGE = "report.html"  # in OUT/submissions/<slug>/
PAGE_VERSION = 5  # bump when the page layout changes, so existing pages are redrawn


def _page(title: str, body: str, key: str = "") -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            + (f"<meta name=\"grade-key\" content=\"{key}\">" if key else "") +
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">"
            "<meta name=\"referrer\" content=\"no-referrer\">"
            f"<title>{escape(title)}</title><style>{STYLE}</style></head>\n"
            f"<body>\n{body}\n</body></html>\n")


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _img(uri: str | None, alt: str) -> str:
    if uri is None:
        return f"<p class=\"muted\">({escape(alt)}: plot unavailable, install matplotlib)</p>"
    return f"<img src=\"{uri}\" alt=\"{escape(alt)}\">"


def histogram(scores: list[float], max_score: float) -> str | None:
    plt = _pyplot()
    if plt is None or not scores:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 2.8))
    bins = [max_score * i / 10 for i in range(11)] if max_score > 0 else 10
    ax.hist(scores, bins=bins, color="#3b6ea8", edgecolor="white")
    ax.set_xlabel("score")
    ax.set_ylabel("submissions")
    ax.set_title("Score distribution")
    ax.yaxis.get_major_locator().set_params(integer=True)
    return _png(fig)


def area_bars(names: list[str], rates: list[float]) -> str | None:
    plt = _pyplot()
    if plt is None or not names:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 0.45 * len(names) + 0.8))
    ax.barh(names[::-1], [100 * r for r in rates[::-1]], color="#5a9e6f")
    ax.set_xlim(0, 100)
    ax.set_xlabel("% of graded submissions with no failing check in the area")
    return _png(fig)


def curve_plot(series: list[tuple[str, list[float], list[float]]]) -> str | None:
    plt = _pyplot()
    if plt is None or not series:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 3))
    for label, xs, ys in series:
        ax.plot(xs, ys, marker="o", markersize=3, label=label[:60])
    ax.set_xlabel("epoch / step")
    ax.set_title("MNIST learning curve recorded by the suite")
    ax.legend(fontsize=7)
    return _png(fig)


def mnist_bars(results: list[tuple[str, float, float | None]]) -> str | None:
    plt = _pyplot()
    if plt is None or not results:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 0.5 * len(results) + 1.0))
    labels = [name.split("::")[-1][:50] for name, _, _ in results]
    ax.barh(labels, [acc for _, acc, _ in results], color="#3b6ea8")
    for i, (_, _, threshold) in enumerate(results):
        if threshold is not None:
            ax.plot([threshold, threshold], [i - 0.4, i + 0.4], color="#b00020", linewidth=2)
    ax.set_xlim(0, 1)
    ax.set_xlabel("MNIST test accuracy (red: the pass threshold)")
    return _png(fig)


def mnist_histogram(accuracies: list[float]) -> str | None:
    plt = _pyplot()
    if plt is None or not accuracies:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 2.6))
    ax.hist(accuracies, bins=[i / 20 for i in range(21)], color="#3b6ea8", edgecolor="white")
    ax.set_xlabel("MNIST test accuracy reached by the suite's SGD loop with the submission's backward")
    ax.set_ylabel("submissions")
    ax.yaxis.get_major_locator().set_params(integer=True)
    return _png(fig)


def _num(value: float) -> str:
    """Points as people read them: 15, 7.5, 32.29 (the CSV keeps full precision)."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _status_html(status: str) -> str:
    css = "graded" if status == "graded" else "bad"
    return f"<span class=\"{css}\">{escape(status)}</span>"


def _why_html(sub: GradedSubmission) -> str:
    """Why a submission was not graded, in one line under its status (the staff table)."""
    why = message_line(sub.message) if sub.status != "graded" else ""
    return f"<br><small>{escape(why[:300])}</small>" if why else ""


SANDBOX_HELP = {
    "engaged": "the candidate ran in private namespaces as an unprivileged user, with resource limits",
    "degraded": "resource limits only: no private file system, no privilege drop",
    "off": "no sandbox (asked for with --isolate-sandbox off, or --no-isolate)",
    "unknown": "not recorded (the run did not start, or an older suite did not report it)",
}


def _sandbox_html(state: str) -> str:
    css = "graded" if state == "engaged" else "bad" if state in ("degraded", "off") else "muted"
    return f"<span class=\"{css}\">{escape(state)}</span>"


CHARGED, UNPRICED, UNCHARGED = "charged", "unpriced", "uncharged"


def common_diagnoses(subs: Iterable[GradedSubmission]) -> dict[tuple[str, str], list[GradedSubmission]]:
    """Each diagnosed mistake (by key, so one bug is one row whatever its wording) with how it
    counted (``charged``, ``unpriced``: its failures fell back to the areas, or ``uncharged``:
    a symptom of a charged mistake, or priced 0) and the submissions it was found in (each
    once); charged and unpriced first, most common first."""
    found: dict[tuple[str, str], list[GradedSubmission]] = {}
    for sub in subs:
        charges = {c.bug.key: c for c in sub.grade.charges}
        keys = {key for test in sub.tests if test["outcome"] in ("failed", "error")
                for key in diagnosis_keys(test)}
        for key in sorted(keys):
            role = UNPRICED if key not in charges else CHARGED if charges[key].points else UNCHARGED
            found.setdefault((key, role), []).append(sub)
    return dict(sorted(found.items(), key=lambda kv: (kv[0][1] == UNCHARGED, -len(kv[1]), kv[0])))


def student_href(sub: GradedSubmission) -> str:
    """The student page as linked from OUT/staff/index.html."""
    return f"../submissions/{sub.slug}/{STUDENT_PAGE}"


def overview(subs: list[GradedSubmission], title: str = "Grading report (staff only)",
             similarity: SimilarityReport | None = None) -> str:
    if not subs:
        return _page(title, f"<h1>{escape(title)}</h1><p>No submissions.</p>")
    rubric = subs[0].rubric
    graded = [s for s in subs if s.status == "graded"]
    # The statistics count scored submissions only: not-gradable entries (no score) and grader
    # errors (no grade) are listed apart, not averaged in as zeros.
    scored = [s for s in subs if s.scored]
    statuses = Counter(s.status for s in subs)
    parts = [f"<h1>{escape(title)}</h1>", _class_summary(subs, scored, statuses),
             "<h2>Scores</h2>", _img(histogram([s.score for s in scored], rubric.max_score), "score histogram")]
    parts += _not_gradable_section(subs)
    parts += _areas_section(rubric, graded, scored)
    parts += _class_mnist_section(subs)
    parts += _diagnoses_section(subs, rubric)
    if similarity is not None:
        parts.append(similarity_section(similarity))
    parts += _overrides_section(subs)
    if statuses.get("error"):
        parts.insert(1, _grader_errors_note(statuses["error"]))
    parts += _submissions_section(subs, rubric)
    return _page(title, "\n".join(parts))


def _class_summary(subs: list[GradedSubmission], scored: list[GradedSubmission], statuses: Counter[str]) -> str:
    """The opening paragraph: counts per status, mean and median score, versions, sandboxes."""
    rubric = subs[0].rubric
    scores = [s.score for s in scored]
    sandboxes = Counter(s.sandbox for s in subs if s.ran)  # grades.csv: blank for entries never run
    stats = (f"Mean score {statistics.mean(scores):.2f} / {rubric.max_score:g}, median "
             f"{statistics.median(scores):.2f} (over the {len(scored)} scored)" if scores else "No score yet")
    return (f"<p>{len(subs)} submissions; "
            + ", ".join(f"{escape(k)}: {v}" for k, v in sorted(statuses.items()))
            + f".<br>{stats}. Suite version {escape(subs[0].suite_version)}, "
            f"rubric {escape(rubric.name)} ({escape(rubric.hash)}).<br>Sandbox of the runs: "
            + (", ".join(f"{_sandbox_html(k)}: {v}" for k, v in sorted(sandboxes.items())) or "none ran")
            + ".</p>")


def _not_gradable_section(subs: list[GradedSubmission]) -> list[str]:
    """The entries never run and not overridden: listed apart, outside the statistics."""
    apart = [s for s in subs if not s.ran and s.override is None]
    if not apart:
        return []
    return ["<h2>Not gradable (no score, not in the statistics)</h2>",
            "<p class=\"muted\">Entries that are not a submission the suite can judge; whether "
            "one is a 0 is yours to decide (--override NAME=POINTS,REASON).</p><table>"
            "<tr><th>entry</th><th>status</th><th>why</th></tr>",
            *(f"<tr><td>{escape(s.name)}</td><td>{_status_html(s.status)}</td>"
              f"<td>{escape(message_line(s.message))}</td></tr>" for s in apart), "</table>"]


def _areas_section(rubric: Rubric, graded: list[GradedSubmission], scored: list[GradedSubmission]) -> list[str]:
    """Pass rate and mean points per check area: a bar chart and a table."""
    names, rates, rows = [], [], []
    for group in rubric.groups:
        # "passed" = no failing check, whether or not a charged mistake explains the failures.
        full = sum(1 for s in graded for g in s.grade.groups
                   if g.group.key == group.key and g.status == "passed")
        mean = (statistics.mean(g.score for s in scored for g in s.grade.groups
                                if g.group.key == group.key) if scored else 0.0)
        rate = full / len(graded) if graded else 0.0
        names.append(group.area or group.title[:30])
        rates.append(rate)
        rows.append(f"<tr><td>{escape(group.area or group.key)}</td><td>{escape(group.title)}</td>"
                    f"<td class=\"num\">{group.points:g}</td><td class=\"num\">{100 * rate:.0f}%</td>"
                    f"<td class=\"num\">{mean:.2f}</td></tr>")
    return ["<h2>Pass rate per check area</h2>", _img(area_bars(names, rates), "pass rate per area"),
            "<table><tr><th>area</th><th>what</th><th>points</th><th>graded submissions "
            "with no failing check</th><th>mean points earned (all)</th></tr>", *rows, "</table>"]


def _class_mnist_section(subs: list[GradedSubmission]) -> list[str]:
    """The histogram of the accuracies the suite's SGD loop reached, when any was recorded."""
    suite_loop = [acc for s in subs for name, acc, _ in mnist_results(s.tests) if "sgd_loop" in name]
    if not suite_loop:
        return []
    return ["<h2>MNIST quick check</h2>", _img(mnist_histogram(suite_loop), "MNIST accuracy histogram")]


def _diagnoses_section(subs: list[GradedSubmission], rubric: Rubric) -> list[str]:
    """Each diagnosed mistake once, with its price and who made it (the first 60 mistakes)."""
    diag = common_diagnoses(subs)
    parts = ["<h2>Diagnosed mistakes</h2>"]
    if not diag:
        parts.append("<p class=\"muted\">No failure carried a diagnosis.</p>")
        return parts
    parts.append("<table><tr><th>mistake</th><th>key</th><th>points</th><th>submissions</th>"
                 "<th>who</th></tr>")
    parts += [_diagnosis_row(key, role, who, rubric) for (key, role), who in list(diag.items())[:60]]
    parts.append("</table>")
    return parts


def _diagnosis_row(key: str, role: str, who: list[GradedSubmission], rubric: Rubric) -> str:
    """One mistake's row: its title, key, how it counted and links to the first 40 pages."""
    price = rubric.bugs.get(key)
    links = ", ".join(f"<a href=\"{escape(student_href(s))}\">{escape(s.name)}</a>"
                      + (f" ({escape(_uncharged(s, key))})" if role == UNCHARGED else "")
                      for s in who[:40]) + (" ..." if len(who) > 40 else "")
    points = {CHARGED: f"-{_num(price.points)}" if price else "",
              UNPRICED: "area fallback", UNCHARGED: "not charged"}[role]
    return (f"<tr><td>{escape(price.title if price else cause(key))}</td>"
            f"<td>{escape(key)}</td><td class=\"num\">{points}</td>"
            f"<td class=\"num\">{len(who)}</td><td>{links}</td></tr>")


def _overrides_section(subs: list[GradedSubmission]) -> list[str]:
    """The scores an instructor set by hand, next to what the rubric gave."""
    overridden = [(s, s.override) for s in subs if s.override is not None]  # (with it: not None)
    if not overridden:
        return []
    return ["<h2>Manual overrides</h2><table><tr><th>submission</th><th>rubric score</th>"
            "<th>score</th><th>reason</th></tr>",
            *(f"<tr><td>{escape(s.name)}</td><td class=\"num\">{_num(override.computed)}</td>"
              f"<td class=\"num\">{_num(override.score)}</td><td>{escape(override.reason)}</td></tr>"
              for s, override in overridden),
            "</table>"]


def _grader_errors_note(errors: int) -> str:
    """The warning under the title when the grader itself failed on some submissions."""
    return (f"<p class=\"bad\">{errors} submission(s) ended in a grader error "
            "(the grader or its environment failed, not the student): no score was given; "
            "run the same command again to retry them.</p>")


def _submissions_section(subs: list[GradedSubmission], rubric: Rubric) -> list[str]:
    """The table of every submission (the first MAX_TABLE_ROWS): status, sandbox, points per area."""
    beyond = any(sub.grade.beyond_areas for sub in subs)  # a column only when a price needs it
    parts = ["<h2>Submissions</h2>",
             "<p class=\"muted\">Area columns: the points earned there, each charged mistake's "
             "points taken from the areas where it shows; they add up to the score"
             + (" minus the <i>beyond areas</i> column (prices larger than those areas)" if beyond else "")
             + " (* an instructor's override).</p>",
             "<table><tr><th>submission</th><th>status</th><th>sandbox</th><th>score</th>"
             + "".join(f"<th>{escape(g.area or g.key)}</th>" for g in rubric.groups)
             + ("<th>beyond areas</th>" if beyond else "") + "</tr>"]
    parts += [_submission_row(sub, beyond) for sub in subs[:MAX_TABLE_ROWS]]
    parts.append("</table>")
    return parts


def _submission_row(sub: GradedSubmission, beyond: bool) -> str:
    """One submission's row of the staff table, linking to its page."""
    # As grades.csv: an entry never run has no sandbox and no points (blank cells).
    cells = "".join(f"<td class=\"num\">{_num(g.score) if sub.ran else ''}</td>" for g in sub.grade.groups)
    if beyond:
        cells += f"<td class=\"num\">{'-' + _num(sub.grade.beyond_areas) if sub.ran else ''}</td>"
    score = _num(sub.score) if sub.ran or sub.override else "no score"
    return (f"<tr><td><a href=\"{escape(student_href(sub))}\">{escape(sub.name)}</a></td>"
            f"<td>{_status_html(sub.status)}{_why_html(sub)}</td>"
            f"<td>{_sandbox_html(sub.sandbox) if sub.ran else 'not run'}</td>"
            f"<td class=\"num\">{score}{'*' if sub.override else ''}</td>"
            f"{cells}</tr>")


def _uncharged(sub: GradedSubmission, key: str) -> str:
    return uncharged_text(next(c for c in sub.grade.charges if c.bug.key == key))


def similarity_section(report: SimilarityReport) -> str:
    """The flagged pairs, linking to the side-by-side pages in OUT/staff/similarity/."""
    from conformance.grade.score.similarity import pair_page_name

    parts = ["<h2>Similar submissions</h2>",
             (f"<p>{report.compared} submissions compared (template and textbook code excluded); "
              f"{len(report.pairs)} pairs at or above {report.threshold:.2f}. "
              "<a href=\"similarity/index.html\">similarity report</a></p>")]
    if report.pairs:
        parts.append("<table><tr><th>pair</th><th>score</th></tr>")
        parts += [f"<tr><td><a href=\"similarity/{pair_page_name(i)}\">{escape(p.a)} ~ {escape(p.b)}"
                  f"</a></td><td class=\"num\">{p.score:.2f}</td></tr>"
                  for i, p in enumerate(report.pairs, 1)]
        parts.append("</table>")
    if report.textbook_copies:
        parts.append("<p>Copies of the textbook section: " + ", ".join(
            f"{escape(name)} ({share:.0%})" for name, share in report.textbook_copies) + "</p>")
    return "\n".join(parts)


def submission_page(sub: GradedSubmission) -> str:
    """The page a student can be given: what is wrong first, then the details; this
    submission's data only, nothing that differs between two runs of the same bytes."""
    hide = sub.rubric.hide_hints
    parts = [f"<h1>{escape(sub.name)}</h1>", _status_paragraph(sub)]
    parts += _override_note(sub)
    parts += _what_happened(sub)
    parts += _summary_section(sub, hide)
    parts += _intake_section(sub)
    parts += _points_table(sub)
    parts += _charged_mistakes(sub, hide)
    parts += _failing_section(sub, hide)
    parts += _skipped_section(sub)
    parts += _mnist_section(sub)
    parts += _last_output(sub)
    return _page(f"{sub.name}: grading report", "\n".join(parts), page_key(sub))


def _status_paragraph(sub: GradedSubmission) -> str:
    """Status, score, the hashes that identify what was graded, and the sandbox."""
    return (f"<p>Status: {_status_html(sub.status)} &mdash; {escape(STATUS_HELP.get(sub.status, ''))}<br>"
            f"Score: <b>{_num(sub.score)} / {_num(sub.grade.max_score)}</b><br>"
            f"<span class=\"muted\">sha256 {escape(sub.sha256)}; suite {escape(sub.suite_version)}; "
            f"rubric {escape(sub.rubric.hash)}</span><br>"
            f"Sandbox: {_sandbox_html(sub.sandbox)} &mdash; {escape(SANDBOX_HELP.get(sub.sandbox, ''))}</p>")


def _override_note(sub: GradedSubmission) -> list[str]:
    """The score an instructor set, and what the rubric gave."""
    if sub.override is None:
        return []
    return [f"<p><b>Score set by the instructor:</b> {_num(sub.override.score)} (the rubric "
            f"gave {_num(sub.override.computed)}): {escape(sub.override.reason)}</p>"]


def _what_happened(sub: GradedSubmission) -> list[str]:
    """Why a submission was not graded, in full."""
    if sub.status != "graded" and sub.message:
        return ["<h2>What happened</h2>", f"<pre>{escape(sub.message)}</pre>"]
    return []


def _summary_section(sub: GradedSubmission, hide: bool) -> list[str]:
    """The lead of the feedback (what is wrong, where, what to change), unless hints are hidden."""
    lead = sub.lead()[1 if sub.override is not None else 0:]
    if lead and not hide:
        return ["<h2>Summary: what is wrong, where, what to change</h2>",
                f"<pre>{escape(chr(10).join(lead))}</pre>"]
    return []


def _intake_section(sub: GradedSubmission) -> list[str]:
    """The student id and what intake noted about the entry, when there is any."""
    if not (sub.intake.notes or sub.intake.student_id):
        return []
    return ["<h2>Intake</h2><ul>" + (f"<li>student id {escape(sub.intake.student_id)}</li>"
                                     if sub.intake.student_id else "")
            + "".join(f"<li>{escape(n)}</li>" for n in student_notes(sub)) + "</ul>"]


def _points_table(sub: GradedSubmission) -> list[str]:
    """Points per group, the part of a price beyond the areas, and the rubric's total."""
    parts = ["<h2>Points</h2>", "<table><tr><th>group</th><th>score</th><th>passed</th>"
             "<th>failed</th><th>skipped</th><th>points taken by a mistake (charged once)</th></tr>"]
    parts += [_group_row(gs, sub.grade) for gs in sub.grade.groups]
    if sub.grade.beyond_areas:
        parts.append(f"<tr><td>Beyond the areas where the mistakes show (their price is more than "
                     f"those areas hold)</td><td class=\"num\">-{_num(sub.grade.beyond_areas)}</td>"
                     "<td></td><td></td><td></td><td></td></tr>")
    total = "Total" if sub.override is None else "Total the rubric gave"
    parts.append(f"<tr><th>{total}</th><th class=\"num\">{_num(sub.grade.score)} / "
                 f"{_num(sub.grade.max_score)}</th><th></th><th></th><th></th><th></th></tr></table>")
    return parts


def _group_row(gs: GroupScore, grade: Grade) -> str:
    """One group's row: score, counts of checks, failures a mistake explains, points taken."""
    explained = (f" ({len(gs.explained)} explained by "
                 f"{escape(', '.join(explained_by(gs, grade)) or 'a mistake charged elsewhere')})"
                 if gs.explained else "")
    taken = ", ".join(f"{escape(key)} -{_num(points)}" for key, points in gs.deductions.items())
    return (f"<tr><td>{escape(gs.group.title)}</td><td class=\"num\">{_num(gs.score)} / "
            f"{_num(gs.max_score)}</td><td class=\"num\">{len(gs.passed)}</td>"
            f"<td class=\"num\">{len(gs.failing)}{explained}</td>"
            f"<td class=\"num\">{len(gs.skipped)}</td><td>{taken}</td></tr>")


def _charged_mistakes(sub: GradedSubmission, hide: bool) -> list[str]:
    """The mistakes charged (by key only when hints are hidden), then those seen but not charged."""
    parts = [f"<p>Mistake charged once: {escape(charge.bug.title if not hide else charge.bug.key)} "
             f"({escape(deduction_text(charge, sub.grade))})</p>"
             for charge in sub.grade.charges if charge.points]
    parts += [f"<p class=\"muted\">Also seen: {escape(charge.bug.title)} "
              f"({escape(uncharged_text(charge))})</p>"
              for charge in sub.grade.charges if not charge.points and not hide]
    return parts


def _failing_section(sub: GradedSubmission, hide: bool) -> list[str]:
    """Each failing check (the first MAX_PAGE_FAILURES) with its diagnosis and message; when
    hints are hidden, only a note that they come after the due date."""
    if hide:
        return ["<p class=\"muted\">The summary and the failure details are shown after the due date.</p>"]
    failing = [t for gs in sub.grade.groups for t in gs.failing]
    if not failing:
        return []
    parts = [f"<h2>Failing checks ({len(failing)})</h2>"]
    for test in failing[:MAX_PAGE_FAILURES]:
        found = [cause(key, sub.grade) for key in diagnosis_keys(test)]
        parts.append(f"<h3>{escape(short_name(test['nodeid']))}</h3>")
        if found:
            parts.append("<p><b>Diagnosis:</b> " + escape("; ".join(found)) + "</p>")
        parts.append(f"<pre>{escape(failure_text(test, 8000))}</pre>")
    if len(failing) > MAX_PAGE_FAILURES:
        parts.append(f"<p>... and {len(failing) - MAX_PAGE_FAILURES} more.</p>")
    return parts


def _skipped_section(sub: GradedSubmission) -> list[str]:
    """The checks skipped, and why."""
    skipped = [t for gs in sub.grade.groups for t in gs.skipped]
    if not skipped:
        return []
    return ["<h2>Skipped checks</h2><ul>",
            *(f"<li>{escape(short_name(t['nodeid']))}: {escape(t.get('skip_reason', ''))}</li>"
              for t in skipped),
            "</ul>"]


def _mnist_section(sub: GradedSubmission) -> list[str]:
    """The MNIST accuracies against their thresholds and the learning curves the suite recorded."""
    mnist = mnist_results(sub.tests)
    series = curves(sub.tests)
    parts = ["<h2>MNIST</h2>"] if mnist or series else []
    if mnist:
        parts.append("<table><tr><th>check</th><th>test accuracy</th><th>threshold</th></tr>")
        parts += [f"<tr><td>{escape(name)}</td><td class=\"num\">{acc:.4f}</td><td class=\"num\">"
                  f"{'' if thr is None else f'{thr:.4f}'}</td></tr>" for name, acc, thr in mnist]
        parts += ["</table>", _img(mnist_bars(mnist), "MNIST accuracy")]
    if series:
        parts.append(_img(curve_plot(series), "MNIST learning curve"))
    return parts


def _last_output(sub: GradedSubmission) -> list[str]:
    """The tail of the run's output, for a run that crashed or hit a grader error."""
    if sub.status in ("crashed", "error") and sub.output_tail:
        return ["<h2>Last output of the suite's run</h2>", f"<pre>{escape(sub.output_tail[-6000:])}</pre>"]
    return []


def page_key(sub: GradedSubmission) -> str:
    """Hash of everything a submission page shows: an unchanged page is not redrawn. Not
    the run's measurements (CPU-time ratios), which the page does not show and which differ
    between two runs of the same bytes."""
    shown = [sub.name, sub.sha256, sub.status, sub.message, sub.suite_version, sub.sandbox,
             sub.rubric.hash, sub.grade.score, sub.run_summary,
             sub.output_tail[-6000:] if sub.status in ("crashed", "error") else "",  # (shown only then)
             [sub.override.score, sub.override.reason] if sub.override else None,
             [(t["nodeid"], t["outcome"], t.get("summary"), t.get("message"), t.get("skip_reason"),
               {k: v for k, v in (t.get("properties") or {}).items()
                if not k.startswith(MEASUREMENT_PROPERTIES)}) for t in sub.tests], PAGE_VERSION, sub.intake.student_id,
             sub.intake.notes]
    return hashlib.sha256(json.dumps(shown, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _current_key(path: Path) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            head = handle.read(400)
    except OSError:
        return None
    match = re.search(r'<meta name="grade-key" content="([0-9a-f]+)">', head)
    return match.group(1) if match else None


def write_report(out: Path, subs: list[GradedSubmission], similarity: SimilarityReport | None = None) -> Path:
    """OUT/submissions/<slug>/report.html per submission (redrawn only when what it shows
    changed: the plots make a page cost a few tenths of a second) and the staff-only
    OUT/staff/index.html; returns the overview's path."""
    for sub in subs:
        path = out / "submissions" / sub.slug / STUDENT_PAGE
        if _current_key(path) != page_key(sub):
            write_atomic(path, submission_page(sub))
    index = out / STAFF_DIR / "index.html"
    write_atomic(index, overview(subs, similarity=similarity))
    return index
