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
import re
import unicodedata

# Characters never written raw: C0 controls (except \n, \t in multi-line text), DEL, C1
# controls, bidi embeddings/overrides/isolates and marks, zero-width and other invisible
# format characters, line/paragraph separators, and lone surrogates (undecodable bytes of a
# file name, kept by os.fsdecode's surrogateescape).
_BIDI_AND_INVISIBLE = ("\u061c\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
                       "\u2028\u2029\u2060\u2061\u2062\u2063\u2064\u2066\u2067\u2068\u2069\ufeff")
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f" + _BIDI_AND_INVISIBLE + "\ud800-\udfff]")
_UNSAFE_ONE_LINE = re.compile("[\x00-\x1f\x7f-\x9f" + _BIDI_AND_INVISIBLE + "\ud800-\udfff]")
# Spreadsheet formula prefixes (OWASP CSV injection), with their full-width forms, which
# some spreadsheet locales also read as formulas.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def _escape(match: re.Match) -> str:
    char = match.group()
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte of a file name (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def _other_format_chars(text: str) -> str:
    """Escape the remaining Unicode format characters (category Cf) not listed above."""
    if text.isascii():
        return text
    return "".join(f"\\u{ord(c):04x}" if unicodedata.category(c) == "Cf" else c for c in text)


def clean_text(text: object, limit: int | None = None) -> str:
    """Multi-line text safe for a terminal, a file or a page (newlines and tabs kept)."""
    value = text if isinstance(text, str) else str(text)
    if limit is not None:
        value = value[:limit]
    return _other_format_chars(_UNSAFE.sub(_escape, value))


def clean_name(text: object, limit: int | None = None) -> str:
    """One-line text (a name, a status line): every control character escaped."""
    value = text if isinstance(text, str) else str(text)
    if limit is not None:
        value = value[:limit]
    return _other_format_chars(_UNSAFE_ONE_LINE.sub(_escape, value))


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


def is_clean(text: str) -> bool:
    """True when ``clean_text`` would leave ``text`` unchanged (used by the tests)."""
    return clean_text(text) == text
