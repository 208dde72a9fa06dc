"""Turn a Jupyter notebook into the module the suite judges: what Restart & Run All would
define for the graded functions, and nothing else of the notebook's top-level work.

A notebook is a script: besides the functions it trains models, plots and prints at top
level. Run at import time in the grader that work would cost minutes, need data the sandbox
does not have, or fail for reasons unrelated to the functions judged. The code cells are read
with nbformat and this is kept, in document order:

1. IPython syntax is removed first. A cell magic whose body is Python and runs in the
   notebook's namespace (``%%time``, ``%%capture``, ``%%prun``) keeps its body; any other cell
   magic (``%%bash``, ``%%writefile``, ``%%timeit``, ...) drops the cell. In a cell that is not
   valid Python as it stands, ``%time``/``%prun`` lines keep their Python statement; other line
   magics (``%name``), shell escapes (``!cmd``), help (``x?``) and assignments from them
   (``files = !ls``) are dropped. An import of a library other than the standard library,
   NumPy and SciPy is kept inside ``try: ... except ImportError: pass``: notebooks import
   display libraries the grading environment may lack.
2. Kept always (they only define): imports; ``def``/``class``; assignments to names of a
   *constant expression* (literals, containers, operators, names already kept, and calls of
   ``CONSTANT_CALLS`` on an imported library or of pure builtins, comprehensions, lambdas);
   ``if``/``try`` blocks of such statements.
3. Kept because the graded functions need it (``GRADED_NAMES``: forward, backward and the
   optional functions): every top-level statement that binds a name they use, transitively
   (``softmax = make_softmax(stable=True)``, ``relu = np.vectorize(...)``, a weight table the
   functions read), in document order, as Restart & Run All would run it. Such a statement
   is definition-time work: it runs only in the sandboxed worker, at import, inside a
   ``try`` so that a failure there (data the sandbox lacks) leaves the other functions
   gradable; the function that needed it then fails when called, with its own error.
4. Everything else (``train(...)``, ``plt.plot(...)``, loops, ``print(...)``) is dropped and
   listed with its cell, line and reason on the student's page. A cell that is not valid
   Python after step 1 (or that Python's parser cannot take: nested too deeply, an integer
   literal over 4300 digits) is dropped whole, with the reason.
5. A graded function that uses a name only dropped code defines (``files = !ls``, a ``%%bash``
   cell, a cell that is not Python) cannot be run as Python: the submission is not run, and
   its row names the function, the name and the cell (status ``import_error``, never a
   charged mistake).

A notebook for another kernel (R, Julia) is ``unsupported``; one with no code is
``no_module``; a file with a byte-order mark, or one nbformat cannot read, is
``invalid_submission`` with the reason.

Bounds: this runs on hostile input in the trusted grader, so ``extract`` does all of it
(JSON decoding, nbformat, ``ast``) in a child process (bounded.py) with an address-space limit
(``CHILD_MEMORY``), a CPU-time limit (``CHILD_CPU_SECONDS``) and a wall-clock timeout. A
notebook that exceeds the memory or CPU limit is refused with the reason; a child that cannot
start, dies otherwise or outlives the wall-clock timeout (the machine, not the notebook) is a
grader error (status ``error``, retried on the next run).
"""

from __future__ import annotations

import ast
import re
import symtable
import sys
import textwrap
import warnings
from dataclasses import asdict, dataclass, field
from typing import TypeGuard, cast

from conformance.grade.intake.bounded import MissingDependency, NotebookError, run_bounded
from conformance.grade.intake.sanitize import clean_name

# The suite's function names (conformance.candidate REQUIRED_FUNCTIONS + OPTIONAL_FUNCTIONS)
# and its opt-out list (conformance.calls.OPT_OUT_NAME); tests/test_hostile_intake.py checks
# they agree. Spelled out so that the bounded child process need not import the suite.
GRADED_NAMES = ("forward", "backward", "init_params", "relu", "softmax", "cross_entropy", "train",
                "CONFORMANCE_OPT_OUT")
