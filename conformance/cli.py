"""``backprop-conformance``: the installed suite's command line (README leads with it).

    backprop-conformance check PATH_OR_MODULE [pytest options]   # judge; exit status = verdict
    backprop-conformance check mymodule --isolate               # code you did not write
    backprop-conformance adapt mymodule                         # propose its declaration (TOML)
    backprop-conformance record --impl mymodule --out golden/   # pin outputs before a refactor
    backprop-conformance check mymodule --golden golden/        # did the refactor change them?
    backprop-conformance grade SUBMISSIONS --out OUT [-j 2]     # grade a class
    backprop-conformance gradescope bundle autograder.zip       # the Gradescope autograder zip
    backprop-conformance gradescope                             # inside a Gradescope autograder
    backprop-conformance fetch-mnist                            # download MNIST once
    backprop-conformance train                                  # the section's MNIST experiment
    backprop-conformance fixtures check                         # verify the shipped golden fixtures

``check`` runs the suite with the hardened invocation of every verdict
(``conformance.invocation``): nothing beside the candidate, in the current folder or in an
ancestor is read as pytest configuration or imported as a conftest or plugin. The other
commands run the entries of their packages (``conformance.grade``, ``conformance.reference``,
``conformance.fixture_files``); this module sits on top of every layer (docs/architecture.md).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

PROG = "backprop-conformance"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("backprop-conformance")
    except PackageNotFoundError:
        return "unknown (not installed)"


CHECK_HELP = f"""usage: {PROG} check PATH_OR_MODULE [pytest options]

