"""Intake of a real class folder (conformance/grade/intake/submissions.py, notebooks.py, lms.py, sanitize.py).

The class below is what an LMS bulk download plus a few hand-ins really looks like:
Canvas-named files (a notebook with magics, a top-level training loop and plots; a zip
with a wrapping folder and __MACOSX; an upper-case .PY; two resubmissions of one student,
the newer one late), a Moodle folder, a Blackboard attempt with its receipt, a zip-slip, a
zip bomb, strays, hidden files, a file name carrying ANSI/OSC escapes, "zoë müller" and
identity attacks (a folder next to a file of the same name, a file named after a
classmate's slug). Everything but one small end-to-end batch runs without the suite.
"""

from __future__ import annotations

import csv
import io
import json
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conformance.grade import cli
from conformance.grade.intake.lms import RosterError, canvas_csv, load_roster, parse_lms_name
from conformance.grade.intake.notebooks import extract
from conformance.grade.publish.outputs import GradedSubmission, gradescope_results, write_class_csvs
from conformance.grade.score.rubric import parse_rubric, score
from conformance.grade.intake.sanitize import clean_name, clean_text, csv_cell, html_escape, raw_hex
from conformance.grade.intake.submissions import (
    MAX_ARCHIVE_EXPANDED,
    MAX_ARCHIVE_MEMBERS,
    load_submission,
    scan_class,
    slugify,
)

nbformat = pytest.importorskip("nbformat", reason="the grade extra (nbformat) is needed for notebooks")

REPO = Path(__file__).resolve().parents[1]
REFERENCE = (REPO / "conformance" / "reference" / "mlp.py").read_text()
ANSI_NAME = "\x1b]0;pwned\x07\x1b[32m112 passed\x1b[0m\u202egpj"
# Characters that must never reach a terminal or a file written by the grader.
HOSTILE_CHARS = ("\x1b", "\x07", "\u202e", "\x9b", "\r")


def hostile_in(data: bytes | str) -> list[str]:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return [repr(c) for c in HOSTILE_CHARS if c in text]
ROSTER = ("id,name,email\n"
          "1001,Yolanda Ng,yng@uni.example\n"
          "1002,Walter Walker,wwalker@uni.example\n"
          "1003,Zack Smith,zsmith@uni.example\n"
          "1004,Bob Brown,bbrown@uni.example\n"
          "1005,Zoë Müller,zmueller@uni.example\n"
          "1006,Mallory Evil,mevil@uni.example\n"
          "1007,Betty Bomb,bbomb@uni.example\n"
          "1009,Moe Moodle,moe@uni.example\n"
          "jblack,Jo Black,jblack@uni.example\n"
          "1010,Nina Nohand,nnohand@uni.example\n")


def notebook(*cells: str) -> str:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Homework 3: backprop")]
    nb.cells += [nbformat.v4.new_code_cell(c) for c in cells]
    return nbformat.writes(nb)


# A notebook as students write it: the judged functions plus magics, a training loop that
# would never end, plots and prints at top level. FLAG proves top-level work never runs.
NOTEBOOK_CELLS = (
    ("%matplotlib inline\n%load_ext autoreload\nimport numpy as np\nimport matplotlib.pyplot as plt\n"
     "!pip install tqdm"),
    REFERENCE,
    "%%time\nwhile True:\n    pass",
    ("SIZES = [784, 64, 10]\nLR = 0.1\nRNG = np.random.default_rng(0)\nparams = init_params(SIZES, RNG)\n"
     "open(FLAG, 'w').write('top-level work ran')\nfor epoch in range(10**9):\n    pass\n"
     "plt.plot([1, 2, 3])\nprint('accuracy', 0.97)\nfiles = !ls\nnp.linalg.norm?"),
)


def write_zip(path: Path, members: dict[str, bytes | str], symlinks: tuple[str, ...] = ()) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        for name in symlinks:
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16)
            archive.writestr(info, "/etc/passwd")
    return path


