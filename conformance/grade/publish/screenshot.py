"""Screenshot a grading report page with headless Chromium: ``python -m conformance.grade.publish.screenshot PAGE``.

Proves the page renders from disk with no server and no network (the browser is started
with networking features off), and gives an image to look at. Also used by the
browser test in tests/test_grade.py (skipped there when no Chromium is installed).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_browser() -> str | None:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def browser_command(browser: str, page: Path, png: Path, profile: Path, width: int, height: int,
                    dump_dom: bool = False) -> list[str]:
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
           "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--hide-scrollbars",
           f"--window-size={width},{height}"]
    cmd += ["--dump-dom"] if dump_dom else [f"--screenshot={png}"]
    return cmd + [page.resolve().as_uri()]


def screenshot(page: Path, png: Path, width: int = 1200, height: int = 1600, timeout: float = 60.0,
               browser: str | None = None) -> Path:
    """Render ``page`` to ``png``; raises RuntimeError with the browser's output on failure."""
    browser = browser or find_browser()
    if browser is None:
        raise RuntimeError("no Chromium found (Debian: apt-get install -y chromium)")
    png = png.resolve()
    with tempfile.TemporaryDirectory(prefix="grade-chromium-") as profile:
        proc = subprocess.run(browser_command(browser, page, png, Path(profile), width, height),
                              capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or not png.is_file() or png.stat().st_size == 0:
        raise RuntimeError(f"{browser} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return png


def rendered_dom(page: Path, timeout: float = 60.0, browser: str | None = None) -> str:
    """The page's DOM after the browser parsed it (what a user's browser would build)."""
    browser = browser or find_browser()
    if browser is None:
        raise RuntimeError("no Chromium found (Debian: apt-get install -y chromium)")
    with tempfile.TemporaryDirectory(prefix="grade-chromium-") as profile:
        proc = subprocess.run(browser_command(browser, page, Path(profile) / "unused.png",
                                              Path(profile), 1200, 1600, dump_dom=True),
                              capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{browser} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.stdout


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m conformance.grade.publish.screenshot",
                                description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("page", type=Path, help="an HTML file, e.g. OUT/staff/index.html")
    p.add_argument("--png", type=Path, default=None, help="output image (default: PAGE with .png)")
    p.add_argument("--width", type=int, default=1200)
    p.add_argument("--height", type=int, default=1600)
    args = p.parse_args(argv)
    if not args.page.is_file():
        p.error(f"{args.page}: no such file")
    try:
        png = screenshot(args.page, args.png or args.page.with_suffix(".png"), args.width, args.height)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
