"""Hostile intake: no submission stops, fools or exhausts the
trusted grader while it reads, unzips, decodes and parses; notebooks are graded for what
Restart & Run All defines; archives that expand out of proportion are refused; a stray
file never takes or blanks a roster id. The entries come from tests/adversarial/intake/.
"""

from __future__ import annotations

import csv
import io
import json
import resource
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.adversarial.intake import corpus
from conformance.grade import batch
from conformance.grade.intake import bounded, notebooks
from conformance.grade.intake.lms import load_roster
from conformance.grade.intake.bounded import NotebookError
from conformance.grade.intake.notebooks import GRADED_NAMES, extract, extract_here
from conformance.grade.publish.outputs import write_class_csvs
from conformance.grade.intake.submissions import load_submission, scan_class

pytest.importorskip("nbformat", reason="the grade extra (nbformat) is needed for notebooks")

REPO = Path(__file__).resolve().parents[1]


def module_of(sub) -> dict:
    """Run the module the intake made (our own test of its text, never a student's work)."""
    namespace: dict = {"__name__": "extracted"}
    exec(compile(sub.files[sub.module].decode(), sub.module, "exec"), namespace)  # noqa: S102
    return namespace


def test_graded_names_are_the_suites() -> None:
    from conformance.calls import OPT_OUT_NAME
    from conformance.candidate import OPTIONAL_FUNCTIONS, REQUIRED_FUNCTIONS

    assert set(GRADED_NAMES) == {*REQUIRED_FUNCTIONS, *OPTIONAL_FUNCTIONS, OPT_OUT_NAME}


# -- bounded: every failure is one row, the class goes on --------------------------------------


def test_parser_exhaustion_is_one_row_each_and_the_class_goes_on(tmp_path: Path) -> None:
    corpus.deep_expression(tmp_path)
    corpus.deep_json(tmp_path)
    corpus.long_integer_code(tmp_path)
    corpus.long_integer_json(tmp_path)
    corpus.bom_notebook(tmp_path)
    corpus.r_kernel_notebook(tmp_path)
    corpus.empty_notebook(tmp_path)
    corpus.honest_notebook(tmp_path)
    (tmp_path / "alice.py").write_text(corpus.REFERENCE)
    intake = scan_class(tmp_path)
    rows = {s.name: s for s in intake.submissions}
    assert len(rows) == 9 and len(intake.records) == 9
    status = {n: (s.problem_status if s.problem else "ok") for n, s in rows.items()}
    assert status == {"deep": "ok", "deepjson": "invalid_submission", "longint": "ok", "longintjson": "invalid_submission",
                      "bom": "invalid_submission", "rkernel": "unsupported", "empty": "no_module", "honest": "ok",
                      "alice": "ok"}
    # The unparsable cell is dropped with its reason; the functions beside it are graded.
    assert "nested too deeply" in " ".join(rows["deep"].intake.notes)
    assert "4300-digit" in " ".join(rows["longint"].intake.notes)
    assert "def backward" in rows["deep"].files[rows["deep"].module].decode()
    assert "4300-digit" in rows["longintjson"].problem
    assert "byte-order mark (BOM)" in rows["bom"].problem
    assert "a notebook in R (kernel 'ir'" in rows["rkernel"].problem and "not Python" in rows["rkernel"].problem
    assert "no code" in rows["empty"].problem
    assert "nested too deeply" in rows["deepjson"].problem or "JSON" in rows["deepjson"].problem


def test_the_same_notebooks_inside_archives_and_folders_are_one_row_each(tmp_path: Path) -> None:
    """The class of the first test, one level down: a zip or folder holding a hostile notebook."""
    staging = tmp_path / "staging"
    staging.mkdir()
    members = {"deep/mlp.ipynb": corpus.deep_expression(staging).read_bytes(),
               "rk/hw.ipynb": corpus.r_kernel_notebook(staging).read_bytes(),
               "bom/hw.ipynb": corpus.bom_notebook(staging).read_bytes()}
    subs = tmp_path / "subs"
    subs.mkdir()
    for member, data in members.items():
        (subs / f"{member.split('/')[0]}.zip").write_bytes(corpus.zip_bytes({member: data}))
    (subs / "alice.py").write_text(corpus.REFERENCE)
    rows = {s.name: s for s in scan_class(subs).submissions}
    assert not rows["deep"].problem and "nested too deeply" in " ".join(rows["deep"].intake.notes)
    assert rows["rk"].problem_status == "unsupported" and "not Python" in rows["rk"].problem
    assert rows["bom"].problem_status == "invalid_submission" and "byte-order mark" in rows["bom"].problem
    assert not rows["alice"].problem


