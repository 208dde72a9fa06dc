"""The form of a submission's code that similarity compares: no formatting trick survives it.

``normalise_here`` parses each file and prints it back (``ast.unparse``): layout, comments,
line continuations, quote styles, redundant parentheses, semicolons and trailing commas all
vanish. Docstrings, bare strings, annotations and ``pass`` next to other statements are
removed, and so are the wrappers the notebook intake adds (``try: import x / except
ImportError: pass``, the guard around kept top-level work). It returns two texts of equal
layout:

- ``readable``: the printed code with the student's own names, shown on the staff pages;
- ``canonical``: the same text with every name the code *binds* (variables, parameters,
  functions, classes, import aliases, ``self``) replaced by ``v___`` of the same length, so
  that renaming, even to a builtin's name (``sum``, ``input``) or to ``self``, changes nothing
  copydetect sees, while the names it does not bind (``range``, ``len``) keep their meaning.
  Equal lengths keep character offsets valid in both texts, so matches found in the canonical
  text are highlighted in the readable one.

A file that does not parse is compared as written. This runs on hostile code, so the grader
calls it through ``normalise`` (conformance.grade.intake.bounded.run_bounded: a child process with
memory and CPU limits), never in its own process.
"""

from __future__ import annotations

import ast
import json
from typing import Mapping

from conformance.grade.intake.bounded import run_bounded

# Names the notebook intake adds to extracted modules (conformance/grade/intake/notebooks.py).
_INTAKE_HELPERS = {"_notebook_definition_failed"}
MAX_NORMALISED_BYTES = 4 * 1024 * 1024  # per submission; more own code than any MLP needs


class _Strip(ast.NodeTransformer):
    """Removes what carries no behaviour (docstrings, annotations, intake wrappers)."""

    def generic_visit(self, node: ast.AST) -> ast.AST:
        super().generic_visit(node)
        for name in ("body", "orelse", "finalbody"):
            value = getattr(node, name, None)
            if isinstance(value, list) and (not value or isinstance(value[0], ast.stmt)):
                kept = [s for s in value if not isinstance(s, ast.Pass) and not (
                    isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]  # docstrings, bare strings
                setattr(node, name, kept or ([ast.Pass()] if name == "body" else []))
        return node

    def visit_arg(self, node: ast.arg) -> ast.arg:
        node.annotation = None
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST | None:
        if node.name in _INTAKE_HELPERS:
            return None
        node.returns = None
        return self.generic_visit(node)

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST | None:
        if node.value is None:
            return None
        return self.generic_visit(ast.Assign(targets=[node.target], value=node.value, lineno=node.lineno))

    def visit_Try(self, node: ast.Try) -> ast.AST | list[ast.stmt]:
        # The intake's wrappers: try: <import> except ImportError: pass, and the guard around
        # kept top-level work. Unwrapped, a notebook compares like the module it came from.
        handlers = node.handlers
        if len(handlers) == 1 and not node.orelse and not node.finalbody:
            handler = handlers[0]
            kind = handler.type.id if isinstance(handler.type, ast.Name) else ""
            calls_guard = (len(handler.body) == 1 and isinstance(handler.body[0], ast.Expr)
                           and isinstance(handler.body[0].value, ast.Call)
                           and getattr(handler.body[0].value.func, "id", "") in _INTAKE_HELPERS)
            only_pass = all(isinstance(s, ast.Pass) for s in handler.body)
            if (kind == "ImportError" and only_pass and all(isinstance(s, (ast.Import, ast.ImportFrom))
                                                             for s in node.body)) or calls_guard:
                self.generic_visit(node)
                return node.body
        return self.generic_visit(node)


def _bound_names(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.alias):
            names.add(node.asname or node.name.split(".")[0])
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            names.update(node.names)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
    return names


def _canonical(name: str) -> str:
    return "v" + "_" * (len(name) - 1)


class _Rename(ast.NodeTransformer):
    def __init__(self, bound: set[str]):
        self.bound = bound

    def _new(self, name: str | None) -> str | None:
        return _canonical(name) if name and name in self.bound else name

    def visit_Name(self, node: ast.Name) -> ast.Name:
        node.id = self._new(node.id) or node.id
        return node

    def visit_arg(self, node: ast.arg) -> ast.arg:
        node.arg = self._new(node.arg) or node.arg
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        node.name = self._new(node.name) or node.name
        return self.generic_visit(node)

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]
    visit_ClassDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_alias(self, node: ast.alias) -> ast.alias:
        if node.asname:
            node.asname = self._new(node.asname)
        elif "." not in node.name:
            node.name = self._new(node.name) or node.name
        return node

    def visit_Global(self, node: ast.Global) -> ast.Global:
        node.names = [self._new(n) or n for n in node.names]
        return node

    visit_Nonlocal = visit_Global  # type: ignore[assignment]

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> ast.AST:
        node.name = self._new(node.name)
        return self.generic_visit(node)


def normalise_file(code: str) -> tuple[str, str]:
    """(readable, canonical) of one file (module docstring); the code as written when it
    does not parse, or when printing it back does not keep the two texts aligned."""
    try:
        tree = _Strip().visit(ast.parse(code))
        ast.fix_missing_locations(tree)
        readable = ast.unparse(tree)
        canonical = ast.unparse(_Rename(_bound_names(tree)).visit(tree))
    except (SyntaxError, ValueError, RecursionError, MemoryError, TypeError, AttributeError):
        return code, code
    if len(readable) != len(canonical):  # cannot happen with equal-length names; never misalign
        return code, code
    return readable, canonical


def normalise_here(request: str) -> dict[str, str]:
    """The child's side: ``request`` is JSON ``{"files": {path: code}}``; returns the
    submission's own code as one readable and one canonical text, files in path order."""
    files: Mapping[str, str] = json.loads(request)["files"]
    readable, canonical = [], []
    for path in sorted(files):
        shown, compared = normalise_file(files[path])
        header = f"# ---- {path} ----\n" if len(files) > 1 else ""
        readable.append(header + shown + "\n")
        canonical.append(header + compared + "\n")
    return {"readable": "\n".join(readable), "canonical": "\n".join(canonical)}


def normalise_bytes(data: bytes) -> dict[str, str]:
    """``normalise_here`` as the bounded child answers it (JSON bytes in)."""
    return normalise_here(data.decode("utf-8"))


def normalise(files: Mapping[str, str], what: str = "the code") -> dict[str, str]:
    """``normalise_here`` in the bounded child process (conformance.grade.intake.bounded.run_bounded).
    Raises NotebookError (the code's own doing: memory, CPU) or NotebookGraderError."""
    return run_bounded(f"{__name__}:normalise_bytes", json.dumps({"files": dict(files)}).encode("utf-8", "surrogatepass"), what)