# Library calls a constant may make (by their last name, on an imported module): array and
# random-generator constructors and elementwise math. Anything else is top-level work, kept
# only when a graded function needs what it defines.
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
# Cell and line magics whose body is Python run in the notebook's own namespace: what they
# define exists after Restart & Run All. (%%timeit runs its body in a function of its own.)
PYTHON_CELL_MAGICS = frozenset({"time", "capture", "prun"})
PYTHON_LINE_MAGICS = frozenset({"time", "prun"})
MAX_LISTED = 25  # dropped statements listed by name; the rest are counted
# A magic is % or %% followed by a name; a shell escape is ! not followed by = (so the
# continuation lines "    % loss)" and "    != b" of valid Python never look like one).
_MAGIC = r"(?:%{1,2}[A-Za-z_]|![^=])"
_LINE_MAGIC = re.compile(r"^\s*" + _MAGIC)
_PYTHON_LINE_MAGIC = re.compile(r"^(?P<indent>\s*)%(?P<name>[A-Za-z_]\w*)[ \t]+(?P<body>[^-\s].*)$")
_MAGIC_ASSIGN = re.compile(r"^\s*(?P<targets>[\w.,\s()\[\]]+)=\s*" + _MAGIC)
_HELP = re.compile(r"^[^#]*\?\s*$")
_CELL_MAGIC = re.compile(r"^%%(?P<name>[A-Za-z_]\w*)(?P<args>.*)$")
# Names a cell that cannot be parsed probably defines (for the "uses a dropped name" check).
_LIKELY_BINDING = re.compile(r"^(?:(?:async\s+)?def|class)\s+(\w+)|^(\w+)\s*(?:[:+\-*/|&]?=[^=])", re.M)
_BOM = b"\xef\xbb\xbf"


GRADE_EXTRA = "pip install 'backprop-conformance[grade]'"
NBFORMAT_MISSING = (f"grading .ipynb files needs nbformat, which this grader's Python ({sys.executable}) "
                    f"lacks: {GRADE_EXTRA}")


@dataclass
class Extracted:
    code: str
    kept: int = 0
    dropped: list[str] = field(default_factory=list)  # "cell 3, line 2: train(...) (why)" (clean)
    dropped_count: int = 0
    needed_work: list[str] = field(default_factory=list)  # top-level work kept for the graded functions
    unrunnable: list[str] = field(default_factory=list)  # graded functions that use a dropped name

    def notes(self) -> list[str]:
        notes = []
        if not self.dropped_count:
            notes.append(f"notebook: {self.kept} top-level statements kept, nothing dropped")
        else:
            listed = "; ".join(self.dropped)
            more = self.dropped_count - len(self.dropped)
            notes.append(f"notebook: kept {self.kept} top-level statements (imports, definitions, "
                         f"constants and what the graded functions need); dropped {self.dropped_count} "
                         f"that Python cannot run or the graded functions do not need (training, plots, "
                         f"prints, magics): {listed}" + (f"; and {more} more" if more > 0 else ""))
        if self.needed_work:
            notes.append("notebook: top-level code kept because the graded functions use what it "
                         "defines (it runs when the module is imported, in the sandbox): "
                         + "; ".join(self.needed_work[:MAX_LISTED]))
        return notes

    def problem(self) -> str | None:
        """Why the notebook cannot be run as Python for the graded functions (None: it can)."""
        if not self.unrunnable:
            return None
        return ("the notebook cannot be graded as Python: " + "; ".join(self.unrunnable[:MAX_LISTED])
                + ". The grader runs what Restart & Run All defines, minus what only IPython can "
                "run; define these names in plain Python and submit again")


# -- reading ---------------------------------------------------------------------------------


def _python_kernel(notebook: dict) -> str | None:
    """Why the notebook is not for a Python kernel (None: it is, or does not say)."""
    meta = notebook.get("metadata") or {}
    spec = meta.get("kernelspec") or {}
    info = meta.get("language_info") or {}
    for source, language in (("kernelspec language", spec.get("language")),
                             ("language_info name", info.get("name"))):
        if isinstance(language, str) and language.strip() and not language.strip().lower().startswith(
                ("python", "ipython")):
            kernel = spec.get("name") or spec.get("display_name") or "?"
            return (f"a notebook in {clean_name(language, 40)} (kernel {clean_name(kernel, 60)!r}, from its "
                    f"{source}), not Python: only Python notebooks are graded")
    return None