Judge one implementation with the conformance suite. PATH_OR_MODULE is a .py file or a
dotted module name importable from the current folder. Any pytest or suite option may
follow: --isolate (for code you did not write), --golden DIR (refactor check), -m "not mnist",
--mnist-dir DIR, --require-mnist, --hypothesis-profile grading, --conformance-report FILE,
-x, -k EXPR, --pdb ... (see docs/students.md). Exit status (pytest's): 0 every check passed,
1 some check failed, 2 interrupted, 3 internal error, 4 usage error (no candidate, or a wrong
option).
"""
USAGE_ERROR = 4  # pytest's exit status for a wrong command line, which CHECK_HELP promises


def check(args: Sequence[str]) -> int:
    if not args or args[0] in ("-h", "--help"):
        if not args:
            print(f"{PROG} check: no candidate given (a .py file or a module name)\n", file=sys.stderr)
        print(CHECK_HELP, end="", file=sys.stdout if args else sys.stderr)
        return 0 if args else USAGE_ERROR
    target, pytest_args = args[0], list(args[1:])
    if target.startswith("-"):
        print(f"{PROG} check: the first argument is the candidate (a .py file or a module "
              f"name), got option {target!r}\n\n{CHECK_HELP}", file=sys.stderr, end="")
        return USAGE_ERROR
    from conformance.invocation import UNTRUSTED_ENV, InvocationError, suite_args

    try:
        # -rN: no "short test summary info" (a FAILED line per test, with the suite's paths);
        # the conformance summary ends the output instead. A -r given by the user wins.
        argv = suite_args(target, ["-rN", *pytest_args])
    except InvocationError as exc:
        print(f"{PROG} check: {exc}", file=sys.stderr)
        return USAGE_ERROR
    # The same closed configuration as the grader's subprocess, applied to this process:
    # no options or plugins from the environment, no autoloaded plugins.
    for name in UNTRUSTED_ENV:
        if name.startswith(("PYTEST_", "BACKPROP_")):
            os.environ.pop(name, None)
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    import pytest

    return int(pytest.main(argv))


ADAPT_HELP = f"""usage: {PROG} adapt PATH_OR_MODULE

Propose the declaration (conformance/ADAPTERS.md) that fits a module: its functions are called
on a tiny random network under each convention (in a subprocess: the module's code never runs
in this one; it is not a sandbox, so use it on code you may run), and the conventions under
which every shape fits are printed as TOML for --declaration FILE. Shapes only: no verdict.
What shapes cannot settle is printed as a question. Exit status 0: a declaration was proposed
and nothing is left open; 1: questions remain; 4: no such module.
"""
PROBE_TIMEOUT = 60.0


def adapt(args: Sequence[str]) -> int:
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print(ADAPT_HELP, end="", file=sys.stdout if args else sys.stderr)
        return 0 if args else USAGE_ERROR
    import json
    import subprocess
    import tempfile
    from pathlib import Path

    from conformance.candidate import _source_of, resolve_spec
    from conformance.declaration import DeclarationError, conventions_of, normalise
    from conformance.invocation import suite_env

    try:
        name, path = resolve_spec(args[0])
        if path is None:
            sys.path.insert(0, os.getcwd())
            path = _source_of(name)
    except FileNotFoundError as exc:
        print(f"{PROG} adapt: {exc}", file=sys.stderr)
        return USAGE_ERROR
    if path is None:
        print(f"{PROG} adapt: no source file for {args[0]!r}", file=sys.stderr)
        return USAGE_ERROR
    with tempfile.TemporaryDirectory(prefix="bp-adapt-") as tmp:
        out = Path(tmp) / "answer.json"
        probe = Path(__file__).resolve().parent / "probe.py"
        try:  # -I: no user site, no PYTHONPATH, no current folder on sys.path
            subprocess.run([sys.executable, "-I", str(probe), str(path), str(out)], cwd=tmp, env=suite_env(),
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=PROBE_TIMEOUT)
        except subprocess.TimeoutExpired:
            print(f"{PROG} adapt: the module did not answer within {PROBE_TIMEOUT:g} s", file=sys.stderr)
            return 1
        try:
            answer = json.loads(out.read_text()[:1 << 20]) if out.is_file() else {}
        except ValueError:
            answer = {}
    questions = [str(q) for q in answer.get("questions", [])] if isinstance(answer, dict) else []
    found = answer.get("declaration") if isinstance(answer, dict) else None
    if not isinstance(found, dict):
        print(f"# no declaration could be proposed for {path.name}")
        for q in questions or ["the probe gave no answer (the module crashed its process?)"]:
            print(f"# open question: {q}")
        return 1
    try:
        values = normalise(found, "(proposed)")
    except DeclarationError as exc:
        questions.append(f"the shapes suggest {exc.key} = {found.get(exc.key)!r}, which a declaration "
                         f"cannot express ({exc.problem})")
        values = None
    print(f"# proposed by '{PROG} adapt' for {path.name} from shapes alone (no verdict)")
    if values is not None:
        body = [c for c in conventions_of(values) if c != "the section's interface"]
        if not body:
            print("# the section's interface: no declaration needed")
        for line in body:  # key=json; TOML accepts JSON strings, lists and inline tables
            key, _, value = line.partition("=")
            print(f"{key} = {_toml_value(json.loads(value))}")
    for q in questions:
        print(f"# open question: {q}")
    return 1 if questions or values is None else 0


def _toml_value(value: object) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value)


def record(args: Sequence[str]) -> int:
    from conformance.fixture_files import record_main

    return record_main(list(args), prog=f"{PROG} record")


FIXTURES_HELP = f"""usage: {PROG} fixtures check [--tolerant]

Verify the shipped golden fixtures: sha256 of every file against the manifest, no missing or
stray file, values reproduced by the reference, gradients confirmed by complex-step
differentiation. --tolerant accepts a BLAS that rounds differently (manifest tolerances).
"""


def fixtures(args: Sequence[str]) -> int:
    if args[:1] in (["-h"], ["--help"]):
        print(FIXTURES_HELP, end="")
        return 0
    if args[:1] != ["check"]:
        print(FIXTURES_HELP, end="", file=sys.stderr)
        return 2
    from conformance.fixture_files import main as fixtures_main

    return fixtures_main(list(args), prog=f"{PROG} fixtures")


def grade(args: Sequence[str]) -> int:
    from conformance.grade.cli import main as grade_main

    return grade_main(list(args), prog=f"{PROG} grade")


def gradescope(args: Sequence[str]) -> int:
    from conformance.grade.gradescope import main as gradescope_main

    return gradescope_main(list(args), prog=f"{PROG} gradescope")


def fetch_mnist(args: Sequence[str]) -> int:
    from conformance.reference.fetch_mnist import main as fetch_main

    return fetch_main(list(args), prog=f"{PROG} fetch-mnist")


def train(args: Sequence[str]) -> int:
    from conformance.reference.train import main as train_main

    return train_main(list(args), prog=f"{PROG} train")


COMMANDS: dict[str, tuple[Callable[[Sequence[str]], int], str]] = {
    "check": (check, "judge an implementation (exit status = verdict)"),
    "adapt": (adapt, "propose the declaration (conventions) that fits a module, from shapes alone"),
    "record": (record, "pin an implementation's outputs for a later refactor check"),
    "grade": (grade, "grade a folder of submissions (gradebook, CSV, Gradescope, HTML)"),
    "gradescope": (gradescope, "'gradescope bundle OUT.zip': write the Gradescope autograder zip; "
                               "'gradescope run': grade one upload inside it"),
    "fetch-mnist": (fetch_mnist, "download and verify MNIST once"),
    "train": (train, "train the reference on MNIST: the section's experiment (10 epochs, ~0.98)"),
    "fixtures": (fixtures, "'fixtures check': verify the shipped golden fixtures"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"usage: {PROG} COMMAND [ARGS]   ({PROG} COMMAND --help for details)", "",
             "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", f"Exit status 2: no command or an unknown one. Each command's own statuses: {PROG} "
                  "COMMAND --help."]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage(), end="", file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    if args[0] == "--version":
        print(f"{PROG} {_version()}")
        return 0
    command = COMMANDS.get(args[0])
    if command is None:
        print(f"{PROG}: unknown command {args[0]!r}\n\n{usage()}", file=sys.stderr, end="")
        return 2
    return command[0](args[1:])


if __name__ == "__main__":
    sys.exit(main())
