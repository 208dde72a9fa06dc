"""Gradescope autograder: build the autograder zip, and grade one upload inside it.

``python -m conformance.grade.gradescope bundle OUT.zip [--rubric FILE] [--module mlp.py]`` writes
the zip to upload as a Gradescope "Autograder" (see docs/instructors.md, "Gradescope"):

- ``setup.sh``: installs the pinned dependencies (``requirements.txt``: the versions this machine
  grades with where they exist for the image's Python, ``--python``, else the newest older ones);
- ``run_autograder``: grades ``/autograder/submission`` into ``/autograder/results/results.json``;
- ``rubric.toml``, ``bundle.json`` (suite version, module, settings), ``requirements.txt``;
- ``project/``: this project's suite, reference and grader (the exact files, so the suite
  version on Gradescope is the one tested here);
- ``mnist/``: the four MNIST files (``--no-mnist`` leaves them out; setup.sh then downloads).

``python -m conformance.grade.gradescope run [--root /autograder]`` is what ``run_autograder``
calls. It first checks the container (preflight: MNIST data, disk, sandbox, suite version);
an environment failure, or a run that failed on the grader's side, ends with exit status 3
and a message on stderr, and NO results.json: Gradescope then shows an autograder failure to
staff instead of a score. Only a run that judged the submission writes results.json (exit 0).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

from conformance.isolation.process import PRIVATE_ENV
from conformance.report import suite_version
from conformance.grade.intake.notebooks import GRADE_EXTRA
from conformance.grade.publish.outputs import GradedSubmission, gradescope_results, write_atomic
from conformance.grade.run.preflight import Preflight, ensure_environment
from conformance.grade.score.rubric import DEFAULT_RUBRIC, Rubric, RubricError, load_rubric, score
from conformance.grade.run.jobs import REPO_ROOT, GradeConfig, Job, JobResult
from conformance.grade.run.runner import run_job
from conformance.grade.intake.submissions import Submission, load_submission

PROG = "python -m conformance.grade.gradescope"
ROOT_ENV = "AUTOGRADER_ROOT"
ENVIRONMENT_FAILURE = 3  # exit status: the autograder (not the student) failed; no score written
# What the bundle's project/ holds: everything the suite, the reference and the grader read.
PROJECT_DIRS = ("conformance", "fixtures")
PROJECT_FILES = ("pyproject.toml", "README.md")
# Installed in the container with the versions of this machine (the suite's numerics were
# checked with them); nbformat reads notebook uploads (accepted like the batch grader accepts
# them); tqdm/matplotlib/copydetect are not needed to grade one upload.
RUNTIME_DISTRIBUTIONS = ("numpy", "scipy", "pytest", "hypothesis", "nbformat")
# The Python of the image the zip is built for. Gradescope's Ubuntu 22.04 base image has Python
# 3.10 (the default here); its Ubuntu 24.04 image has 3.12 (`--python 3.12`).
GRADESCOPE_PYTHON = "3.10"
# Gradescope runs x86_64 Linux containers (glibc 2.35 on Ubuntu 22.04, newer on 24.04). pip
# does not widen a manylinux tag to older glibc versions by itself, so every one is named.
PLATFORMS = (*(f"manylinux_2_{minor}_x86_64" for minor in range(35, 16, -1)), "manylinux2014_x86_64",
             "manylinux2010_x86_64", "manylinux1_x86_64", "linux_x86_64")


# ------------------------------------------------------------------------------------ run


def _run_parser(prog: str = f"{PROG} run") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(allow_abbrev=False, prog=prog,
                                description="Grade one Gradescope upload (what run_autograder calls).")
    p.add_argument("--root", type=Path, default=Path(os.environ.get(ROOT_ENV, "/autograder")),
                   help=f"the autograder folder holding submission/ and results/ (default ${ROOT_ENV} "
                        "or /autograder)")
    p.add_argument("--submission", type=Path, default=None,
                   help="the student's uploaded files (default ROOT/submission)")
    p.add_argument("--results", type=Path, default=None,
                   help="where to write results.json (default ROOT/results/results.json)")
    p.add_argument("--module", help="the module's file name when the upload holds several .py files")
    p.add_argument("--rubric", type=Path, default=None, help="rubric TOML (default: the shipped one)")
    p.add_argument("--declaration", type=Path, default=None,
                   help="the assignment's conventions (default: the section's interface)")
    p.add_argument("--timeout", type=float, default=300.0, help="wall-clock limit of the suite run (s)")
    p.add_argument("--call-timeout", type=float, default=30.0,
                   help="limit for one non-training call to the candidate (s, default 30)")
    p.add_argument("--mnist-dir", default=os.environ.get("BACKPROP_MNIST_DIR"),
                   help="folder with the four MNIST files (default $BACKPROP_MNIST_DIR, then the cache)")
    p.add_argument("--no-require-mnist", dest="require_mnist", action="store_false",
                   help="do not fail the MNIST checks when the data is missing (they are skipped)")
    p.add_argument("--suite-version", default=None,
                   help="refuse to grade unless the installed suite has this version (the bundle's)")
    p.add_argument("--no-isolate", dest="isolate", action="store_false",
                   help="run the candidate in the suite's process (NOT for student code)")
    from conformance.grade.cli import add_sandbox_option

    add_sandbox_option(p)
    p.add_argument("--profile", default="grading", help="hypothesis profile (default grading)")
    p.add_argument("--pytest-arg", dest="pytest_args", action="append", default=[], metavar="ARG")
    return p


def _autograder_error(message: str) -> int:
    print(f"AUTOGRADER ERROR (not the student's fault; no score was written):\n{message}", file=sys.stderr)
    return ENVIRONMENT_FAILURE


def run(argv: list[str] | None = None, prog: str = f"{PROG} run") -> int:
    args = _run_parser(prog).parse_args(argv)
    try:
        return _run(args)
    except Exception as exc:  # noqa: BLE001 - whatever breaks here is the autograder's, not a score
        return _autograder_error(f"the autograder failed: {type(exc).__name__}: {exc}")


def _keep_private(root: Path, submission: Path, results: Path, rubric: Path | None,
                  mnist_dir: str | None, *, isolate: bool) -> list[str]:
    """Keep the container's grading files out of the worker's reach when no namespace hides
    them (``--isolate-sandbox off``): as root, the autograder folder (``source/`` with the
    project, rubric and MNIST; ``results/``; the upload; Gradescope's metadata) loses every
    group/other permission. Returns the paths to name to this run's workers (``_named_private``),
    which refuse to run the candidate if their uid can still reach one (a grader error, never
    a score)."""
    if not isolate:
        return []
    paths = [root, submission, results.parent, *([rubric] if rubric else []),
             *([Path(mnist_dir)] if mnist_dir else [])]
    if os.geteuid() == 0:
        for path in (root, submission, results.parent):
            if path.is_dir() and not path.is_symlink():
                path.chmod(path.stat().st_mode & 0o7700)
    return [str(p.resolve()) for p in paths]


@contextlib.contextmanager
def _named_private(paths: list[str]) -> Iterator[None]:
    """Name ``paths`` to the workers of this run only (``BACKPROP_ISOLATE_PRIVATE``, read by the
    preflight's probe worker and passed on by the runner), and put the variable back as it was
    when the run ends. ``run`` is called in-process too (``backprop-conformance gradescope``,
    the self-tests): a run's folders named for ever would hold every later run in the process
    to them, and a later run whose workers can read one (a world-readable MNIST folder given
    by $BACKPROP_MNIST_DIR) would be refused for another run's files."""
    before = os.environ.get(PRIVATE_ENV)
    if paths:
        known = [p for p in (before or "").split(os.pathsep) if p]
        os.environ[PRIVATE_ENV] = os.pathsep.join(known + paths)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(PRIVATE_ENV, None)
        else:
            os.environ[PRIVATE_ENV] = before


def _run(args: argparse.Namespace) -> int:
    submission = args.submission or args.root / "submission"
    results = args.results or args.root / "results" / "results.json"
    try:
        rubric = load_rubric(args.rubric)
    except RubricError as exc:
        return _autograder_error(f"rubric: {exc}")
    if not submission.is_dir():
        return _autograder_error(f"submission folder {submission}: no such directory")
    mnist_dir = str(Path(args.mnist_dir).expanduser()) if args.mnist_dir else None
    declaration = ""
    if args.declaration is not None:
        from conformance.declaration import DeclarationError, instructor_text

        try:
            declaration = instructor_text(args.declaration)
        except DeclarationError as exc:
            return _autograder_error(f"declaration: {exc}")
    config = _grade_config(args, mnist_dir, declaration)
    private = _keep_private(args.root, submission, results, args.rubric, mnist_dir, isolate=args.isolate)
    with _named_private(private):
        return _grade(args, config, submission, results, rubric)


def _grade(args: argparse.Namespace, config: GradeConfig, submission: Path, results: Path,
           rubric: Rubric) -> int:
    sub = load_submission(submission, args.module, name="submission")
    if sub.problem_status == "error":  # e.g. a notebook upload and no nbformat in the container
        return _autograder_error(sub.problem or "the upload could not be read")
    check = ensure_environment(config, args.suite_version)
    if not check.ok:
        return _autograder_error(check.explain())
    print(f"preflight: {check.explain()}")
    _take_the_only_module(sub, args.module)
    result = _run_upload(sub, config, check, args.suite_version)
    if result.status == "error":
        return _autograder_error(f"the run failed on the grader's side: {result.message}")
    graded = _graded_upload(sub, result, rubric, check)
    write_atomic(results, json.dumps(gradescope_results(graded), indent=1))
    print(f"{result.status}: {graded.grade.score:g}/{graded.grade.max_score:g} (sandbox {result.sandbox}) "
          f"-> {results}")
    return 0


def _grade_config(args: argparse.Namespace, mnist_dir: str | None, declaration: str = "") -> GradeConfig:
    return GradeConfig(timeout=args.timeout, isolate=args.isolate, hypothesis_profile=args.profile or None,
                       require_mnist=args.require_mnist, mnist_dir=mnist_dir,
                       extra_args=tuple(args.pytest_args), call_timeout=args.call_timeout,
                       sandbox=args.sandbox, declaration=declaration)


def _take_the_only_module(sub: Submission, module: str | None) -> None:
    """With ``--module`` naming no uploaded file, grade the upload's one top-level .py file."""
    if sub.problem and module and not sub.files.get(module):
        # The student named the file differently: one .py file at the top is unambiguous.
        top = [rel for rel in sub.files if "/" not in rel and rel.endswith(".py")]
        if len(top) == 1:
            sub.problem, sub.module = None, top[0]


def _run_upload(sub: Submission, config: GradeConfig, check: Preflight,
                suite_version: str | None) -> JobResult:
    """The suite's run on the upload, or the result of an upload that cannot run."""
    if sub.problem or sub.module is None:
        return JobResult(name=sub.name, sha256=sub.sha256, status=sub.problem_status,
                         message=sub.problem or "no module", sandbox=check.sandbox)
    return run_job(Job(name=sub.name, sha256=sub.sha256, files=sub.files, module=sub.module,
                       config=config, suite_version=suite_version or check.suite_version))


def _graded_upload(sub: Submission, result: JobResult, rubric: Rubric, check: Preflight) -> GradedSubmission:
    """The run scored with the rubric (no baseline: the bundle's reference run is not here)."""
    tests = result.report["tests"] if result.report else []
    return GradedSubmission(
        name=sub.name, slug=sub.slug, sha256=sub.sha256, status=result.status, message=result.message,
        grade=score(rubric, result.status, tests, None, result.message), duration=result.duration,
        tests=tests, suite_version=check.suite_version, rubric=rubric, sandbox=result.sandbox,
        intake=sub.intake, run_summary=(result.report or {}).get("summary") or {})


# --------------------------------------------------------------------------------- bundle


def _bundle_parser(prog: str = f"{PROG} bundle") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(allow_abbrev=False, prog=prog,
                                description="Write a Gradescope autograder zip.")
    p.add_argument("out", metavar="OUT.zip", type=Path, help="the zip to write")
    p.add_argument("--rubric", type=Path, default=None, help="rubric TOML (default: the shipped one)")
    p.add_argument("--declaration", type=Path, default=None, metavar="FILE",
                   help="the assignment's conventions (conformance/ADAPTERS.md), shipped in the zip")
    p.add_argument("--module", default="mlp.py",
                   help="the file students upload (default mlp.py); with several .py files in an "
                        "upload, this one is judged and the others are importable helpers")
    p.add_argument("--mnist-dir", default=os.environ.get("BACKPROP_MNIST_DIR"),
                   help="where to take the MNIST files from (default $BACKPROP_MNIST_DIR, then the cache)")
    p.add_argument("--no-mnist", dest="mnist", action="store_false",
                   help="leave MNIST out of the zip (11 MB): setup.sh then downloads it")
    p.add_argument("--timeout", type=float, default=300.0, help="wall-clock limit of one run (s)")
    p.add_argument("--python", default=GRADESCOPE_PYTHON, metavar="X.Y",
                   help=f"Python version of the image the zip installs on (default {GRADESCOPE_PYTHON}: "
                        "Gradescope's Ubuntu 22.04 image; 3.12 for its Ubuntu 24.04 image). The pins are "
                        "resolved for it with pip against the package index; with this machine's own "
                        "Python version, this machine's versions are pinned as they are")
    from conformance.grade.cli import add_sandbox_option

    add_sandbox_option(p)
    p.add_argument("--pytest-arg", dest="pytest_args", action="append", default=[], metavar="ARG",
                   help="extra argument for the suite's pytest run (repeatable)")
    return p


SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once when it builds the autograder image
# (written by `python -m conformance.grade.gradescope bundle`).
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${{AUTOGRADER_PYTHON:-python3}}"
if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
    apt-get update && apt-get install -y python3 python3-pip
fi
"$PYTHON" -m pip install --no-cache-dir -r requirements.txt
{fetch}"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for every upload (written by `python -m conformance.grade.gradescope bundle`).
# Exit status 3 with no results.json: the autograder's environment failed (see its output).
ROOT="${{AUTOGRADER_ROOT:-/autograder}}"
PYTHON="${{AUTOGRADER_PYTHON:-python3}}"
cd "$ROOT/source/project" || exit 3
exec "$PYTHON" -m conformance.grade.gradescope run --root "$ROOT" {args}
"""


def _project_files(root: Path) -> list[Path]:
    files = [root / name for name in PROJECT_FILES if (root / name).is_file()]
    for top in PROJECT_DIRS:
        for path in sorted((root / top).rglob("*")):
            rel = path.relative_to(root)
            if (path.is_file() and not path.is_symlink() and "__pycache__" not in rel.parts
                    and not any(part.startswith(".") for part in rel.parts) and path.suffix != ".pyc"):
                files.append(path)
    return files


class BundleError(Exception):
    """The zip cannot be built as asked (the message says why and what to do)."""


def _this_python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def _installed(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        raise BundleError(f"{name} is not installed here (the zip pins the versions this machine grades "
                          f"with): {GRADE_EXTRA}") from None


def _requirements(python: str | None = None) -> str:
    """requirements.txt for an image whose Python is ``python`` (X.Y; default this machine's)."""
    python = python or _this_python()
    if python == _this_python():
        # The versions installed here exist for this Python: pin them as they are (no index needed).
        lines = [f"{name}=={_installed(name)}" for name in RUNTIME_DISTRIBUTIONS]
        if sys.version_info < (3, 11):
            lines.append(f"tomli=={_installed('tomli')}")
        else:
            lines.append("tomli>=2.0; python_version < '3.11'")
        return "\n".join(lines) + "\n"
    return resolve_requirements(python)


def _floors() -> dict[str, str]:
    """The project's declared minimum versions (numpy>=1.24, ...), when it is installed."""
    try:
        requires = metadata.requires("backprop-conformance") or []
    except metadata.PackageNotFoundError:  # run from a clone that was never installed
        return {}
    found = (re.match(r"\s*([A-Za-z0-9_.-]+)\s*>=\s*([0-9][^,;\s]*)", req) for req in requires)
    return {m[1].lower(): m[2] for m in found if m}


def resolve_requirements(python: str) -> str:
    """Pins that install on an x86_64 Linux image whose Python is ``python`` (X.Y): each runtime
    distribution at this machine's version when that version exists for that Python, else the
    newest older one that does (numpy 2.4 has no Python 3.10 wheels), and every dependency they
    pull in, resolved by pip against the package index. Raises BundleError when pip cannot."""
    if not re.fullmatch(r"3\.\d{1,2}", python):
        raise BundleError(f"--python {python!r}: expected a Python version like 3.10 or 3.12")
    floors = _floors()
    wanted = [*RUNTIME_DISTRIBUTIONS, *(("tomli",) if int(python.split(".")[1]) < 11 else ())]
    specs = []
    for name in wanted:
        spec = f"{name}<={_installed(name)}" if name != "tomli" else "tomli>=2.0"
        if name in floors:
            spec += f",>={floors[name]}"
        specs.append(spec)
    with tempfile.TemporaryDirectory(prefix="bundle-resolve-") as tmp:
        report = Path(tmp) / "report.json"
        # --target (never written: --dry-run) is what lets pip resolve for another Python.
        command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                   "--disable-pip-version-check", "--target", str(Path(tmp) / "target"),
                   "--report", str(report), "--python-version", python, "--only-binary=:all:",
                   *(f"--platform={tag}" for tag in PLATFORMS), *specs]
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BundleError(f"could not run pip to resolve the pins for Python {python}: {exc}") from None
        if proc.returncode != 0 or not report.is_file():
            said = "\n".join(line for line in (proc.stderr + proc.stdout).splitlines()
                             if line.strip() and not line.startswith("WARNING: Location"))[-2000:]
            raise BundleError(
                f"the dependencies cannot be resolved for Python {python} on x86_64 Linux "
                f"({' '.join(specs)}); the zip would not install on that image, so none was written.\n"
                f"pip said:\n{said}\n"
                "Check that the package index is reachable, and that --python names the image's Python")
        installs = json.loads(report.read_text())["install"]
    pins = sorted(f"{item['metadata']['name']}=={item['metadata']['version']}" for item in installs)
    header = (f"# Resolved for Python {python} on x86_64 Linux (the Gradescope image) by "
              f"`gradescope bundle --python {python}`:\n# this machine's versions where they exist for it, "
              "else the newest older ones that do.\n")
    return header + "\n".join(pins) + "\n"


def _add(zf: zipfile.ZipFile, name: str, data: bytes | str, executable: bool = False) -> None:
    info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))  # reproducible bytes
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = (0o755 if executable else 0o644) << 16
    zf.writestr(info, data)


