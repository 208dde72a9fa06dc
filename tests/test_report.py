"""conformance/report.py: the JSON report the batch grader turns into points.

A synthetic suite (a conftest registering JsonReport with a stand-in candidate, and test
modules named like the check areas) exercises every outcome pytest can produce; a run of
the real suite checks the report describes the real candidate.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conformance.report import (MESSAGE_HEAD, MESSAGE_TAIL, SCHEMA, SHORT_TEXT_CAP, JsonReport, _json_safe,
                                area_of, cap_text, suite_version)
from tests.helpers import run_pytest

REPO = Path(__file__).resolve().parents[1]

CONFTEST = '''
from pathlib import Path
from types import SimpleNamespace
from conformance.report import JsonReport

def pytest_configure(config):
    cand = SimpleNamespace(spec="stub.py", module_name="stub", path=Path("/x/stub.py"),
                           sha256="ab" * 32, isolated=True, load_error=None)
    config.pluginmanager.register(JsonReport(Path(config.rootpath) / "out" / "report.json", cand),
                                  "conformance-report")
'''

TEST_INTERFACE = '''
import pytest

def test_passes(record_property):
    record_property("curve", [0.5, 0.8, 0.9])
    record_property("weird", {"nan": float("nan"), "obj": object})

def test_fails():
    raise AssertionError("dW[1]=3, but should be 4 [backward(case=small)]\\n" + "x" * 20000 + "\\nEND")

def test_skips():
    pytest.skip("candidate does not define the optional function relu")

@pytest.fixture
def broken():
    raise RuntimeError("fixture exploded")

def test_setup_error(broken):
    pass

@pytest.fixture
def bad_teardown():
    yield
    raise RuntimeError("teardown exploded")

def test_teardown_error(bad_teardown):
    pass

@pytest.mark.xfail(reason="expected")
def test_xfail():
    assert False
'''

TEST_RELU = '''
import pytest

@pytest.mark.parametrize("width", [1, 2])
def test_param(width):
    assert width == 1
'''


def run_synthetic(tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_interface.py").write_text(TEST_INTERFACE)
    (tmp_path / "test_relu_index.py").write_text(TEST_RELU)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = run_pytest(str(tmp_path), "-q", "--rootdir", str(tmp_path), "-c", os.devnull, *extra,
                      cwd=tmp_path, env=env, timeout=120)
    path = tmp_path / "out" / "report.json"
    assert path.is_file(), proc.stdout + proc.stderr
    return proc, json.loads(path.read_text())


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, dict]:
    return run_synthetic(tmp_path_factory.mktemp("suite"))


def by_name(report: dict) -> dict[str, dict]:
    return {t["nodeid"].split("::", 1)[1]: t for t in report["tests"]}


def test_report_header_and_counts(synthetic) -> None:
    proc, report = synthetic
    assert report["schema"] == SCHEMA
    assert report["exitstatus"] == proc.returncode == 1
    assert report["candidate"] == {"spec": "stub.py", "module": "stub", "path": "/x/stub.py",
                                   "sha256": "ab" * 32, "isolated": True, "load_error": None}
    counts = {k: report["summary"][k] for k in ("passed", "failed", "error", "skipped")}
    assert counts == {"passed": 2, "failed": 2, "error": 2, "skipped": 2}
    assert len(report["tests"]) == 8


def test_each_outcome_and_area(synthetic) -> None:
    tests = by_name(synthetic[1])
    assert tests["test_passes"]["outcome"] == "passed"
    assert tests["test_passes"]["area"] == "interface"
    assert tests["test_param[2]"]["area"] == "relu_index"
    assert tests["test_param[1]"]["outcome"] == "passed"
    assert tests["test_param[2]"]["outcome"] == "failed"
    assert tests["test_fails"]["outcome"] == "failed"
    skip = tests["test_skips"]
    assert skip["outcome"] == "skipped"
    assert skip["skip_reason"] == "candidate does not define the optional function relu"
    assert tests["test_setup_error"]["outcome"] == "error"
    assert "fixture exploded" in tests["test_setup_error"]["message"]
    # A test whose call passed but whose teardown failed is an error, never a pass.
    assert tests["test_teardown_error"]["outcome"] == "error"
    assert "teardown exploded" in tests["test_teardown_error"]["summary"]
    assert tests["test_xfail"]["outcome"] == "skipped"
    assert tests["test_xfail"]["skip_reason"].startswith("xfail")
    assert all(t["duration"] >= 0 for t in tests.values())


def test_failure_message_is_capped_and_keeps_both_ends(synthetic) -> None:
    failed = by_name(synthetic[1])["test_fails"]
    assert "dW[1]=3, but should be 4 [backward(case=small)]" in failed["summary"]
    assert len(failed["message"]) < MESSAGE_HEAD + MESSAGE_TAIL + 200
    assert "characters cut" in failed["message"]
    assert "END" in failed["message"]  # the tail survives the cut
    # The one-line crash message (the "summary" a student reads first) has its own, smaller cap.
    assert len(failed["summary"]) < SHORT_TEXT_CAP + 200 < len(failed["message"])


def test_record_property_values_are_kept_json_safe(synthetic) -> None:
    props = by_name(synthetic[1])["test_passes"]["properties"]
    assert props["curve"] == [0.5, 0.8, 0.9]
    assert props["weird"]["nan"] == "nan"
    assert isinstance(props["weird"]["obj"], str)


def test_report_is_written_atomically(synthetic, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    target = out / "report.json"
    target.write_text("planted by someone else")
    cand = type("C", (), {"spec": "s", "module_name": "m", "path": None, "sha256": None,
                          "isolated": False, "load_error": "boom"})()
    JsonReport(target, cand).write()
    data = json.loads(target.read_text())
    assert data["candidate"]["load_error"] == "boom" and data["tests"] == []
    assert [p.name for p in out.iterdir()] == ["report.json"]  # no temporary file left behind


def test_area_of() -> None:
    assert area_of("conformance/test_gradients.py::test_fd[a-b]") == "gradients"
    assert area_of("conformance/test_relu_index.py::TestX::test_y") == "relu_index"
    assert area_of("conformance/test_mnist.py") == "mnist"


def test_cap_text() -> None:
    assert cap_text("short") == "short"
    text = "a" * 10 + "b" * 100_000 + "c" * 10
    capped = cap_text(text, 50, 20)
    assert capped.startswith("a" * 10) and capped.endswith("c" * 10) and len(capped) < 200
    assert len(cap_text(text, 50, 0)) < 100  # no tail wanted: none kept


def test_json_safe() -> None:
    assert _json_safe(np.arange(3.0)) == [0.0, 1.0, 2.0]
    assert _json_safe(np.float32(0.5)) == 0.5
    assert _json_safe([math.inf]) == ["inf"]
    assert isinstance(_json_safe("x" * 10**6), str) and len(_json_safe("x" * 10**6)) < 30000


def test_suite_version_changes_with_what_decides_verdicts_only(tmp_path: Path) -> None:
    decides = ("conformance/test_a.py", "conformance/isolation/wire.py", "conformance/suite.ini",
               "conformance/reference/mlp.py", "conformance/reference/mnist.py", "fixtures/manifest.json",
               "fixtures/mnist_thresholds.json")
    prose = ("conformance/SECURITY.md", "conformance/cli.py", "conformance/reference/train.py", "README.md",
             "conformance/grade/score/default_rubric.toml")
    for rel in decides + prose:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("1")
    v1 = suite_version(tmp_path)
    assert v1 == suite_version(tmp_path)
    (tmp_path / "conformance" / "__pycache__").mkdir()
    (tmp_path / "conformance" / "__pycache__" / "x.pyc").write_text("ignored")
    for rel in prose:  # documentation, the CLIs and the rubric: stored grades stay valid
        (tmp_path / rel).write_text("2")
    assert suite_version(tmp_path) == v1
    for rel in decides:
        (tmp_path / rel).write_text("2")
        v2 = suite_version(tmp_path)
        assert v2 != v1, rel
        v1 = v2


def test_suite_version_is_the_same_installed_and_in_a_checkout(tmp_path: Path) -> None:
    """A wheel holds the fixtures as conformance/fixtures/: same content, same version."""
    checkout, wheel = tmp_path / "checkout", tmp_path / "site-packages"
    for root, fixtures in ((checkout, "fixtures"), (wheel, "conformance/fixtures")):
        for rel in ("conformance/test_a.py", "conformance/reference/mlp.py", f"{fixtures}/manifest.json"):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text("same")
    assert suite_version(checkout) == suite_version(wheel)


@pytest.mark.slow
def test_real_suite_report_describes_the_candidate(tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    impl = REPO / "conformance" / "reference" / "mlp.py"
    proc = run_pytest("conformance/test_interface.py", "--impl", str(impl), "--conformance-report",
                      str(report_path), "-q", cwd=REPO, timeout=300)
    report = json.loads(report_path.read_text())
    assert report["exitstatus"] == proc.returncode == 0, proc.stdout[-3000:]
    assert report["candidate"]["path"] == str(impl)
    import hashlib
    assert report["candidate"]["sha256"] == hashlib.sha256(impl.read_bytes()).hexdigest()
    assert report["suite_version"] == suite_version()
    assert report["tests"] and {t["area"] for t in report["tests"]} == {"interface"}
    assert all(t["outcome"] in ("passed", "skipped") for t in report["tests"])


@pytest.mark.slow
def test_import_failure_is_reported_as_load_error(tmp_path: Path) -> None:
    bad = tmp_path / "broken.py"
    bad.write_text("def forward(:\n")
    report_path = tmp_path / "report.json"
    proc = run_pytest("conformance", "--impl", str(bad), "--conformance-report", str(report_path), "-q",
                      cwd=REPO, timeout=300)
    report = json.loads(report_path.read_text())
    assert proc.returncode == report["exitstatus"] == 1
    assert "SyntaxError" in report["candidate"]["load_error"]
    assert [t["outcome"] for t in report["tests"]] == ["failed"]
    assert report["summary"]["deselected"] > 0


def test_a_huge_summary_stays_an_object_of_bounded_size(tmp_path: Path) -> None:
    """A submission failing in thousands of distinct ways yields a long end-of-run summary: the
    report's "summary" stays an object (counts plus the summary's lines), never a string, and
    the report is still written (it once crashed the whole run with "'str' is not a mapping")."""
    from conformance.summary import NAME

    lines = [f"failure {i}: " + "x" * 300 for i in range(5000)]

    class Summary:
        def as_dict(self) -> dict:
            return {"lines": lines, "unexplained": lines}

    class Manager:
        def get_plugin(self, name: str):
            return Summary() if name == NAME else None

    cand = type("C", (), {"spec": "s", "module_name": "m", "path": None, "sha256": None,
                          "isolated": False, "load_error": None})()
    report = JsonReport(tmp_path / "report.json", cand)
    report.config = type("Config", (), {"pluginmanager": Manager()})()
    report.write()
    summary = json.loads((tmp_path / "report.json").read_text())["summary"]
    assert isinstance(summary, dict) and summary["passed"] == 0 and summary["truncated"] is True
    assert 0 < len(summary["lines"]) <= 200 and all(len(line) <= 400 for line in summary["lines"])