def _read_cells(data: bytes) -> list[tuple[int, str]]:
    """The code cells (number, source); NotebookError (with the reason) for anything unreadable."""
    try:
        import nbformat
    except ImportError:
        raise MissingDependency(NBFORMAT_MISSING) from None
    if data.startswith(_BOM):
        raise NotebookError("the notebook file starts with a UTF-8 byte-order mark (BOM), which "
                            "notebook files may not carry: save it again without the BOM")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotebookError(f"the notebook is not UTF-8 text (byte {exc.start} is not UTF-8)") from None
    try:
        # nbformat warns about the notebook's own format quirks (cells without ids, ...): the
        # student's file, nothing the instructor running the grader can or must act on.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            notebook = nbformat.reads(text, as_version=4)
    except (RecursionError, MemoryError):
        raise NotebookError("the notebook's JSON is nested too deeply or too large to read") from None
    except ValueError as exc:
        if any("integer string conversion" in str(e) for e in _chain(exc)):
            raise NotebookError("the notebook holds an integer over Python's 4300-digit limit, which "
                                "no notebook reader accepts") from None
        raise NotebookError(f"not a readable Jupyter notebook ({type(exc).__name__}: "
                            f"{clean_name(exc, 300)})") from None
    except Exception as exc:  # noqa: BLE001 - nbformat raises many kinds for a broken file
        raise NotebookError(f"not a readable Jupyter notebook ({type(exc).__name__}: "
                            f"{clean_name(exc, 300)})") from None
    kernel = _python_kernel(notebook)
    if kernel:
        raise NotebookError(kernel, "unsupported")
    # Numbered as the notebook shows them (markdown cells count), so "cell 3" is findable.
    cells = [(number, cell.get("source", "")) for number, cell in enumerate(notebook.get("cells", []), start=1)
             if cell.get("cell_type") == "code"]
    cells = [(n, c if isinstance(c, str) else "".join(map(str, c))) for n, c in cells]
    if not any(c.strip() for _, c in cells):
        raise NotebookError("the notebook has no code (no code cell holds anything)", "no_module")
    return cells


def _chain(exc: BaseException | None) -> list[BaseException]:
    """The exception and its causes (nbformat re-raises JSON errors as its own)."""
    chain: list[BaseException] = []
    while exc is not None and len(chain) < 10:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    return chain


def _first_line(source: str) -> str:
    line = source.strip().splitlines()[0] if source.strip() else ""
    return clean_name(line[:80] + ("..." if len(line) > 80 else ""))


# -- what a statement is ---------------------------------------------------------------------


class _Constant:
    """Decides whether an expression is a constant expression (see the module docstring)."""

    def __init__(self, imported: set[str], constants: set[str]):
        self.imported, self.constants = imported, constants

    def __call__(self, node: ast.AST | None) -> bool:  # (None, no expression: not a constant)
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
        # (any() ruled None out, which the type checker cannot follow)
        return None if any(n is None for n in names) else [x for n in names for x in n]  # type: ignore[union-attr]
    return None


class _Keeper:
    """Rule 2 of the module docstring: statements that only define.

    Only ``keep`` recurses (into the blocks of an ``if`` or ``try``, and into ``_Constant``), and
    it makes each recursive call as it always has, directly or from one generator: how deep a
    hostile notebook may nest before it is refused as nested too deeply (RecursionError) depends
    on the frames per level. Its helpers return before any recursion."""

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
            # (node has targets: an Assign, or an AnnAssign with a value; _targets)
            if any(n is None for n in names) or not _Constant(self.imported, self.constants)(
                    cast("ast.Assign | ast.AnnAssign", node).value):
                return False
            # (any() ruled None out, which the type checker cannot follow)
            self.constants.update(x for n in names for x in n)  # type: ignore[union-attr]
            return True
        if not _is_block(node):
            return False
        # A block is kept only if all of it is: a trial copy records its names meanwhile.
        trial = _Keeper()
        trial.imported, trial.constants = set(self.imported), set(self.constants)
        if isinstance(node, ast.If):
            kept = _Constant(trial.imported, trial.constants)(node.test) and all(
                trial.keep(s) for s in node.body + node.orelse)
        else:
            kept = all(trial.keep(s) or isinstance(s, ast.Pass) for s in _try_statements(node))
        if kept:
            self.imported, self.constants = trial.imported, trial.constants
        return kept


def _is_block(node: ast.stmt) -> TypeGuard[ast.If | ast.Try]:
    """An ``if`` (not the main guard) or a ``try``: kept when all they hold only defines."""
    return isinstance(node, ast.Try) or (isinstance(node, ast.If) and not _is_main_guard(node))