def _bundle_module(args: argparse.Namespace) -> None:
    if Path(args.module).name != args.module or not args.module.endswith(".py"):
        raise BundleError(f"--module {args.module!r}: expected a file name like mlp.py")


def _bundle_rubric(args: argparse.Namespace) -> tuple[Rubric, str]:
    """The rubric (checked) and its text as the zip ships it."""
    try:
        rubric = load_rubric(args.rubric)
    except RubricError as exc:
        raise BundleError(str(exc)) from None
    return rubric, (args.rubric or DEFAULT_RUBRIC).read_text(encoding="utf-8")


def _bundle_declaration(args: argparse.Namespace) -> str:
    """The instructor's declaration, validated ("": the section's interface)."""
    if args.declaration is None:
        return ""
    from conformance.declaration import DeclarationError, instructor_text

    try:
        return instructor_text(args.declaration)
    except DeclarationError as exc:
        raise BundleError(str(exc)) from None


def _bundle_mnist_files(args: argparse.Namespace) -> list[Path]:
    """The four MNIST files to ship (none with --no-mnist: setup.sh downloads them)."""
    if not args.mnist:
        return []
    from conformance.reference.mnist import FILES, find_mnist_dir
    from conformance.grade.run.preflight import mnist_problem

    problem = mnist_problem(args.mnist_dir)
    if problem:
        raise BundleError(f"{problem}\n(or build the zip with --no-mnist: setup.sh then downloads it)")
    directory = find_mnist_dir(args.mnist_dir)
    assert directory is not None
    files = []
    for spec in FILES.values():
        gz = directory / (spec.name + ".gz")
        files.append(gz if gz.is_file() else directory / spec.name)
    return files


