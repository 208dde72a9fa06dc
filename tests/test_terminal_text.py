"""Text a candidate makes (exception messages, tracebacks, its file name) reaches the terminal,
the JSON report and JUnit only with control and bidi characters escaped: a submission cannot
recolour the terminal or print a fake green "112 passed" (conformance/text.py)."""

from __future__ import annotations

import json
from pathlib import Path

from conformance.candidate import CandidateRaised, failure_text
from conformance.text import clean_name, clean_text
from tests.helpers import REPO_ROOT, run_suite

FAKE_PASS = "\x1b[2K\r\x1b[32m===== 112 passed in 0.1s =====\x1b[0m\u202egpj.py\x9b1A"
RAW = ("\x1b", "\r", "\u202e", "\x9b")


def test_candidate_text_is_escaped_visibly() -> None:
    error = CandidateRaised("backward", "Value\x1bError", FAKE_PASS, "  File \"x.py\"\n\x1b[31mboom")
    text = failure_text(error)
    assert not any(ch in text for ch in RAW)
    assert "\\x1b[32m===== 112 passed" in text and "\\u202egpj.py" in text and "\n" in text
    assert clean_name("a\nb\tc") == "a\\x0ab\\x09c" and clean_text("a\nb\tc") == "a\nb\tc"


def test_an_isolated_run_shows_no_raw_escape_sequences(tmp_path: Path) -> None:
    source = (REPO_ROOT / "conformance" / "reference" / "mlp.py").read_text()
    hostile = tmp_path / "escapes.py"
    hostile.write_text(source + "\n\ndef backward(*args):\n    raise ValueError(" + repr(FAKE_PASS) + ")\n")
    report = tmp_path / "report.json"
    proc = run_suite(hostile, "--isolate", "-q", "-k", "test_backward_matches_finite_differences",
                     f"--conformance-report={report}", f"--junitxml={tmp_path / 'j.xml'}")
    assert proc.returncode == 1, proc.stdout[-3000:]
    shown = proc.stdout + proc.stderr + report.read_text() + (tmp_path / "j.xml").read_text()
    assert "112 passed in 0.1s" in shown  # the message is there, visibly escaped ...
    assert not any(ch in shown for ch in RAW), [ch for ch in RAW if ch in shown]  # ... never raw
    messages = [t["message"] for t in json.loads(report.read_text())["tests"] if t["outcome"] == "failed"]
    assert messages and all("\\x1b[32m" in m for m in messages)
