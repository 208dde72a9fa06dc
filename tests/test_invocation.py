"""Nothing beside a submission is ever read by the process that writes its verdict.

Hostile submissions (built from tests/adversarial/invocation/, see its README) put pytest
configuration, conftest.py files, plugins and Python start-up files beside the module, or in
the grader's world-writable $TMPDIR. Each is graded with its honest twin (the same code
without the trick) and correct classmates through every runner that writes a verdict and
every spelling README gives. The hooks they bring would turn every failure into a pass and
drop a marker file: no marker may appear, no hostile submission may pass or score more than
its twin, classmates keep full marks.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sqlite3
import sys
from pathlib import Path

import pytest

from conformance.invocation import (InvocationError, SUITE_DIR, SUITE_INI, SUITE_ROOT,
                                    check_extra_args, suite_args, suite_env)
from tests.helpers import REPO_ROOT, run_command, run_pytest
from tools.catalogue import Variant
from tools.kill_matrix import RunOptions, run_variant

INVOCATION = Path(__file__).resolve().parent / "adversarial" / "invocation"
HONEST = (INVOCATION / "halved_dw.py").read_text()
FORGE = (INVOCATION / "forge_passes.py").read_text()
CORRECT = (REPO_ROOT / "conformance" / "reference" / "mlp.py").read_text()
# Runs that only need the verdict, not the MNIST area: fewer examples, no training.
QUICK = ("-m", "not mnist", "--max-examples", "3")
LIMITS_ENV = {"BACKPROP_ISOLATE_CALL_TIMEOUT": "20", "BACKPROP_ISOLATE_SESSION_TIMEOUT": "120"}

# Each names the forging plugin and puts the submission's folder on sys.path.
INI_FILES = {
    "pytest.ini": "[pytest]\naddopts = -p forge_plugin\npythonpath = .\n",
    "pyproject.toml": '[tool.pytest.ini_options]\naddopts = ["-p", "forge_plugin"]\npythonpath = ["."]\n',
    "setup.cfg": "[tool:pytest]\naddopts = -p forge_plugin\npythonpath = .\n",
    "tox.ini": "[pytest]\naddopts = -p forge_plugin\npythonpath = .\n",
}
STARTUP = FORGE + "\nif not sys.flags.isolated:  # not the sandboxed worker (python -I)\n    _mark('startup')\n"


def _write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def build_attacks(root: Path) -> dict[str, Path]:
    """Hostile submissions (name -> module file); the module judged is always the honest core."""
    attacks = {
        "conftest_beside": _write(root / "conftest_beside", {"mlp.py": HONEST, "conftest.py": FORGE}) / "mlp.py",
        # A single file literally named conftest.py: the module itself carries the hooks.
        "named_conftest": _write(root / "named_conftest", {"conftest.py": HONEST + "\n" + FORGE}) / "conftest.py",
        "startup_files": _write(root / "startup_files", {
            "mlp.py": HONEST, "sitecustomize.py": STARTUP, "usercustomize.py": STARTUP,
            "forge_startup.py": STARTUP, "forge.pth": "import forge_startup\n"}) / "mlp.py",
    }
    for ini, text in INI_FILES.items():
        name = "ini_" + ini.replace(".", "_")
        attacks[name] = _write(root / name, {"mlp.py": HONEST, ini: text, "forge_plugin.py": FORGE}) / "mlp.py"
    return attacks


def plant_in_ancestor(folder: Path) -> None:
    """What any local user can write into a shared $TMPDIR above the grader's staging dirs."""
    _write(folder, {"conftest.py": FORGE, "forge_plugin.py": FORGE, **INI_FILES})


