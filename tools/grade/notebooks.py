"""Turn a Jupyter notebook into the module the suite judges: definitions only, no top-level work.

A notebook is a script: besides the functions it trains models, plots and prints at top
level. Run at import time in the grader that work would cost minutes, need data the
sandbox does not have, or fail for reasons unrelated to the functions judged. So the code
cells are read with nbformat and only this is kept, in cell order:

1. IPython syntax is removed first: a cell starting with a cell magic (``%%time``,
   ``%%bash``, ...) is dropped whole; in a cell that is not valid Python as it stands, a
   line starting with a line magic (``%name``), a shell escape (``!cmd``) or ending in ``?``
   (help), and an assignment from one (``files = !ls``, ``t = %timeit f()``), is dropped.
   An import of a library other than the standard library, NumPy and SciPy is kept inside
   ``try: ... except ImportError: pass``: notebooks import display libraries the grading
   environment may lack, and a function that really needs one fails when called instead.
2. Of each cell's top-level statements, kept are: ``import`` / ``from ... import``;
   ``def``, ``async def`` and ``class`` (with their decorators); assignments to plain names
   whose value is a *constant expression* (literals, containers, operators, names already
   kept, attribute access, subscripts, and a call to an array/random-generator constructor
   or elementwise math function of an imported library (``CONSTANT_CALLS``) or a pure
   builtin (``len``, ``range``, ``max``, ...) with constant arguments, comprehensions over
   constants and lambdas, e.g. ``RNG = np.random.default_rng(0)``,
   ``relu = lambda z: np.maximum(z, 0)``); and ``if`` / ``try``
   blocks made only of such statements. Bare strings, ``pass`` and annotations without a
   value do nothing and are dropped silently.
3. Everything else (calls such as ``train(...)``, ``plt.plot(...)``, ``print(...)``, loops,
   ``with`` blocks, assignments from a notebook function such as ``params = init(...)``,
   ``if __name__ == "__main__":`` blocks) is dropped and listed, with its cell and line, on
   the student's page. A cell that is not valid Python after step 1 is dropped whole.
"""

from __future__ import annotations

import ast
import re
import sys
import textwrap
import warnings
from dataclasses import dataclass, field

from tools.grade.sanitize import clean_name

# Library calls a constant may make (by their last name, on an imported module): array and
# random-generator constructors and elementwise math. Anything else, notably I/O such as
# np.load("data.npz") that would fail in the sandbox, is top-level work and dropped.
CONSTANT_CALLS = frozenset({
    "default_rng", "RandomState", "Generator", "PCG64", "SeedSequence", "array", "asarray",
    "zeros", "ones", "full", "empty", "eye", "identity", "arange", "linspace", "float16",
    "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "dtype", "finfo", "iinfo",
    "sqrt", "exp", "log", "log2", "log10", "tanh", "isclose", "namedtuple", "partial",
})
# Builtins a constant may call (unless the notebook redefines the name): they compute, never
# read, write or run anything of the student's.
PURE_BUILTINS = frozenset({"len", "int", "float", "str", "bool", "tuple", "list", "dict", "set",
                           "frozenset", "range", "min", "max", "abs", "round", "sum", "sorted",
                           "zip", "enumerate", "reversed", "pow", "divmod"})
MAX_LISTED = 25  # dropped statements listed by name; the rest are counted
# A magic is % or %% followed by a name; a shell escape is ! not followed by = (so the
# continuation lines "    % loss)" and "    != b" of valid Python never look like one).
_MAGIC = r"(?:%{1,2}[A-Za-z_]|![^=])"
_LINE_MAGIC = re.compile(r"^\s*" + _MAGIC)
_MAGIC_ASSIGN = re.compile(r"^\s*[\w.,\s()\[\]]+=\s*" + _MAGIC)
_HELP = re.compile(r"^[^#]*\?\s*$")


class NotebookError(ValueError):
    """The file is not a notebook nbformat can read."""


class MissingDependency(RuntimeError):
    """The grader's environment lacks an optional library needed to read a submission: the
    grader's failure, never the submission's (status "error", not a grade)."""


GRADE_EXTRA = "pip install 'backprop-conformance[grade]'"
NBFORMAT_MISSING = (f"grading .ipynb files needs nbformat, which this grader's Python ({sys.executable}) "
                    f"lacks: {GRADE_EXTRA}")