def bundle(argv: list[str] | None = None, prog: str = f"{PROG} bundle") -> int:
    args = _bundle_parser(prog).parse_args(argv)
    try:
        _bundle_module(args)
        rubric, rubric_text = _bundle_rubric(args)
        declaration_text = _bundle_declaration(args)
        mnist_files = _bundle_mnist_files(args)
        requirements = _requirements(args.python)
    except BundleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    version = suite_version()
    run_args = ["--rubric", "$ROOT/source/rubric.toml", "--module", args.module, "--suite-version", version,
                "--timeout", f"{args.timeout:g}", "--isolate-sandbox", args.sandbox]
    if mnist_files:
        run_args += ["--mnist-dir", "$ROOT/source/mnist"]
    if declaration_text:
        run_args += ["--declaration", "$ROOT/source/declaration.toml"]
    run_args += [f"--pytest-arg={a}" for a in args.pytest_args]
    # "$ROOT/..." must expand in the script; everything else is quoted literally.
    quoted = " ".join(f'"{a}"' if a.startswith("$ROOT") else shlex.quote(a) for a in run_args)
    fetch = "" if mnist_files else ("cd project && \"$PYTHON\" -m pip install --no-cache-dir 'pooch>=1.7' 'tqdm>=4.60' "
                                    "&& \"$PYTHON\" -m conformance.reference.fetch_mnist --quiet\n")
    info = {"suite_version": version, "module": args.module, "rubric": rubric.name, "rubric_hash": rubric.hash,
            "mnist_included": bool(mnist_files), "declared": bool(declaration_text), "python": args.python, "sandbox": args.sandbox, "pytest_args": args.pytest_args,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    with zipfile.ZipFile(tmp, "w") as zf:
        _add(zf, "setup.sh", SETUP_SH.format(fetch=fetch), executable=True)
        _add(zf, "run_autograder", RUN_AUTOGRADER.format(args=quoted), executable=True)
        _add(zf, "rubric.toml", rubric_text)
        if declaration_text:
            _add(zf, "declaration.toml", declaration_text)
        _add(zf, "requirements.txt", requirements)
        _add(zf, "bundle.json", json.dumps(info, indent=1) + "\n")
        for path in _project_files(REPO_ROOT):
            _add(zf, "project/" + path.relative_to(REPO_ROOT).as_posix(), path.read_bytes())
        for path in mnist_files:
            _add(zf, "mnist/" + path.name, path.read_bytes())
    os.replace(tmp, args.out)
    print(f"wrote {args.out} (suite {version}, rubric {rubric.name!r}, module {args.module}, "
          f"MNIST {'included' if mnist_files else 'downloaded by setup.sh'}, sandbox {args.sandbox}, "
          f"dependencies pinned for Python {args.python})")
    return 0


MAIN_HELP = """usage: {prog} {{bundle,run}} [ARGS]   ({prog} COMMAND --help for details)

  bundle OUT.zip   write the zip to upload as a Gradescope autograder
  run              grade one upload (what the zip's run_autograder calls; the default)
"""


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["-h"], ["--help"]):
        print(MAIN_HELP.format(prog=prog), end="")
        return 0
    if argv[:1] == ["bundle"]:
        return bundle(argv[1:], prog=f"{prog} bundle")
    if argv[:1] == ["run"]:
        argv = argv[1:]
    return run(argv, prog=f"{prog} run")  # without a command: run (what earlier run_autograder scripts call)


if __name__ == "__main__":
    sys.exit(main())
