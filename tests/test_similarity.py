"""Similarity of a class's submissions (tools/grade/similarity.py): a disguised copy is flagged,
independent work and shared boilerplate are not, a copy of the textbook is named as such, and
the staff pages escape whatever the students wrote."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("copydetect", reason="similarity needs the 'grade' extra (copydetect)")

from tests.helpers import REPO_ROOT  # noqa: E402
from tools.catalogue import CORRECT_DIR  # noqa: E402
from tools.grade.similarity import compare_class, main, textbook_code, write_pages  # noqa: E402
from tools.section import section_file  # noqa: E402

CORRECT = CORRECT_DIR
TEMPLATE = '''"""Assignment 3: implement forward and backward below. Do not change the signatures."""
import numpy as np


def forward(X, params):
    """Return (activations, pre_activations)."""
    raise NotImplementedError


def backward(activations, pre_activations, Y, params):
    """Return [(dW, db), ...] in forward order."""
    raise NotImplementedError
'''


def disguise(code: str) -> str:
    """What a copier does: rename identifiers, change comments and blank lines."""
    renamed = re.sub(r"\bactivations\b", "acts_list", code)
    renamed = re.sub(r"\bdelta\b", "err", renamed)
    renamed = re.sub(r"#.*", "# my own work", renamed)
    return renamed.replace("\n\n\n", "\n\n")


def class_sources() -> dict[str, str]:
    own = (REPO_ROOT / "reference" / "mlp.py").read_text()
    return {
        "alice": TEMPLATE + own,
        "bob": TEMPLATE + disguise(own),
        "carol": TEMPLATE + (CORRECT / "ok_einsum.py").read_text(),
        "dan": TEMPLATE + (CORRECT / "ok_per_sample_loops.py").read_text(),
        "erin": TEMPLATE + (CORRECT / "ok_oop_network.py").read_text(),
    }


def test_a_disguised_copy_is_flagged_and_independent_work_is_not() -> None:
    report = compare_class(class_sources(), boilerplate=[TEMPLATE])
    flagged = {(p.a, p.b) for p in report.pairs}
    assert flagged == {("alice", "bob")}, report.pairs
    pair = report.pairs[0]
    assert pair.score >= 0.9 and pair.slices_a and pair.slices_b


def test_the_template_alone_is_boilerplate_not_a_shared_copy() -> None:
    sources = {name: TEMPLATE + f"\n# {name}\nVALUE_{name.upper()} = {i}\n" for i, name in enumerate("xyz")}
    report = compare_class(sources, boilerplate=[TEMPLATE])
    assert report.pairs == []
    assert report.too_little_own_code == ["x", "y", "z"]
    # Without declaring the template, the same three look like copies of one another.
    assert len(compare_class(sources, boilerplate=[]).pairs) == 3


def test_threshold_is_validated() -> None:
    with pytest.raises(Exception, match="threshold must be in"):
        compare_class(class_sources(), threshold=0)


def test_textbook_copies_are_named_and_not_paired() -> None:
    path = section_file()
    if path is None:
        pytest.skip("needs the textbook section text ($BACKPROP_SECTION_FILE; CI sets it)")
    book = textbook_code(path)
    sources = class_sources()
    sources["frank"] = book
    sources["gina"] = "# gina's submission\n" + disguise(book)
    report = compare_class(sources, boilerplate=[TEMPLATE], textbook=book)
    assert {name for name, _ in report.textbook_copies} == {"frank", "gina"}
    assert all({p.a, p.b} != {"frank", "gina"} for p in report.pairs)  # shared textbook code is boilerplate


def test_pages_escape_student_code_and_names(tmp_path: Path) -> None:
    sources = class_sources()
    sources["<script>alert(1)</script>"] = sources.pop("bob") + "\n# </pre><script>alert(2)</script>\n"
    report = compare_class(sources, boilerplate=[TEMPLATE])
    assert len(report.pairs) == 1
    index = write_pages(report, sources, tmp_path / "similarity")
    pages = [index.read_text(), (tmp_path / "similarity" / "pair-0001.html").read_text()]
    for page in pages:
        assert "<script>" not in page and "Staff only" in page
    assert "<mark>" in pages[1]


def test_command_line_flags_the_copied_pair(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    submissions = tmp_path / "submissions"
    submissions.mkdir()
    for name, code in class_sources().items():
        (submissions / f"{name}.py").write_text(code)
    template = tmp_path / "template.py"
    template.write_text(TEMPLATE)
    assert main([str(submissions), "--out", str(tmp_path / "out"), "--template", str(template)]) == 0
    assert "5 submissions, 1 similar pairs" in capsys.readouterr().out
    assert "alice ~ bob" in (tmp_path / "out" / "index.html").read_text()