@dataclass
class Extracted:
    code: str
    kept: int = 0
    dropped: list[str] = field(default_factory=list)  # "cell 3, line 2: train(...)" (clean)
    dropped_count: int = 0

    def notes(self) -> list[str]:
        if not self.dropped_count:
            return [f"notebook: {self.kept} top-level definitions kept, nothing dropped"]
        listed = "; ".join(self.dropped)
        more = self.dropped_count - len(self.dropped)
        return [f"notebook: kept {self.kept} top-level definitions/imports/constants; "
                f"dropped {self.dropped_count} statements that would run work at import "
                f"(training, plots, prints, magics): {listed}"
                + (f"; and {more} more" if more > 0 else "")]


def _read_cells(data: bytes) -> list[str]:
    try:
        import nbformat
    except ImportError:
        raise MissingDependency(NBFORMAT_MISSING) from None
    try:
        text = data.decode("utf-8")
        # nbformat warns about the notebook's own format quirks (cells without ids, ...): the
        # student's file, nothing the instructor running the grader can or must act on.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            notebook = nbformat.reads(text, as_version=4)
    except Exception as exc:  # noqa: BLE001 - nbformat raises many kinds for a broken file
        raise NotebookError(f"not a readable Jupyter notebook ({type(exc).__name__}: "
                            f"{clean_name(exc, 300)})") from None
    return [cell.get("source", "") for cell in notebook.get("cells", [])
            if cell.get("cell_type") == "code"]


def _first_line(source: str) -> str:
    line = source.strip().splitlines()[0] if source.strip() else ""
    return clean_name(line[:80] + ("..." if len(line) > 80 else ""))


class _Constant:
    """Decides whether an expression is a constant expression (see the module docstring)."""

    def __init__(self, imported: set[str], constants: set[str]):
        self.imported, self.constants = imported, constants

    def __call__(self, node: ast.AST) -> bool:
        if isinstance(node, ast.Constant):
            return True
        if isinstance(node, ast.Name):
            return node.id in self.imported or node.id in self.constants or node.id in (
                "True", "False", "None", "int", "float", "str", "tuple", "list", "dict", "range")
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return all(self(e) for e in node.elts)
        if isinstance(node, ast.Dict):
            return all(k is None or self(k) for k in node.keys) and all(self(v) for v in node.values)
        if isinstance(node, ast.BinOp):
            return self(node.left) and self(node.right)
        if isinstance(node, ast.UnaryOp):
            return self(node.operand)
        if isinstance(node, ast.Attribute):
            return self(node.value)
        if isinstance(node, ast.Subscript):
            return self(node.value) and self(node.slice)
        if isinstance(node, ast.Slice):
            return all(p is None or self(p) for p in (node.lower, node.upper, node.step))
        if isinstance(node, ast.Lambda):  # a definition: its body runs only when called
            return all(self(d) for d in node.args.defaults + [d for d in node.args.kw_defaults if d])
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            inner = _Constant(self.imported, set(self.constants))
            for gen in node.generators:
                if not inner(gen.iter) or _names(gen.target) is None:
                    return False
                inner.constants.update(_names(gen.target) or [])
                if not all(inner(cond) for cond in gen.ifs):
                    return False
            parts = [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
            return all(inner(p) for p in parts)
        if isinstance(node, ast.Compare):
            return self(node.left) and all(self(c) for c in node.comparators)
        if isinstance(node, ast.BoolOp):
            return all(self(v) for v in node.values)
        if isinstance(node, ast.IfExp):
            return self(node.test) and self(node.body) and self(node.orelse)
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in PURE_BUILTINS and node.func.id not in self.constants):
            return all(self(a) for a in node.args) and all(self(k.value) for k in node.keywords)
        if isinstance(node, ast.Call):
            root = node.func
            while isinstance(root, ast.Attribute):
                root = root.value
            called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            return (isinstance(root, ast.Name) and root.id in self.imported
                    and called in CONSTANT_CALLS
                    and all(self(a) for a in node.args)
                    and all(self(k.value) for k in node.keywords))
        return False


def _targets(node: ast.stmt) -> list[ast.expr] | None:
    if isinstance(node, ast.Assign):
        return node.targets
    if isinstance(node, ast.AnnAssign) and node.value is not None:
        return [node.target]
    return None


def _names(target: ast.expr) -> list[str] | None:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        names = [_names(e) for e in target.elts]
        return None if any(n is None for n in names) else [x for n in names for x in n]  # type: ignore[union-attr]
    return None


