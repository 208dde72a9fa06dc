"""What a student reads (conformance/hooks.py, conformance/summary.py): each failure as the
suite's message, headline first, without the suite's own source; the conformance summary last,
naming only the mistakes the suite diagnosed and saying which failures follow from them; hints
whose commands work where the suite is installed; load failures with their reason."""

from __future__ import annotations

import os
import re
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from conformance import golden
from conformance.candidate import load_headline
from conformance.cases import (make_case, masks_differ_case, rows_of_different_scale_case,
                               scaled_logits_case, true_class_underflow_case)
from conformance.hooks import rerun_prefix
from conformance.invocation import SUITE_INI
from conformance.summary import Record, RunSummary, Shape
from tests.helpers import REPO_ROOT, run_command, run_pytest, run_suite

REFERENCE = (REPO_ROOT / "conformance" / "reference" / "mlp.py").read_text()
WRONG_SIGN = ("delta = (Y_hat - Y) / B", "delta = (Y - Y_hat) / B")
SUMMARY = "conformance summary"


def variant(folder: Path, name: str, old: str, new: str) -> Path:
    """The reference with one line changed, as ``folder/name.py``."""
    assert old in REFERENCE
    path = folder / f"{name}.py"
    path.write_text(REFERENCE.replace(old, new))
    return path


def check(folder: Path, *args: str) -> tuple[int, str]:
    """``backprop-conformance check ARGS`` run from ``folder``, as a student runs it."""
    env = {k: v for k, v in os.environ.items() if k != "BACKPROP_IMPL"}
    proc = run_command([sys.executable, "-m", "conformance.cli", "check", *args], cwd=folder, env=env,
                       timeout=300)
    return proc.returncode, proc.stdout + proc.stderr


def summary_of(out: str) -> str:
    return out[out.rindex(f" {SUMMARY} "):]


