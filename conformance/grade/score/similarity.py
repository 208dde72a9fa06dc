"""Which submissions of a class share suspiciously much code (staff-only).

What is compared is *all* of a submission's own code (``own_code``: its module, the helper
modules of a folder or archive, the code kept from notebooks), normalised first by
conformance.grade.intake.normalise: an AST round trip (formatting, comments, docstrings, annotations and
redundant parentheses vanish) with every name the code binds canonicalised, so no
formatting or renaming trick hides a copy; normalisation runs in a bounded child process.
Fingerprints come from copydetect (winnowed k-grams of the token stream). Code every student
was given, or could copy legitimately, is boilerplate: the instructor's template
(``--template FILE``, repeatable) and the textbook section's code (read from the section text,
``--textbook FILE`` or ``$BACKPROP_SECTION_FILE``; the repository never holds it), normalised
the same way. Boilerplate fingerprints are removed before two submissions are compared, so two
students who both started from the textbook are not flagged for that; a submission that *is*
the textbook's code is reported separately, as such.

    python -m conformance.grade.score.similarity submissions/ --out similarity/ [--threshold 0.5]

A pair's score is the larger of the two shares "fraction of this submission's own (non-
boilerplate) tokens found in the other": a short submission wholly contained in a long one
scores 1. Pages are for staff: they show both students' normalised code side by side.
"""

from __future__ import annotations

import argparse
import copy
import html
import io
import itertools
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence, Union

import numpy as np

from conformance.grade.intake.normalise import MAX_NORMALISED_BYTES, normalise, normalise_file

NOISE_TOKENS = 25  # k: shortest run of normalised characters that counts as shared (copydetect's default)
DEFAULT_THRESHOLD = 0.5
TEXTBOOK_THRESHOLD = 0.8  # share of a submission's tokens that are the textbook's: "a copy of it"
MIN_OWN_TOKENS = 50  # below this much non-boilerplate code there is nothing to compare


class SimilarityError(Exception):
    """The comparison cannot run (copydetect missing, unreadable template)."""


def _copydetect():
    try:
        from copydetect import detector
    except ImportError as exc:
        raise SimilarityError("similarity needs copydetect: pip install 'backprop-conformance[grade]'") from exc
    return detector


def fingerprint(name: str, code: str):
    """copydetect's fingerprint of one Python source text (never read from disk)."""
    detector = _copydetect()
    return detector.CodeFingerprint(f"{name}.py", NOISE_TOKENS, 1, language="python", fp=io.StringIO(code))


def without(whole, boilerplate: np.ndarray | None):
    """``whole`` with the boilerplate fingerprints removed, without tokenizing again (the
    expensive part): the same k-grams of the same normalised code, fewer of them kept."""
    if boilerplate is None or boilerplate.size == 0:
        return whole
    from copydetect import utils

    own = copy.copy(whole)
    own.hashes, own.hash_idx = utils.get_document_fingerprints(whole.filtered_code, whole.k, 1, boilerplate)
    own.token_coverage = utils.get_token_coverage(own.hash_idx, whole.k, len(whole.filtered_code))
    return own


@dataclass(frozen=True)
class SimilarPair:
    a: str
    b: str
    score: float  # max(share_a, share_b)
    share_a: float  # fraction of a's own tokens found in b
    share_b: float
    shared_tokens: int
    slices_a: tuple[tuple[int, int], ...] = field(repr=False)  # character ranges in a's code
    slices_b: tuple[tuple[int, int], ...] = field(repr=False)


@dataclass
class SimilarityReport:
    threshold: float
    pairs: list[SimilarPair]  # score >= threshold, highest first
    textbook_copies: list[tuple[str, float]]  # (name, share of its tokens from the textbook)
    too_little_own_code: list[str]  # nothing left to compare once boilerplate is removed
    compared: int  # number of submissions compared
    texts: dict[str, str] = field(default_factory=dict)  # name -> the normalised code compared (pages)
    not_compared: dict[str, str] = field(default_factory=dict)  # name -> why (its code could not be read)


Source = Union[str, Mapping[str, str]]  # one file's code, or a submission's files (path -> code)


def own_code(files: Mapping[str, bytes]) -> dict[str, str]:
    """A submission's own code: every Python file it hands in (the module, helpers, modules
    converted from notebooks), path -> text. Data and notes are not code."""
    return {path: data.decode("utf-8", "replace") for path, data in sorted(files.items())
            if path.endswith(".py")}


