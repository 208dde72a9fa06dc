"""Shim: the suite's hooks and fixtures live in conformance.plugin."""

from conformance.plugin import (  # noqa: F401 - pytest discovers hooks by name
    candidate,
    pytest_addoption,
    pytest_collection_modifyitems,
    pytest_configure,
    pytest_report_header,
    pytest_runtest_makereport,
    pytest_runtest_setup,
    pytest_unconfigure,
)
