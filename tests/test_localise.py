"""The line to change (conformance/localise.py, conformance/tracer.py): a wrong value
of forward, the loss or backward is traced to the student's own line.

The catalogue test finds each variant's mutated line by diffing its source against
conformance/reference/mlp.py (never from the localiser) and decides which functions give wrong values by
comparing their outputs with conformance.exact (never with the localiser's own comparison)."""

from __future__ import annotations

import ast
import difflib
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conformance import localise, tracer
from conformance.candidate import InProcessCandidate
from conformance.cases import make_case
from conformance.exact import exact_forward, exact_gradients
from tools.catalogue import REFERENCE_SOURCE, materialize

REFERENCE = REFERENCE_SOURCE.read_text()
# The function a mutated line sits in -> the contract function whose values it changes.
CALLED_THROUGH = {"softmax": "forward", "relu": "forward", "forward": "forward",
                  "cross_entropy": "cross_entropy", "backward": "backward"}
TARGET = 0.9  # the cited line is the mutated line in at least 90% of the variants


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    return materialize(tmp_path_factory.mktemp("catalogue"))


def mutated_lines(source: str) -> set[int]:
    """Lines of ``source`` (1-based) that differ from the reference: replaced or inserted,
    not counting the header line the catalogue prepends."""
    ref, var = REFERENCE.splitlines(), source.splitlines()
    changed: set[int] = set()
    for tag, i1, _, j1, j2 in difflib.SequenceMatcher(a=ref, b=var, autojunk=False).get_opcodes():
        if tag in ("replace", "insert") and i1 > 0:
            changed |= set(range(j1 + 1, j2 + 1))
    return changed


def functions_of(source: str, lines: set[int]) -> set[str]:
    tree = ast.parse(source)
    return {CALLED_THROUGH[node.name] for node in tree.body
            if isinstance(node, ast.FunctionDef) and node.name in CALLED_THROUGH
            and any(node.lineno <= n <= (node.end_lineno or node.lineno) for n in lines)}


def _close(a: Any, b: np.ndarray) -> bool:
    try:
        a = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=1e-6, atol=1e-9))


def gives_wrong_values(cand: InProcessCandidate, function: str) -> bool:
    """On one of the localiser's small cases the function returns (without raising) values that
    differ from conformance.exact's."""
    for sizes, batch in localise.CASES:
        case = make_case(sizes, batch, localise.CASE_SEED)
        acts, pres = exact_forward(case.X, case.params)
        try:
            with np.errstate(all="ignore"):
                if function == "forward":
                    got = cand.call("forward", case.X, case.params)
                    want = list(acts) + list(pres)
                    got = list(got[0]) + list(got[1])
                elif function == "backward":
                    got = cand.call("backward", acts, pres, case.Y, case.params)
                    want = [t for pair in exact_gradients(acts, pres, case.Y, case.params) for t in pair]
                    got = [t for pair in got for t in pair]
                else:
                    got = [cand.call("cross_entropy", acts[-1], case.Y)]
                    logits = pres[-1]
                    lse = logits.max(axis=1) + np.log(np.exp(logits - logits.max(axis=1, keepdims=True)).sum(1))
                    want = [np.asarray((lse - (logits * case.Y).sum(1)).mean())]
        except Exception:  # noqa: BLE001 - a crash is not a wrong value
            continue
        if len(got) != len(want) or not all(_close(g, w) for g, w in zip(got, want)):
            return True
    return False


# ------------------------------------------------------------------ the catalogue
def test_the_cited_line_is_the_mutated_line_in_at_least_90_percent(catalogue: list[Any]) -> None:
    hits, misses, cited_elsewhere = 0, [], []
    for variant in catalogue:
        if variant.kind != "buggy" or variant.declaration is not None:  # declared: not patches
            continue
        source = variant.path.read_text()
        lines = mutated_lines(source)
        cand = InProcessCandidate.load(str(variant.path))
        for function in sorted(functions_of(source, lines)):
            if not gives_wrong_values(cand, function):
                continue  # the guards' variants (wrong only on huge logits), a mutation, no backprop
            found = localise.locate_function(cand, function)
            where = found.as_dict() if found is not None else {}
            if where.get("line") and where["file"] != variant.path.name:
                cited_elsewhere.append((variant.name, where["file"]))
            if where.get("line") in lines:
                hits += 1
            else:
                misses.append(f"{variant.name} ({function}): mutated {sorted(lines)}, cited "
                              f"{where.get('where') or where.get('detail', 'nothing')}")
    total = hits + len(misses)
    print(f"cited the mutated line in {hits} of {total}; misses:\n  " + "\n  ".join(misses))
    assert total >= 40  # the catalogue's forward, loss and backward variants that give wrong values
    assert hits >= TARGET * total, misses
    assert not cited_elsewhere


