"""One place that makes submission-derived text safe to show or write.

File names, exception messages and test output come from hostile code. Written raw they
reach a terminal (ANSI/OSC escape sequences can recolour, retitle, hide or fake lines: a
green "112 passed"), a spreadsheet (``=HYPERLINK(...)`` runs as a formula), an HTML page or
a student's results.json (bidi overrides make ``gpj.py`` read as ``py.jpg``). Every sink
(terminal, progress bar, CSV, HTML, JSON shown to students) goes through this module:

- ``clean_text``: multi-line text; keeps ``\\n`` and ``\\t``, escapes every other control
  character (C0, DEL, C1, CR), bidi controls, invisible format characters, line/paragraph
  separators and undecodable bytes as visible ``\\xNN`` / ``\\uNNNN`` escapes.
- ``clean_name``: the same on one line (newlines and tabs escaped too).
- ``csv_cell``: ``clean_name`` plus spreadsheet formula neutralisation.
- ``html_escape``: ``clean_text`` then HTML escaping.

Escaping is lossy for a name that already contains a literal backslash sequence, so the
original stays recoverable elsewhere: ``raw_hex`` (the exact bytes, written to intake.csv)
and the path stored in the gradebook.
"""

from __future__ import annotations

import html
import os

from conformance.text import clean_name, clean_text  # noqa: F401 - re-exported: one rule

# Spreadsheet formula prefixes (OWASP CSV injection), with their full-width forms, which
# some spreadsheet locales also read as formulas.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def csv_cell(value: object, limit: int | None = None) -> object:
    """A spreadsheet cell: numbers pass through; text is one clean line that no spreadsheet
    evaluates as a formula (a leading ``'`` is the documented neutraliser)."""
    if not isinstance(value, str):
        return value
    text = clean_name(value, limit)
    stripped = text.lstrip(" ")
    if stripped[:1] in _FORMULA_START or text[:1] in _FORMULA_START:
        return "'" + text
    return text


def html_escape(text: object, quote: bool = True) -> str:
    """HTML-escaped ``clean_text``: a drop-in for ``html.escape`` on submission text."""
    return html.escape(clean_text(text), quote=quote)


def raw_hex(name: str) -> str:
    """The exact bytes of a file name, as hex: the recoverable original of a cleaned name."""
    return os.fsencode(name).hex()