def _try_statements(node: ast.Try) -> list[ast.stmt]:
    """Every statement of a ``try``: its body, ``else``, ``finally`` and handlers."""
    return node.body + node.orelse + node.finalbody + [s for h in node.handlers for s in h.body]


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


def _scope_names(text: str) -> tuple[set[str], set[str]]:
    """(names a top-level statement binds, global names it uses) by Python's own scoping rules
    (symtable): a function's parameters and locals are not uses of the notebook's names."""
    table = symtable.symtable(text, "cell", "exec")
    binds = {s.get_name() for s in table.get_symbols() if s.is_local()}
    uses = {s.get_name() for s in table.get_symbols() if s.is_referenced()}
    stack = list(table.get_children())
    while stack:
        child = stack.pop()
        uses |= {s.get_name() for s in child.get_symbols() if s.is_global() and s.is_referenced()}
        stack += child.get_children()
    return binds, uses


def _mutated(node: ast.stmt) -> set[str]:
    """Names a statement changes without rebinding (``W[0] = 1``, ``x += 1``, ``LAYERS.append(3)``):
    Restart & Run All runs it before the graded functions see the name."""
    roots: set[str] = set()
    targets: list[ast.expr] = []
    if isinstance(node, (ast.Assign, ast.Delete)):
        targets = list(node.targets)
    elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
        targets = [node.target]
    elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Attribute):
        targets = [node.value.func.value]
    for target in targets:
        while isinstance(target, (ast.Attribute, ast.Subscript, ast.Starred)):
            target = target.value
        if isinstance(target, ast.Name):
            roots.add(target.id)
    return roots


@dataclass
class _Stmt:
    cell: int
    line: int
    text: str
    label: str
    binds: set[str]
    uses: set[str]
    touches: set[str]  # binds, and names it mutates
    definition: bool  # rule 2
    is_import: bool
    future: bool = False
    optional_import: bool = False


@dataclass
class _Dropped:
    cell: int
    line: int
    what: str
    why: str
    binds: set[str] = field(default_factory=set)  # names only this dropped code would define


# -- IPython syntax ----------------------------------------------------------------------------


def _strip_ipython(source: str, cell: int, drops: list[_Dropped]) -> str:
    """Blank the IPython-only lines (line numbers are kept), keeping the Python statement of
    %time/%prun; records what was removed and the names it would have bound."""
    out = []
    for number, line in enumerate(source.splitlines(), start=1):
        python = _PYTHON_LINE_MAGIC.match(line)
        if python and python["name"] in PYTHON_LINE_MAGICS:
            out.append(python["indent"] + python["body"])
            drops.append(_Dropped(cell, number, f"IPython %{python['name']}", "IPython-only; its Python statement is kept"))
        elif _LINE_MAGIC.match(line) or _MAGIC_ASSIGN.match(line) or _HELP.match(line):
            assign = _MAGIC_ASSIGN.match(line)
            binds = set(re.findall(r"[A-Za-z_]\w*", assign["targets"])) if assign else set()
            drops.append(_Dropped(cell, number, f"IPython {_first_line(line)}", "IPython-only, not Python", binds))
            out.append("")
        else:
            out.append(line)
    return "\n".join(out)


def _cell_body(source: str, cell: int, drops: list[_Dropped]) -> str | None:
    """The cell's Python (a cell magic's header blanked), or None for a cell that is not Python."""
    lines = source.splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None or not lines[first].lstrip().startswith("%%"):
        return source
    magic = _CELL_MAGIC.match(lines[first].strip())
    name = magic["name"] if magic else ""
    if name in PYTHON_CELL_MAGICS:
        args = (magic["args"] if magic else "").split()
        binds = {args[0]} if name == "capture" and args and args[0].isidentifier() else set()
        drops.append(_Dropped(cell, first + 1, f"cell magic {_first_line(lines[first])}",
                              "IPython-only; the cell's Python body is kept", binds))
        return "\n".join([""] * (first + 1) + lines[first + 1:])
    drops.append(_Dropped(cell, first + 1, f"cell magic {_first_line(lines[first])} (whole cell)",
                          "not Python", _likely_bindings(source)))
    return None


def _likely_bindings(source: str) -> set[str]:
    return {a or b for a, b in _LIKELY_BINDING.findall(source)}


_PARSE_FAILURES = (SyntaxError, RecursionError, MemoryError, ValueError, OverflowError)


