"""What a graded run may leave behind: nothing. Shared by the isolation and adversarial tests."""

from __future__ import annotations

import os
import time
from pathlib import Path


def processes_under(directory: Path, wait: float = 5.0) -> list[str]:
    """Processes whose working directory is inside ``directory`` (an isolated worker, its
    keeper and its init all work in their sandbox directory), waiting up to ``wait`` s for
    ones being killed right now to go."""
    deadline = time.monotonic() + wait
    while True:
        found = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                if Path(os.readlink(proc / "cwd")).is_relative_to(directory):
                    found.append(f"{proc.name}: {(proc / 'cmdline').read_bytes()[:200]!r}")
            except OSError:
                continue
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)