def write_bomb(path: Path) -> Path:
    """A real zip bomb: more zeros than MAX_ARCHIVE_EXPANDED in a ~0.3 MB file."""
    chunk = bytes(1024 * 1024)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive, \
            archive.open("mlp.py", "w", force_zip64=True) as member:
        for _ in range(MAX_ARCHIVE_EXPANDED // len(chunk) + 1):
            member.write(chunk)
    return path


def build_class(root: Path) -> Path:
    subs = root / "subs"
    subs.mkdir(parents=True)
    (subs / "ngyolanda_1001_9001_hw3.ipynb").write_text(notebook(*NOTEBOOK_CELLS))
    write_zip(subs / "walkerwalter_1002_9002_walter.zip",
              {"walter/mlp.py": REFERENCE, "walter/notes.md": "my notes",
               "__MACOSX/walter/._mlp.py": "junk", "walter/.DS_Store": "junk"})
    (subs / "smithzack_1003_9003_zack_hw3.PY").write_text(REFERENCE)
    # Two resubmissions of Bob: the newer (-1, late) counts even though its mtime is older.
    older, newer = subs / "brownbob_1004_9004_mlp.py", subs / "brownbob_late_1004_9005_mlp-1.py"
    older.write_text(REFERENCE.replace("pre_activations[i - 1]", "pre_activations[i]"))
    newer.write_text(REFERENCE)
    os.utime(newer, (1_000_000, 1_000_000))
    write_zip(subs / "evilmallory_1006_9006_slip.zip", {"mlp.py": REFERENCE, "../../escape.py": "x = 1"})
    write_bomb(subs / "bombbetty_1007_9007_bomb.zip")
    moodle = subs / "Moe Moodle_1009_assignsubmission_file_"
    moodle.mkdir()
    (moodle / "mlp.py").write_text(REFERENCE)
    (subs / "Assignment 3_jblack_attempt_2026-03-01-10-00-00_mlp.py").write_text(REFERENCE)
    (subs / "Assignment 3_jblack_attempt_2026-03-01-10-00-00.txt").write_text("receipt")
    (subs / "zoë müller.py").write_text(REFERENCE)
    (subs / f"{ANSI_NAME}.py").write_text(REFERENCE)
    (subs / "carol.py").write_text(REFERENCE)
    (subs / "carol").mkdir()
    (subs / "carol" / "mlp.py").write_text("def forward(*a):\n    return 1\n")
    (subs / f"{slugify('zoë müller')}.py").write_text("# takes the slug of a classmate\n")
    (subs / "index.py").write_text(REFERENCE)
    (subs / "report.pdf").write_bytes(b"%PDF-1.4")
    (subs / ".secret.py").write_text(REFERENCE)
    (subs / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (subs / "__MACOSX").mkdir()
    (subs / "Thumbs.db").write_bytes(b"x")
    (root / "roster.csv").write_text(ROSTER, encoding="utf-8")
    return subs


@pytest.fixture(scope="module")
def lms_class(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("lms")
    subs = build_class(root)
    roster = load_roster(root / "roster.csv")
    intake = scan_class(subs, roster=roster)
    return {"root": root, "subs": subs, "intake": intake,
            "rows": {s.intake.entry: s for s in intake.submissions}}


# -- one row per entry ----------------------------------------------------------------


def test_every_entry_is_accounted_for_exactly_once(lms_class: dict) -> None:
    intake = lms_class["intake"]
    entries = sorted(p.name for p in lms_class["subs"].iterdir())
    recorded = [bytes.fromhex(r.raw_hex).decode("utf-8", "surrogateescape") for r in intake.records]
    assert sorted(recorded) == entries  # raw names recovered exactly, each once
    outcomes = {r.entry: r.outcome for r in intake.records}
    assert outcomes[".DS_Store"] == outcomes["__MACOSX"] == outcomes["Thumbs.db"] == "ignored"
    assert sorted(intake.ignored) == [".DS_Store", "Thumbs.db", "__MACOSX"]
    assert outcomes["brownbob_1004_9004_mlp.py"] == "superseded"
    assert outcomes["Assignment 3_jblack_attempt_2026-03-01-10-00-00.txt"] == "superseded"
    rows = [r for r in intake.records if r.outcome not in ("ignored", "superseded")]
    assert len(rows) == len(intake.submissions) == len({s.name for s in intake.submissions})
    assert all(r.row for r in intake.records if r.outcome != "ignored")


def test_statuses_and_reasons(lms_class: dict) -> None:
    rows = lms_class["rows"]
    status = {entry: (s.problem_status if s.problem else "ok") for entry, s in rows.items()}
    assert status["ngyolanda_1001_9001_hw3.ipynb"] == "ok"
    assert status["walkerwalter_1002_9002_walter.zip"] == "ok"
    assert rows["walkerwalter_1002_9002_walter.zip"].files.keys() == {"mlp.py", "notes.md"}
    assert status["smithzack_1003_9003_zack_hw3.PY"] == "unsupported"
    assert "'.PY' is not '.py'" in rows["smithzack_1003_9003_zack_hw3.PY"].problem
    assert status["report.pdf"] == status[".secret.py"] == "unsupported"
    assert "hidden" in rows[".secret.py"].problem
    slip = rows["evilmallory_1006_9006_slip.zip"]
    assert slip.problem_status == "invalid_submission" and "path traversal" in slip.problem
    assert not slip.files
    bomb = rows["bombbetty_1007_9007_bomb.zip"]
    assert bomb.problem_status == "invalid_submission" and "zip bomb refused" in bomb.problem
    assert status["Moe Moodle_1009_assignsubmission_file_"] == "ok"


def test_lms_names_roster_ids_and_resubmissions(lms_class: dict) -> None:
    rows = lms_class["rows"]
    ids = {entry: s.intake.student_id for entry, s in rows.items()}
    assert ids["ngyolanda_1001_9001_hw3.ipynb"] == "1001"
    assert ids["walkerwalter_1002_9002_walter.zip"] == "1002"
    assert ids["Moe Moodle_1009_assignsubmission_file_"] == "1009"
    assert ids["Assignment 3_jblack_attempt_2026-03-01-10-00-00_mlp.py"] == "jblack"
    assert ids["zoë müller.py"] == "1005"  # matched by name: case and accents ignored
    assert rows["zoë müller.py"].intake.student_name == "Zoë Müller"
    bob = rows["brownbob_late_1004_9005_mlp-1.py"]  # the resubmission counts, not the later mtime
    assert bob.intake.student_id == "1004" and bob.intake.late
    assert bob.intake.superseded == ["brownbob_1004_9004_mlp.py (older)"]
    assert bob.files[bob.module] == REFERENCE.encode()
    assert "brownbob_1004_9004_mlp.py" not in rows
    assert rows["report.pdf"].intake.student_id == ""
    assert any("matches no roster student" in n for n in rows["report.pdf"].intake.notes)


@pytest.mark.parametrize("name, lms, user, late, resubmission, receipt", [
    ("smithbob_340934_208490284_mlp.py", "canvas", "340934", False, 0, False),
    ("smithbob_late_340934_208490284_mlp-2.py", "canvas", "340934", True, 2, False),
    ("Zoë Müller_123456_assignsubmission_file_mlp.ipynb", "moodle", "123456", False, 0, False),
    ("Zoë Müller_123456_assignsubmission_file_", "moodle", "123456", False, 0, False),
    ("HW 3_jsmith_attempt_2026-01-31-23-59-59_mlp.py", "blackboard", "jsmith", False, 0, False),
    ("HW 3_jsmith_attempt_2026-01-31-23-59-59_LATE_mlp.py", "blackboard", "jsmith", True, 0, False),
    ("HW 3_jsmith_attempt_2026-01-31-23-59-59.txt", "blackboard", "jsmith", False, 0, True),
])
def test_lms_file_name_conventions(name, lms, user, late, resubmission, receipt) -> None:
    parsed = parse_lms_name(name)
    assert parsed is not None and (parsed.lms, parsed.user, parsed.late) == (lms, user, late)
    assert (parsed.resubmission, parsed.receipt) == (resubmission, receipt)


def test_a_student_cannot_borrow_a_classmates_lms_prefix(tmp_path: Path) -> None:
    """The LMS writes the prefix; the tail is the student's file name. A tail that carries a
    classmate's prefix (in any LMS's format) stays the uploader's."""
    (tmp_path / "brownbob_1004_1_mlp.py").write_text(REFERENCE)
    (tmp_path / "HW_jblack_attempt_2026-01-01-00-00-00_mlp.py").write_text(REFERENCE)  # Blackboard
    for n, tail in enumerate(["brownbob_1004_3_mlp.py", "Bob Brown_1004_assignsubmission_file_mlp.py",
                              "HW_1004_attempt_2030-01-01-00-00-00_mlp.py"], start=2):
        (tmp_path / f"evilmallory_1006_{n}_{tail}").write_text("def forward(*a):\n    return 0\n")
        os.utime(tmp_path / f"evilmallory_1006_{n}_{tail}", (2e9, 2e9))  # "newer" than Bob's
    (tmp_path / "HW_jblack_attempt_2026-01-01-00-00-00_x_9_9_y.py").write_text(REFERENCE)
    rows = scan_class(tmp_path).submissions
    subs = {(s.intake.entry.split("_")[0], s.intake.student_id): s for s in rows}
    assert sorted(subs) == [("HW", "jblack"), ("brownbob", "1004"), ("evilmallory", "1006")]
    assert subs[("brownbob", "1004")].intake.entry == "brownbob_1004_1_mlp.py"
    assert not subs[("brownbob", "1004")].intake.superseded
    assert len(subs[("evilmallory", "1006")].intake.superseded) == 2
    assert len(subs[("HW", "jblack")].intake.superseded) == 1  # the tail x_9_9_y is not Canvas


@pytest.mark.parametrize("name", ["alice.py", "yolanda_ng.ipynb", "zack_hw3.PY", "walter.zip",
                                  "hw_3_final.py", "carol"])
def test_plain_names_are_not_lms_names(name: str) -> None:
    assert parse_lms_name(name) is None


@pytest.mark.parametrize("text, message", [
    ("name,email\nAnn,a@x\n", "no column id"),
    ("id,name\n1,Ann\n1,Bob\n", "appears twice"),
    ("id,name\n", "no students"),
])
def test_bad_roster_is_named_and_explained(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "roster.csv"
    path.write_text(text)
    with pytest.raises(RosterError, match=message) as info:
        load_roster(path)
    assert "roster.csv" in str(info.value)


def test_cli_refuses_a_bad_roster_before_grading(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from conformance.grade import cli

    (tmp_path / "subs").mkdir()
    (tmp_path / "subs" / "alice.py").write_text(REFERENCE)
    (tmp_path / "roster.csv").write_text("student,mail\nann,a@x\n")
    assert cli.main([str(tmp_path / "subs"), "--out", str(tmp_path / "out"),
                     "--roster", str(tmp_path / "roster.csv")]) == 2
    assert "roster.csv: no column id, name" in capsys.readouterr().err
    assert not (tmp_path / "out" / "grades.sqlite").exists()


def test_roster_name_fallbacks(tmp_path: Path) -> None:
    path = tmp_path / "roster.csv"
    path.write_text("id,name,email\nS1,Bob Smith,b@x\nS2,Yolanda Ng,y@x\nS3,Ann Lee,a@x\nS4,Lee Ann,l@x\n")
    roster = load_roster(path)
    canvas = parse_lms_name("smithbob_340934_1_mlp.py")  # a roster with SIS ids, not Canvas ids
    assert roster.match(canvas, "")[0].id == "S1"
    assert roster.match(None, "ng_yolanda")[0].id == roster.match(None, "Yolanda.Ng")[0].id == "S2"
    student, why = roster.match(None, "leeann")  # "Ann Lee" last-first = "Lee Ann" first-last
    assert student is None and "matches 2 roster students" in why
    assert roster.match(parse_lms_name("nobody_999_1_mlp.py"), "")[0] is None


def test_roster_written_by_excel_with_bom(tmp_path: Path) -> None:
    path = tmp_path / "roster.csv"
    path.write_bytes("\ufeffID,Name,Email\n7,Zoë Müller,z@x\n".encode())
    roster = load_roster(path)
    assert roster.by_id["7"].name == "Zoë Müller"


# -- notebooks --------------------------------------------------------------------------


def test_notebook_keeps_definitions_and_runs_no_top_level_work(lms_class: dict, tmp_path: Path) -> None:
    sub = lms_class["rows"]["ngyolanda_1001_9001_hw3.ipynb"]
    code = sub.files[sub.module].decode()
    flag = tmp_path / "flag"
    namespace = {"__name__": "student_notebook", "FLAG": str(flag)}
    exec(compile(code, "notebook", "exec"), namespace)  # noqa: S102 - a while-True or 10**9 loop would hang here
    assert not flag.exists()
    assert callable(namespace["forward"]) and callable(namespace["backward"])
    assert namespace["SIZES"] == [784, 64, 10] and namespace["LR"] == 0.1 and "RNG" in namespace
    assert "params" not in namespace  # a call to the notebook's own function is work
    notes = " ".join(sub.intake.notes)
    for dropped in ("%matplotlib inline", "!pip install tqdm", "cell magic %%time",
                    "params = init_params(SIZES, RNG)", "for epoch in range(10**9):", "plt.plot",
                    "print('accuracy', 0.97)", "files = !ls", "np.linalg.norm?", "open(FLAG"):
        assert dropped in notes, dropped


def test_notebook_edge_cases() -> None:
    future = extract(notebook("import numpy as np", "from __future__ import annotations\nX: int = 3").encode())
    assert future.code.index("from __future__") < future.code.index("import numpy")
    compile(future.code, "nb", "exec")
    guarded = extract(notebook("import seaborn as sns\nimport numpy as np\n"
                               "if __name__ == '__main__':\n    main()\n"
                               "try:\n    import cupy\nexcept ImportError:\n    cupy = None").encode())
    namespace: dict = {}
    exec(compile(guarded.code, "nb", "exec"), namespace)  # noqa: S102 - seaborn may be absent: no ImportError
    assert "np" in namespace and "cupy" in namespace
    assert guarded.dropped_count == 1 and "if __name__" in guarded.dropped[0]
    data = extract(notebook("import numpy as np\nX = np.load('mnist.npz')\nW = np.zeros((3, 2))").encode())
    assert "np.load" in data.dropped[0] and "W = np.zeros" in data.code and "np.load" not in data.code
    kinds = extract(notebook("import numpy as np\nCLASSES = ['a', 'b']\nN = len(CLASSES)\n"
                             "relu = lambda z: np.maximum(z, 0)\nSIZES = [2 * i for i in range(1, 4)]\n"
                             "OK = N > 1 and SIZES[0] == 2\nDATA = sorted(open('x.csv'))").encode())
    assert kinds.dropped_count == 1 and "DATA = sorted(open" in kinds.dropped[0]
    namespace: dict = {}
    exec(compile(kinds.code, "nb", "exec"), namespace)  # noqa: S102 - our own test code
    assert (namespace["N"], namespace["SIZES"], namespace["OK"]) == (2, [2, 4, 6], True)
    # Continuation lines that start with % or != are Python, not magics.
    python = ("def report(loss, a, b):\n    msg = ('loss %.3f'\n           % loss)\n    same = (a\n"
              "            != b)\n    return msg, same\n")
    kept = extract(notebook("%matplotlib inline\n" + python).encode())
    namespace = {}
    exec(compile(kept.code, "nb", "exec"), namespace)  # noqa: S102 - our own test code
    assert namespace["report"](0.5, 1, 2) == ("loss 0.500", True)
    assert kept.dropped == ["cell 2, line 1: IPython %matplotlib inline (IPython-only, not Python)"]  # cell 1 is markdown
    broken = extract(notebook("def f(:\n    pass", "def g():\n    return 1").encode())
    assert "not valid Python" in broken.dropped[0] and "def g" in broken.code
    with pytest.raises(ValueError, match="not a readable Jupyter notebook"):
        extract(b"{not json")


def test_notebook_with_large_outputs_is_graded(tmp_path: Path) -> None:
    """Embedded plots make notebooks far larger than any module; only the code is kept."""
    nb = nbformat.reads(notebook(REFERENCE, "plt.plot(history)"), as_version=4)
    nb.cells[-1].outputs = [nbformat.v4.new_output("display_data", data={"image/png": "A" * (5 << 20)})]
    nbformat.write(nb, tmp_path / "big.ipynb")
    folder = tmp_path / "folder"
    folder.mkdir()
    nbformat.write(nb, folder / "mlp.ipynb")
    for entry in (tmp_path / "big.ipynb", folder):
        sub = load_submission(entry)
        assert not sub.problem and len(sub.files[sub.module]) < 20_000, entry


def test_notebook_inside_a_folder_becomes_the_module(tmp_path: Path) -> None:
    folder = tmp_path / "dana"
    folder.mkdir()
    (folder / "mlp.ipynb").write_text(notebook(REFERENCE, "train()"))
    sub = load_submission(folder, module="mlp.py")
    assert sub.module == "mlp.py" and not sub.problem and "mlp.ipynb" not in sub.files
    assert any("train()" in n for n in sub.intake.notes)


def test_a_grader_without_nbformat_makes_notebooks_a_grader_error_not_a_grade(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Finding 1: the grader's missing optional library is never the student's score."""
    (tmp_path / "gina.ipynb").write_text(notebook(REFERENCE))
    (tmp_path / "dana").mkdir()
    (tmp_path / "dana" / "mlp.ipynb").write_text(notebook(REFERENCE))
    write_zip(tmp_path / "walter.zip", {"walter/mlp.ipynb": notebook(REFERENCE)})
    (tmp_path / "alice.py").write_text(REFERENCE)
    monkeypatch.setitem(sys.modules, "nbformat", None)  # import nbformat raises ImportError
    intake = scan_class(tmp_path)
    rows = {s.name: s for s in intake.submissions}
    for name in ("gina", "dana", "walter"):
        assert rows[name].problem_status == "error", (name, rows[name].problem)
        assert "pip install 'backprop-conformance[grade]'" in (rows[name].problem or "")
    assert not rows["alice"].problem
    assert {r.row: r.outcome for r in intake.records} == {
        "alice": "graded", "dana": "error", "gina": "error", "walter": "error"}


def test_batch_without_nbformat_refuses_to_start_and_grades_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "gina.ipynb").write_text(notebook(REFERENCE))
    (subs / "alice.py").write_text(REFERENCE)
    monkeypatch.setitem(sys.modules, "nbformat", None)
    assert cli.main([str(subs), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "preflight: this grader cannot read 1 submission(s) (gina)" in err
    assert "pip install 'backprop-conformance[grade]'" in err and "Nothing was graded" in err
    assert not (tmp_path / "out" / "grades.csv").exists() and not (tmp_path / "out" / "grades.sqlite").exists()


def test_intake_outcome_says_why_an_entry_was_not_graded(tmp_path: Path) -> None:
    (tmp_path / "emptydir").mkdir()
    (tmp_path / "two").mkdir()
    (tmp_path / "two" / "a.py").write_text(REFERENCE)
    (tmp_path / "two" / "b.py").write_text(REFERENCE)
    (tmp_path / "alice.py").write_text(REFERENCE)
    outcomes = {r.row: r.outcome for r in scan_class(tmp_path).records}
    assert outcomes == {"alice": "graded", "emptydir": "no_module", "two": "no_module"}


def test_nbformat_warnings_about_the_students_file_stay_off_the_console(recwarn: pytest.WarningsRecorder) -> None:
    nb = json.loads(notebook(REFERENCE))
    for cell in nb["cells"]:
        cell.pop("id", None)  # nbformat >= 5.1.4 warns: MissingIDFieldWarning
    assert "def backward" in extract(json.dumps(nb).encode()).code
    assert not [w for w in recwarn if "nbformat" in str(w.filename) or "id field" in str(w.message)]


# -- archives -------------------------------------------------------------------------


@pytest.mark.parametrize("members, symlinks, message", [
    ({"/etc/evil.py": "x"}, (), "absolute path"),
    ({"a/../../evil.py": "x"}, (), "path traversal"),
    ({"..\\..\\evil.py": "x"}, (), "path traversal"),
    ({"mlp.py": REFERENCE}, ("link.py",), "symbolic link"),
    ({f"f{i}.txt": "" for i in range(MAX_ARCHIVE_MEMBERS + 1)}, (), "zip bomb refused"),
])
def test_hostile_archives_are_refused_whole(tmp_path: Path, members, symlinks, message) -> None:
    sub = load_submission(write_zip(tmp_path / "x.zip", members, symlinks))
    assert sub.problem_status == "invalid_submission" and message in sub.problem
    assert not sub.files and sub.module is None
    assert not (tmp_path.parent / "evil.py").exists()


def test_archive_whose_header_lies_about_sizes(tmp_path: Path) -> None:
    """A member declaring 100 bytes that inflates to 5 MB is never read past its claim."""
    real = 5 * 1024 * 1024
    data = bytearray(write_zip(tmp_path / "lie.zip", {"mlp.py": b"#" * real}).read_bytes())
    assert data.count(struct.pack("<I", real)) == 2  # local header and central directory
    (tmp_path / "lie.zip").write_bytes(bytes(data).replace(struct.pack("<I", real), struct.pack("<I", 100)))
    sub = load_submission(tmp_path / "lie.zip")
    assert sub.problem_status == "invalid_submission" and "cannot be read" in sub.problem and not sub.files


def test_archive_that_is_not_a_zip(tmp_path: Path) -> None:
    (tmp_path / "x.zip").write_bytes(b"PK\x03\x04 not really")
    sub = load_submission(tmp_path / "x.zip")
    assert sub.problem_status == "invalid_submission" and "not a readable zip" in sub.problem


# -- identity ---------------------------------------------------------------------------


def test_no_entry_takes_over_a_classmate(lms_class: dict) -> None:
    intake = lms_class["intake"]
    by_name = {s.name: s for s in intake.submissions}
    # carol.py and carol/ are ambiguous: both graded under their entry names, both flagged.
    assert "carol" not in by_name and {"carol.py", "carol/"} <= set(by_name)
    for name in ("carol.py", "carol/"):
        assert any(n.startswith("ambiguous") for n in by_name[name].intake.notes)
    slugs = [s.slug for s in intake.submissions]
    assert len({s.casefold() for s in slugs}) == len(slugs)  # also on case-insensitive disks
    assert "index" not in slugs  # report/index.html is the class overview
    zoe = next(s for s in intake.submissions if s.intake.entry == "zoë müller.py")
    imitator = next(s for s in intake.submissions if s.intake.entry == f"{slugify('zoë müller')}.py")
    assert zoe.slug != imitator.slug
    assert all(set(s) <= set("abcdefghijklmnopqrstuvwxyz0123456789._-") for s in slugs)


def test_names_that_look_the_same_are_ambiguous(tmp_path: Path) -> None:
    (tmp_path / "zo\u00eb.py").write_text(REFERENCE)  # NFC
    (tmp_path / "zoe\u0308.py").write_text(REFERENCE)  # NFD: the same name on screen (and on macOS)
    (tmp_path / "Dave.py").write_text(REFERENCE)
    (tmp_path / "dave").mkdir()
    subs = scan_class(tmp_path).submissions
    assert len(subs) == 4 and len({s.name for s in subs}) == 4
    assert all(any(n.startswith("ambiguous") for n in s.intake.notes) for s in subs)
    assert len({s.slug.casefold() for s in subs}) == 4


def test_same_roster_id_from_two_plain_names_is_given_to_none(tmp_path: Path) -> None:
    (tmp_path / "zoe_muller.py").write_text(REFERENCE)
    (tmp_path / "Zoë Müller.py").write_text(REFERENCE)
    roster_file = tmp_path.parent / f"{tmp_path.name}-roster.csv"
    roster_file.write_text("id,name,email\n1005,Zoë Müller,z@x\n")
    subs = scan_class(tmp_path, roster=load_roster(roster_file)).submissions
    assert len(subs) == 2 and all(s.intake.student_id == "" for s in subs)
    assert all(any("roster id 1005" in n for n in s.intake.notes) for s in subs)


def test_symlinked_entries_are_not_followed(tmp_path: Path) -> None:
    secret = tmp_path / "secret.py"
    secret.write_text("ANSWER = 42\n")
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "eve.py").symlink_to(secret)
    (subs / "eve_dir").symlink_to(tmp_path)
    rows = {s.name: s for s in scan_class(subs).submissions}
    assert rows["eve.py"].problem_status == rows["eve_dir"].problem_status == "invalid_submission"
    assert not rows["eve.py"].files and not rows["eve_dir"].files
    assert "symbolic link" in rows["eve.py"].problem


# -- sanitizer and outputs ------------------------------------------------------------


@pytest.mark.parametrize("raw", ["\x1b[32m112 passed\x1b[0m", "\x1b]0;title\x07", "\x9b31m", "a\rb",
                                 "evil\u202egpj.py", "zero\u200bwidth", "bad\udcffbyte", "bell\x07"])
def test_clean_name_leaves_no_control_character(raw: str) -> None:
    cleaned = clean_name(raw)
    assert cleaned.isprintable() and cleaned.encode("utf-8")  # no surrogates either
    assert not hostile_in(cleaned)


def test_sanitizer_keeps_ordinary_text_and_neutralises_formulas() -> None:
    assert clean_name("zoë müller") == "zoë müller"
    assert clean_text("line 1\n\tline 2") == "line 1\n\tline 2"
    assert clean_name("a\nb") == "a\\x0ab"
    for formula in ("=1+1", "+1", "-1", "@SUM(A1)", " =cmd|' /C calc'!A0", "\uff1d1"):
        assert csv_cell(formula).startswith("'"), formula
    assert csv_cell(3.5) == 3.5 and csv_cell("bob") == "bob"
    assert html_escape("<b>\x1b[1m</b>") == "&lt;b&gt;\\x1b[1m&lt;/b&gt;"
    assert bytes.fromhex(raw_hex("\x1b[1mx\udcff")) == b"\x1b[1mx\xff"


RUBRIC = parse_rubric({"name": "HW3 backprop", "areas": {"interface": {"points": 10}}})


def graded(sub, status: str = "graded", message: str = "") -> GradedSubmission:
    tests = [{"nodeid": "test_interface.py::test_a", "area": "interface", "outcome": "passed",
              "duration": 0.1, "message": "", "summary": "", "skip_reason": "", "properties": {}}]
    tests = tests if status == "graded" else []
    return GradedSubmission(name=sub.name, slug=sub.slug, sha256=sub.sha256, status=status,
                            message=message, grade=score(RUBRIC, status, tests, status_message=message),
                            duration=1.0, tests=tests, suite_version="v1", rubric=RUBRIC,
                            intake=sub.intake)


def test_class_files_excel_canvas_and_no_hostile_bytes(lms_class: dict, tmp_path: Path) -> None:
    subs = lms_class["intake"].submissions
    rows = [graded(s, "unsupported" if s.problem else "graded",
                   "\x1b[32m112 passed\x1b[0m" if s.problem else "") for s in subs]
    rows[0].status = "error"  # a grader failure: never a score in the LMS
    warnings = write_class_csvs(tmp_path, rows, RUBRIC, lms_class["intake"])
    for name in ("grades.csv", "canvas_import.csv", "intake.csv"):
        data = (tmp_path / name).read_bytes()
        assert data.startswith(b"\xef\xbb\xbf"), name  # Excel reads UTF-8 only with the BOM
        assert not hostile_in(data), name
    grades = list(csv.DictReader(io.StringIO((tmp_path / "grades.csv").read_text(encoding="utf-8-sig"))))
    assert len(grades) == len(subs)
    zoe = next(r for r in grades if r["entry"] == "zoë müller.py")
    assert zoe["student_id"] == "1005" and zoe["student_name"] == "Zoë Müller"
    ansi = next(r for r in grades if "112 passed" in r["entry"])
    assert ansi["submission"].startswith("\\x1b]0;pwned")
    canvas = list(csv.reader(io.StringIO((tmp_path / "canvas_import.csv").read_text(encoding="utf-8-sig"))))
    assert canvas[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "HW3 backprop"]
    assert canvas[1][0] == "Points Possible" and canvas[1][-1] == "10"
    by_id = {r[1]: r for r in canvas[2:]}
    assert by_id["1005"][0] == "Zoë Müller" and by_id["1005"][-1] == "10"
    assert by_id["1003"][-1] == ""  # unsupported .PY: not gradable as it is, no score (the instructor's call)
    errored = rows[0].intake.student_id
    if errored:
        assert by_id[errored][-1] == ""
    ids = [r[1] for r in canvas[2:]]
    assert len(ids) == len(set(ids)) and "" not in ids
    assert "no student id" in warnings[0] and not hostile_in(warnings[0])
    assert warnings[1].startswith("1 roster students have no row") and "Nina Nohand (1010)" in warnings[1]
    assert by_id["1010"][0] == "Nina Nohand" and by_id["1010"][-1] == ""  # listed, no score invented


def test_results_json_shows_what_the_notebook_dropped(lms_class: dict) -> None:
    sub = lms_class["rows"]["ngyolanda_1001_9001_hw3.ipynb"]
    results = gradescope_results(graded(sub))
    assert "Intake: notebook: kept" in results["output"] and "plt.plot" in results["output"]
    assert results["extra_data"]["student_id"] == "1001" and results["extra_data"]["intake"]
    hostile = graded(sub, "import_error", "boom \x1b[2J\x1b[32m112 passed\u202e")
    text = json.dumps(gradescope_results(hostile), ensure_ascii=False).encode()
    assert not hostile_in(text) and b"\\\\x1b[2J" in text


def test_canvas_csv_neutralises_formulas_in_names() -> None:
    text = canvas_csv([("=HYPERLINK(\"http://x\")", "42", 5.0, None)], "=cmd", 10)
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    assert rows[0][-1] == "'=cmd" and rows[2][0].startswith("'=")


# -- one end-to-end batch ---------------------------------------------------------------


TINY_RUBRIC = '[areas.interface]\npoints = 10\n'
TINY_ARGS = ["--no-require-mnist", "--pytest-arg=-m", "--pytest-arg=not mnist",
             "--pytest-arg=-k", "--pytest-arg=test_candidate_loads", "--no-progress", "--no-baseline"]


@pytest.mark.slow
def test_end_to_end_tiny_lms_class(tmp_path: Path) -> None:
    subs = tmp_path / "subs"
    subs.mkdir()
    # The notebook's top-level loop never ends: it is graded only because it is not run.
    (subs / "ngyolanda_1001_9001_hw3.ipynb").write_text(notebook(REFERENCE, "while True:\n    pass"))
    (subs / "zoë müller.py").write_text(REFERENCE)
    (subs / f"{ANSI_NAME}.py").write_text(
        "raise ImportError('\\x1b[2J\\x1b[32m 112 passed \\x1b]0;owned\\x07\\u202e')\n")
    (subs / "notes.txt").write_text("stray")
    (subs / ".DS_Store").write_bytes(b"x")
    (tmp_path / "roster.csv").write_text("id,name,email\n1001,Yolanda Ng,y@x\n1005,Zoë Müller,z@x\n")
    (tmp_path / "rubric.toml").write_text(TINY_RUBRIC)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "conformance.grade", str(subs), "--out", str(out), "-j", "2",
                           "--roster", str(tmp_path / "roster.csv"), "--rubric", str(tmp_path / "rubric.toml"),
                           *TINY_ARGS], cwd=REPO, capture_output=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for stream in (proc.stdout, proc.stderr):
        assert not hostile_in(stream)
    assert b"ignored (OS clutter): .DS_Store" in proc.stderr
    rows = list(csv.DictReader(io.StringIO((out / "grades.csv").read_text(encoding="utf-8-sig"))))
    by_entry = {r["entry"]: r for r in rows}
    assert len(rows) == 4 and set(by_entry) == {"ngyolanda_1001_9001_hw3.ipynb", "zoë müller.py",
                                                  "notes.txt", clean_name(f"{ANSI_NAME}.py")}
    notebook_row = by_entry["ngyolanda_1001_9001_hw3.ipynb"]
    assert (notebook_row["status"], notebook_row["score"], notebook_row["student_id"]) == ("graded", "10", "1001")
    assert by_entry["zoë müller.py"]["score"] == "10" and by_entry["zoë müller.py"]["student_id"] == "1005"
    assert by_entry["notes.txt"]["status"] == "unsupported"
    assert by_entry[clean_name(f"{ANSI_NAME}.py")]["status"] == "import_error"
    canvas = (out / "canvas_import.csv").read_text(encoding="utf-8-sig")
    assert "Zoë Müller,1005" in canvas and "Yolanda Ng,1001" in canvas
    for path in out.rglob("*"):
        if path.is_file() and path.suffix in (".csv", ".json", ".html", ".xml"):
            data = path.read_bytes()
            if path.suffix == ".json":  # "\u001b" in JSON is the character itself to a reader
                data = json.dumps(json.loads(data), ensure_ascii=False).encode()
            assert not hostile_in(data), path
    page = next((out / "submissions").glob("ngyolanda*/report.html")).read_text()
    assert "Intake" in page and "while True:" in page
