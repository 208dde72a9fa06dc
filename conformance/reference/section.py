"""The textbook section's own code, read from the section text at run time.

The repository never contains the section's code; tests and benchmarks that compare the
reference with it extract the code blocks from the section file (``$BACKPROP_SECTION_FILE``,
else ``../shared/seed/section-9.8-backprop-from-scratch.txt`` beside the checkout) and
execute them in a fresh namespace.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from types import SimpleNamespace

SECTION_ENV = "BACKPROP_SECTION_FILE"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SECTION_FILE = REPO_ROOT.parent / "shared" / "seed" / "section-9.8-backprop-from-scratch.txt"
SECTION_FUNCTIONS = ("init_params", "relu", "softmax", "forward", "cross_entropy", "backward", "train")

_CODE_START = re.compile(r"^(import |from \S+ import |def |class |@)")


class SectionNotFound(Exception):
    """The section file is absent or does not contain the expected code."""


def section_file() -> Path | None:
    """The section text file, or None if it is not where it is expected."""
    path = Path(os.environ.get(SECTION_ENV) or DEFAULT_SECTION_FILE).expanduser()
    return path if path.is_file() else None


def extract_code(text: str) -> str:
    """The section's code blocks, joined: a block starts at an unindented ``import``/``def``
    line and runs until the first unindented line of prose."""
    blocks: list[list[str]] = []
    current: list[str] | None = None
    for line in text.splitlines():
        if _CODE_START.match(line):
            if current is None:
                current = []
                blocks.append(current)
            current.append(line)
        elif current is not None and (not line.strip() or line[0] in " \t"):
            current.append(line)
        else:
            current = None
    return "\n\n".join("\n".join(block).strip("\n") for block in blocks) + "\n"


def load_section(path: Path | None = None) -> SimpleNamespace:
    """Execute the section's code and return its functions as attributes."""
    path = path or section_file()
    if path is None:
        raise SectionNotFound(
            f"section text not found: set ${SECTION_ENV} or place it at {DEFAULT_SECTION_FILE}")
    code = extract_code(path.read_text(encoding="utf-8"))
    namespace: dict[str, object] = {"__name__": "textbook_section"}
    try:
        exec(compile(code, f"<code extracted from {path}>", "exec"), namespace)  # noqa: S102 - trusted text
    except Exception as exc:
        raise SectionNotFound(f"the code extracted from {path} does not run: {exc!r}") from exc
    missing = [name for name in SECTION_FUNCTIONS if not callable(namespace.get(name))]
    if missing:
        raise SectionNotFound(f"the code extracted from {path} lacks {', '.join(missing)}")
    return SimpleNamespace(**{name: namespace[name] for name in SECTION_FUNCTIONS}, path=path, code=code)
