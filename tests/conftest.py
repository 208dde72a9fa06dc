"""Fixtures shared by the project's own tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reference import mnist

# Read before any test touches the environment (several tests point it at temp dirs).
REAL_MNIST_DIR_AT_START = os.environ.get(mnist.DIR_ENV)


@pytest.fixture(scope="session")
def real_dir() -> Path:
    """The real MNIST files: skip without them, fail under CI (which always has them)."""
    start = REAL_MNIST_DIR_AT_START
    found = mnist.find_mnist_dir(start) if start else mnist.find_mnist_dir()
    if found is None:
        where = f"${mnist.DIR_ENV}={start}" if start else \
            f"${mnist.DIR_ENV} unset and nothing in {mnist.cache_dir()}"
        message = f"real MNIST files not found ({where}); run 'python -m tools.fetch_mnist'"
        if os.environ.get("CI"):
            pytest.fail("CI must provide MNIST: " + message, pytrace=False)
        pytest.skip(message)
    return found