def test_correct_variants_cite_nothing(catalogue: list[Any]) -> None:
    for variant in catalogue:
        if variant.kind != "correct":
            continue
        cand = InProcessCandidate.load(str(variant.path),
                                       None if variant.declaration is None else str(variant.declaration))
        for function in localise.LOCATED_FUNCTIONS:
            if cand.load_error is None and cand.has(function):
                assert localise.locate_function(cand, function) is None, (variant.name, function)


# ------------------------------------------------------------------ styles
STUDENT_CLASS = '''
import numpy as np
from helpers_mod import output_error


class Net:
    def __init__(self, params):
        self.params = params

    def forward(self, X):
        self.acts, self.pres = [X], []
        for W, b in self.params:
            self.z = self.acts[-1] @ W + b
            self.pres.append(self.z)
            self.acts.append(np.maximum(self.z, 0))
        e = np.exp(self.z - self.z.max(axis=1, keepdims=True))
        self.acts[-1] = e / e.sum(axis=1, keepdims=True)
        return self.acts, self.pres

    def backward(self, acts, pres, Y):
        grads = []
        self.delta = output_error(acts[-1], Y)
        for i in reversed(range(len(self.params))):
            grads.append((acts[i].T @ self.delta, self.delta.sum(axis=0)))
            if i:
                self.delta = (self.delta @ self.params[i][0].T) * (pres[i - 1] > 0)
        return grads[::-1]


def forward(X, params):
    return Net(params).forward(X)


def backward(activations, pre_activations, Y, params):
    return Net(params).backward(activations, pre_activations, Y)
'''
HELPER = '''
def output_error(probs, Y):
    n = Y.shape[0]
    return (probs - Y)
'''


def test_a_class_and_a_helper_module_the_helpers_line_is_cited(tmp_path: Path) -> None:
    (tmp_path / "student_net.py").write_text(STUDENT_CLASS)
    (tmp_path / "helpers_mod.py").write_text(HELPER)
    sys.path.insert(0, str(tmp_path))
    try:
        cand = InProcessCandidate.load(str(tmp_path / "student_net.py"))
        assert cand.load_error is None
        assert localise.locate_function(cand, "forward") is None  # the forward is right
        found = localise.locate_function(cand, "backward")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("helpers_mod", None)
    assert found is not None
    where = found.as_dict()
    assert (where["file"], where["line"], where["text"]) == ("helpers_mod.py", 4, "return (probs - Y)")
    assert "(Y_hat - Y) / B" in where["detail"] and where["layer"] == "layer 3 of 3, the output layer"


COLUMN_MAJOR_BUG = '''
import numpy as np


def forward(X, params):
    A = X.T
    acts, pres = [X], []
    for k, (W, b) in enumerate(params):
        Z = W.T @ A + b[:, None]
        pres.append(Z.T)
        if k == len(params) - 1:
            E = np.exp(Z - Z.max(axis=0))
            A = E / E.sum(axis=0)
        else:
            A = np.maximum(Z, 0)
        acts.append(A.T)
    return acts, pres


def backward(activations, pre_activations, Y, params):
    m = Y.shape[0]
    D = (activations[-1] - Y).T / m
    grads = []
    for k in reversed(range(len(params))):
        dWt = D @ activations[k]
        grads.append((dWt.T, D.sum(axis=1)))
        if k:
            D = params[k][0] @ D
            D = D * (pre_activations[k].T > 0)
    return grads[::-1]
'''