class _Keeper:
    def __init__(self) -> None:
        self.imported: set[str] = set()
        self.constants: set[str] = set()

    def keep(self, node: ast.stmt) -> bool:
        """True for a definition-only statement; records the names it binds."""
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                self.imported.add((alias.asname or alias.name).split(".")[0])
            return True
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            self.constants.add(node.name)
            return True
        targets = _targets(node)
        if targets is not None:
            names = [_names(t) for t in targets]
            if any(n is None for n in names) or not _Constant(self.imported, self.constants)(node.value):
                return False
            self.constants.update(x for n in names for x in n)  # type: ignore[union-attr]
            return True
        if isinstance(node, ast.If):
            if _is_main_guard(node):
                return False
            trial = _Keeper()
            trial.imported, trial.constants = set(self.imported), set(self.constants)
            if _Constant(trial.imported, trial.constants)(node.test) and all(
                    trial.keep(s) for s in node.body + node.orelse):
                self.imported, self.constants = trial.imported, trial.constants
                return True
            return False
        if isinstance(node, ast.Try):
            trial = _Keeper()
            trial.imported, trial.constants = set(self.imported), set(self.constants)
            body = node.body + node.orelse + node.finalbody + [s for h in node.handlers for s in h.body]
            if all(trial.keep(s) or isinstance(s, ast.Pass) for s in body):
                self.imported, self.constants = trial.imported, trial.constants
                return True
            return False
        return False


# Imports of anything else are guarded (see the module docstring): notebooks import display
# libraries (matplotlib, seaborn, tqdm, IPython) that the grading environment may not have.
_REQUIRED_ROOTS = set(sys.stdlib_module_names) | {"numpy", "scipy"}


def _optional_import(node: ast.stmt) -> bool:
    if isinstance(node, ast.Import):
        return any(a.name.split(".")[0] not in _REQUIRED_ROOTS for a in node.names)
    if isinstance(node, ast.ImportFrom):
        return node.level == 0 and (node.module or "").split(".")[0] not in _REQUIRED_ROOTS
    return False


def _is_main_guard(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Compare) and isinstance(test.left, ast.Name)
            and test.left.id == "__name__")


def _strip_ipython(source: str) -> tuple[str, list[tuple[int, str]]]:
    """Blank the IPython-only lines (line numbers are kept); returns the removed ones."""
    removed: list[tuple[int, str]] = []
    out = []
    for number, line in enumerate(source.splitlines(), start=1):
        if _LINE_MAGIC.match(line) or _MAGIC_ASSIGN.match(line) or _HELP.match(line):
            removed.append((number, line))
            out.append("")
        else:
            out.append(line)
    return "\n".join(out), removed


def extract(data: bytes) -> Extracted:
    """The definitions of a notebook as module source (see the module docstring)."""
    cells = _read_cells(data)
    keeper = _Keeper()
    result = Extracted(code="")
    parts = [("# Extracted from a notebook by tools.grade: imports, definitions and constants "
              "only (see tools/grade/notebooks.py).\n")]

    future: list[str] = []  # `from __future__` imports must open the module
    drops: list[tuple[int, int, str]] = []

    def dropped(cell: int, line: int, what: str) -> None:
        drops.append((cell, line, what))

    for number, source in enumerate(cells, start=1):
        if source.lstrip().startswith("%%"):
            dropped(number, 1, f"cell magic {_first_line(source)}")
            continue
        try:  # valid Python has no IPython syntax to strip
            code, removed = source, []
            tree = ast.parse(code)
        except SyntaxError:
            code, removed = _strip_ipython(source)
            tree = None
        for line_number, line in removed:
            dropped(number, line_number, f"IPython {_first_line(line)}")
        try:
            tree = tree or ast.parse(code)
        except SyntaxError as exc:
            dropped(number, exc.lineno or 1, f"whole cell (not valid Python: {clean_name(exc.msg, 100)})")
            continue
        lines = code.splitlines()
        for node in tree.body:
            start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
            segment = "\n".join(lines[start - 1:node.end_lineno])
            if keeper.keep(node):
                result.kept += 1
                is_future = isinstance(node, ast.ImportFrom) and node.module == "__future__"
                if _optional_import(node):
                    segment = ("try:\n" + textwrap.indent(segment, "    ")
                               + "\nexcept ImportError:  # a notebook/display library the grader may lack\n    pass")
                (future if is_future else parts).append(segment + "\n")
            elif (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)) or isinstance(
                    node, ast.Pass) or (isinstance(node, ast.AnnAssign) and node.value is None):
                continue  # a bare string, pass or annotation: nothing runs, nothing is lost
            else:
                dropped(number, start, _first_line(segment))
    drops.sort()
    result.dropped_count = len(drops)
    result.dropped = [f"cell {c}, line {n}: {what}" for c, n, what in drops[:MAX_LISTED]]
    result.code = "\n".join(parts[:1] + sorted(set(future)) + parts[1:])
    return result
