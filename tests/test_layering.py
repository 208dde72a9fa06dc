"""Layering: the import graph of conformance/, tools/ and tests/ follows docs/architecture.md.

The layers are stated once, in that document's table; this module reads the table, builds the
graph of every import in the source (top level, inside functions, under ``if TYPE_CHECKING``,
``importlib.import_module("...")`` with a literal name), and fails on a cycle or on an import
of a higher layer. It prints the graph between layers (``pytest -s`` shows it).
"""

from __future__ import annotations

import ast
import fnmatch
import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
ARCHITECTURE = REPO_ROOT / "docs" / "architecture.md"
SCANNED = ("conformance", "tools", "tests")
# Data, not code of ours: hostile submissions and the catalogue's variant sources are never
# imported by the project, they are judged.
NOT_MODULES = ("tests/adversarial/", "tools/catalogue/correct/", "tools/catalogue/efficiency_styles/")


def stated_layers(text: str) -> dict[str, int]:
    """Module pattern -> layer, from the table rows ``| N | `a` `b` | what |``."""
    layers: dict[str, int] = {}
    for line in text.splitlines():
        row = re.match(r"^\|\s*(\d+)\s*\|([^|]*)\|", line)
        if row:
            for pattern in re.findall(r"`([\w.*]+)`", row.group(2)):
                layers[pattern] = int(row.group(1))
    return layers


def layer_of(module: str, layers: dict[str, int]) -> int | None:
    """The layer of the longest pattern naming ``module`` (a package prefix or a glob)."""
    matches = [p for p in layers if module == p or module.startswith(p + ".") or fnmatch.fnmatchcase(module, p)]
    return layers[max(matches, key=len)] if matches else None


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(source: str, module: str, is_package: bool, known: set[str]) -> list[tuple[int, str]]:
    """(line, imported module) for every import in ``source``, resolved against ``known``:
    relative imports made absolute, ``from package import sub`` an edge to ``package.sub``
    when that is a module, otherwise to the longest known prefix of the name."""
    found: list[tuple[int, str]] = []

    def add(line: int, name: str) -> None:
        parts = name.split(".")
        for i in range(len(parts), 0, -1):
            if ".".join(parts[:i]) in known:
                found.append((line, ".".join(parts[:i])))
                return
        found.append((line, name))  # outside the project (numpy, pytest...): kept, filtered later

    for node in ast.walk(ast.parse(source, module)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(node.lineno, alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            subs = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in known]
            for sub in subs:
                add(node.lineno, sub)
            if len(subs) < len(node.names):
                add(node.lineno, base)
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name) and node.func.id in ("__import__", "import_module")))):
            add(node.lineno, node.args[0].value)
    return found


def project_graph(root: Path) -> tuple[dict[str, set[str]], dict[tuple[str, str], tuple[str, int]]]:
    """module -> modules of the project it imports, and where each edge is (file, line)."""
    files = {module_name(p, root): p for top in SCANNED for p in sorted((root / top).rglob("*.py"))
             if not any(p.relative_to(root).as_posix().startswith(d) for d in NOT_MODULES)}
    known = set(files)
    graph: dict[str, set[str]] = {m: set() for m in files}
    where: dict[tuple[str, str], tuple[str, int]] = {}
    for module, path in files.items():
        for line, target in imports_of(path.read_text(), module, path.name == "__init__.py", known):
            if target in known and target != module:
                graph[module].add(target)
                where.setdefault((module, target), (path.relative_to(root).as_posix(), line))
    return graph, where


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def violations(graph: dict[str, set[str]], layers: dict[str, int]) -> list[tuple[str, str]]:
    """(importer, imported) where the imported module sits in a higher layer, or in none."""
    bad = []
    for module, targets in graph.items():
        for target in targets:
            mine, theirs = layer_of(module, layers), layer_of(target, layers)
            if mine is None or theirs is None or theirs > mine:
                bad.append((module, target))
    return sorted(bad)


