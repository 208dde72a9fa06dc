"""The Gradescope autograder zip, tried in a simulated ``/autograder`` layout.

``python -m conformance.grade.gradescope bundle`` writes the zip; each test unpacks it as Gradescope
does (``source/`` = the zip, ``run_autograder`` copied to the root, ``submission/`` = the upload,
``results/``) in a temp root named by ``$AUTOGRADER_ROOT``, and runs ``run_autograder`` with no
MNIST anywhere but in the bundle. Environment failures must end as an autograder error (exit 3,
no results.json), never as a score.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conformance.isolation.process import PRIVATE_ENV
from conformance.report import suite_version
from tests.sandbox_off import readable_python_prefix
from tests.test_grade import FAST_RUBRIC, I_BUG, REFERENCE, write
from tests.test_preflight import NO_NAMESPACES, needs_namespace_drop
from conformance.grade import gradescope

REPO = Path(__file__).resolve().parents[1]
THIS_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
FAST_SELECTION = ["--pytest-arg=-m", "--pytest-arg=not mnist", "--pytest-arg=-k",
                  "--pytest-arg=interface or gradients"]


def build(tmp: Path, real_dir: Path, *extra: str) -> Path:
    out = tmp / "autograder.zip"
    rubric = write(tmp / "rubric.toml", FAST_RUBRIC)
    # This interpreter's Python: setup.sh then only checks pins this venv already satisfies.
    code = gradescope.main(["bundle", str(out), "--rubric", str(rubric), "--mnist-dir", str(real_dir),
                            "--python", THIS_PYTHON, *FAST_SELECTION, *extra])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, real_dir: Path) -> Path:
    return build(tmp_path_factory.mktemp("bundle"), real_dir)


def autograder_env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKPROP_", "PYTEST_"))}
    # No MNIST outside the bundle: no $BACKPROP_MNIST_DIR, and a home without a cache.
    env.update(AUTOGRADER_ROOT=str(root), AUTOGRADER_PYTHON=sys.executable, HOME=str(root / "home"),
               XDG_CACHE_HOME=str(root / "home" / ".cache"))
    return env


def layout(tmp: Path, zip_path: Path, upload: dict[str, str]) -> Path:
    """The folders Gradescope prepares, filled from the zip and the student's upload."""
    root = tmp / "autograder"
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            target = root / "source" / info.filename
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(zf.read(info))
            target.chmod((info.external_attr >> 16) & 0o777 or 0o644)
    shutil.copy2(root / "source" / "run_autograder", root / "run_autograder")
    for name, text in upload.items():
        write(root / "submission" / name, text)
    (root / "submission").mkdir(parents=True, exist_ok=True)
    (root / "results").mkdir()
    (root / "home").mkdir()
    return root


def run_autograder(root: Path, prefix: tuple[str, ...] = ()) -> tuple[subprocess.CompletedProcess, dict | None]:
    proc = subprocess.run([*prefix, str(root / "run_autograder")], env=autograder_env(root), cwd=root,
                          capture_output=True, text=True, timeout=900, check=False)
    results = root / "results" / "results.json"
    return proc, json.loads(results.read_text()) if results.exists() else None