def test_a_notebook_over_the_memory_limit_is_refused_or_dropped_by_name(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The parse happens in a child with an address-space limit (lowered here so the test is
    cheap): the big cell is dropped, naming why, and the grader itself never holds it."""
    monkeypatch.setattr(bounded, "CHILD_MEMORY", 160 * 1024 * 1024)
    sub = load_submission(corpus.big_list_literal(tmp_path, megabytes=2))
    notes = " ".join(sub.intake.notes)
    if sub.problem:  # the child could not even read the JSON within the limit
        assert sub.problem_status == "invalid_submission" and "MB" in sub.problem
    else:
        assert "too large for the grader's parser" in notes
        assert callable(module_of(sub)["backward"])


def test_a_notebook_over_the_cpu_limit_is_refused_as_its_own_doing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """100,000 cells take seconds of CPU to validate; with a 1 s limit (lowered here) the
    reader is stopped by the kernel's CPU limit, which is the notebook's doing, not the
    machine's (a wall-clock timeout would be)."""
    monkeypatch.setattr(bounded, "CHILD_CPU_SECONDS", 1)
    sub = load_submission(corpus._write(tmp_path, "many.ipynb", corpus.notebook_json(*(["x = 1"] * 100_000))))
    assert sub.problem_status == "invalid_submission" and "1 s of CPU time" in sub.problem


def test_intake_errors_of_the_machine_are_one_rows_grader_error_not_the_batchs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus.honest_notebook(tmp_path)
    (tmp_path / "alice.py").write_text(corpus.REFERENCE)
    monkeypatch.setattr(notebooks.sys, "executable", str(tmp_path / "no-such-python"))
    rows = {s.name: s for s in scan_class(tmp_path).submissions}
    assert rows["honest"].problem_status == "error" and "grader error" in rows["honest"].problem
    assert not rows["honest"].missing_library and not rows["alice"].problem
    batch._refuse_unreadable(list(rows.values()))  # does not stop the class: one row is retried


def test_a_child_that_outlives_the_wall_clock_limit_is_a_grader_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bounded, "CHILD_WALL_SECONDS", 0.001)
    sub = load_submission(corpus.honest_notebook(tmp_path))
    assert sub.problem_status == "error" and "wall-clock" in sub.problem


def test_any_unexpected_failure_of_the_intake_is_that_rows_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from conformance.grade.intake import submissions

    def boom(*args: object) -> None:
        raise KeyError("a grader bug")

    monkeypatch.setattr(submissions, "_read_zip", boom)
    corpus.honest_zip_with_data_zip(tmp_path)
    (tmp_path / "alice.py").write_text(corpus.REFERENCE)
    rows = {s.name: s for s in scan_class(tmp_path).submissions}
    assert rows["honestzip"].problem_status == "error" and "KeyError" in rows["honestzip"].problem
    assert not rows["alice"].problem


