"""The suite's pytest options, registered early; nothing else (``pytest11`` entry point).

Installed as the entry point ``conformance.plugin``, so every pytest run in an environment
that has the suite installed knows ``--impl`` & co. *before* it parses its command line:
``--impl PATH`` in two tokens is then never mistaken for a test path (which would make
pytest read ``conftest.py`` and ini files beside PATH; see conformance/SECURITY.md).
``-p conformance.plugin`` names the same plugin and is a no-op when it is already loaded.

It changes nothing else for runs that do not collect the suite: the suite's hooks (candidate
loading, header, the ``candidate`` fixture, hypothesis profiles) live in
``conformance.hooks`` and are registered only when the command line names the suite
(``pytest conformance``, ``pytest --pyargs conformance``, a path inside it) or when pytest
collects the suite's folder (``conformance/conftest.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conformance.candidate import DEFAULT_IMPL

SUITE_DIR = Path(__file__).resolve().parent
SUITE_PACKAGE = "conformance"
HOOKS_PLUGIN = "conformance.hooks"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("conformance", "backprop conformance suite")
    group.addoption(
        "--impl",
        default=None,
        help="candidate to judge: a dotted module name importable from the current directory, "
        f"or a path to a .py file (fallback: $BACKPROP_IMPL, then {DEFAULT_IMPL!r}); "
        "spell it --impl=X: pytest looks for ini files beside its path arguments before it "
        "knows this option",
    )
    group.addoption(
        "--declaration",
        metavar="FILE",
        default=None,
        help="the candidate's conventions as a TOML file (conformance/ADAPTERS.md), or 'section' "
        "for the section's interface; either way a module's own CONFORMANCE literal is ignored "
        "(without this option it is used, and the checks it limits count as failed when graded)",
    )
    group.addoption(
        "--isolate",
        action="store_true",
        help="run the candidate in a locked-down worker process (use for untrusted code)",
    )
    group.addoption(
        "--golden",
        metavar="DIR",
        default=None,
        help="also check the candidate against outputs pinned by 'conformance.fixture_files record' in DIR",
    )
    group.addoption(
        "--golden-rounding",
        action="store_true",
        help="for --golden comparisons, also allow what rounding alone can move (another "
             "summation order, einsum, another BLAS): the golden area's rule, k * eps * scale, in "
             "each value's dtype",
    )
    group.addoption(
        "--golden-rtol",
        type=float,
        default=0.0,
        help="relative tolerance for --golden comparisons (default 0: bit-exact)",
    )
    group.addoption(
        "--golden-atol",
        type=float,
        default=0.0,
        help="absolute tolerance for --golden comparisons (default 0: bit-exact)",
    )
    group.addoption(
        "--fd-full",
        metavar="SIZES",
        type=layer_sizes_option,
        default=None,
        help="also check EVERY gradient entry of a network with these layer sizes, e.g. "
        "784,128,10 (the section's), against central differences of the exact loss",
    )
    group.addoption(
        "--mnist-dir",
        metavar="DIR",
        default=None,
        help="directory holding the four MNIST IDX files (fallback: $BACKPROP_MNIST_DIR, cache)",
    )
    group.addoption(
        "--require-mnist",
        action="store_true",
        help="fail (instead of reporting 'not run') when MNIST data cannot be found",
    )
    group.addoption(
        "--mnist-full",
        action="store_true",
        help="also run the section's full 10-epoch MNIST recipe against its calibrated threshold",
    )
    group.addoption(
        "--max-examples",
        type=int,
        default=None,
        help="override the hypothesis profile's number of examples per property test",
    )
    group.addoption(
        "--conformance-report",
        metavar="FILE",
        default=None,
        help="write a machine-readable JSON report (per test: check area, outcome, message)",
    )
    from conformance.isolation.options import add_isolation_options  # light: no numpy

    add_isolation_options(parser)  # --isolate-timeout, --isolate-memory, ... (SECURITY.md)


def layer_sizes_option(text: str) -> list[int]:
    """``784,128,10`` -> [784, 128, 10]: at least an input and an output size, all positive."""
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        sizes = []
    if len(sizes) < 2 or any(n < 1 for n in sizes):
        raise pytest.UsageError(f"--fd-full: expected comma-separated positive layer sizes such as "
                                f"784,128,10 (input, hidden..., classes), got {text!r}")
    return sizes


def impl_spec(config: pytest.Config) -> str:
    return config.getoption("impl") or os.environ.get("BACKPROP_IMPL") or DEFAULT_IMPL


def names_the_suite(args: list[str], *, pyargs: bool, invocation_dir: Path) -> bool:
    """Whether pytest was asked to collect the suite: a path inside it (or the folder that
    holds it, as ``pytest .`` at the checkout's root), or with ``--pyargs`` its package."""
    for arg in args:
        target = arg.split("::", 1)[0]
        if pyargs and (target == SUITE_PACKAGE or target.startswith(SUITE_PACKAGE + ".")):
            return True
        try:
            path = (invocation_dir / target).resolve()
        except (OSError, RuntimeError, ValueError):
            continue
        if path == SUITE_DIR.parent or path == SUITE_DIR or SUITE_DIR in path.parents:
            return True
    return False


def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    """Register the suite's hooks before conftests and pytest_configure run, when the
    command line names the suite (so the header shows the candidate and the hypothesis
    profiles exist before ``--hypothesis-profile`` is applied)."""
    ns = early_config.known_args_namespace
    args = list(ns.file_or_dir or [])
    if not args:  # what pytest collects without arguments: testpaths, else the current folder
        args = list(early_config.getini("testpaths") or []) or ["."]
        base = early_config.rootpath if early_config.getini("testpaths") else early_config.invocation_params.dir
    else:
        base = early_config.invocation_params.dir
    if names_the_suite(args, pyargs=bool(ns.pyargs), invocation_dir=base):
        early_config.pluginmanager.import_plugin(HOOKS_PLUGIN)