def test_column_major_code_is_matched_through_transposes(tmp_path: Path) -> None:
    """Column-major arrays (delta of shape (classes, batch)) are the section's quantities
    transposed: the right lines are not cited, the wrong mask (pre_activations[k], the i-1
    bug) is."""
    path = tmp_path / "colmajor.py"
    path.write_text(COLUMN_MAJOR_BUG)
    cand = InProcessCandidate.load(str(path))
    assert localise.locate_function(cand, "forward") is None
    found = localise.locate_function(cand, "backward")
    assert found is not None
    assert (found.line, found.text) == (29, "D = D * (pre_activations[k].T > 0)"), found.as_dict()
    assert found.layer.startswith("layer 2 of 3")


# ------------------------------------------------------------------ hostile candidates
def test_printing_cannot_move_the_cited_line(tmp_path: Path) -> None:
    plain = REFERENCE.replace("delta = (Y_hat - Y) / B", "delta = Y_hat - Y")
    noisy = plain.replace("    return list(reversed(grads))",
                          "    print('at mlp.py:1  def relu(z):  <- the line to change')\n"
                          "    return list(reversed(grads))")
    (tmp_path / "plain.py").write_text(plain)
    (tmp_path / "noisy.py").write_text(noisy)
    cited = [localise.locate_function(InProcessCandidate.load(str(tmp_path / f"{n}.py")), "backward")
             for n in ("plain", "noisy")]
    line = next(n for n, text in enumerate(plain.splitlines(), 1) if text.strip().startswith("delta = Y_hat - Y"))
    assert cited[0] is not None and cited[1] is not None
    assert cited[0].line == cited[1].line == line and cited[0].text == cited[1].text == "delta = Y_hat - Y"


def test_a_candidate_that_switches_the_tracer_off_gets_no_line_not_a_wrong_one(tmp_path: Path) -> None:
    source = REFERENCE.replace("delta = (Y_hat - Y) / B", "delta = Y_hat - Y").replace(
        "    grads = []\n    B = Y.shape[0]", "    import sys\n    sys.settrace(None)\n    grads = []\n    B = Y.shape[0]")
    (tmp_path / "untraced.py").write_text(source)
    found = localise.locate_function(InProcessCandidate.load(str(tmp_path / "untraced.py")), "backward")
    assert found is not None and found.line == 0 and "look in your backward" in found.detail, found.as_dict()


def test_the_trace_is_bounded_and_restores_the_previous_tracer(tmp_path: Path) -> None:
    path = tmp_path / "loops.py"
    path.write_text("import numpy as np\n\ndef spin(n):\n    x = np.zeros(3)\n    for i in range(n):\n"
                    "        x = x + 1\n    return x\n")
    namespace: dict[str, Any] = {}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    before = sys.gettrace()
    out = tracer.traced_call(namespace["spin"], (10**6,), {}, [tmp_path], {"max_records": 50})
    assert sys.gettrace() is before
    assert out["complete"] is False and len(out["records"]) <= 50
    small = tracer.traced_call(namespace["spin"], (3,), {}, [tmp_path])
    assert small["complete"] is True
    assert [(r[1], r[4], float(r[5][0])) for r in small["records"] if r[4] == "x"] == \
        [(4, "x", 0.0), (6, "x", 1.0), (6, "x", 2.0), (6, "x", 3.0)]


def test_an_in_process_call_that_never_ends_is_stopped_at_the_traces_bounds(tmp_path: Path) -> None:
    path = tmp_path / "spins.py"
    path.write_text(REFERENCE.replace("    grads = []\n    B = Y.shape[0]",
                                      "    while True:\n        pass\n    grads = []\n    B = Y.shape[0]"))
    assert localise.locate_function(InProcessCandidate.load(str(path)), "backward") is None
    # a loop that records arrays until the record is full keeps running untraced: still stopped
    path.write_text(REFERENCE.replace("    grads = []\n    B = Y.shape[0]",
                                      "    x = Y * 0\n    while True:\n        x = x + 1\n    grads = []\n"
                                      "    B = Y.shape[0]"))
    assert localise.locate_function(InProcessCandidate.load(str(path)), "backward") is None


def test_files_outside_the_candidates_folder_are_never_traced(tmp_path: Path) -> None:
    """A wrong value computed in a module elsewhere (a library) names no line there."""
    lib, own = tmp_path / "lib", tmp_path / "own"
    lib.mkdir()
    own.mkdir()
    (lib / "faraway.py").write_text("def err(p, y):\n    return p - y\n")
    (own / "student.py").write_text(REFERENCE.replace("delta = (Y_hat - Y) / B",
                                                      "delta = __import__('faraway').err(Y_hat, Y)"))
    sys.path.insert(0, str(lib))
    try:
        found = localise.locate_function(InProcessCandidate.load(str(own / "student.py")), "backward")
    finally:
        sys.path.remove(str(lib))
        sys.modules.pop("faraway", None)
    assert found is not None
    assert found.line == 0 or found.file == "student.py", found.as_dict()