@pytest.mark.slow
def test_peak_grader_memory_on_the_big_notebooks_stays_far_below_1_gb(tmp_path: Path) -> None:
    """The issue's measurement: 8 MB list literal and a deep 1+1+... notebook, read by a
    fresh grader process; its own peak memory and its reader children's stay bounded."""
    corpus.big_list_literal(tmp_path)
    corpus.deep_expression(tmp_path, terms=200_000)
    corpus.honest_notebook(tmp_path)
    script = textwrap.dedent(f"""
        import json, resource, sys
        sys.path.insert(0, {str(REPO)!r})
        from conformance.grade.intake.submissions import scan_class
        rows = {{s.name: s.problem_status if s.problem else "ok" for s in scan_class(__import__("pathlib").Path({str(tmp_path)!r})).submissions}}
        print(json.dumps([rows, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                          resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, check=True)
    rows, own_kb, children_kb = json.loads(proc.stdout)
    assert rows == {"biglist": "ok", "deep": "ok", "honest": "ok"}
    assert own_kb < 300 * 1024, own_kb  # the grader never parses the submission itself
    assert children_kb < bounded.CHILD_MEMORY // 1024  # each reader stays under its limit


# -- Restart & Run All: what the graded functions need ------------------------------------------


@pytest.mark.parametrize("builder", [corpus.factory_notebook, corpus.time_cell_notebook, corpus.capture_cell_notebook])
def test_correct_notebooks_in_other_styles_define_every_graded_function(builder, tmp_path: Path) -> None:
    sub = load_submission(builder(tmp_path))
    assert not sub.problem, sub.problem
    namespace = module_of(sub)  # a 10**9 loop or a training run would hang here: none is kept
    for name in ("forward", "backward", "relu", "softmax", "cross_entropy", "init_params", "train"):
        assert callable(namespace[name]), name
    import numpy as np

    z = np.array([[-1.0, 0.0, 2.0]])
    assert np.allclose(namespace["relu"](z), [[0.0, 0.0, 2.0]])
    assert np.allclose(namespace["softmax"](z).sum(), 1.0)


def test_factory_and_magic_bodies_are_kept_and_the_page_says_what_was_dropped(tmp_path: Path) -> None:
    sub = load_submission(corpus.factory_notebook(tmp_path))
    notes = " ".join(sub.intake.notes)
    assert "softmax = make_softmax(stable=True)" in notes and "relu = np.vectorize" in notes  # kept, listed
    assert "for epoch in range(10**9)" in notes and "not needed by the graded functions" in notes
    assert "cell magic %%time" in notes and "Python body is kept" in notes
    capture = load_submission(corpus.capture_cell_notebook(tmp_path))
    notes = " ".join(capture.intake.notes)
    for dropped in ("%%timeit", "%%bash", "%%writefile"):
        assert dropped in notes, dropped
    namespace = module_of(capture)
    assert "TIMED" not in namespace  # %%timeit runs its body in a function of its own
    assert namespace["SCALE"] == 1.0  # %time keeps its statement


def test_transitive_needs_are_kept_and_unrelated_work_is_not(tmp_path: Path) -> None:
    """forward reads SCALE, computed by a helper from a table; loops that bind the same loop
    variable names as forward's locals, and the training, are not pulled in."""
    cells = (
        "import numpy as np",
        "TABLE = {'relu': 1.0}\nTABLE['relu'] *= 1.0",
        "def scale_for(kind):\n    return TABLE[kind]",
        "SCALE = scale_for('relu')",
        corpus.REFERENCE.replace("return np.maximum(0, z)", "return SCALE * np.maximum(0, z)"),
        "for i in range(3):\n    z = i\nopen(FLAG, 'w').write('ran')",
        "params = init_params([4, 3, 2])\nhistory = train(params)",
    )
    result = extract_here(corpus.notebook_json(*cells).encode())
    flag = tmp_path / "flag"
    namespace = {"FLAG": str(flag)}
    exec(compile(result.code, "nb", "exec"), namespace)  # noqa: S102 - our own test notebook
    assert namespace["SCALE"] == 1.0 and not flag.exists() and "history" not in namespace
    assert any("SCALE = scale_for" in w for w in result.needed_work)
    assert any("TABLE['relu'] *= 1.0" in w for w in result.needed_work)  # a mutation of a needed name
    assert any("for i in range(3)" in d for d in result.dropped)


def test_a_graded_function_using_an_ipython_only_name_is_named_not_charged(tmp_path: Path) -> None:
    sub = load_submission(corpus.ipython_binding(tmp_path))
    assert sub.problem_status == "import_error"  # not run: no charged mistake
    assert "forward/train uses FILES" in sub.problem and "cell 3, line 1" in sub.problem and "FILES = !ls" in sub.problem
    # The same shell escape, used by no graded function, costs nothing.
    ok = extract_here(corpus.notebook_json(corpus.REFERENCE, "FILES = !ls", "def show():\n    print(FILES)").encode())
    assert ok.problem() is None and any("FILES = !ls" in d for d in ok.dropped)


def test_a_factory_that_fails_at_definition_time_fails_its_function_by_name(tmp_path: Path) -> None:
    sub = load_submission(corpus.failing_factory(tmp_path))
    assert not sub.problem
    namespace = module_of(sub)  # the import itself succeeds: forward and backward are judged
    assert callable(namespace["backward"])
    with pytest.raises(RuntimeError, match=r"cell 4, line 1 of the notebook raised ValueError: broken factory"):
        namespace["softmax"]([[1.0]])


def test_definition_time_work_never_runs_in_the_grader(tmp_path: Path) -> None:
    flag = tmp_path / "ran"
    cells = (corpus.REFERENCE.replace("def softmax(", "def _softmax("),
             f"def make():\n    open({str(flag)!r}, 'w').write('x')\n    return _softmax",
             "softmax = make()")
    sub = load_submission(corpus._write(tmp_path, "nb.ipynb", corpus.notebook_json(*cells)))
    assert not sub.problem and not flag.exists()  # kept for the worker, not run while reading
    module_of(sub)
    assert flag.exists()


def test_notebook_in_a_folder_keeps_its_status_when_it_is_the_module(tmp_path: Path) -> None:
    folder = tmp_path / "rfolder"
    folder.mkdir()
    corpus.r_kernel_notebook(folder, "hw.ipynb")
    sub = load_submission(folder)
    assert sub.problem_status == "unsupported" and "in R (kernel" in sub.problem
    folder2 = tmp_path / "ipyfolder"
    folder2.mkdir()
    corpus.ipython_binding(folder2, "mlp.ipynb")
    sub = load_submission(folder2)
    assert sub.problem_status == "import_error" and "forward/train uses FILES" in sub.problem


def test_extract_refuses_a_bom_without_a_child(tmp_path: Path) -> None:
    with pytest.raises(NotebookError, match="byte-order mark") as info:
        extract(corpus.bom_notebook(tmp_path).read_bytes())
    assert info.value.status == "invalid_submission"


# -- archives ---------------------------------------------------------------------------------


@pytest.mark.parametrize("builder, message", [
    (corpus.ratio_bomb, "the member 'hw.ipynb' expands"),
    (corpus.nested_zip_bomb, "nested zip bomb refused"),
    (corpus.nested_ratio_bomb, "of the archive 'data.zip' inside it expands"),
    (corpus.gzip_bomb, "nested zip bomb refused: 'data.gz'"),
    (corpus.overlap_bomb, "share their compressed data"),
])
def test_archive_bombs_are_refused_with_the_reason(builder, message: str, tmp_path: Path) -> None:
    sub = load_submission(builder(tmp_path))
    assert sub.problem_status == "invalid_submission" and "bomb refused" in sub.problem, sub.problem
    assert message in sub.problem and not sub.files


def test_a_data_archive_the_worker_would_unpack_is_checked_too(tmp_path: Path) -> None:
    """.npz is a zip (np.load unpacks it in the worker): a bomb in it is refused in a folder
    and in an archive; real weights pass."""
    import numpy as np

    bomb, weights = io.BytesIO(), io.BytesIO()
    np.savez_compressed(bomb, w=np.zeros((2000, 1000)))
    np.savez(weights, w=np.random.default_rng(0).standard_normal((200, 100)))
    for kind in ("folder", "zip"):
        for name, data in (("bomb", bomb.getvalue()), ("weights", weights.getvalue())):
            members = {"mlp.py": corpus.REFERENCE.encode(), "w.npz": data}
            entry = tmp_path / f"{kind}-{name}"
            if kind == "folder":
                entry.mkdir()
                for member, content in members.items():
                    (entry / member).write_bytes(content)
            else:
                entry = tmp_path / f"{kind}-{name}.zip"
                entry.write_bytes(corpus.zip_bytes(members))
            sub = load_submission(entry)
            if name == "bomb":
                assert sub.problem_status == "invalid_submission" and "'w.npz'" in sub.problem, sub.problem
            else:
                assert not sub.problem and "w.npz" in sub.files


def test_an_honest_archive_with_a_small_data_archive_is_graded(tmp_path: Path) -> None:
    sub = load_submission(corpus.honest_zip_with_data_zip(tmp_path))
    assert not sub.problem, sub.problem
    assert sub.module == "mlp.py" and "notes/plots.py" in sub.files and "data.zip" not in sub.files


# -- roster ids only from LMS names ------------------------------------------------------------


def test_a_stray_named_like_a_student_id_takes_no_id_and_blanks_no_one(tmp_path: Path) -> None:
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "smithbob_12345_777_mlp.py").write_text(corpus.REFERENCE)  # Canvas: Bob Smith, user 12345
    (subs / "12345.py").write_text("x = 1\n")  # a stray named like his id
    (subs / "bsmith.py").write_text("x = 1\n")  # ... like his e-mail
    (subs / "Bob Smith.py").write_text("x = 1\n")  # ... like his name
    (subs / "ann_lee.py").write_text(corpus.REFERENCE)  # a hand-in by name, no LMS file: matched
    roster_file = tmp_path / "roster.csv"
    roster_file.write_text("id,name,email\n12345,Bob Smith,bsmith@uni.example\n777,Ann Lee,alee@uni.example\n")
    intake = scan_class(subs, roster=load_roster(roster_file))
    ids = {s.intake.entry: s.intake.student_id for s in intake.submissions}
    assert ids == {"smithbob_12345_777_mlp.py": "12345", "12345.py": "", "bsmith.py": "", "Bob Smith.py": "",
                   "ann_lee.py": "777"}
    stray = next(s for s in intake.submissions if s.intake.entry == "Bob Smith.py")
    assert any("whose LMS submission has the id" in n for n in stray.intake.notes)
    # The Canvas export keeps Bob's score in his cell.
    from tests.test_intake import RUBRIC, graded

    write_class_csvs(tmp_path / "out", [graded(s) for s in intake.submissions], RUBRIC, intake)
    canvas = list(csv.reader(io.StringIO((tmp_path / "out" / "canvas_import.csv").read_text(encoding="utf-8-sig"))))
    by_id = {row[1]: row for row in canvas[2:]}
    assert by_id["12345"][-1] == "10" and by_id["777"][-1] == "10"