def _why_unparsable(exc: BaseException) -> str:
    if isinstance(exc, RecursionError) or "too many nested" in str(exc) or "too complex" in str(exc):
        return "nested too deeply for Python's parser"
    if isinstance(exc, MemoryError):
        return "too large for the grader's parser"
    if "integer string conversion" in str(exc):
        return "an integer literal over Python's 4300-digit limit"
    message = getattr(exc, "msg", None) or str(exc)
    return f"not valid Python: {clean_name(message, 100)}"


def _parse_cell(code: str, cell: int, drops: list[_Dropped]) -> tuple[ast.Module, str] | None:
    try:  # valid Python has no IPython syntax to strip
        return ast.parse(code), code
    except SyntaxError:
        pass
    except _PARSE_FAILURES as exc:
        drops.append(_Dropped(cell, 1, "whole cell", _why_unparsable(exc), _likely_bindings(code)))
        return None
    stripped = _strip_ipython(code, cell, drops)
    try:
        return ast.parse(stripped), stripped
    except _PARSE_FAILURES as exc:
        drops.append(_Dropped(cell, getattr(exc, "lineno", None) or 1, "whole cell", _why_unparsable(exc),
                              _likely_bindings(stripped)))
        return None


def _statements(tree: ast.Module, code: str, cell: int, keeper: _Keeper, drops: list[_Dropped]) -> list[_Stmt]:
    lines = code.splitlines()
    body = tree.body
    out = []
    for i, node in enumerate(body):
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        end = node.end_lineno or node.lineno
        shares = (i > 0 and (body[i - 1].end_lineno or 0) >= start) or (
            i + 1 < len(body) and body[i + 1].lineno <= end)
        text = ast.unparse(node) if shares else "\n".join(lines[start - 1:end])
        if (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)) or isinstance(
                node, ast.Pass) or (isinstance(node, ast.AnnAssign) and node.value is None):
            continue  # a bare string, pass or annotation: nothing runs, nothing is lost
        try:
            binds, uses = _scope_names(text)
        except _PARSE_FAILURES as exc:  # e.g. `return` outside a function
            drops.append(_Dropped(cell, start, _first_line(text), _why_unparsable(exc)))
            continue
        mutated = _mutated(node)
        is_import = isinstance(node, (ast.Import, ast.ImportFrom))
        definition = keeper.keep(node) and not (isinstance(node, ast.If) and _is_main_guard(node))
        augmented = {node.target.id} if isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name) else set()
        out.append(_Stmt(cell, start, text, _first_line(text), binds, (uses - binds) | augmented | mutated,
                         binds | mutated, definition, is_import,
                         future=isinstance(node, ast.ImportFrom) and node.module == "__future__",
                         optional_import=_optional_import(node)))
    return out


def _needed(stmts: list[_Stmt], roots: set[str]) -> tuple[set[int], set[str]]:
    """Rule 3: the statements that define what ``roots`` use, transitively (a fixpoint: a
    function resolves its globals when called, so a later definition counts too), and every
    name so needed."""
    imported = {n for s in stmts if s.is_import for n in s.binds}
    needed = set(roots)
    kept: set[int] = set()
    changed = True
    while changed:
        changed = False
        for i, stmt in enumerate(stmts):
            if i in kept:
                continue
            # A method call on an imported module (np.random.seed(0), plt.plot(x)) is not a
            # definition of the module's name.
            touches = stmt.binds | (stmt.touches - imported)
            if touches & needed:
                kept.add(i)
                new = stmt.uses - needed
                if new:
                    needed |= new
                    changed = True
    return kept, needed


_GUARD_HELPER = '''
def _notebook_definition_failed(names, where, exc):
    """A top-level statement the graded functions need raised when the module was imported:
    each graded name it should have defined raises that error when called."""
    def failed(*args, **kwargs):
        raise RuntimeError(f"{where} of the notebook raised {type(exc).__name__}: {exc} "
                           "when it was run, so this function was never defined") from exc
    for name in names:
        globals().setdefault(name, failed)
'''


def _guarded(stmt: _Stmt) -> str:
    graded = sorted(stmt.binds & set(GRADED_NAMES) - {"CONFORMANCE_OPT_OUT"})
    where = f"cell {stmt.cell}, line {stmt.line}"
    return (f"try:  # kept: the graded functions use what it defines ({where})\n"
            + textwrap.indent(stmt.text, "    ")
            + f"\nexcept Exception as _exc:\n    _notebook_definition_failed({graded!r}, {where!r}, _exc)\n")


