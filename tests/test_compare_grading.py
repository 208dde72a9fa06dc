"""tools/compare_grading.py: two grader output folders compared file by file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.compare_grading import compare, main


def _out(root: Path, score: str) -> Path:
    (root / "submissions" / "alice").mkdir(parents=True)
    (root / "grades.csv").write_text(f"submission,score\nalice,{score}\n")
    (root / "submissions" / "alice" / "results.json").write_text('{"score": %s}' % score)
    (root / "grades.sqlite").write_bytes(score.encode())  # ids and timings: never compared
    return root


def test_identical_folders_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = _out(tmp_path / "a", "100"), _out(tmp_path / "b", "100")
    (b / "grades.sqlite").write_bytes(b"another run")
    assert main([str(a), str(b)]) == 0
    assert "2 files compared: identical" in capsys.readouterr().out


def test_a_changed_score_and_a_missing_file_are_named(tmp_path: Path) -> None:
    a, b = _out(tmp_path / "a", "100"), _out(tmp_path / "b", "90")
    (a / "submissions" / "alice" / "report.html").write_text("<p>")
    problems = compare(a, b)
    assert any(p.startswith("only in") and p.endswith("submissions/alice/report.html") for p in problems)
    changed = [p for p in problems if p.startswith("differs: grades.csv")]
    assert changed and "-alice,100" in changed[0] and "+alice,90" in changed[0]
    assert main([str(a), str(b)]) == 1


def test_a_folder_that_is_no_output_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path), str(tmp_path)])
    assert exit_info.value.code == 2 and "has no grades.csv" in capsys.readouterr().err


def test_the_suite_version_is_compared_unless_masked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = _out(tmp_path / "a", "100"), _out(tmp_path / "b", "100")
    (a / "submissions" / "alice" / "results.json").write_text('{"score": 100, "suite_version": "aaaa1111"}')
    (b / "submissions" / "alice" / "results.json").write_text('{"score": 100, "suite_version": "bbbb2222"}')
    assert [p.splitlines()[0] for p in compare(a, b)] == ["differs: submissions/alice/results.json"]
    assert compare(a, b, mask_suite_version=True) == []
    assert main([str(a), str(b), "--mask-suite-version"]) == 0
    assert "suite version: aaaa1111 -> bbbb2222 (masked)" in capsys.readouterr().out
    (b / "submissions" / "alice" / "results.json").write_text('{"score": 99, "suite_version": "bbbb2222"}')
    assert compare(a, b, mask_suite_version=True)  # masking hides the version, nothing else