def _normalised(sources: Mapping[str, Source]) -> tuple[dict[str, tuple[str, str]], dict[str, str]]:
    """name -> (readable, canonical) for each submission, each in its own bounded child;
    a submission whose code cannot be normalised is left out with the reason."""
    from conformance.grade.intake.bounded import NotebookError, NotebookGraderError

    done: dict[str, tuple[str, str]] = {}
    failed: dict[str, str] = {}
    for name, source in sorted(sources.items()):
        files = {"code.py": source} if isinstance(source, str) else dict(source)
        if sum(len(code) for code in files.values()) > MAX_NORMALISED_BYTES:
            failed[name] = f"more than {MAX_NORMALISED_BYTES} bytes of code"
            continue
        try:
            answer = normalise(files, f"the code of {name}")
        except (NotebookError, NotebookGraderError) as exc:
            failed[name] = str(exc)
            continue
        done[name] = (answer["readable"], answer["canonical"])
    return done, failed


def _trusted(text: str) -> str:
    """The canonical form of the instructor's own text (template, textbook): in process."""
    return normalise_file(text)[1]


def _slices(raw: np.ndarray) -> tuple[tuple[int, int], ...]:
    if raw.size == 0:
        return ()
    return tuple((int(s), int(e)) for s, e in zip(raw[0], raw[1]))


def compare_class(sources: Mapping[str, Source], boilerplate: Sequence[str] = (), textbook: str | None = None,
                  threshold: float = DEFAULT_THRESHOLD) -> SimilarityReport:
    """Compare every pair of ``sources`` (name -> code, or name -> {path: code} for all of a
    submission's files), normalised, boilerplate and textbook excluded."""
    if not 0 < threshold <= 1:
        raise SimilarityError(f"threshold must be in (0, 1], got {threshold!r}")
    detector = _copydetect()
    normalised, not_compared = _normalised(sources)
    excluded = [_trusted(text) for text in [*boilerplate, textbook] if text]
    hashes = [np.array(sorted(fingerprint(f"boilerplate{i}", text).hashes)) for i, text in enumerate(excluded)]
    common = np.unique(np.concatenate(hashes)) if hashes else None
    wholes = {name: fingerprint(name, canonical) for name, (_, canonical) in normalised.items()}
    prints = {name: without(whole, common) for name, whole in wholes.items()}
    textbook_copies = []
    if textbook:
        book = fingerprint("textbook", _trusted(textbook))
        for name, whole in wholes.items():
            if whole.token_coverage == 0:
                continue
            _, (share, _), _ = detector.compare_files(whole, book)
            if share >= TEXTBOOK_THRESHOLD:
                textbook_copies.append((name, round(float(share), 3)))
    comparable = [n for n, fp in prints.items() if fp.token_coverage >= MIN_OWN_TOKENS]
    too_little = sorted(set(prints) - set(comparable))
    pairs = []
    for a, b in itertools.combinations(comparable, 2):
        shared, (share_a, share_b), (sa, sb) = detector.compare_files(prints[a], prints[b])
        score = max(float(share_a), float(share_b))
        if shared and score >= threshold:
            pairs.append(SimilarPair(a, b, round(score, 3), round(float(share_a), 3), round(float(share_b), 3),
                                     int(shared), _slices(sa), _slices(sb)))
    pairs.sort(key=lambda p: (-p.score, p.a, p.b))
    return SimilarityReport(threshold, pairs, textbook_copies, too_little, len(prints),
                            {name: readable for name, (readable, _) in normalised.items()}, not_compared)


# ----------------------------------------------------------------------------------- pages
_STYLE = """body{font-family:system-ui,sans-serif;margin:1.5em}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:.3em .6em}.cols{display:flex;gap:1em}.cols>div{flex:1;min-width:0}
pre{background:#f7f7f7;padding:.6em;overflow:auto;font-size:12px}mark{background:#ffd666}"""


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body><p><em>Staff only: shows students' code.</em></p>"
            f"{body}</body></html>\n")


def highlighted(code: str, slices: Sequence[tuple[int, int]]) -> str:
    """``code`` as HTML with the shared character ranges marked."""
    out, pos = [], 0
    for start, end in sorted(slices):
        start, end = max(start, pos), min(end, len(code))
        if start >= end:
            continue
        out += [html.escape(code[pos:start]), "<mark>", html.escape(code[start:end]), "</mark>"]
        pos = end
    out.append(html.escape(code[pos:]))
    return "".join(out)


