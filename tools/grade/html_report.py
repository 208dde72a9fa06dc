"""Self-contained HTML report: a class overview and one page per submission.

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
from typing import Iterable

from tools.grade.feedback import curves, diagnoses_of, failure_text, mnist_results, short_name
from tools.grade.outputs import GradedSubmission, write_atomic
from tools.grade.runner import STATUS_HELP
from tools.grade.sanitize import html_escape as escape  # control/bidi characters escaped too

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
PAGE_VERSION = 3  # bump when the page layout changes, so existing pages are redrawn


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
    ax.set_xlabel("% of graded submissions passing every check of the area")
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


SANDBOX_HELP = {
    "engaged": "the candidate ran in private namespaces as an unprivileged user, with resource limits",
    "degraded": "resource limits only: no private file system, no privilege drop",
    "off": "no sandbox (asked for with --isolate-sandbox off, or --no-isolate)",
    "unknown": "not recorded (the run did not start, or an older suite did not report it)",
}


def _sandbox_html(state: str) -> str:
    css = "graded" if state == "engaged" else "bad" if state in ("degraded", "off") else "muted"
    return f"<span class=\"{css}\">{escape(state)}</span>"


def common_diagnoses(subs: Iterable[GradedSubmission]) -> Counter:
    """How many submissions each diagnosed bug was found in (once per submission)."""
    counter: Counter = Counter()
    for sub in subs:
        found = set()
        for test in sub.tests:
            if test["outcome"] in ("failed", "error"):
                found.update(diagnoses_of(test))
        counter.update(found)
    return counter


def overview(subs: list[GradedSubmission], title: str = "Grading report") -> str:
    if not subs:
        return _page(title, f"<h1>{escape(title)}</h1><p>No submissions.</p>")
    rubric = subs[0].rubric
    graded = [s for s in subs if s.status == "graded"]
    scores = [s.grade.score for s in subs]
    statuses = Counter(s.status for s in subs)
    sandboxes = Counter(s.sandbox for s in subs if s.status not in ("no_module", "invalid_submission"))
    parts = [f"<h1>{escape(title)}</h1>",
             f"<p>{len(subs)} submissions; "
             + ", ".join(f"{escape(k)}: {v}" for k, v in sorted(statuses.items()))
             + f".<br>Mean score {statistics.mean(scores):.2f} / {rubric.max_score:g}, median "
             f"{statistics.median(scores):.2f}. Suite version {escape(subs[0].suite_version)}, "
             f"rubric {escape(rubric.name)} ({escape(rubric.hash)}).<br>Sandbox of the runs: "
             + (", ".join(f"{_sandbox_html(k)}: {v}" for k, v in sorted(sandboxes.items())) or "none ran")
             + ".</p>",
             "<h2>Scores</h2>", _img(histogram(scores, rubric.max_score), "score histogram")]
    names, rates, rows = [], [], []
    for group in rubric.groups:
        full = sum(1 for s in graded for g in s.grade.groups
                   if g.group.key == group.key and g.status == "passed")
        mean = (statistics.mean(g.score for s in subs for g in s.grade.groups
                                if g.group.key == group.key) if subs else 0.0)
        rate = full / len(graded) if graded else 0.0
        names.append(group.area or group.title[:30])
        rates.append(rate)
        rows.append(f"<tr><td>{escape(group.area or group.key)}</td><td>{escape(group.title)}</td>"
                    f"<td class=\"num\">{group.points:g}</td><td class=\"num\">{100 * rate:.0f}%</td>"
                    f"<td class=\"num\">{mean:.2f}</td></tr>")
    parts += ["<h2>Pass rate per check area</h2>", _img(area_bars(names, rates), "pass rate per area"),
              "<table><tr><th>area</th><th>what</th><th>points</th><th>graded submissions "
              "passing all</th><th>mean points (all)</th></tr>", *rows, "</table>"]
    harness = [acc for s in subs for name, acc, _ in mnist_results(s.tests) if "harness" in name]
    if harness:
        parts += ["<h2>MNIST quick check</h2>",
                  _img(mnist_histogram(harness), "MNIST accuracy histogram")]
    diag = common_diagnoses(subs)
    parts.append("<h2>Most common diagnosed bugs</h2>")
    if diag:
        parts.append("<table><tr><th>diagnosis (from the suite's messages)</th><th>submissions</th></tr>")
        parts += [f"<tr><td>{escape(text)}</td><td class=\"num\">{n}</td></tr>"
                  for text, n in diag.most_common(25)]
        parts.append("</table>")
    else:
        parts.append("<p class=\"muted\">No failure carried a diagnosis.</p>")
    if statuses.get("error"):
        parts.insert(1, f"<p class=\"bad\">{statuses['error']} submission(s) ended in a grader error "
                        "(the grader or its environment failed, not the student): no score was given; "
                        "run the same command again to retry them.</p>")
    parts += ["<h2>Submissions</h2>", "<table><tr><th>submission</th><th>status</th><th>sandbox</th><th>score</th>"
              + "".join(f"<th>{escape(g.area or g.key)}</th>" for g in rubric.groups) + "</tr>"]
    for sub in subs[:MAX_TABLE_ROWS]:
        cells = "".join(f"<td class=\"num\">{_num(g.score)}</td>" for g in sub.grade.groups)
        parts.append(f"<tr><td><a href=\"{escape(sub.slug)}.html\">{escape(sub.name)}</a></td>"
                     f"<td>{_status_html(sub.status)}</td><td>{_sandbox_html(sub.sandbox)}</td>"
                     f"<td class=\"num\">{_num(sub.grade.score)}</td>"
                     f"{cells}</tr>")
    parts.append("</table>")
    return _page(title, "\n".join(parts))


def submission_page(sub: GradedSubmission) -> str:
    parts = ["<p><a href=\"index.html\">&larr; class overview</a></p>",
             f"<h1>{escape(sub.name)}</h1>",
             f"<p>Status: {_status_html(sub.status)} &mdash; {escape(STATUS_HELP.get(sub.status, ''))}<br>"
             f"Score: <b>{_num(sub.grade.score)} / {_num(sub.grade.max_score)}</b><br>"
             f"<span class=\"muted\">sha256 {escape(sub.sha256)}; suite {escape(sub.suite_version)}; "
             f"rubric {escape(sub.rubric.hash)}; {sub.duration:.1f} s</span><br>"
             f"Sandbox: {_sandbox_html(sub.sandbox)} &mdash; {escape(SANDBOX_HELP.get(sub.sandbox, ''))}</p>"]
    if sub.status != "graded" and sub.message:
        parts += ["<h2>What happened</h2>", f"<pre>{escape(sub.message)}</pre>"]
    if sub.intake.notes or sub.intake.student_id:
        parts.append("<h2>Intake</h2><ul>" + (f"<li>student id {escape(sub.intake.student_id)}</li>"
                                              if sub.intake.student_id else "")
                     + "".join(f"<li>{escape(n)}</li>" for n in sub.intake.notes) + "</ul>")
    parts += ["<h2>Points</h2>", "<table><tr><th>group</th><th>score</th><th>passed</th>"
              "<th>failed</th><th>skipped</th></tr>"]
    for gs in sub.grade.groups:
        parts.append(f"<tr><td>{escape(gs.group.title)}</td><td class=\"num\">{_num(gs.score)} / "
                     f"{_num(gs.max_score)}</td><td class=\"num\">{len(gs.passed)}</td>"
                     f"<td class=\"num\">{len(gs.failed)}</td><td class=\"num\">{len(gs.skipped)}</td></tr>")
    parts.append("</table>")
    failing = [t for gs in sub.grade.groups for t in gs.failed]
    if failing:
        parts.append(f"<h2>Failing checks ({len(failing)})</h2>")
        for test in failing[:MAX_PAGE_FAILURES]:
            found = diagnoses_of(test)
            parts.append(f"<h3>{escape(short_name(test['nodeid']))}</h3>")
            if found:
                parts.append("<p><b>Diagnosis:</b> " + escape("; ".join(found)) + "</p>")
            parts.append(f"<pre>{escape(failure_text(test, 8000))}</pre>")
        if len(failing) > MAX_PAGE_FAILURES:
            parts.append(f"<p>... and {len(failing) - MAX_PAGE_FAILURES} more.</p>")
    skipped = [t for gs in sub.grade.groups for t in gs.skipped]
    if skipped:
        parts.append("<h2>Skipped checks</h2><ul>")
        parts += [f"<li>{escape(short_name(t['nodeid']))}: {escape(t.get('skip_reason', ''))}</li>"
                  for t in skipped]
        parts.append("</ul>")
    mnist = mnist_results(sub.tests)
    series = curves(sub.tests)
    if mnist or series:
        parts.append("<h2>MNIST</h2>")
    if mnist:
        parts.append("<table><tr><th>check</th><th>test accuracy</th><th>threshold</th></tr>")
        parts += [f"<tr><td>{escape(name)}</td><td class=\"num\">{acc:.4f}</td><td class=\"num\">"
                  f"{'' if thr is None else f'{thr:.4f}'}</td></tr>" for name, acc, thr in mnist]
        parts += ["</table>", _img(mnist_bars(mnist), "MNIST accuracy")]
    if series:
        parts.append(_img(curve_plot(series), "MNIST learning curve"))
    if sub.status in ("crashed", "error") and sub.output_tail:
        parts += ["<h2>Last output of the suite's run</h2>", f"<pre>{escape(sub.output_tail[-6000:])}</pre>"]
    return _page(f"{sub.name}: grading report", "\n".join(parts), page_key(sub))


def page_key(sub: GradedSubmission) -> str:
    """Hash of everything a submission page shows: an unchanged page is not redrawn."""
    shown = [sub.name, sub.sha256, sub.status, sub.message, sub.duration, sub.suite_version, sub.sandbox,
             sub.rubric.hash, sub.grade.score, sub.output_tail[-6000:],
             [(t["nodeid"], t["outcome"], t.get("summary"), t.get("message"), t.get("skip_reason"),
               t.get("properties")) for t in sub.tests], PAGE_VERSION, sub.intake.student_id,
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


def write_report(folder: Path, subs: list[GradedSubmission]) -> Path:
    """OUT/report/index.html plus one page per submission (redrawn only when what it shows
    changed: the plots make a page cost a few tenths of a second); returns the index path."""
    for sub in subs:
        path = folder / f"{sub.slug}.html"
        if _current_key(path) != page_key(sub):
            write_atomic(path, submission_page(sub))
    index = folder / "index.html"
    write_atomic(index, overview(subs))
    return index