def test_child_process_limits_are_applied(tmp_path: Path) -> None:
    """The reader really runs under the limits (a change that dropped them would pass every
    other test here on a machine with enough memory)."""
    probe = ("import resource, sys; sys.path.insert(0, sys.argv[1]); from conformance.grade.intake.bounded import _limit_self; "
             "_limit_self(200 * 2**20, 7); print(resource.getrlimit(resource.RLIMIT_AS)[0], "
             "resource.getrlimit(resource.RLIMIT_CPU)[0])")
    out = subprocess.run([sys.executable, "-I", "-c", probe, str(REPO)], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(200 * 2**20), "7"]
    assert resource.getrlimit(resource.RLIMIT_AS)[0] != 200 * 2**20  # the grader itself is untouched


# -- end to end: the grader's own verdicts -----------------------------------------------------

E2E_RUBRIC = """
name = "notebook styles"
[areas.interface]
points = 20
[areas.gradients]
points = 40
[areas.stability]
points = 20
[areas.relu_index]
points = 20
"""


@pytest.mark.slow
def test_correct_notebooks_in_every_style_score_full_marks_and_hostile_ones_get_a_row(tmp_path: Path) -> None:
    """Graded by the real grader (sandboxed suite): the factory/np.vectorize/%%time/%%capture
    notebooks earn every point; a deep expression costs nothing; the IPython-only name is an
    import_error naming it, not a charged mistake; the bombs and the BOM are refused rows."""
    subs = tmp_path / "subs"
    subs.mkdir()
    for builder in (corpus.factory_notebook, corpus.time_cell_notebook, corpus.capture_cell_notebook,
                    corpus.deep_expression, corpus.ipython_binding, corpus.bom_notebook, corpus.ratio_bomb,
                    corpus.nested_zip_bomb):
        builder(subs)
    rubric = tmp_path / "rubric.toml"
    rubric.write_text(E2E_RUBRIC)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "conformance.grade", str(subs), "--out", str(out), "-j", "2",
                           "--rubric", str(rubric), "--no-require-mnist", "--pytest-arg=-m",
                           "--pytest-arg=not mnist", "--no-progress"],
                          cwd=REPO, capture_output=True, text=True, timeout=1500, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {r["submission"]: r for r in csv.DictReader(io.StringIO((out / "grades.csv").read_text(encoding="utf-8-sig")))}
    for name in ("factory", "timecell", "capture", "deep"):
        assert (rows[name]["status"], rows[name]["score"]) == ("graded", "100"), (name, rows[name])
    assert rows["ipybinding"]["status"] == "import_error"
    results = json.loads((out / "submissions" / "ipybinding" / "results.json").read_text())
    assert "forward/train uses FILES" in results["output"] and not results["extra_data"].get("mistakes")
    for name in ("bom", "ratio", "nested"):
        assert rows[name]["status"] == "invalid_submission", rows[name]
