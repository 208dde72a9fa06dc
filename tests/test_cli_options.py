"""Command lines take options as written: no argparse prefix abbreviations (finding 8).

With abbreviations, ``grade --isolate`` was read as ``--isolate-sandbox`` ("expected one
argument"), and ``--no-isol`` or ``--isolate-sand off`` were accepted silently: a typo or a
habit from ``check`` changed what the grader did without saying so.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conformance.grade import cli

REPO_ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for top in ("conformance", "tools") for p in (REPO_ROOT / top).rglob("*.py"))


def parser_calls(source: str) -> list[tuple[int, bool]]:
    """(line, allow_abbrev=False given) of every ArgumentParser(...) and .add_parser(...) call."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in ("ArgumentParser", "add_parser"):
                found.append((node.lineno, any(k.arg == "allow_abbrev" and isinstance(k.value, ast.Constant)
                                                and k.value.value is False for k in node.keywords)))
    return found


def test_the_checker_sees_parsers() -> None:
    assert parser_calls("import argparse\np = argparse.ArgumentParser(prog='x')\ns.add_parser('a', "
                        "allow_abbrev=False)\n") == [(2, False), (3, True)]


def test_every_parser_refuses_abbreviations() -> None:
    missing = [f"{path.relative_to(REPO_ROOT)}:{line}" for path in SOURCES
               for line, ok in parser_calls(path.read_text(encoding="utf-8")) if not ok]
    assert missing == []
    assert len([c for p in SOURCES for c in parser_calls(p.read_text(encoding="utf-8"))]) >= 15


@pytest.mark.parametrize("typo", [["--no-isol"], ["--isolate-sand", "off"], ["--time", "5"]])
def test_grade_refuses_an_abbreviated_option(typo: list[str], capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.build_parser().parse_args(["subs", "--out", "o", *typo])
    assert exit_info.value.code == 2 and "unrecognized arguments" in capsys.readouterr().err


def test_grade_accepts_isolate_as_the_default_it_is(capsys: pytest.CaptureFixture) -> None:
    parse = cli.build_parser().parse_args
    assert parse(["subs", "--out", "o", "--isolate"]).isolate is True
    assert parse(["subs", "--out", "o"]).isolate is True
    assert parse(["subs", "--out", "o", "--no-isolate"]).isolate is False
    with pytest.raises(SystemExit):
        parse(["subs", "--out", "o", "--isolate", "--no-isolate"])
    assert "not allowed with argument" in capsys.readouterr().err
    assert "grading always runs candidates isolated" in cli.build_parser().format_help()


def test_grade_prints_the_default_rubric_to_start_from(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A wheel install has the rubric in site-packages: the command prints it for a copy."""
    from conformance.grade.score.rubric import DEFAULT_RUBRIC, load_rubric

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--print-default-rubric"])  # no SUBMISSIONS or --out needed
    assert exit_info.value.code == 0
    copy = tmp_path / "my_rubric.toml"
    copy.write_text(capsys.readouterr().out)
    assert load_rubric(copy).hash == load_rubric(DEFAULT_RUBRIC).hash
