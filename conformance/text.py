"""Candidate-derived text made safe to show: the one escaping rule for terminals, files and pages.

Exception messages, tracebacks and file names come from the code under judgement. Written
raw, ANSI/OSC escape sequences can recolour, retitle, hide or fake terminal lines (a green
"112 passed") and bidi overrides make ``gpj.py`` read as ``py.jpg``. The suite escapes what
an isolated candidate sends before it reaches a message; the grader (conformance/grade/intake/sanitize.py)
builds its CSV, HTML and JSON escaping on the same two functions:

- ``clean_text``: multi-line text; keeps ``\\n`` and ``\\t``, escapes every other control
  character (C0, DEL, C1, CR), bidi controls, invisible format characters, line/paragraph
  separators and undecodable bytes as visible ``\\xNN`` / ``\\uNNNN`` escapes.
- ``clean_name``: the same on one line (newlines and tabs escaped too).
"""

from __future__ import annotations

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