def test_bundle_holds_what_gradescope_needs(bundle: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(bundle) as zf:
        names = set(zf.namelist())
        modes = {i.filename: (i.external_attr >> 16) for i in zf.infolist()}
        info = json.loads(zf.read("bundle.json"))
        requirements = zf.read("requirements.txt").decode()
        runner = zf.read("run_autograder").decode()
        zf.extract("setup.sh", tmp_path)
    assert {"setup.sh", "run_autograder", "rubric.toml", "requirements.txt", "bundle.json"} <= names
    assert modes["setup.sh"] & stat.S_IXUSR and modes["run_autograder"] & stat.S_IXUSR
    assert {n for n in names if n.startswith("mnist/")} == {
        "mnist/train-images-idx3-ubyte.gz", "mnist/train-labels-idx1-ubyte.gz",
        "mnist/t10k-images-idx3-ubyte.gz", "mnist/t10k-labels-idx1-ubyte.gz"}
    assert "project/conformance/plugin.py" in names and "project/conformance/reference/mlp.py" in names
    assert "project/fixtures/manifest.json" in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert info["suite_version"] == suite_version() and info["module"] == "mlp.py" and info["mnist_included"]
    import numpy
    assert f"numpy=={numpy.__version__}\n" in requirements  # pinned to what was tested here
    assert "\nnbformat==" in requirements  # notebook uploads are read as the batch grader reads them
    assert f"--suite-version {suite_version()}" in runner and "--isolate-sandbox require" in runner
    assert subprocess.run(["bash", "-n", str(tmp_path / "setup.sh")], check=False).returncode == 0


def test_setup_script_installs_the_pinned_requirements(bundle: Path, tmp_path: Path) -> None:
    """Run setup.sh with this interpreter: every pin is already satisfied here, so pip only
    checks them (no download); a pin this machine does not satisfy would make it fail."""
    root = layout(tmp_path, bundle, {})
    proc = subprocess.run(["bash", str(root / "source" / "setup.sh")], env=autograder_env(root),
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_bundle_errors_name_the_input(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert gradescope.main(["bundle", str(tmp_path / "a.zip"), "--module", "../x.py", "--no-mnist"]) == 2
    assert gradescope.main(["bundle", str(tmp_path / "a.zip"), "--mnist-dir", str(tmp_path)]) == 2
    capsys.readouterr()
    assert gradescope.main(["bundle", str(tmp_path / "a.zip"), "--no-mnist", "--python", "python3"]) == 2
    assert "--python 'python3': expected a Python version like 3.10" in capsys.readouterr().err
    assert not (tmp_path / "a.zip").exists()


# pip's words when the package index cannot be reached (then the test cannot say anything).
OFFLINE = ("NewConnectionError", "Temporary failure in name resolution", "Network is unreachable",
           "Could not fetch URL", "ConnectionError", "Max retries exceeded")


def pip_dry_run(python: str, target: Path, *requirements: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                           "--no-deps", "--target", str(target), "--python-version", python, "--only-binary=:all:",
                           *(f"--platform={tag}" for tag in gradescope.PLATFORMS), *requirements],
                          capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.slow
@pytest.mark.parametrize("python", ["3.10", "3.12"])
def test_bundle_pins_install_on_the_images_python(python: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    """numpy 2.4 and scipy 1.17 have no Python 3.10 wheels: a zip pinning this machine's
    versions failed in setup.sh on Gradescope's Ubuntu 22.04 image. The pins are resolved for
    the image's Python, and every pinned version exists there as a wheel."""
    out = tmp_path / "autograder.zip"
    code = gradescope.main(["bundle", str(out), "--no-mnist", "--python", python])
    err = capsys.readouterr().err
    if code != 0 and any(word in err for word in OFFLINE):
        pytest.skip(f"the package index is not reachable from here, so nothing can be resolved: {err[-300:]}")
    assert code == 0, err
    with zipfile.ZipFile(out) as zf:
        requirements = zf.read("requirements.txt").decode()
        assert json.loads(zf.read("bundle.json"))["python"] == python
    pins = dict(line.split("==") for line in requirements.splitlines() if line and not line.startswith("#"))
    assert {"numpy", "scipy", "pytest", "hypothesis", "nbformat"} <= pins.keys()
    assert ("tomli" in pins) == (python == "3.10")  # tomllib is in the standard library from 3.11
    from importlib import metadata

    def key(version: str) -> tuple[int, ...]:
        return tuple(int(part) for part in version.split(".")[:3] if part.isdigit())

    for name in ("numpy", "scipy"):  # never newer than what this machine tested
        assert key(pins[name]) <= key(metadata.version(name)), (name, pins[name])
    # Installable as written, each pin on its own, for that Python on x86_64 Linux.
    proc = pip_dry_run(python, tmp_path / "target", *(f"{name}=={version}" for name, version in pins.items()))
    assert proc.returncode == 0, proc.stderr[-2000:]


def local_trial_block() -> str:
    """The local trial of docs/instructors.md, as a user pastes it."""
    text = (REPO / "docs" / "instructors.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    [block] = [b for b in blocks if "run_autograder" in b and "AUTOGRADER_ROOT" in b]
    return block


@pytest.mark.slow
def test_the_documented_local_trial_works_as_pasted(bundle: Path, tmp_path: Path) -> None:
    """The old README's trial (relative AUTOGRADER_PYTHON) failed with exit status 127:
    run_autograder changes directory first. Pasted from the folder the docs name (grader/,
    autograder.zip and mlp.py side by side), it grades."""
    block = local_trial_block()
    assert '"$PWD/' in block  # absolute paths, or run_autograder loses them
    folder = tmp_path / "course"
    shutil.copy(bundle, write(folder / "mlp.py", REFERENCE).parent / "autograder.zip")
    python = write(folder / "grader" / "bin" / "python", f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)  # stands in for the grader venv's interpreter
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKPROP_", "PYTEST_", "AUTOGRADER_"))}
    env.update(HOME=str(tmp_path / "home"), XDG_CACHE_HOME=str(tmp_path / "home" / ".cache"))
    proc = subprocess.run(["bash", "-e", "-c", block], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    results = json.loads((folder / "trial" / "results" / "results.json").read_text())
    assert results["extra_data"]["status"] == "graded" and results["score"] == 100


@pytest.mark.slow
def test_correct_upload_gets_full_marks(bundle: Path, tmp_path: Path) -> None:
    root = layout(tmp_path, bundle, {"mlp.py": REFERENCE})
    proc, results = run_autograder(root)
    assert proc.returncode == 0, proc.stderr
    assert results is not None and results["score"] == results["extra_data"]["max_score"] == 100
    assert results["extra_data"]["status"] == "graded"
    assert results["extra_data"]["sandbox"] in (("engaged",) if os.geteuid() == 0 else ("engaged", "degraded"))


@pytest.mark.slow
def test_buggy_upload_loses_points(bundle: Path, tmp_path: Path) -> None:
    root = layout(tmp_path, bundle, {"mlp.py": I_BUG})
    proc, results = run_autograder(root)
    assert proc.returncode == 0, proc.stderr
    assert results is not None and results["extra_data"]["status"] == "graded"
    gradients = next(test for test in results["tests"] if "gradients" in test["tags"])
    assert gradients["score"] == 0 and gradients["status"] == "failed"  # all or nothing: the i-1 bug
    assert results["score"] < 100


@pytest.mark.slow
def test_multi_file_upload_imports_its_own_helper(bundle: Path, tmp_path: Path) -> None:
    root = layout(tmp_path, bundle, {"mlp.py": "from mlp_core import *  # noqa\n",
                                     "mlp_core.py": REFERENCE, "notes.txt": "hello"})
    proc, results = run_autograder(root)
    assert proc.returncode == 0, proc.stderr
    assert results is not None and results["score"] == 100, results["output"]


def test_missing_data_is_an_autograder_error_not_a_score(bundle: Path, tmp_path: Path) -> None:
    root = layout(tmp_path, bundle, {"mlp.py": REFERENCE})
    shutil.rmtree(root / "source" / "mnist")  # e.g. a zip built with --no-mnist whose download failed
    proc, results = run_autograder(root)
    assert proc.returncode == gradescope.ENVIRONMENT_FAILURE and results is None
    assert "AUTOGRADER ERROR" in proc.stderr and "MNIST data not found" in proc.stderr


def test_another_suite_version_is_an_autograder_error(bundle: Path, tmp_path: Path) -> None:
    root = layout(tmp_path, bundle, {"mlp.py": REFERENCE})
    checks = root / "source" / "project" / "conformance" / "checks.py"
    checks.write_text(checks.read_text() + "\n# edited after the bundle was built\n")
    proc, results = run_autograder(root)
    assert proc.returncode == gradescope.ENVIRONMENT_FAILURE and results is None
    assert f"but the batch grades with {suite_version()}" in proc.stderr


@needs_namespace_drop
def test_container_without_sandbox_privileges_is_an_autograder_error(bundle: Path, tmp_path: Path) -> None:
    root = layout(tmp_path, bundle, {"mlp.py": REFERENCE})
    proc, results = run_autograder(root, prefix=tuple(NO_NAMESPACES))
    assert proc.returncode == gradescope.ENVIRONMENT_FAILURE and results is None
    assert "the sandbox could not be set up" in proc.stderr


@pytest.mark.slow
@needs_namespace_drop
def test_explicit_sandbox_off_grades_and_records_it(tmp_path: Path, real_dir: Path) -> None:
    zip_path = build(tmp_path, real_dir, "--isolate-sandbox", "off")
    root = layout(tmp_path, zip_path, {"mlp.py": I_BUG})
    # Off as root still runs the worker as its own uid: behind a Python it can read, as in a
    # container (tests/sandbox_off.py; the attacks on off are in tests/test_sandbox_off.py).
    prefix = (*readable_python_prefix(tmp_path), *NO_NAMESPACES)
    proc, results = run_autograder(root, prefix=prefix)
    assert proc.returncode == 0, proc.stderr
    assert results is not None and results["extra_data"]["status"] == "graded"
    assert results["extra_data"]["sandbox"] == "off" and results["score"] < 100


def test_broken_autograder_configuration_writes_no_score(tmp_path: Path) -> None:
    (tmp_path / "submission").mkdir()
    bad_rubric = write(tmp_path / "bad.toml", "[areas.nonsense]\npoints = 5\n")
    for args in (["--rubric", str(bad_rubric)], ["--submission", str(tmp_path / "missing")]):
        assert gradescope.main(["run", "--root", str(tmp_path), *args]) == gradescope.ENVIRONMENT_FAILURE
        assert not (tmp_path / "results" / "results.json").exists()


def test_notebook_upload_without_nbformat_is_an_autograder_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """Finding 1b: a container that cannot read the notebook writes no score (no 0, no no_module)."""
    cell = {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": REFERENCE}
    write(tmp_path / "submission" / "mlp.ipynb",
          json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [cell]}))
    monkeypatch.setitem(sys.modules, "nbformat", None)
    assert gradescope.main(["run", "--root", str(tmp_path), "--no-require-mnist"]) == gradescope.ENVIRONMENT_FAILURE
    err = capsys.readouterr().err
    assert "AUTOGRADER ERROR" in err and "pip install 'backprop-conformance[grade]'" in err
    assert not (tmp_path / "results" / "results.json").exists()


@pytest.mark.parametrize("before", [None, "/named/by/the/caller"])
def test_a_run_names_its_private_folders_to_its_own_workers_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, before: str | None) -> None:
    """The upload, results/, rubric and MNIST folder of a run are named to that run's workers
    (who refuse to start if their uid can reach one), and to no later run in the same process:
    a run that left them named made every later --isolate-sandbox off run in the process refuse
    to start over another run's files (a world-readable $BACKPROP_MNIST_DIR, in CI)."""
    if before is None:
        monkeypatch.delenv(PRIVATE_ENV, raising=False)
    else:
        monkeypatch.setenv(PRIVATE_ENV, before)
    write(tmp_path / "submission" / "mlp.py", REFERENCE)
    rubric = write(tmp_path / "r.toml", FAST_RUBRIC)
    (tmp_path / "mnist").mkdir()
    seen: list[str | None] = []

    def preflight(config, version):  # what the preflight's probe worker and the runner read
        seen.append(os.environ.get(PRIVATE_ENV))
        raise RuntimeError("stop here: the run itself is not the point")

    monkeypatch.setattr(gradescope, "ensure_environment", preflight)
    code = gradescope.main(["run", "--root", str(tmp_path), "--rubric", str(rubric),
                            "--mnist-dir", str(tmp_path / "mnist")])
    assert code == gradescope.ENVIRONMENT_FAILURE and len(seen) == 1
    named = seen[0].split(os.pathsep)
    mine = [str(tmp_path.resolve())] + [str((tmp_path / path).resolve())
                                        for path in ("submission", "results", "r.toml", "mnist")]
    assert sorted(named) == sorted(([before] if before else []) + mine)
    assert os.environ.get(PRIVATE_ENV) == before, "the run's private folders outlived it"


def test_help_names_the_command_that_was_typed(capsys: pytest.CaptureFixture) -> None:
    from conformance import cli

    assert cli.main(["gradescope", "--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: backprop-conformance gradescope {bundle,run}")
    for command in ("run", "bundle"):
        with pytest.raises(SystemExit):
            cli.main(["gradescope", command, "--help"])
        assert capsys.readouterr().out.startswith(f"usage: backprop-conformance gradescope {command} [-h]")
    with pytest.raises(SystemExit):
        gradescope.main(["bundle", "--help"])
    assert capsys.readouterr().out.startswith("usage: python -m conformance.grade.gradescope bundle [-h]")
