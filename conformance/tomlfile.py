"""TOML files (the rubric, a declaration of conventions), read with the standard library's
parser on Python 3.11+ and with tomli, the same parser under its own name, on 3.10: pytest
itself depends on tomli there, so the suite needs nothing more on any supported Python."""

from __future__ import annotations

import sys

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

loads = tomllib.loads
TOMLDecodeError = tomllib.TOMLDecodeError