# ---------------------------------------------------------------------------- the checker itself
def test_the_checker_finds_cycles_and_upward_imports(tmp_path: Path) -> None:
    """The checks below can fail: a planted cycle, an upward import, a relative and a
    function-level import, and a dynamic import are all found; a lookalike name is not."""
    pkg = tmp_path / "conformance"
    (pkg / "grade").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "grade" / "__init__.py").write_text("")
    (pkg / "calls.py").write_text("def f():\n    from conformance.grade import batch\n")
    (pkg / "grade" / "batch.py").write_text("from .. import calls\nimport conformancex\n")
    (pkg / "text.py").write_text("import importlib\nimportlib.import_module('conformance.calls')\n")
    (tmp_path / "tools").mkdir()
    (tmp_path / "tests").mkdir()
    graph, where = project_graph(tmp_path)
    assert graph["conformance.calls"] == {"conformance.grade.batch"}
    assert graph["conformance.grade.batch"] == {"conformance.calls"}
    assert graph["conformance.text"] == {"conformance.calls"}
    assert cycles(graph) == [["conformance.calls", "conformance.grade.batch"]]
    layers = {"conformance": 1, "conformance.grade": 8}
    assert violations(graph, layers) == [("conformance.calls", "conformance.grade.batch")]
    assert where[("conformance.calls", "conformance.grade.batch")] == ("conformance/calls.py", 2)


def test_the_table_is_read_as_written() -> None:
    layers = stated_layers(ARCHITECTURE.read_text())
    assert layers["conformance.reference"] == 0 and layers["tests"] == max(layers.values())
    assert layer_of("conformance.test_golden", layers) == layers["conformance.test_*"]
    assert layer_of("conformance.grade.run.runner", layers) == layers["conformance.grade.run"]
    assert layer_of("conformance.gradebook", layers) == layers["conformance"]  # a prefix, not a glob
    assert layer_of("numpy", layers) is None


# ---------------------------------------------------------------------------- the project
@pytest.fixture(scope="module")
def graph_and_layers() -> tuple[dict[str, set[str]], dict[tuple[str, str], tuple[str, int]], dict[str, int]]:
    graph, where = project_graph(REPO_ROOT)
    return graph, where, stated_layers(ARCHITECTURE.read_text())


def test_every_module_has_a_stated_layer(graph_and_layers) -> None:
    graph, _, layers = graph_and_layers
    assert len(graph) > 100, "the scan found almost nothing: it would prove nothing"
    unplaced = sorted(m for m in graph if layer_of(m, layers) is None)
    assert not unplaced, f"modules in no layer of {ARCHITECTURE.name}: {unplaced}"


def test_the_import_graph_has_no_cycle(graph_and_layers) -> None:
    graph, where, layers = graph_and_layers
    between: dict[tuple[int, int], int] = {}
    for module, targets in graph.items():
        for target in targets:
            key = (layer_of(module, layers), layer_of(target, layers))
            between[key] = between.get(key, 0) + 1
    print("\nimports between layers (importer -> imported: count):")
    for (a, b), count in sorted(between.items(), key=lambda kv: (-(kv[0][0] or 0), -(kv[0][1] or 0))):
        print(f"  {a:>2} -> {b:>2}: {count}")
    found = cycles(graph)
    text = "\n".join(" -> ".join(c) + "\n    " + "\n    ".join(
        f"{a} imports {b} ({where[(a, b)][0]}:{where[(a, b)][1]})" for a in c for b in sorted(graph[a]) if b in c)
        for c in found)
    assert not found, f"import cycles:\n{text}"


def test_no_import_goes_up_a_layer(graph_and_layers) -> None:
    graph, where, layers = graph_and_layers
    bad = [f"{where[(a, b)][0]}:{where[(a, b)][1]}: {a} (layer {layer_of(a, layers)}) imports {b} "
           f"(layer {layer_of(b, layers)})" for a, b in violations(graph, layers)]
    assert not bad, f"imports against {ARCHITECTURE.relative_to(REPO_ROOT)}:\n" + "\n".join(bad)