def pair_page_name(index: int) -> str:
    return f"pair-{index:04d}.html"


def write_pages(report: SimilarityReport, sources: Mapping[str, object], out_dir: Path) -> Path:
    """``out_dir/index.html`` (the flagged pairs, textbook copies) and one side-by-side page
    per flagged pair, showing the normalised code that was compared (``report.texts``; the
    slices index it); names and code are HTML-escaped. Returns the index path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    code = {**{k: v for k, v in sources.items() if isinstance(v, str)}, **report.texts}
    rows = []
    for i, pair in enumerate(report.pairs, 1):
        (out_dir / pair_page_name(i)).write_text(_page(
            f"{pair.a} ~ {pair.b}",
            f"<h1>{html.escape(pair.a)} ~ {html.escape(pair.b)}</h1>"
            f"<p>score {pair.score:.2f}: {pair.share_a:.0%} of {html.escape(pair.a)}'s own code is found in "
            f"{html.escape(pair.b)}'s, {pair.share_b:.0%} the other way ({pair.shared_tokens} shared "
            "normalised characters; template and textbook code excluded).</p><p><a href='index.html'>all pairs</a></p>"
            f"<div class='cols'><div><h2>{html.escape(pair.a)}</h2><pre>{highlighted(code[pair.a], pair.slices_a)}</pre></div>"
            f"<div><h2>{html.escape(pair.b)}</h2><pre>{highlighted(code[pair.b], pair.slices_b)}</pre></div></div>"),
            encoding="utf-8")
        rows.append(f"<tr><td><a href='{pair_page_name(i)}'>{html.escape(pair.a)} ~ {html.escape(pair.b)}</a></td>"
                    f"<td>{pair.score:.2f}</td><td>{pair.share_a:.0%}</td><td>{pair.share_b:.0%}</td></tr>")
    book = "".join(f"<li>{html.escape(name)}: {share:.0%} of its code is the textbook section's</li>"
                   for name, share in report.textbook_copies)
    little = ", ".join(html.escape(n) for n in report.too_little_own_code)
    skipped = "".join(f"<li>{html.escape(n)}: {html.escape(why)}</li>" for n, why in sorted(report.not_compared.items()))
    body = (f"<h1>Similar submissions</h1><p>{report.compared} submissions compared; "
            f"{len(report.pairs)} pairs at or above the threshold {report.threshold:.2f}.</p>"
            + ("<table><tr><th>pair</th><th>score</th><th>share of first</th><th>share of second</th></tr>"
               + "".join(rows) + "</table>" if rows else "<p>No pair reaches the threshold.</p>")
            + (f"<h2>Copies of the textbook section</h2><ul>{book}</ul>" if book else "")
            + (f"<h2>Too little own code to compare</h2><p>{little}</p>" if little else "")
            + (f"<h2>Not compared (their code could not be read)</h2><ul>{skipped}</ul>" if skipped else ""))
    index = out_dir / "index.html"
    index.write_text(_page("Similar submissions", body), encoding="utf-8")
    return index


def textbook_code(path: Path | None = None) -> str | None:
    """The section's code (None when the section text is not available)."""
    from conformance.reference.section import extract_code, section_file

    path = path or section_file()
    return extract_code(path.read_text(encoding="utf-8")) if path else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance.grade.score.similarity",
                                     description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("submissions", type=Path, help="folder of submissions (as for conformance.grade)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the staff-only pages")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                        help=f"flag pairs scoring at least this (0-1, default {DEFAULT_THRESHOLD})")
    parser.add_argument("--template", type=Path, action="append", default=[],
                        help="code every student was given (excluded as boilerplate; repeatable)")
    parser.add_argument("--textbook", type=Path, default=None,
                        help="the textbook section text (default: $BACKPROP_SECTION_FILE)")
    parser.add_argument("--module", default=None, help="module file inside folder submissions")
    args = parser.parse_args(argv)
    from conformance.grade.intake.submissions import SubmissionsError, discover

    try:
        found = discover(args.submissions, args.module)
        sources = {s.name: code for s in found if (code := own_code(s.files))}
        templates = [p.read_text(encoding="utf-8") for p in args.template]
        report = compare_class(sources, templates, textbook_code(args.textbook), args.threshold)
    except (SubmissionsError, SimilarityError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    index = write_pages(report, sources, args.out)
    print(f"{report.compared} submissions, {len(report.pairs)} similar pairs, "
          f"{len(report.textbook_copies)} copies of the textbook: {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