def failure_sections(out: str) -> dict[str, str]:
    """Test name -> its text in the FAILURES section."""
    body = out[out.index(" FAILURES "):out.rindex(f" {SUMMARY} ")]
    parts = re.split(r"^_{3,} (.+?) _{3,}$", body, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


# ------------------------------------------------------------------ the screen, end to end
def test_check_shows_the_suites_messages_and_ends_with_the_summary(tmp_path: Path) -> None:
    variant(tmp_path, "student_mlp", *WRONG_SIGN)
    code, out = check(tmp_path, "student_mlp", "-m", "not mnist", "-k", "golden or gradients")
    assert code == 1, out[-3000:]
    head = out[:out.index(" FAILURES ")]
    assert "read the conformance summary at the end first" in head
    assert "../" not in head  # progress lines name conformance/test_x.py, not a path up to site-packages
    # Every failure is the suite's message, headline first: no test source, no "E" prefixes.
    sections = failure_sections(out)
    assert sections and "def test_" not in out and not re.search(r"^E {3}", out, flags=re.M)
    golden_failure = sections["test_backward_matches_golden[f64_depth1_b8]"].strip()
    assert re.match(r"d[Wb]\[0\]\S*=\S+, but should be \S+ \[backward\(case=f64_depth1_b8\)\]", golden_failure)
    # Hints name the command the student ran; the golden reproducer calls the candidate.
    assert "`backprop-conformance check student_mlp -k gradients`" in golden_failure
    assert "pytest conformance -k" not in out
    assert "impl.backward(inputs['activations'], inputs['pre_activations'], inputs['Y'], inputs['params'])" \
        in golden_failure
    # The summary ends the output: no "short test summary info", only pytest's count after it.
    assert "short test summary info" not in out
    summary = summary_of(out)
    assert summary.rstrip().splitlines()[-1].startswith("=") and " failed" in summary.splitlines()[-1]
    assert "root causes named by the evidence" in summary and "uses Y - Y_hat" in summary
    # train is the reference's: replaying its step with the student's own forward and backward
    # reproduces its result, so its failures are the wrong backward's, under that root cause.
    root = next(line for line in summary.splitlines() if "uses Y - Y_hat" in line)
    assert re.search(r"\[\d+ failing test\(s\) in golden, gradients", root), root
    assert "train loop" not in summary and "W - lr * dW" not in summary and "train_wrong" not in summary


def test_the_pytest_spelling_with_isolate_shows_the_candidates_frames(tmp_path: Path) -> None:
    crash = tmp_path / "crashy.py"
    crash.write_text(REFERENCE + "\n\ndef helper(activations):\n    raise ValueError('no gradients today')\n"
                     "\n\ndef backward(activations, pre_activations, Y, params):\n    return helper(activations)\n")
    for mode in ((), ("--isolate",)):
        proc = run_pytest("conformance", f"--impl={crash}", *mode, "-k", "test_supported_shapes", timeout=300)
        out = proc.stdout
        assert proc.returncode == 1, out[-3000:]
        first = next(iter(failure_sections(out).values()))
        assert first.strip().startswith("your backward raised ValueError: no gradients today [backward(")
        assert "crashy.py" in first and "helper" in first  # where: in the candidate's code
        assert "def test_" not in out and "conformance/calls.py" not in first
        # pytest's own short summary stays in a plain pytest run, before the conformance summary.
        assert out.index("short test summary info") < out.rindex(f" {SUMMARY} ")
        assert "interface   FAILED" in summary_of(out)
    # A check that re-raises the candidate's exception as its own still shows where it came from.
    out = run_pytest("conformance", f"--impl={crash}", "-k", "efficiency", timeout=300).stdout
    [timed] = failure_sections(out).values()
    assert re.search(r"raised in your code by ValueError:\n +at crashy\.py:\d+ in backward: .*\n"
                     r" +at crashy\.py:\d+ in helper: raise ValueError", timed), out[-3000:]


def test_plain_pytest_hints_use_the_installed_spelling_and_tb_long_shows_the_source(tmp_path: Path) -> None:
    path = variant(tmp_path, "sign_bug", *WRONG_SIGN)
    selected = ("-k", "test_backward_matches_golden and f64_depth1_b8")
    out = run_pytest("conformance", f"--impl={path}", *selected, timeout=300).stdout
    assert "`pytest --pyargs conformance --impl=sign_bug.py -k gradients`" in out, out[-3000:]
    long = run_pytest("conformance", f"--impl={path}", "--tb=long", *selected, timeout=300).stdout
    assert "def test_backward_matches_golden" in long and re.search(r"^E {3}", long, flags=re.M)


def test_non_finite_golden_gradients_are_said_to_be_non_finite(tmp_path: Path) -> None:
    path = variant(tmp_path, "zero_over_zero", "delta = (Y_hat - Y) / B", "delta = (Y_hat - Y) / B * (Y_hat / Y_hat)")
    proc = run_suite(path, "-k", "test_backward_matches_golden and large_logits")
    assert proc.returncode == 1, proc.stdout[-3000:]
    for text in failure_sections(proc.stdout).values():
        assert "hold inf/nan where every expected value is finite" in text
        assert "backward turns finite inputs into inf/nan" in text and "common mistakes" not in text
        # 0/0 from Y_hat / Y_hat is no softmax recomputed without the max: replay says so
        assert "division by a probability" not in text and "recomputed inside backward" not in text


# ------------------------------------------------------------------ load failures
def test_a_failed_import_says_why_in_the_summary_and_a_missing_file_says_where(tmp_path: Path) -> None:
    (tmp_path / "needs_helper.py").write_text(REFERENCE + "\nimport helper_not_submitted\n")
    code, out = check(tmp_path, "needs_helper")
    assert code == 1
    assert ("- interface: importing candidate 'needs_helper' failed: ModuleNotFoundError: No module named "
            "'helper_not_submitted'") in summary_of(out)
    assert f"candidate file: {tmp_path / 'needs_helper.py'}" in out  # found before it ran
    assert "importlib" not in out  # the traceback starts in the candidate's file
    for mode in ((), ("--isolate",)):
        code, out = check(tmp_path, "absent", *mode)
        assert code == 1
        where = f"there is no absent.py (nor a package folder absent/) in the current folder {tmp_path}"
        assert "candidate file: none (importing candidate 'absent' failed: " in out and where in out
        assert "candidate sha256: None" not in out and "candidate file: None" not in out
        assert where in summary_of(out)


def test_load_headline_carries_the_reason() -> None:
    assert load_headline("importing candidate 'a' failed:\nTraceback ...\n  File x\nKeyError: 'k'\n") == \
        "importing candidate 'a' failed: KeyError: 'k'"
    assert load_headline("candidate 'a' does not define backward") == "candidate 'a' does not define backward"
    assert load_headline("") == ""


# ------------------------------------------------------------------ the summary's content
def _summary(*records: Record) -> dict:
    run = RunSummary(SimpleNamespace(stash={}))
    run.records = {r.nodeid: r for r in records}
    return run.as_dict()


def _failed(nodeid: str, text: str, keys: tuple[str, ...] = (), functions: tuple[str, ...] = ()) -> Record:
    area = nodeid.split("::")[0].removeprefix("test_").removesuffix(".py")
    return Record(nodeid, area, "failed", text, keys=list(keys), functions=set(functions))


GOLDEN_TRAIN = _failed("test_golden.py::test_train_takes_one_sgd_step[a]",
                       "W[0][0, 1]=1, but should be 2 [train(case=a)]\n  next: train must do plain SGD",
                       functions=("train", "forward", "backward"))
SOFTMAX = _failed("test_golden.py::test_softmax_matches_golden[a]", "softmax(Z)[0, 0]=1, but should be 0.5",
                  functions=("softmax",))


def test_root_causes_are_the_recorded_keys_never_phrases_of_the_text() -> None:
    partial = _failed("test_gradients.py::test_a", "db[0][1]=2, but should be 1 [backward(case=c)]\n"
                      "  diagnosis: wrong: db[0]; right: dW[0].\n    db[0] equal those of an implementation that "
                      "does not divide by the batch size (`delta = Y_hat - Y` should be ...).\n  reproduce:\n",
                      keys=("backward_wrong",), functions=("forward", "backward"))
    data = _summary(partial)
    assert data["root_causes"] == []  # the phrase of no_batch_mean is there, its key is not
    [entry] = data["unexplained"]
    assert entry["known"].startswith("diagnosis: wrong: db[0]; right: dW[0]. db[0] equal those of an "
                                     "implementation that does not divide by the batch size")
    named = _failed("test_gradients.py::test_b", "dW[0]=1, but should be -1", keys=("wrong_sign", "backward_wrong"),
                    functions=("backward",))
    data = _summary(partial, named)
    assert [c["bug"] for c in data["root_causes"]] == ["wrong_sign"] and data["root_causes"][0]["tests"] == 1
    assert [u["test"] for u in data["unexplained"]] == [partial.nodeid]  # a generic finding stays shown


def test_failures_through_train_follow_from_a_wrong_backward_and_others_stand_alone() -> None:
    named = _failed("test_gradients.py::test_b", "dW[0]=1, but should be -1", keys=("wrong_sign",),
                    functions=("forward", "backward"))
    sgd = _failed("test_mnist.py::test_sgd_loop_learns_mnist[quick]", "test accuracy=0.1, but should be >= 0.84",
                  functions=("the suite's SGD loop",))
    data = _summary(named, GOLDEN_TRAIN, sgd, SOFTMAX)
    assert data["consequences"] == {"tests": 2, "areas": {"golden": 1, "mnist": 1}, "functions": ["backward"]}
    assert [u["test"] for u in data["unexplained"]] == [SOFTMAX.nodeid]
    text = "\n".join(data["lines"])
    assert "failing as a consequence (2: golden 1, mnist 1): these checks train with your backward" in text
    assert "train must do plain SGD" not in text and "softmax(Z)[0, 0]=1" in text
    # Without a wrong forward or backward, a failing train is train's own failure.
    alone = _summary(GOLDEN_TRAIN)
    assert alone["consequences"]["tests"] == 0 and alone["unexplained"][0]["test"] == GOLDEN_TRAIN.nodeid


def test_an_areas_line_prefers_what_is_wrong_over_a_crash() -> None:
    crash = _failed("test_interface.py::test_a", "your backward raised IndexError: list index out of range",
                    keys=("backward_crash",), functions=("backward",))
    rows = _failed("test_interface.py::test_b", "activations[-1].sum(axis=1)[0]=1.9, but should be 1\n"
                   "  next: the rows of activations[-1] sum to ...", keys=("forward_wrong",), functions=("forward",))
    lines = _summary(crash, rows)["lines"]
    shown = [line for line in lines if line.startswith("  - interface:")]
    assert shown == ["  - interface: activations[-1].sum(axis=1)[0]=1.9, but should be 1"]


# ------------------------------------------------------------------ reproducers and hints
@pytest.mark.parametrize("case", [make_case([3, 4, 2], batch=2, seed=1), scaled_logits_case(1e3, seed=2),
                                  true_class_underflow_case(seed=4), rows_of_different_scale_case(seed=3),
                                  masks_differ_case()], ids=lambda c: c.recipe.partition("(")[0])
def test_every_case_snippet_runs(case) -> None:
    namespace: dict = {}
    exec(textwrap.dedent(case.snippet("conformance.reference.mlp")), namespace)  # noqa: S102 - the suite's own text
    assert len(namespace["grads"]) == len(case.params)


def test_golden_reproducers_call_the_candidate_and_run() -> None:
    manifest = golden.load_manifest()["cases"]
    tried = set()
    for case_id, entry in manifest.items():
        for function in golden.KIND_FUNCTIONS[entry["kind"]] if entry["kind"] != "init_params" else ["init_params"]:
            snippet = golden.reproducer(case_id, entry, function, "conformance.reference.mlp")
            assert f"impl.{function}(" in snippet
            namespace: dict = {}
            exec(textwrap.dedent(snippet), namespace)  # noqa: S102 - the suite's own text
            tried.add((entry["kind"], function))
    assert {kind for kind, _ in tried} == {"mlp", "softmax", "cross_entropy", "init_params"}


def test_golden_network_cases_count_in_the_summarys_depth_pattern() -> None:
    from conformance import calls
    from conformance.candidate import InProcessCandidate

    candidate = InProcessCandidate.load("conformance.reference.mlp")
    case_id = next(c for c, e in golden.load_manifest()["cases"].items()
                   if e["kind"] == "mlp" and len(e["architecture"]) == 5)
    entry = golden.load_manifest()["cases"][case_id]
    arrays = golden.load_npz(golden.FIXTURES_DIR, entry)
    calls.CASES_SEEN.clear()
    golden.candidate_outputs(candidate, entry, arrays, case_id, ["softmax"])
    assert calls.CASES_SEEN == []  # softmax alone says nothing about the depths supported
    golden.candidate_outputs(candidate, entry, arrays, case_id, ["backward"])
    assert [c.layer_sizes for c in calls.CASES_SEEN] == [list(entry["architecture"])]
    assert Shape(tuple(entry["architecture"]), entry["batch"], "C").depth == 4


@pytest.mark.parametrize("ini, impl, expected", [
    (SUITE_INI, "mymlp", "backprop-conformance check mymlp"),
    (SUITE_INI, "/tmp/grade-x1/submission/alice.py", "backprop-conformance check alice.py"),
    (REPO_ROOT / "pyproject.toml", "sub/my mlp.py", "pytest --pyargs conformance --impl='sub/my mlp.py'"),
    (None, "mymlp", "pytest --pyargs conformance --impl=mymlp"),
])
def test_rerun_commands_are_the_ones_the_user_can_type(ini: Path | None, impl: str, expected: str) -> None:
    config = SimpleNamespace(inipath=ini, getoption=lambda name: impl)
    assert rerun_prefix(config) == expected  # type: ignore[arg-type]


def test_a_refactor_check_failure_leads_with_the_first_changed_value(tmp_path: Path) -> None:
    original = tmp_path / "before.py"
    original.write_text(REFERENCE)
    record = run_command([sys.executable, "-m", "conformance.cli", "record", "--impl", str(original),
                          "--out", str(tmp_path / "rec")], cwd=tmp_path, timeout=300)
    assert record.returncode == 0, record.stdout + record.stderr
    changed = variant(tmp_path, "after", "delta = (Y_hat - Y) / B", "delta = (Y_hat - Y) / (B + 1e-9)")
    proc = run_suite(changed, f"--golden={tmp_path / 'rec'}", "-k", "test_matches_recording and f64_depth1_b8")
    assert proc.returncode == 1, proc.stdout[-3000:]
    [text] = failure_sections(proc.stdout).values()
    assert re.match(r"\w+\[[\d, ]+\]=\S+, but should be \S+ \[refactor check \(case=f64_depth1_b8", text.strip())
    assert re.search(r"changed: \d+ of \d+ recorded values in case f64_depth1_b8", text)
    assert "the first:" not in proc.stdout