def _markers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def attack_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Marker folder the forging hooks write to (only if the verdict process runs them)."""
    markers = tmp_path / "markers"
    markers.mkdir()
    monkeypatch.setenv("BP_ATTACK_MARKER_DIR", str(markers))
    for key, value in LIMITS_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    return markers


# ------------------------------------------------------------------ the command itself

def test_suite_args_never_pass_the_candidate_as_a_path_argument() -> None:
    args = suite_args("/tmp/x/conftest.py", ["-x"])
    assert "--impl=/tmp/x/conftest.py" in args and "/tmp/x/conftest.py" not in args
    assert args[0] == str(SUITE_DIR)
    assert ["-c", str(SUITE_INI)] == args[args.index("-c"):args.index("-c") + 2]
    assert f"--rootdir={SUITE_ROOT}" in args and "--noconftest" in args
    assert args[-1] == "-x"


@pytest.mark.parametrize("extra", [["--impl", "x.py"], ["--impl=x.py"], ["-c", "evil.ini"],
                                   ["-cevil.ini"], ["--rootdir=/tmp"], ["-p", "evil"], ["-pevil"],
                                   ["--confcutdir", "/"], ["--pyargs"]])
def test_extra_args_cannot_reopen_the_command(extra: list[str]) -> None:
    with pytest.raises(InvocationError, match="not allowed"):
        check_extra_args(extra)


def test_environment_loses_what_injects_code_or_options() -> None:
    env = suite_env({"PYTEST_ADDOPTS": "-p evil", "PYTEST_PLUGINS": "evil", "PYTHONPATH": "/tmp",
                     "PYTHONSTARTUP": "/tmp/x.py", "BACKPROP_IMPL": "/tmp/x.py", "HOME": "/root"})
    assert env == {"HOME": "/root", "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}


# ------------------------------------------------------------------ every runner

def _console_script() -> list[str]:
    return [sys.executable, "-c", "import sys; from conformance.cli import main; sys.exit(main())"]


def run_cli_check_in_its_folder(module: Path, tmp: Path) -> tuple[int, str]:
    """backprop-conformance check, in-process, started in the submission's own folder."""
    proc = run_command([*_console_script(), "check", module.name, *QUICK], cwd=module.parent)
    return proc.returncode, proc.stdout + proc.stderr


def run_cli_check_isolated(module: Path, tmp: Path) -> tuple[int, str]:
    proc = run_command([*_console_script(), "check", str(module), "--isolate", *QUICK], cwd=tmp)
    return proc.returncode, proc.stdout + proc.stderr


def run_raw_pytest_impl_equals(module: Path, tmp: Path) -> tuple[int, str]:
    """README's raw spelling for an installed suite: pytest --pyargs conformance --impl=X."""
    proc = run_pytest("--pyargs", "conformance", f"--impl={module}", *QUICK, cwd=tmp)
    return proc.returncode, proc.stdout + proc.stderr


def run_raw_pytest_env(module: Path, tmp: Path) -> tuple[int, str]:
    """BACKPROP_IMPL=X pytest --pyargs conformance."""
    env = {**os.environ, "BACKPROP_IMPL": str(module)}
    proc = run_pytest("--pyargs", "conformance", *QUICK, cwd=tmp, env=env)
    return proc.returncode, proc.stdout + proc.stderr


def run_adversarial_runner(module: Path, tmp: Path) -> tuple[int, str]:
    """tools/kill_matrix.py's runner (the kill matrix and tests/test_adversarial.py), isolated."""
    variant = Variant(module.parent.name, "buggy", module, frozenset(), "invocation attack")
    run = run_variant(variant, tmp / "runner", RunOptions(isolate=True, timeout=600, extra_args=QUICK))
    assert run.error is None or run.returncode == 1, f"the run broke: {run.error}\n{run.output_tail}"
    return run.returncode or 0, run.output_tail


RUNNERS = {
    "cli-check-in-submission-folder": run_cli_check_in_its_folder,
    "cli-check-isolated": run_cli_check_isolated,
    "raw-pytest-impl-equals": run_raw_pytest_impl_equals,
    "raw-pytest-BACKPROP_IMPL": run_raw_pytest_env,
    "adversarial-runner": run_adversarial_runner,
}
ATTACK_NAMES = ["conftest_beside", "named_conftest", "startup_files",
                *("ini_" + ini.replace(".", "_") for ini in INI_FILES), "planted_in_tmpdir"]


