"""Similarity of a class's submissions (conformance/grade/score/similarity.py): a disguised copy is flagged,
independent work and shared boilerplate are not, a copy of the textbook is named as such, and
the staff pages escape whatever the students wrote."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

pytest.importorskip("copydetect", reason="similarity needs the 'grade' extra (copydetect)")

from tests.helpers import REPO_ROOT  # noqa: E402
from tools.catalogue import CORRECT_DIR  # noqa: E402
from conformance.grade.score.similarity import compare_class, main, own_code, textbook_code, write_pages  # noqa: E402
from conformance.reference.section import section_file  # noqa: E402

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
    own = (REPO_ROOT / "conformance" / "reference" / "mlp.py").read_text()
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


# -- normalisation: no formatting or renaming trick hides a copy ---------

# Two independent solutions in the textbook's style (same API, same algorithm, same
# variable names where the section uses them), written separately: never a pair.
STUDENT_P = '''import numpy as np


def relu(z):
    return np.where(z > 0, z, 0.0)


def softmax(z):
    shifted = z - np.max(z, axis=1, keepdims=True)
    exps = np.exp(shifted)
    return exps / np.sum(exps, axis=1, keepdims=True)


def forward(X, params):
    activations, pre_activations = [X], []
    a = X
    for layer, (W, b) in enumerate(params):
        z = a @ W + b
        pre_activations.append(z)
        last = layer == len(params) - 1
        a = softmax(z) if last else relu(z)
        activations.append(a)
    return activations, pre_activations


def cross_entropy(Y_hat, Y):
    eps = 1e-12
    return float(-np.sum(Y * np.log(Y_hat + eps)) / Y.shape[0])


def backward(activations, pre_activations, Y, params):
    n = Y.shape[0]
    grads = [None] * len(params)
    delta = (activations[-1] - Y) / n
    for layer in range(len(params) - 1, -1, -1):
        grads[layer] = (activations[layer].T @ delta, np.sum(delta, axis=0))
        if layer:
            W = params[layer][0]
            delta = delta @ W.T * (pre_activations[layer - 1] > 0)
    return grads
'''

STUDENT_Q = '''import numpy as np


def relu(x):
    out = x.copy()
    out[out < 0] = 0
    return out


def softmax(logits):
    m = logits.max(axis=-1, keepdims=True)
    p = np.exp(logits - m)
    p /= p.sum(axis=-1, keepdims=True)
    return p


def forward(X, params):
    acts = [X]
    zs = []
    L = len(params)
    for k in range(L):
        W, b = params[k]
        zs.append(acts[k] @ W + b)
        acts.append(relu(zs[k]) if k < L - 1 else softmax(zs[k]))
    return acts, zs


def cross_entropy(probs, Y):
    picked = np.sum(probs * Y, axis=1)
    return -np.log(np.clip(picked, 1e-12, None)).mean()


def backward(activations, pre_activations, Y, params):
    L = len(params)
    g = (activations[L] - Y) / len(Y)
    out = []
    for k in reversed(range(L)):
        dW = np.dot(activations[k].T, g)
        db = g.sum(axis=0)
        out.insert(0, (dW, db))
        if k > 0:
            mask = pre_activations[k - 1] > 0
            g = np.dot(g, params[k][0].T) * mask
    return out
'''


def parenthesise(code: str) -> str:
    """Every name read in redundant parentheses: ``(np).maximum((0), (z))``."""
    tree = ast.parse(code)
    lines = code.splitlines(keepends=True)
    spots = sorted({(n.lineno, n.col_offset, n.end_col_offset) for n in ast.walk(tree)
                    if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and n.lineno == n.end_lineno},
                   reverse=True)
    for line, start, end in spots:
        text = lines[line - 1].encode()
        lines[line - 1] = (text[:start] + b"(" + text[start:end] + b")" + text[end:]).decode()
    return "".join(lines)


def rename_to_builtins(code: str) -> str:
    """Variables renamed to names copydetect does not treat as variables (builtins, self)."""
    for old, new in (("activations", "sum"), ("delta", "input"), ("params", "self"), ("grads", "list"),
                     ("np", "numpy_")):
        code = re.sub(rf"\b{old}\b", new, code)
    return code


def reformat(code: str) -> str:
    """Two-space indents, a docstring and comments in every function, line continuations."""
    code = re.sub(r"^((?:    )+)", lambda m: "  " * (len(m.group(1)) // 4), code, flags=re.M)
    code = re.sub(r"^(def .*:)$", r'\1\n  """My own implementation."""  # written from scratch', code, flags=re.M)
    return code.replace(" = ", " = \\\n    ")


def as_notebook_code(code: str) -> str:
    """What the intake keeps of a notebook holding the code, cell per function."""
    from conformance.grade.intake.notebooks import extract_here

    cells = re.split(r"\n(?=def )", code)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells + ["train()", "plt.plot([1, 2])"]]
    return extract_here(nbformat.writes(nb).encode()).code


nbformat = pytest.importorskip("nbformat", reason="the grade extra (nbformat) is needed for notebooks")
TRICKS = {"parenthesised": parenthesise, "renamed": rename_to_builtins, "reformatted": reformat,
          "all_three": lambda c: reformat(parenthesise(rename_to_builtins(c))), "notebook": as_notebook_code}


def test_no_formatting_or_renaming_trick_hides_a_copy() -> None:
    original = (CORRECT / "ok_einsum.py").read_text()
    sources: dict = {"original": TEMPLATE + original, "p": STUDENT_P, "q": STUDENT_Q}
    for name, trick in TRICKS.items():
        disguised = trick(original)
        ast.parse(disguised)  # still Python: the trick is a real one
        sources[name] = TEMPLATE + disguised
    # Moved into a helper module of a folder submission: every own file is compared.
    sources["helper"] = {"mlp.py": TEMPLATE + "from helpers import *\n", "helpers.py": original}
    report = compare_class(sources, boilerplate=[TEMPLATE])
    scores = {frozenset((p.a, p.b)): p.score for p in report.pairs}
    for name in [*TRICKS, "helper"]:
        assert scores.get(frozenset(("original", name)), 0) >= 0.9, (name, scores)
    assert not [pair for pair in scores if pair & {"p", "q"}], scores  # independent work: never paired
    assert not report.not_compared and not report.too_little_own_code


def test_independent_textbook_style_solutions_are_not_paired() -> None:
    book = textbook_code(section_file()) if section_file() else None
    for textbook in {book, None}:
        report = compare_class({"p": STUDENT_P, "q": STUDENT_Q, "p_copy": parenthesise(STUDENT_P)},
                               boilerplate=[TEMPLATE], textbook=textbook, threshold=0.3)
        assert {(p.a, p.b) for p in report.pairs} == {("p", "p_copy")}, report.pairs


def test_own_code_is_every_python_file_and_only_those() -> None:
    files = {"mlp.py": b"from helpers import f\n", "helpers.py": b"def f():\n    return 1\n",
             "notes.md": b"# notes", "data.csv": b"1,2"}
    assert sorted(own_code(files)) == ["helpers.py", "mlp.py"]


def test_code_that_cannot_be_normalised_is_listed_not_compared(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    from conformance.grade.score import similarity

    monkeypatch.setattr(similarity, "MAX_NORMALISED_BYTES", 3000)
    sources = class_sources()
    report = compare_class(sources, boilerplate=[TEMPLATE])
    assert set(report.not_compared) == {name for name, code in sources.items() if len(code) > 3000}
    assert "more than 3000 bytes" in next(iter(report.not_compared.values()))
    index = write_pages(report, sources, tmp_path / "sim")
    assert "Not compared" in index.read_text()


def test_pages_show_the_normalised_code_that_was_compared(tmp_path: Path) -> None:
    sources = {"a": TEMPLATE + STUDENT_P, "b": TEMPLATE + "# copied\n" + parenthesise(STUDENT_P)}
    report = compare_class(sources, boilerplate=[TEMPLATE])
    write_pages(report, sources, tmp_path / "sim")
    page = (tmp_path / "sim" / "pair-0001.html").read_text()
    assert "# copied" not in page and "((np)" not in page  # what was compared: normalised
    assert "def backward(activations, pre_activations, Y, params):" in page  # with the students' names
    assert page.count("<mark>") >= 2


def test_command_line_compares_helpers_and_submissions_that_do_not_import(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A copy moved into a helper of a folder, and a copy in a folder whose module cannot be
    chosen (two top-level files: no_module), are still compared with the original."""
    original = (CORRECT / "ok_einsum.py").read_text()
    submissions = tmp_path / "submissions"
    (submissions / "helper_copy").mkdir(parents=True)
    (submissions / "two_files").mkdir()
    (submissions / "alice.py").write_text(original)
    (submissions / "p.py").write_text(STUDENT_P)
    (submissions / "helper_copy" / "mlp.py").write_text("from helpers import *\n")
    (submissions / "helper_copy" / "helpers.py").write_text(parenthesise(original))
    (submissions / "two_files" / "a.py").write_text(rename_to_builtins(original))
    (submissions / "two_files" / "b.py").write_text("X = 1\n")
    out = tmp_path / "out"
    assert main([str(submissions), "--out", str(out), "--module", "mlp.py"]) == 0
    assert "4 submissions, 3 similar pairs" in capsys.readouterr().out
    index = (out / "index.html").read_text()
    for pair in ("alice ~ helper_copy", "alice ~ two_files", "helper_copy ~ two_files"):
        assert pair in index, pair