def extract_here(data: bytes) -> Extracted:
    """``extract`` without the bounds (runs in the child process; tests may call it)."""
    cells = _read_cells(data)
    keeper = _Keeper()
    drops: list[_Dropped] = []
    stmts: list[_Stmt] = []
    for number, source in cells:
        body = _cell_body(source, number, drops)
        if body is None:
            continue
        parsed = _parse_cell(body, number, drops)
        if parsed is not None:
            stmts += _statements(parsed[0], parsed[1], number, keeper, drops)

    needed_idx, needed_names = _needed(stmts, set(GRADED_NAMES))
    result = Extracted(code="")
    parts = [("# Extracted from a notebook by conformance.grade: what Restart & Run All defines for the "
              "graded functions (see conformance/grade/intake/notebooks.py).\n")]
    future: list[str] = []  # `from __future__` imports must open the module
    guard_used = False
    for i, stmt in enumerate(stmts):
        # Each kept statement carries its notebook cell and line (conformance/localise.py shows a
        # cited line as the notebook's own): the marker is the statement's first line.
        stmt.text = f"# notebook cell {stmt.cell}, line {stmt.line}\n{stmt.text}"
        if stmt.definition:
            segment = stmt.text
            if stmt.optional_import:
                segment = ("try:\n" + textwrap.indent(segment, "    ")
                           + "\nexcept ImportError:  # a notebook/display library the grader may lack\n    pass")
            (future if stmt.future else parts).append(segment + "\n")
        elif i in needed_idx:
            guard_used = True
            parts.append(_guarded(stmt))
            result.needed_work.append(f"cell {stmt.cell}, line {stmt.line}: {stmt.label}")
        else:
            drops.append(_Dropped(stmt.cell, stmt.line, stmt.label, "not needed by the graded functions"))
            continue
        result.kept += 1
    if guard_used:
        parts.insert(1, _GUARD_HELPER)

    # Rule 5: a graded function that uses a name only dropped code defines.
    defined = {n for i, s in enumerate(stmts) if s.definition or i in needed_idx for n in s.binds}
    for drop in drops:
        for name in sorted((drop.binds & needed_names) - defined):
            users = sorted(_users(stmts, needed_idx, name))
            result.unrunnable.append(
                f"{'/'.join(users) or 'a graded function'} uses {clean_name(name)}, which only cell "
                f"{drop.cell}, line {drop.line} defines ({drop.what}: {drop.why}, dropped)")
    drops.sort(key=lambda d: (d.cell, d.line))
    result.dropped_count = len(drops)
    result.dropped = [f"cell {d.cell}, line {d.line}: {d.what} ({d.why})" for d in drops[:MAX_LISTED]]
    result.code = "\n".join(parts[:1] + sorted(set(future)) + parts[1:])
    return result


def _users(stmts: list[_Stmt], kept: set[int], name: str) -> set[str]:
    """The graded functions that reach ``name`` through kept statements."""
    users = set()
    for root in GRADED_NAMES:
        reach, frontier = set(), {root}
        while frontier:
            reach |= frontier
            frontier = {u for i, s in enumerate(stmts) if i in kept or s.definition
                        if s.binds & frontier for u in s.uses} - reach
        if name in reach and any(root in s.binds for s in stmts):
            users.add(root)
    return users


def extract_fields(data: bytes) -> dict:
    """``extract_here`` as the bounded child answers it (plain data)."""
    return asdict(extract_here(data))


def extract(data: bytes) -> Extracted:
    """The module a notebook defines for the graded functions (module docstring), computed in
    the bounded child process. Raises NotebookError (the row's status and reason),
    MissingDependency (no nbformat) or NotebookGraderError (the machine failed)."""
    try:
        import nbformat  # noqa: F401 - checked here: the child runs the same interpreter
    except ImportError:
        raise MissingDependency(NBFORMAT_MISSING) from None
    if data.startswith(_BOM):  # cheap, and named the same way the child would
        raise NotebookError("the notebook file starts with a UTF-8 byte-order mark (BOM), which "
                            "notebook files may not carry: save it again without the BOM")
    fields = run_bounded(f"{__name__}:extract_fields", data, "the notebook")
    return Extracted(**fields)
