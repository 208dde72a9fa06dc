"""The one pytest command that judges a candidate without reading anything from beside it.

Every process that writes a verdict (``backprop-conformance check``/``grade``,
``python -m conformance.grade`` and its Gradescope entry, the kill matrix and the adversarial
runner) builds its pytest invocation here, so none of them can be talked into importing,
collecting or reading as configuration a file the candidate brings or a folder it (or any
local user) can write to:

- the candidate is passed as one token, ``--impl=PATH``: never a path argument, so pytest
  neither collects it nor looks for ``conftest.py`` or ini files beside it or in its ancestors;
- ``-c conformance/suite.ini`` and ``--rootdir`` name the configuration and root explicitly:
  pytest searches no folder (not the current one, not ``$TMPDIR``) for pytest.ini,
  pyproject.toml, tox.ini or setup.cfg;
- ``--noconftest``: no ``conftest.py`` anywhere is imported, not even the suite's own; its
  options and hooks come from explicit ``-p conformance.plugin -p conformance.hooks``;
- ``PYTEST_DISABLE_PLUGIN_AUTOLOAD``: only the plugins named here run (hypothesis and the
  suite's), none that happens to be installed;
- the environment loses ``PYTEST_ADDOPTS``, ``PYTEST_PLUGINS``, ``PYTHONPATH``,
  ``PYTHONSTARTUP``, ``BACKPROP_IMPL`` and the like, and a subprocess starts in the folder that
  holds the suite (trusted), so no ``sitecustomize``/``.pth``/module of a candidate's folder is
  on ``sys.path`` when Python starts.

conformance/SECURITY.md states the guarantee; tests/test_invocation.py tests it with the
hostile submissions of tests/adversarial/invocation/.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

SUITE_DIR = Path(__file__).resolve().parent
# The folder holding the suite package: the checkout's root, or site-packages once installed.
# Trusted (the grader's own files), so it is the suite's rootdir and a subprocess's cwd.
SUITE_ROOT = SUITE_DIR.parent
SUITE_INI = SUITE_DIR / "suite.ini"
# Plugins loaded by name (entry point or module); nothing else is autoloaded.
PLUGINS = ("conformance.plugin", "conformance.hooks", "hypothesispytest")

# Options that would let the caller's extra arguments re-open what the command closes.
_FORBIDDEN_EXTRA = ("--impl", "-c", "--config-file", "--rootdir", "--confcutdir", "-p",
                    "--pyargs", "--inifile")
# Environment variables that would inject options, plugins, startup code or import paths
# into the pytest process (or pick the candidate behind --impl's back).
UNTRUSTED_ENV = ("BACKPROP_IMPL", "PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTHONPATH",
                 "PYTHONSTARTUP", "PYTHONINSPECT", "PYTHONHOME", "PYTHONUSERBASE",
                 "PYTHONSAFEPATH", "PYTHONPLATLIBDIR", "PYTHONEXECUTABLE")


class InvocationError(ValueError):
    """Extra pytest arguments that would undo the command's guarantees."""


def check_extra_args(extra: Sequence[str]) -> None:
    """Refuse extra arguments that choose the candidate, the configuration, the root or
    plugins (the command fixes them); everything else (``-x``, ``-k``, ``--golden DIR``,
    ``--isolate``, ``-m "not mnist"`` ...) is passed through."""
    for arg in extra:
        name = arg.split("=", 1)[0]
        if name in _FORBIDDEN_EXTRA or (name.startswith("-p") and not name.startswith("--")):
            raise InvocationError(
                f"pytest argument {arg!r} is not allowed here: the candidate, pytest's "
                "configuration file, its rootdir and its plugins are fixed by the suite's "
                "command (see conformance/SECURITY.md)")
        if name.startswith("-c") and not name.startswith("--") and len(name) > 2:
            raise InvocationError(f"pytest argument {arg!r} is not allowed here (-c FILE)")


def suite_args(impl: str | os.PathLike[str], extra: Sequence[str] = ()) -> list[str]:
    """pytest arguments that judge ``impl`` (a path or a dotted module name)."""
    check_extra_args(extra)
    impl_text = os.fspath(impl)
    if not impl_text:
        raise InvocationError("no candidate: give a module name or a path to a .py file")
    plugins = [part for name in PLUGINS for part in ("-p", name)]
    return [str(SUITE_DIR), f"--impl={impl_text}", "-c", str(SUITE_INI),
            f"--rootdir={SUITE_ROOT}", "--noconftest", *plugins, "-p", "no:cacheprovider",
            *extra]


def suite_command(impl: str | os.PathLike[str], extra: Sequence[str] = (),
                  python: str = sys.executable) -> list[str]:
    """The subprocess command: ``python -m pytest`` + ``suite_args``; run it with
    ``cwd=SUITE_ROOT`` and ``env=suite_env()``."""
    return [python, "-m", "pytest", *suite_args(impl, extra)]


def suite_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) without the variables that could
    inject code or options, and with plugin autoloading off."""
    env = {k: v for k, v in (os.environ if base is None else base).items()
           if k not in UNTRUSTED_ENV}
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    return env