@pytest.mark.slow
@pytest.mark.parametrize("runner", sorted(RUNNERS))
@pytest.mark.parametrize("attack", ATTACK_NAMES)
def test_no_runner_reads_files_beside_a_submission(attack: str, runner: str, tmp_path: Path,
                                                    attack_env: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    if attack == "planted_in_tmpdir":
        # The submission is staged below a shared temp folder in which a local user planted
        # configuration and a conftest.py; the grader's own temp files go there too.
        shared = tmp_path / "shared-tmp"
        plant_in_ancestor(shared)
        monkeypatch.setenv("TMPDIR", str(shared))
        module = _write(shared / "staged" / "sub", {"mlp.py": HONEST}) / "mlp.py"
    else:
        module = build_attacks(tmp_path / "subs")[attack]
    work = tmp_path / "empty"
    work.mkdir()
    status, output = RUNNERS[runner](module, work)
    assert _markers(attack_env) == [], (
        f"{attack} via {runner}: the verdict process ran the submission's hooks\n{output[-3000:]}")
    assert status == 1, f"{attack} via {runner}: exit status {status} (the bug must fail)\n{output[-3000:]}"


@pytest.mark.slow
@pytest.mark.parametrize("attack", ["conftest_beside", "named_conftest"])
def test_two_token_impl_no_longer_reads_the_candidates_conftest(attack: str, tmp_path: Path,
                                                                 attack_env: Path) -> None:
    """`pytest conformance --impl X` (two tokens): the options plugin is registered through
    its entry point before pytest parses, so X is never a test path and X's conftest.py is
    never loaded (the root cause of a critical hole: code run at collection)."""
    module = build_attacks(tmp_path / "subs")[attack]
    proc = run_pytest("conformance", "--impl", str(module), *QUICK, cwd=REPO_ROOT)
    output = proc.stdout + proc.stderr
    assert _markers(attack_env) == [], f"{attack}: conftest.py beside --impl was loaded\n{output[-3000:]}"
    assert proc.returncode == 1, output[-3000:]


# ------------------------------------------------------------------ a whole class

def _gradescope(submission: Path, results: Path, env: dict[str, str]) -> dict:
    proc = run_command([sys.executable, "-m", "conformance.grade.gradescope", "--submission", str(submission),
                        "--results", str(results), "--module", "mlp.py",
                        *(f"--pytest-arg={a}" for a in QUICK)], cwd=REPO_ROOT, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(results.read_text())


@pytest.mark.slow
def test_gradescope_entry_reads_nothing_beside_the_upload(tmp_path: Path, attack_env: Path) -> None:
    attacks = build_attacks(tmp_path / "uploads")
    twin = _write(tmp_path / "uploads" / "twin", {"mlp.py": HONEST})
    env = dict(os.environ)
    honest = _gradescope(twin, tmp_path / "twin.json", env)["score"]
    for name in ("conftest_beside", "ini_pyproject_toml", "ini_pytest_ini"):
        score = _gradescope(attacks[name].parent, tmp_path / f"{name}.json", env)["score"]
        assert score <= honest, f"{name}: {score} > its honest twin's {honest}"
    assert _markers(attack_env) == []


def _run_messages(gradebook: Path) -> dict[str, str]:
    with sqlite3.connect(gradebook) as db:
        return {name: f"{status}: {message[:2000]}\n{(tail or '')[-2000:]}"
                for name, status, message, tail in
                db.execute("SELECT name, status, message, output_tail FROM runs")
                if status != "graded"}


@pytest.mark.slow
def test_batch_grading_with_hostile_classmates(tmp_path: Path, attack_env: Path, real_dir: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """python -m conformance.grade on one class: correct classmates, honest twins and the attacks
    (those whose files survive intake), under a $TMPDIR a local user planted files in."""
    subs = tmp_path / "class"
    build_attacks(subs)
    for ini in ("pytest_ini", "setup_cfg", "tox_ini"):  # intake drops those files: same as the twin
        shutil.rmtree(subs / f"ini_{ini}")
    _write(subs / "honest_twin", {"mlp.py": HONEST})
    # A student file literally named conftest.py at the top of the class folder, and its twin.
    shutil.move(str(subs / "named_conftest" / "conftest.py"), subs / "conftest.py")
    (subs / "named_conftest").rmdir()
    (subs / "named_twin.py").write_text(HONEST + "\n" + FORGE)
    for classmate in ("alice", "bob"):
        (subs / f"{classmate}.py").write_text(CORRECT)
    shared = tmp_path / "shared-tmp"
    plant_in_ancestor(shared)
    monkeypatch.setenv("TMPDIR", str(shared))
    out = tmp_path / "grades"
    proc = run_command([sys.executable, "-m", "conformance.grade", str(subs), "--out", str(out), "-j", "2",
                        "--module", "mlp.py", "--mnist-dir", str(real_dir)], cwd=REPO_ROOT)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    with open(out / "grades.csv", newline="", encoding="utf-8-sig") as handle:  # Excel BOM
        rows = {row["submission"]: row for row in csv.DictReader(handle)}
    not_graded = {name: row["status"] for name, row in rows.items() if row["status"] != "graded"}
    assert not not_graded, f"{not_graded}: {_run_messages(out / 'grades.sqlite')}"
    score = {name: float(row["score"]) for name, row in rows.items()}
    full = float(rows["alice"]["max_score"])
    assert score["alice"] == score["bob"] == full, rows
    twin, named_twin = score["honest_twin"], score["named_twin"]
    assert twin < full and named_twin < full, "the honest core must lose points, or nothing is tested"
    for hostile in ("conftest_beside", "startup_files", "ini_pyproject_toml"):
        assert score[hostile] <= twin, f"{hostile}: {score[hostile]} > its honest twin's {twin}"
    assert score["conftest"] <= named_twin, f"conftest.py: {score['conftest']} > {named_twin}"
    assert _markers(attack_env) == [], "the grader ran a submission's (or $TMPDIR's) hooks"


# ------------------------------------------------------------------ the installed plugin

def test_pyargs_with_explicit_plugin_from_an_empty_folder(tmp_path: Path) -> None:
    """Issue 14's failing commands: `-p conformance.plugin` on top of the entry point is the
    same plugin (no "option names already added"), and the suite is found as a package."""
    (tmp_path / "mymodule.py").write_text(CORRECT)
    proc = run_pytest("-p", "conformance.plugin", "--pyargs", "conformance", "--impl", "mymodule", *QUICK,
                      cwd=tmp_path, env=suite_env_for_user())
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert "candidate: mymodule (in-process)" in output and "already added" not in output


def test_other_pytest_runs_only_gain_the_options(tmp_path: Path) -> None:
    """The entry point registers options only: an unrelated project's run loads no candidate,
    prints no suite header, registers none of the suite's hooks or markers."""
    (tmp_path / "test_theirs.py").write_text(
        "def test_theirs(pytestconfig):\n"
        "    assert pytestconfig.pluginmanager.has_plugin('conformance.plugin')\n"
        "    assert not pytestconfig.pluginmanager.has_plugin('conformance.hooks')\n"
        "    assert not any(m.startswith('mnist') for m in pytestconfig.getini('markers'))\n")
    proc = run_pytest("test_theirs.py", cwd=tmp_path, env=suite_env_for_user())
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert "candidate:" not in output and "1 passed" in output


def suite_env_for_user() -> dict[str, str]:
    """A user's environment: plugin autoloading on, no options injected."""
    return {k: v for k, v in os.environ.items()
            if k not in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD", "BACKPROP_IMPL")}


@pytest.mark.parametrize("argv, status", [
    ([], 2), (["nope"], 2), (["fixtures"], 2), (["fixtures", "generate"], 2),
    # check's help promises pytest's statuses, where 2 means "interrupted" and 4 a usage error.
    (["check"], 4), (["check", "-x"], 4), (["check", "mlp.py", "--impl=other.py"], 4),
    (["check", "mlp.py", "-p", "evil"], 4)])
def test_cli_usage_errors_exit_with_the_documented_status_and_say_why(
        argv: list[str], status: int, capsys: pytest.CaptureFixture[str]) -> None:
    from conformance.cli import CHECK_HELP, main, usage

    assert main(argv) == status
    assert capsys.readouterr().err.strip(), f"{argv}: a usage error must explain itself on stderr"
    promise = "4 usage error" if argv[:1] == ["check"] else "Exit status 2: no command or an unknown one"
    assert promise in " ".join((CHECK_HELP if argv[:1] == ["check"] else usage()).split())


def test_top_level_help_names_every_command_users_type() -> None:
    from conformance.cli import usage

    text = usage()
    for command in ("check", "record", "grade", "gradescope bundle", "fetch-mnist", "fixtures check"):
        assert command in text, command
