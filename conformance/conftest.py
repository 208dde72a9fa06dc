"""Registers the suite's options and hooks when pytest collects this folder without them.

Usually both are registered already (the ``pytest11`` entry point ``conformance.plugin`` and,
when the command line names the suite, ``conformance.hooks``); ``import_plugin`` is then a
no-op, so nothing is registered twice (no "option names already added"). Runs that judge
untrusted code never read this file: they use ``--noconftest`` with explicit ``-p`` plugins
(``conformance.invocation``).
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.import_plugin("conformance.plugin")  # replays pytest_addoption on `parser`
    pluginmanager.import_plugin("conformance.hooks")
