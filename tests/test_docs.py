"""The README a newcomer reads first stays short and true: CI runs the commands it
gives, its links lead somewhere, and nothing tells a user to install what was never published."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
CI_RUN = REPO / ".ci" / "run"
README_LIMIT = 10 * 1024  # the newcomer's page; the rest lives in docs/


def ci_variable(name: str) -> str:
    match = re.search(rf"^{name}='([^']*)'$", CI_RUN.read_text(), flags=re.M)
    assert match, f".ci/run no longer sets {name}"
    return match[1]


def test_readme_is_short_and_points_each_audience_to_its_page() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.encode()) <= README_LIMIT, f"README.md is {len(text.encode())} bytes"
    for page in ("docs/students.md", "docs/instructors.md", "docs/refactoring.md", "docs/developing.md"):
        assert f"]({page})" in text, page
        assert (REPO / page).is_file(), page


def test_ci_runs_the_readme_install_and_test_commands_as_written() -> None:
    install, test = ci_variable("INSTALL"), ci_variable("TEST")
    readme = README.read_text(encoding="utf-8")
    quick = readme[readme.index("## Developer quick start"):]
    block = quick[quick.index("```bash"):quick.index("```", quick.index("```bash") + 3)]
    commands = [line.split("  #")[0].strip() for line in block.splitlines()[1:] if line.strip()]
    assert commands[:2] == [install, test]
    script = CI_RUN.read_text()
    assert 'eval "$INSTALL"' in script and "$TEST --all" in script
    # The fresh-machine pass: the same bare command, with no data and an empty home.
    assert re.search(r'env (-u CI )?-u BACKPROP_MNIST_DIR -u BACKPROP_SECTION_FILE .*\\\n\s*HOME="\$fresh/home" \$TEST$',
                     script, flags=re.M), "the fresh-machine pass is gone from .ci/run"


def test_every_relative_link_in_the_docs_resolves() -> None:
    broken = []
    for page in [README, *DOCS]:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = (page.parent / target.split("#")[0]).resolve()
            if not path.exists():
                broken.append(f"{page.relative_to(REPO)}: {target}")
    assert broken == []


def test_no_doc_installs_a_release_that_was_never_published() -> None:
    for page in [README, *DOCS]:
        text = page.read_text(encoding="utf-8")
        assert not re.search(r"backprop-conformance(\[[^\]]*\])?==", text), page.name