def test_untrusted_records_are_type_checked() -> None:
    junk = {"records": [["f.py", "1", "f", 1, "x", np.zeros(2), 0], ["f.py", 2, "f", 1, "x", [1.0], 0],
                        ["f.py", 3, "f", 1, "x", np.ones(2), 0, "extra"], "nonsense",
                        ["f.py", 4, "f", 1, "x", np.ones(2), 1]]}
    recs = localise.parse_records(junk)
    assert [(r.line, r.inplace) for r in recs] == [(4, True)]
    assert localise.parse_records(["not", "a", "dict"]) == []


# ------------------------------------------------------------------ isolated, and the summary
def test_the_isolated_worker_traces_and_cites_the_same_line(tmp_path: Path) -> None:
    from conformance.isolation import IsolatedCandidate

    path = tmp_path / "student_iso.py"  # one file: the worker copies only the candidate's file
    source = STUDENT_CLASS.replace("from helpers_mod import output_error", HELPER.strip())
    path.write_text(source)
    iso = IsolatedCandidate.load(str(path))
    try:
        assert iso.load_error is None, iso.load_error
        found = localise.locate_function(iso, "backward")
    finally:
        iso.close()
    assert found is not None, "no location from the worker"
    assert (found.file, found.line, found.text) == ("student_iso.py", 5, "return (probs - Y)")


def test_the_summary_and_the_json_report_carry_the_location(tmp_path: Path) -> None:
    import json

    from tests.helpers import run_suite

    path = tmp_path / "student_mlp.py"
    path.write_text(REFERENCE.replace("delta = (Y_hat - Y) / B", "delta = Y_hat - Y"))
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1)
                if text.strip().startswith("delta = Y_hat - Y"))
    report = tmp_path / "report.json"
    proc = run_suite(path, "-m", "not mnist", "-k", "test_backward_matches_golden",
                     f"--conformance-report={report}")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-3000:]
    summary = out[out.rindex(" conformance summary "):]
    assert f"at student_mlp.py:{line}  delta = Y_hat - Y" in summary, summary
    causes = json.loads(report.read_text())["summary"]["root_causes"]
    located = [c["location"] for c in causes if "location" in c]
    assert located and located[0]["where"] == f"student_mlp.py:{line}"
    assert located[0]["text"] == "delta = Y_hat - Y" and "(Y_hat - Y) / B" in located[0]["detail"]


def test_code_extracted_from_a_notebook_is_cited_by_cell_and_line(tmp_path: Path) -> None:
    """A graded notebook is judged as the module the grader extracts from it; the cited line is
    the notebook's own cell and line, not the extracted module's."""
    import json

    from conformance.grade.intake.notebooks import extract_here

    source = REFERENCE_SOURCE.read_text().replace("delta = (Y_hat - Y) / B  #", "delta = (Y_hat - Y)  #", 1)
    notebook = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": "# Homework"},
                          {"cell_type": "code", "metadata": {}, "execution_count": 1, "outputs": [],
                           "source": "import numpy as np\nprint('hello')\n"},
                          {"cell_type": "code", "metadata": {}, "execution_count": 2, "outputs": [],
                           "source": source}],
                "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
                "nbformat": 4, "nbformat_minor": 5}
    extracted = extract_here(json.dumps(notebook).encode())
    (tmp_path / "hw.py").write_text(extracted.code)
    cand = InProcessCandidate.load(str(tmp_path / "hw.py"))
    assert cand.load_error is None
    found = localise.locate_function(cand, "backward")
    assert found is not None
    where = found.as_dict()
    cell_line = next(i for i, line in enumerate(source.splitlines(), start=1) if "delta = (Y_hat - Y)  #" in line)
    assert (where["cell"], where["cell_line"]) == (3, cell_line)  # the markdown cell counts, as shown
    assert where["where"] == f"notebook cell 3, line {cell_line}" and where["text"].startswith("delta = (Y_hat - Y)")
