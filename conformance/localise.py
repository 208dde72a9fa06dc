"""The line to change: from "backward is wrong" to the student's own line.

When forward, the loss or backward gives wrong values, ``locate_function`` re-runs ONE small
case of that function under a line tracer (``conformance.tracer``; inside the isolated worker
when the candidate is isolated) that records the arrays each line of the candidate's own files
assigns. Those arrays are compared with the exact intermediate quantities of the section's
algorithm (computed here from ``conformance.exact``) and with the catalogued mistakes' versions
of them, and the first line whose value departs from the quantity it stands for is cited:

    at mymlp.py:52  delta = probs - Y   (backward, output layer)
      this line gives [0.2107, -0.8381, 0.6274, ...]; the section's delta, (Y_hat - Y) / B,
      is [0.03512, -0.1397, 0.1046, ...]

Two ways to a line, both requiring evidence evaluated on this candidate:

1. a catalogued mistake (``diagnosis.KNOWN_BUGS``, ``FORWARD_BUGS``, the loss mistakes)
   reproduces the function's outputs on the case: the first recorded value that equals that
   mistake's version of a quantity, where the mistake's version differs from the section's
   and the value is none of the section's quantities, is cited;
2. otherwise, the dataflow from the first wrong output: the line that produced it, then,
   as long as that line reads a value recorded from an earlier line that is none of the
   quantities of the algorithm (in the section's style or another correct one: transposed,
   undivided per-layer style, the softmax's pieces...), that earlier line. The line cited
   reads only right values and gives a wrong one.

Where neither gives a line (nothing recorded, the trace hit its bounds, a wrong structure
assembled from right arrays), the answer says so and names the function. The trace only
feeds text: nothing here changes a verdict, a test outcome or a score, and the cited file
must be one of the candidate's own (the suite's files and site-packages are never traced).
The candidate cannot move the line by what it prints or raises (neither is read); in the
isolated mode the record comes from the worker, where the candidate runs, so it is read as
untrusted data: only arrays and line numbers, the text shown is read from the student's file.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence, cast

import numpy as np

from conformance import tracer
from conformance.cases import Case, make_case
from conformance.exact import (CORRECT_BACKWARD, CORRECT_FORWARD, BackwardBugs, ForwardBugs,
                               exact_forward, exact_gradients, exact_softmax, relu_derivative)
from conformance.text import clean_text

SUITE_DIR = Path(__file__).resolve().parent
LOCATED_FUNCTIONS = ("forward", "backward", "cross_entropy")
# Relative tolerance (of a quantity's largest entry) for "this value is that quantity": wide
# enough for code that computes in float32 (rounding ~1e-6 relative after a few products), far
# below how much a catalogued mistake changes a value on these cases (order 1: a factor of B,
# a sign, a missing term).
TOL = 1e-4
# Small cases, tried in order until the function gives wrong values without raising: distinct
# widths first (a transposed or misplaced array cannot pass by shape), then a square net on
# which index mistakes run instead of crashing. Batch 6 and 5, 3 classes: a batch size read
# from the wrong axis shows.
CASES = (((4, 5, 4, 3), 6), ((3, 3, 3, 3), 5))
CASE_SEED = 7
SHOWN = 4  # entries of each value shown


# ---------------------------------------------------------------------------- quantities
@dataclass(frozen=True)
class Quantity:
    name: str  # the section's name, e.g. "delta"
    formula: str  # how the section computes it, e.g. "(Y_hat - Y) / B"
    layer: int  # 1-based layer it belongs to (0: none)
    value: np.ndarray = field(compare=False)
    section: bool = True  # the section's own quantity (False: a correct style's intermediate)

    @property
    def key(self) -> tuple[str, int]:
        return (self.name, self.layer)


def _q(name: str, formula: str, layer: int, value: Any, section: bool = True) -> Quantity:
    return Quantity(name, formula, layer, np.asarray(value, dtype=np.float64), section)


def forward_quantities(X: np.ndarray, params: Sequence, bugs: ForwardBugs = CORRECT_FORWARD,
                       styles: bool = True) -> list[Quantity]:
    """The forward's quantities in the order the section computes them (``bugs``: a known
    wrong forward's versions); ``styles`` adds the intermediates of correct styles."""
    with np.errstate(all="ignore"):
        acts, pres = exact_forward(X, params, bugs)
    L = len(params)
    out = _inputs(params, X=X) if styles else []
    for l in range(1, L + 1):
        W, b = (np.asarray(p, np.float64) for p in params[l - 1])
        if styles:
            out.append(_q("A_prev @ W", f"activations[{l - 1}] @ W{l}", l, acts[l - 1] @ W, False))
        out.append(_q("Z", f"activations[{l - 1}] @ W{l} + b{l}", l, pres[l - 1]))
        if l < L:
            out.append(_q("A", f"relu(Z{l})", l, acts[l]))
            if styles:
                out.append(_q("relu'(Z)", f"Z{l} > 0", l, pres[l - 1] > 0, False))
        else:
            Z = pres[l - 1]
            if styles:
                shifted = Z - Z.max(axis=-1, keepdims=True)
                e = np.exp(shifted)
                with np.errstate(over="ignore"):
                    raw = np.exp(Z)
                for name, value in (("row max", Z.max(axis=-1, keepdims=True)), ("Z - max", shifted),
                                    ("exp(Z - max)", e), ("sum exp(Z - max)", e.sum(axis=-1, keepdims=True)),
                                    ("exp(Z)", raw), ("sum exp(Z)", raw.sum(axis=-1, keepdims=True)),
                                    ("log softmax", shifted - np.log(e.sum(axis=-1, keepdims=True)))):
                    out.append(_q(name, name, l, value, False))
            out.append(_q("softmax", f"softmax(Z{l}) over each row", l, acts[l]))
    return out


def _inputs(params: Sequence, **arrays: Any) -> list[Quantity]:
    """The function's inputs (right by definition: the suite gives them)."""
    out = [_q(name, name, 0, np.asarray(a, np.float64)) for name, a in arrays.items()]
    for l, (W, b) in enumerate(params, 1):
        out += [_q("W", f"params[{l - 1}][0]", l, np.asarray(W, np.float64)),
                _q("b", f"params[{l - 1}][1]", l, np.asarray(b, np.float64))]
    return out


def loss_quantities(P: np.ndarray, Y: np.ndarray, styles: bool = True) -> list[Quantity]:
    B = Y.shape[0]
    with np.errstate(divide="ignore"):
        logp = np.log(P + 1e-12)
    per = -(Y * logp).sum(axis=1)
    out = _inputs((), Y_hat=P, Y=Y) if styles else []
    if styles:
        true_p = (P * Y).sum(axis=1)
        for name, value in (("log Y_hat", logp), ("Y * log Y_hat", Y * logp), ("-Y * log Y_hat", -Y * logp),
                            ("per-sample loss", per), ("minus per-sample loss", -per),
                            ("true-class probability", true_p), ("log true-class probability", -per),
                            ("summed loss", per.sum()), ("minus summed loss", -per.sum()),
                            ("minus loss", -per.mean()), ("batch size", float(B))):
            out.append(_q(name, name, 0, value, False))
    out.append(_q("loss", "-mean over the batch of sum(Y * log(Y_hat))", 0, per.mean()))
    return out


def backward_quantities(acts: Sequence[np.ndarray], pres: Sequence[np.ndarray], Y: np.ndarray,
                        params: Sequence, bugs: BackwardBugs = CORRECT_BACKWARD,
                        styles: bool = True) -> list[Quantity]:
    """Backprop's quantities in the order the section computes them (mirrors
    ``exact.output_error`` and ``exact.backpropagate``; ``bugs``: a known mistake's versions);
    ``styles`` adds correct styles' intermediates (the undivided per-layer style, the other
    ReLU'(0) convention)."""
    acts = [np.asarray(a, np.float64) for a in acts]
    pres = [np.asarray(z, np.float64) for z in pres]
    params = [(np.asarray(W, np.float64), np.asarray(b, np.float64)) for W, b in params]
    Y = np.asarray(Y, np.float64)
    L, B = len(params), Y.shape[0]
    out: list[Quantity] = []
    if styles:
        out += _inputs(params, Y=Y)
        out += [_q("activations", f"activations[{k}]", k, a) for k, a in enumerate(acts)]
        out += [_q("pre_activations", f"pre_activations[{k}]", k + 1, z) for k, z in enumerate(pres)]
    if bugs.last_sample_only:  # only the final gradients: a per-sample loop has no batch quantities
        grads = exact_gradients(acts, pres, Y, params, bugs=bugs)
        for l in range(L, 0, -1):
            out += [_q("dW", f"activations[{l - 1}].T @ delta{l}", l, grads[l - 1][0]),
                    _q("db", f"delta{l}.sum(axis=0)", l, grads[l - 1][1])]
        return out
    with np.errstate(all="ignore"):
        diff = bugs.sign * (acts[-1] - Y)
        if styles:
            out.append(_q("Y_hat - Y", "Y_hat - Y", L, diff, False))
        delta = diff * acts[-1] * (1 - acts[-1]) if bugs.softmax_jacobian else diff
        if bugs.batch_mean:
            delta = delta / B
        out.append(_q("delta", "(Y_hat - Y) / B", L, delta))
        for i in reversed(range(L)):
            l = i + 1
            A_prev = acts[i + 1] if bugs.dw_from_output else acts[i]
            dW = delta.T @ A_prev if bugs.dw_transposed else A_prev.T @ delta
            dW = dW / B if bugs.dw_mean else dW
            dW = dW * B if bugs.dw_times_batch else dW
            db = delta.mean(axis=0) if bugs.db_mean else delta.sum(axis=0)
            db = db * B if bugs.db_times_batch else db
            out.append(_q("dW", f"activations[{i}].T @ delta{l}", l, dW))
            out.append(_q("db", f"delta{l}.sum(axis=0)", l, db))
            if styles:
                out.append(_q("dW undivided", f"B * dW{l} (the per-layer 1/m style)", l, dW * B, False))
                out.append(_q("db undivided", f"B * db{l} (the per-layer 1/m style)", l, db * B, False))
                out.append(_q("delta undivided", f"B * delta{l} (the per-layer 1/m style)", l, delta * B, False))
            if i > 0 and bugs.propagate:
                W = params[i + bugs.w_offset][0]
                out.append(_q("W that delta goes through", f"params[{i}][0], layer {l}'s W", l, W))
                dA = delta @ (W.T if bugs.transpose_w else W)
                out.append(_q("delta @ W.T", f"delta{l} @ W{l}.T", l - 1, dA, False))
                if styles:
                    out.append(_q("delta @ W.T undivided", f"B * delta{l} @ W{l}.T", l - 1, dA * B, False))
                if bugs.mask:
                    Z = pres[i + bugs.mask_offset]
                    mask = relu_derivative(Z, 0.0, np.dtype(np.float64))
                    out.append(_q("relu'(Z)", f"pre_activations[{i - 1}] > 0", l - 1, mask))
                    if styles:
                        out.append(_q("relu'(Z) at 0 = 1", f"pre_activations[{i - 1}] >= 0", l - 1,
                                      relu_derivative(Z, 1.0, np.dtype(np.float64)), False))
                    dA = dA * mask
                if bugs.mean_every_layer:
                    dA = dA / B
                delta = dA
                out.append(_q("delta", f"(delta{l} @ W{l}.T) * relu'(pre_activations[{i - 1}])", l - 1, delta))
                if styles:
                    out.append(_q("delta undivided", f"B * delta{l - 1}", l - 1, delta * B, False))
    return out


# ----------------------------------------------------------------------------- matching
def _same(v: np.ndarray, q: np.ndarray) -> bool:
    if v.shape != q.shape:
        return False
    with np.errstate(all="ignore"):
        if not (np.all(np.isfinite(v) == np.isfinite(q)) and np.array_equal(v[~np.isfinite(v)], q[~np.isfinite(q)])):
            return False
        finite = np.isfinite(q)
        scale = float(np.abs(q[finite]).max(initial=0.0))
        return bool(np.all(np.abs(v[finite] - q[finite]) <= TOL * scale + 1e-12))


def matches(v: np.ndarray, q: np.ndarray) -> bool:
    """``v`` is ``q``: the same values, possibly transposed (column-major code) or with
    length-1 axes added or dropped (``keepdims``, (1, n) biases)."""
    if v.size != q.size or v.size == 0:
        return False
    if _same(v, q) or (v.ndim == 2 and q.ndim == 2 and _same(v.T, q)):
        return True
    return np.squeeze(v).shape == np.squeeze(q).shape and _same(v.reshape(q.shape), q)


# ------------------------------------------------------------------------------ records
@dataclass(frozen=True)
class Rec:
    index: int
    file: str  # as recorded (the worker's copy in the isolated mode)
    line: int
    func: str
    frame: int
    name: str
    value: np.ndarray = field(compare=False)
    inplace: bool = False


def parse_records(raw: Any) -> list[Rec]:
    """The tracer's record as plain, type-checked data (an isolated worker's answer is
    untrusted: anything malformed is dropped)."""
    out: list[Rec] = []
    if not isinstance(raw, dict) or not isinstance(raw.get("records"), list):
        return out
    for item in raw["records"]:
        if not (isinstance(item, list) and len(item) == 7):
            continue
        file, line, func, frame, name, value, inplace = item
        if not (type(file) is str and type(line) is int and type(func) is str and type(frame) is int
                and type(name) is str and type(value) is np.ndarray):
            continue
        out.append(Rec(len(out), file, line, func, frame, name, value.astype(np.float64), bool(inplace)))
    return out


# How conformance/grade/intake/notebooks.py marks code it extracted from a notebook (first line, and one
# marker before each kept statement), so a cited line is shown as the notebook's cell and line.
NOTEBOOK_HEADER = "# Extracted from a notebook by conformance.grade"
NOTEBOOK_MARKER = re.compile(r"^# notebook cell (\d+), line (\d+)$")


@dataclass
class Location:
    """Where a function's wrong value comes from (``line`` 0: no line could be named)."""

    function: str
    file: str = ""
    line: int = 0
    text: str = ""
    detail: str = ""  # what the line gives and what the section's quantity is (or why no line)
    layer: str = ""  # "layer 2 of 3", "output layer", ""
    cell: tuple[int, int] | None = None  # (cell, line in the cell) for code from a notebook

    def as_dict(self) -> dict[str, Any]:
        where = (f"notebook cell {self.cell[0]}, line {self.cell[1]}" if self.cell and self.line
                 else f"{self.file}:{self.line}" if self.line else "")
        return {"function": self.function, "file": self.file, "line": self.line, "text": self.text,
                "layer": self.layer, "detail": self.detail, "where": where,
                **({"cell": self.cell[0], "cell_line": self.cell[1]} if self.cell else {})}


def _items(a: np.ndarray) -> str:
    flat = np.asarray(a, np.float64).ravel()
    items = ", ".join(f"{x:.4g}" for x in flat[:SHOWN])
    return items if flat.size == 1 and np.ndim(a) == 0 else f"[{items}{', ...' if flat.size > SHOWN else ''}]"


def _short(a: np.ndarray) -> str:
    return _items(a) if np.ndim(a) == 0 else f"{_items(a)} (shape {tuple(np.shape(a))})"


def _layer_text(q: Quantity, n_layers: int) -> str:
    if q.layer == 0:
        return ""
    if q.layer == n_layers:
        return f"layer {q.layer} of {n_layers}, the output layer"
    return f"layer {q.layer} of {n_layers}"


def _pair(got: np.ndarray, want: np.ndarray) -> tuple[str, str]:
    """Both values, a few entries each: where both have the same shape, the row where they
    differ most (the first rows are often equal: a dead unit, a zero mask)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape == want.shape and got.ndim == 2:
        with np.errstate(all="ignore"):
            row = int(np.nan_to_num(np.abs(got - want), nan=np.inf).max(axis=1).argmax())
        if row:
            return (f"row {row} of {got.shape[0]}: {_items(got[row])}", f"row {row}: {_items(want[row])}")
    return _short(got), _short(want)


class Source:
    """The candidate's files as the grader has them: statements by line, their text and the
    names they read. Only files under ``root`` (the candidate's folder) are read."""

    def __init__(self, root: Path, mapping: tuple[str, Path] | None = None):
        self.root = root.resolve()
        self.mapping = mapping  # isolated: (the worker's copy folder, the folder it came from)
        self._trees: dict[str, ast.Module | None] = {}
        self._lines: dict[str, list[str]] = {}

    def path(self, recorded: str) -> Path | None:
        """The grader's copy of a recorded file, or None when it is not the candidate's own."""
        p = Path(recorded)
        if self.mapping is not None:
            try:
                p = Path(self.mapping[1]) / p.relative_to(self.mapping[0])
            except ValueError:
                return None
        try:
            p = p.resolve()
            p.relative_to(self.root)
        except (OSError, ValueError):
            return None
        if p.is_relative_to(SUITE_DIR) or "site-packages" in p.parts or not p.is_file():
            return None
        return p

    def _load(self, p: Path) -> None:
        key = str(p)
        if key not in self._lines:
            try:
                text = p.read_text(encoding="utf-8", errors="replace")
                self._lines[key] = text.splitlines()
                self._trees[key] = ast.parse(text)
            except (OSError, SyntaxError, ValueError):
                self._lines.setdefault(key, [])
                self._trees[key] = None

    def statement(self, p: Path, line: int) -> ast.stmt | None:
        """The statement that starts latest at or before ``line`` and spans it: a simple
        statement, or a compound one's header (``for ... in ...:``)."""
        self._load(p)
        tree = self._trees.get(str(p))
        best = None
        for node in ast.walk(tree) if tree is not None else ():
            if isinstance(node, ast.stmt) and node.lineno <= line <= (node.end_lineno or node.lineno):
                if best is None or node.lineno > best.lineno or (
                        node.lineno == best.lineno and (node.end_lineno or 0) < (best.end_lineno or 0)):
                    best = node
        return best

    def notebook_cell(self, p: Path, line: int) -> tuple[int, int] | None:
        """(cell, line in the cell) of ``line`` in code the grader extracted from a notebook
        (conformance/grade/intake/notebooks.py marks each kept statement with ``# notebook cell N, line M``);
        None for an ordinary file."""
        self._load(p)
        lines = self._lines.get(str(p), [])
        if not lines or not lines[0].startswith(NOTEBOOK_HEADER):
            return None
        for k in range(min(line, len(lines)) - 1, 0, -1):
            marker = NOTEBOOK_MARKER.match(lines[k - 1].strip())
            if marker:
                return int(marker.group(1)), int(marker.group(2)) + (line - k - 1)
        return None

    def text(self, p: Path, line: int) -> str:
        self._load(p)
        lines = self._lines.get(str(p), [])
        if not 1 <= line <= len(lines):
            return ""
        node = self.statement(p, line)
        first = lines[line - 1].strip()
        if node is not None and node.lineno == line:
            segment = ast.get_source_segment("\n".join(lines) + "\n", node) or first
            first = segment.splitlines()[0].strip() if segment.strip() else first
            compound = isinstance(node, (ast.For, ast.AsyncFor, ast.While, ast.If, ast.With, ast.Try,
                                         ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            if (node.end_lineno or line) > line and not compound:
                first += " ..."  # a statement continued on the next lines
        return clean_text(first[:200])

    def reads(self, p: Path, line: int) -> set[str]:
        """The names (and ``self.x`` attributes) the statement at ``line`` reads."""
        node = self.statement(p, line)
        names: set[str] = set()
        if node is None:
            return names
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Return)):
            targets: ast.AST | None = node.value
        elif isinstance(node, (ast.For, ast.AsyncFor)):
            targets = node.iter  # a loop header reads its iterable only
        elif isinstance(node, (ast.While, ast.If)):
            targets = node.test
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Try, ast.With)):
            targets = None
        else:
            targets = node
        for sub in ast.walk(targets) if targets is not None else ():
            if isinstance(sub, ast.Name):
                names.add(sub.id)
            elif isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name):
                names.add(f"{sub.value.id}.{sub.attr}")
        if isinstance(node, ast.AugAssign):  # x += y reads x too
            for sub in ast.walk(node.target):
                if isinstance(sub, ast.Name):
                    names.add(sub.id)
                elif isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name):
                    names.add(f"{sub.value.id}.{sub.attr}")
        return names


# ------------------------------------------------------------------------------ locating
@dataclass
class Problem:
    """One function on one small case: its inputs, the exact quantities and the candidate's
    outputs (plain float64 arrays in the section's order)."""

    function: str
    case: Case
    args: tuple
    n_layers: int
    correct: list[Quantity]  # with the styles' intermediates
    outputs: list[Quantity]  # the section's outputs, in the order they are computed
    got: list[np.ndarray | None]  # the candidate's, aligned with ``outputs`` (None: missing)
    structure: str = ""  # a wrong structure: what it is
    reversed: bool = False  # backward's right gradients, returned last layer first
    returned: list[np.ndarray] = field(default_factory=list)  # backward's arrays, whatever their number


def _float_array(x: Any) -> np.ndarray | None:
    if type(x) is np.ndarray and x.dtype.kind in "biuf":
        return x.astype(np.float64)
    if isinstance(x, (int, float, np.floating, np.integer)) and not isinstance(x, bool):
        return np.array(float(x))
    return None


def problem_for(function: str, case: Case, result: Any) -> Problem:
    """What the candidate returned for ``function`` on ``case``, against the section."""
    X, Y, params = case.X, case.Y, case.params
    L = len(params)
    acts, pres = exact_forward(X, params)
    if function == "forward":
        correct = forward_quantities(X, params)
        outputs = []
        got_list: list[np.ndarray | None] = []
        structure = ""
        ok = isinstance(result, (tuple, list)) and len(result) == 2 and all(
            isinstance(r, (tuple, list)) for r in result)
        if not ok or len(result[0]) != L + 1 or len(result[1]) != L:
            structure = (f"returns {len(result[0])} activations and {len(result[1])} pre-activations; "
                         f"the section's forward returns {L + 1} ([X, A1, ..., softmax]) and {L}"
                         if ok else "does not return the pair (activations, pre_activations)")
        for l in range(1, L + 1):
            outputs.append([q for q in correct if q.key == ("Z", l)][0])
            outputs.append([q for q in correct if q.key == ("A" if l < L else "softmax", l)][0])
            if ok and not structure:
                got_list += [_float_array(result[1][l - 1]), _float_array(result[0][l])]
        return Problem(function, case, (X, params), L, correct, outputs, got_list, structure)
    if function == "backward":
        correct = backward_quantities(acts, pres, Y, params)
        outputs, got_list, structure = [], [], ""
        ok = isinstance(result, (tuple, list)) and all(
            isinstance(p, (tuple, list)) and len(p) == 2 for p in result)
        if not ok or len(result) != L:
            structure = (f"returns {len(result)} gradient pairs; the section's backward returns {L} "
                         "(dW, db) pairs, first layer first" if ok else
                         "does not return a list of (dW, db) pairs")
        for l in range(L, 0, -1):
            outputs += [[q for q in correct if q.key == ("dW", l) and q.section][0],
                        [q for q in correct if q.key == ("db", l) and q.section][0]]
            if ok and not structure:
                got_list += [_float_array(result[l - 1][0]), _float_array(result[l - 1][1])]
        flipped = ok and not structure and L > 1 and all(
            _float_array(result[L - l][k]) is not None
            # (the same value again: not None, _float_array's None depends only on its type)
            and _same(cast(np.ndarray, _float_array(result[L - l][k])), outputs[2 * (L - l) + k].value)
            for l in range(1, L + 1) for k in (0, 1))
        returned = [a for pair in result for a in map(_float_array, pair) if a is not None] if ok else []
        return Problem(function, case, (acts, pres, Y, params), L, correct, outputs, got_list, structure,
                       bool(flipped), returned)
    P = acts[-1]
    correct = loss_quantities(P, Y)
    value = _float_array(result)
    if value is not None and value.size == 1:
        value = value.reshape(())
    return Problem(function, case, (P, Y), L, correct, [correct[-1]], [value])


def wrong_outputs(problem: Problem) -> list[int]:
    """Indices of the outputs the candidate got wrong (all when the structure is wrong)."""
    if problem.structure:
        return list(range(len(problem.outputs)))
    return [k for k, (q, g) in enumerate(zip(problem.outputs, problem.got))
            if g is None or not _same(g, q.value)]


def _trusted(value: np.ndarray, quantities: Sequence[Quantity], scalars: bool = True) -> bool:
    if value.ndim == 0 and scalars:
        return True  # counters, sizes, learning rates: not quantities (a wrong B: see _scalar_cause)
    return any(matches(value, q.value) for q in quantities)


_SAME_ROLE = {"softmax": "A"}  # the last layer's A is the softmax


def _role(name: str) -> str:
    base = name.split(" undivided")[0].split(" at 0")[0]
    return _SAME_ROLE.get(base, base)


def _right(rec: Rec, recs: list[Rec], quantities: Sequence[Quantity]) -> bool:
    """``rec`` holds a right value for what its variable stands for. A variable that first held
    one of the section's quantities (``delta`` held the output delta) keeps standing for that
    quantity in later iterations: ``delta = delta @ W.T`` without the mask gives a legitimate
    intermediate, but not a delta."""
    if rec.value.ndim == 0:
        return True
    fits = [q for q in quantities if matches(rec.value, q.value)]
    if not fits:
        return False
    if rec.name.startswith("<"):
        return True
    first = next((r for r in recs[:rec.index] if r.frame == rec.frame and r.name == rec.name), None)
    if first is None:
        return True
    meant = {_role(q.name) for q in quantities if q.section and q.layer and matches(first.value, q.value)
             and q.name not in ("W", "b", "activations", "pre_activations")}
    return not meant or any(_role(q.name) in meant for q in fits)


def _bug_quantities(problem: Problem) -> list[tuple[str, str, list[Quantity]]]:
    """Each catalogued mistake of this function: (key, description, its quantities)."""
    from conformance.diagnosis import FORWARD_BUGS, KNOWN_BUGS

    X, Y, params = problem.case.X, problem.case.Y, problem.case.params
    out = []
    if problem.function == "forward":
        for key, description, bugs in FORWARD_BUGS:
            try:
                out.append((key, f"your forward {description}", forward_quantities(X, params, bugs, styles=False)))
            except (ValueError, IndexError):  # a mistake that would crash on this case
                continue
        return out
    if problem.function == "backward":
        acts, pres, Y, params = problem.args
        for bug in KNOWN_BUGS:
            try:
                out.append((bug.key, f"your gradients equal those of an implementation that {bug.description}",
                            backward_quantities(acts, pres, Y, params, bug.bugs, styles=False)))
            except (ValueError, IndexError):  # a mistake that would crash on this case
                continue
        return out
    P, Y = problem.args
    per = -(Y * np.log(P + 1e-12)).sum(axis=1)
    return [("loss_sum", "your cross_entropy sums over the batch instead of averaging",
             [_q("loss", "", 0, per.sum())]),
            ("loss_sign", "your cross_entropy has the wrong sign",
             [_q("loss", "", 0, -per.mean())]),
            ("loss_mean_over_classes", "your cross_entropy averages over the classes too",
             [_q("loss", "", 0, per.mean() / Y.shape[1])])]


def _fits(problem: Problem, quantities: list[Quantity]) -> bool:
    """The mistake's outputs equal the candidate's (where the correct ones do not)."""
    by_key = {q.key: q for q in quantities}
    if problem.structure:
        return False
    for q, g in zip(problem.outputs, problem.got):
        b = by_key.get(q.key)
        if b is None or g is None or not _same(g, b.value):
            return False
    return True


def _describe(rec: Rec, source: Source, path: Path, problem: Problem, layer: str, detail: str) -> Location:
    return Location(problem.function, path.name if path.parent == source.root else
                    str(path.relative_to(source.root)), rec.line, source.text(path, rec.line), detail, layer,
                    source.notebook_cell(path, rec.line))


def _by_named_mistake(problem: Problem, recs: list[Rec], source: Source, key: str | None) -> Location | None:
    """Way 1: a catalogued mistake reproduces the outputs: cite the first line whose value is
    the mistake's version of a quantity (where it differs from the section's)."""
    section = [q for q in problem.correct if q.section]
    by_key = {q.key: q for q in section}
    fitting = [(k, text, qs) for k, text, qs in _bug_quantities(problem)
               if (key is None or k == key) and _fits(problem, qs)]
    if len(fitting) != 1:
        return None
    # (which mistake fits only chooses the line: the text says what the line gives, never the
    # mistake's name, which the suite's own diagnosis names or, on its evidence, declines to)
    quantities = fitting[0][2]
    departing = [(b, by_key[b.key]) for b in quantities
                 if b.key in by_key and not matches(b.value, by_key[b.key].value)]
    for rec in recs:
        if rec.value.size == 0 or rec.name.startswith("<arg>") or _plain_activation(rec, recs):
            continue
        for b, c in departing:
            # (in the forward, relu(Z) is both A and what an in-place ReLU leaves in Z: a right A is
            # not the mistake's Z; the in-place change below is)
            if matches(rec.value, b.value) and not (problem.function == "forward"
                                                    and _trusted(rec.value, section, scalars=False)):
                path = source.path(rec.file)
                if path is None:
                    continue
                mine, section_value = _pair(rec.value, c.value)
                detail = f"this line gives {mine}; the section's {c.name}, {c.formula}, is {section_value}"
                return _describe(rec, source, path, problem, _layer_text(c, problem.n_layers), detail)
        if rec.inplace and problem.function == "forward":
            # an in-place change of an array the forward returns (Z overwritten by relu or a shift)
            for b, c in departing:
                if c.name == "Z" and matches(rec.value, b.value):
                    path = source.path(rec.file)
                    if path is not None:
                        detail = (f"this line changes in place an array the forward returns: it now holds "
                                  f"{_short(rec.value)}; the section's {c.name}, {c.formula}, is "
                                  f"{_short(c.value)}")
                        return _describe(rec, source, path, problem, _layer_text(c, problem.n_layers), detail)
    return None


def _plain_activation(rec: Rec, recs: list[Rec]) -> bool:
    """``rec`` is a helper's return value that is relu, softmax or relu' of one of its own
    arguments: the helper is right, the line to look at is where it is called."""
    if rec.name != "<return>" or rec.frame == 1:
        return False
    for arg in recs[max(0, rec.index - 16):rec.index]:
        if arg.frame == rec.frame and arg.name.startswith("<arg>") and arg.value.ndim >= 1:
            a = arg.value
            with np.errstate(all="ignore"):
                if any(_same(rec.value, f) for f in (np.maximum(a, 0.0), exact_softmax(a), (a > 0) * 1.0)):
                    return True
    return False


def _return_line(problem: Problem, recs: list[Rec], source: Source, detail: str) -> Location | None:
    returns = [r for r in recs if r.frame == 1 and r.name == "<return>"]
    path = source.path(returns[-1].file) if returns else None
    if path is None:
        return None
    return _describe(returns[-1], source, path, problem, "", detail)


def _latest(recs: list[Rec], before: int, frame: int, name: str) -> Rec | None:
    for rec in reversed(recs[:before]):
        if rec.frame == frame and rec.name == name:
            return rec
    return None


def _by_dataflow(problem: Problem, recs: list[Rec], source: Source) -> Location | None:
    """Way 2: from the first wrong output back through the values its line reads that are none
    of the algorithm's quantities, to a line that reads only right values."""
    wrong = wrong_outputs(problem)
    if problem.structure:
        return (_short_loop(problem, recs, source)
                or _return_line(problem, recs, source, f"your {problem.function} {problem.structure}"))
    if not wrong:
        return None
    target_q, got = problem.outputs[wrong[0]], problem.got[wrong[0]]
    if got is None:
        return None
    # A returned array that is another of the section's quantities was computed right and put in
    # the wrong place (dW returned as db): no line assigns a wrong value.
    misplaced = next((q for q in problem.correct if q.key != target_q.key and q.section and q.layer
                      and q.name not in ("W", "b", "activations", "pre_activations") and _same(got, q.value)), None)
    if misplaced is not None:
        return _assembly(problem, recs, source, target_q, got, misplaced)
    producer = next((r for r in recs if r.value.shape == got.shape and not r.name.startswith("<arg>")
                     and not _plain_activation(r, recs) and _same(r.value, got)
                     and source.path(r.file) is not None), None)
    if producer is None:
        return _assembly(problem, recs, source, target_q, got, None)
    seen = {producer.index}
    current = producer
    for _ in range(50):
        path = source.path(current.file)
        if path is None:
            return None
        upstream = []
        for name in sorted(source.reads(path, current.line)):
            earlier = _latest(recs, current.index, current.frame, name)
            if earlier is None and current.name == "<return>":  # a helper's argument: who made it
                arg = _latest(recs, current.index, current.frame, "<arg>" + name)
                if arg is not None and not _right(arg, recs, problem.correct):
                    first = next(r.index for r in recs if r.frame == current.frame)
                    earlier = next((r for r in reversed(recs[:first]) if not r.name.startswith("<")
                                    and r.value.shape == arg.value.shape and _same(r.value, arg.value)), None)
            if earlier is not None and not _right(earlier, recs, problem.correct) and earlier.index not in seen:
                upstream.append(earlier)
        # a helper called on this line (not a plain relu/softmax): the line in it that made its value
        for rec in reversed(recs[:current.index]):
            if rec.frame == current.frame and rec.line != current.line:
                break
            if rec.frame == current.frame and rec.name == "<call>" and rec.index > 0 \
                    and not _right(rec, recs, problem.correct):
                helper = recs[rec.index - 1]
                if helper.name == "<return>" and not _plain_activation(helper, recs) and helper.index not in seen:
                    upstream.append(helper)
        if not upstream:
            break
        current = max(upstream, key=lambda r: r.index)
        seen.add(current.index)
    else:
        return None
    path = source.path(current.file)
    if path is None:
        return None
    scalar = _scalar_cause(problem, recs, source, current, path)
    if scalar is not None:
        return scalar
    # a value that an earlier line made by changing an array in place (W -= lr * dW on params)
    origin = next((r for r in recs[:current.index] if r.inplace and r.name != current.name
                   and r.value.shape == current.value.shape and _same(r.value, current.value)), None)
    if origin is not None and source.path(origin.file) is not None:
        origin_path = source.path(origin.file)
        assert origin_path is not None
        return _describe(origin, source, origin_path, problem, "",
                         f"this line changes an array in place, to {_short(origin.value)}; your "
                         f"{problem.function} later reads it as `{current.name}` (line {current.line}), "
                         f"and your {target_q.name} ({target_q.formula}) of "
                         f"{_layer_text(target_q, problem.n_layers) or 'the loss'} is wrong")
    layer = _layer_text(target_q, problem.n_layers) if current is producer else ""
    if current is producer:
        mine, section_value = _pair(current.value, target_q.value)
        detail = (f"this line gives {mine}; the section's {target_q.name}, "
                  f"{target_q.formula}, is {section_value} (every value this line reads is right)")
    else:
        detail = (f"this line gives {_short(current.value)}, which is none of the section's quantities "
                  f"(every value it reads is right); it leads to your {target_q.name} ({target_q.formula}) "
                  f"of {_layer_text(target_q, problem.n_layers) or 'the loss'}, which is wrong")
    return _describe(current, source, path, problem, layer, detail)


def _function_node(source: Source, path: Path, line: int) -> ast.AST | None:
    source._load(path)
    tree = source._trees.get(str(path))
    found = None
    for node in ast.walk(tree) if tree is not None else ():
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and \
                node.lineno <= line <= (node.end_lineno or node.lineno):
            if found is None or node.lineno > found.lineno:
                found = node
    return found


def _assembly(problem: Problem, recs: list[Rec], source: Source, target_q: Quantity, got: np.ndarray,
              misplaced: Quantity | None) -> Location | None:
    """A returned array no line assigned: the right array of another quantity (dW returned as
    db), or a multiple of a recorded array (0.5 * db). The line that builds the returned value
    from it is the next statement of the same function that reads it."""
    base, factor = None, 1.0
    for rec in recs:
        if rec.name.startswith("<") or rec.value.shape != got.shape or rec.value.ndim == 0:
            continue
        if misplaced is not None and _same(rec.value, got):
            base = rec
            break
        norm = float((rec.value * rec.value).sum())
        if misplaced is None and norm > 0:
            k = float((got * rec.value).sum()) / norm
            if k not in (0.0, 1.0) and np.isfinite(k) and _same(got, k * rec.value) \
                    and not _same(got, rec.value):
                base, factor = rec, k
                break
    if base is None:
        return None
    path = source.path(base.file)
    function = _function_node(source, path, base.line) if path is not None else None
    if path is None or function is None:
        return None
    later = sorted((node for node in ast.walk(function) if isinstance(node, (ast.Expr, ast.Assign, ast.Return,
                                                                           ast.AugAssign))
                    and node.lineno > base.line), key=lambda n: n.lineno)
    for node in later:
        if base.name in source.reads(path, node.lineno) and not any(
                r.line == node.lineno and r.frame == base.frame and not r.name.startswith("<") for r in recs):
            where = Rec(-1, base.file, node.lineno, base.func, base.frame, base.name, got)
            layer = _layer_text(target_q, problem.n_layers)
            if misplaced is not None:
                detail = (f"this line returns `{base.name}` (line {base.line}), which is the section's "
                          f"{misplaced.name} ({misplaced.formula}), where the {target_q.name} of "
                          f"{layer or 'the loss'} belongs ({target_q.formula})")
            else:
                detail = (f"this line returns {factor:.4g} times `{base.name}` (line {base.line}) as the "
                          f"{target_q.name} of {layer or 'the loss'}: {_short(got)}; the section's "
                          f"{target_q.name}, {target_q.formula}, is {_short(target_q.value)}")
            return _describe(where, source, path, problem, layer, detail)
    return None


def _short_loop(problem: Problem, recs: list[Rec], source: Source) -> Location | None:
    """backward returns right (dW, db) for fewer layers than the network has: the loop over
    the layers is short."""
    if problem.function != "backward" or not problem.returned or len(problem.returned) % 2:
        return None
    k = len(problem.returned) // 2
    L = problem.n_layers
    if not 0 < k < L:
        return None
    tail = [q for q in problem.outputs][: 2 * k]  # the last k layers, output layer first
    want = sorted(tail, key=lambda q: (q.layer, q.name != "dW"))
    if not all(_same(g, q.value) for g, q in zip(problem.returned, want)):
        return None
    rec = next((r for r in recs if not r.name.startswith("<") and _same(r.value, want[0].value)
                if r.value.shape == want[0].value.shape), None)
    path = source.path(rec.file) if rec is not None else None
    function = _function_node(source, path, rec.line) if path is not None and rec is not None else None
    if function is None or rec is None or path is None:
        return None
    loops = [n for n in ast.walk(function) if isinstance(n, (ast.For, ast.While))
             and n.lineno <= rec.line <= (n.end_lineno or n.lineno)]
    if not loops:
        return None
    loop = max(loops, key=lambda n: n.lineno)
    where = Rec(-1, rec.file, loop.lineno, rec.func, rec.frame, "", rec.value)
    return _describe(where, source, path, problem, "",
                     f"this loop computes (dW, db) for {k} of the {L} layers (right for those); the "
                     f"section's loop runs over every layer, for i in reversed(range(len(params)))")


def _scalar_cause(problem: Problem, recs: list[Rec], source: Source, rec: Rec, path: Path) -> Location | None:
    """The cited line reads a number assigned by an earlier line, and its value would be right
    with the batch size in that number's place: cite that number's line instead."""
    B = problem.case.batch
    for name in sorted(source.reads(path, rec.line)):
        earlier = _latest(recs, rec.index, rec.frame, name)
        if earlier is None or earlier.value.ndim != 0:
            continue
        s = float(earlier.value)
        if s in (0.0, float(B)) or not np.isfinite(s):
            continue
        for factor, how in ((s / B, "divides by"), (B / s, "multiplies by")):
            fixed = rec.value * factor
            hit = next((q for q in problem.correct if q.section and matches(fixed, q.value)), None)
            if hit is not None:
                where = source.path(earlier.file)
                if where is None:
                    return None
                detail = (f"`{name}` is {s:g} here, and the line {rec.line} that {how} it gives "
                          f"{_short(rec.value)}; with the batch size {B} in its place it gives the "
                          f"section's {hit.name} ({hit.formula}); B is the batch size, Y.shape[0] = {B}")
                return _describe(earlier, source, where, problem, "", detail)
    return None


def locate(problem: Problem, raw_trace: Any, source: Source, key: str | None = None) -> Location:
    """The line to change for ``problem``, from the tracer's record (see the module text)."""
    recs = parse_records(raw_trace)
    if not recs:
        return Location(problem.function, detail="no line of your files was recorded while it ran "
                        "(nothing to compare): look in your " + problem.function)
    found = None
    if problem.reversed:
        found = _return_line(problem, recs, source, "your backward returns the right gradients last layer "
                             "first; the section returns [(dW1, db1), ..., (dWL, dbL)] in forward order")
    if found is None and not problem.structure:
        found = _by_named_mistake(problem, recs, source, key)
        if found is None and key is not None:
            found = _by_named_mistake(problem, recs, source, None)
    if found is None:
        found = _by_dataflow(problem, recs, source)
    if found is not None:
        return found
    incomplete = "" if isinstance(raw_trace, dict) and raw_trace.get("complete") else \
        " (the trace reached its bounds)"
    return Location(problem.function, detail=f"no line of your {problem.function} can be named with "
                    f"certainty{incomplete}: the wrong value is assembled from right ones, or computed "
                    f"outside your files; look in your {problem.function}")


# ----------------------------------------------------------------------- the candidate
def _args(function: str, case: Case) -> tuple:
    if function == "forward":
        return (case.X, case.params)
    acts, pres = exact_forward(case.X, case.params)
    if function == "backward":
        return (acts, pres, case.Y, case.params)
    return (acts[-1], case.Y)


def _run(candidate: Any, function: str, args: tuple, root: Path) -> tuple[Any, Any]:
    """(the function's value, the trace of the same call). Isolated: an ordinary call (its
    value validated at the boundary) and a traced one in the worker, each under the worker's
    limits. In-process: one traced call, ended at the trace's bounds (nothing else limits it)."""
    from conformance.candidate import CandidateError, private_copy

    if getattr(candidate, "isolated", False):
        return candidate.call(function, *args), None  # traced only once the values are wrong
    fn = getattr(candidate, "functions", {}).get(function)
    if fn is None:
        raise CandidateError(function, "not defined")
    raw = tracer.traced_call(fn, private_copy(args), {}, [root], exclude=[SUITE_DIR], stop_call=True,
                             keep_result=True)
    if raw["raised"]:
        raise CandidateError(function, f"raised {raw['raised']}")
    result = raw.pop("result")
    return result, raw


def locate_function(candidate: Any, function: str, key: str | None = None) -> Location | None:
    """The line to change in ``function`` (None: it gives right values on the small cases, or
    crashes there: nothing to localise). Never raises."""
    try:
        return _locate_function(candidate, function, key)
    except Exception:  # noqa: BLE001 - text only: a failure here must never touch the run
        return None


def _locate_function(candidate: Any, function: str, key: str | None) -> Location | None:
    from conformance.candidate import CandidateError

    declared = getattr(candidate, "declaration", None)
    if declared is not None and not declared.is_section:
        # A declared interface's lines hold values in its own conventions (transposed, logits,
        # one sample): compared with the section's they would cite right lines. Not localised.
        return None
    path = getattr(candidate, "path", None)
    if function not in LOCATED_FUNCTIONS or path is None or getattr(candidate, "load_error", None):
        return None
    if not candidate.has(function):
        return None
    root = Path(path).resolve().parent
    source = Source(root, getattr(candidate, "trace_root", lambda: None)())
    for sizes, batch in CASES:
        case = make_case(sizes, batch, CASE_SEED)
        args = _args(function, case)
        try:
            with np.errstate(all="ignore"):
                result, raw = _run(candidate, function, args, root)
        except (CandidateError, Exception):  # noqa: BLE001 - a crash: its traceback says where
            continue
        problem = problem_for(function, case, result)
        if not wrong_outputs(problem):
            continue
        if raw is None and getattr(candidate, "call_traced", None) is not None:
            try:
                raw = candidate.call_traced(function, *args)
            except (CandidateError, Exception):  # noqa: BLE001 - no record: no line is named
                raw = None
        location = locate(problem, raw, source, key)
        location.detail += f" (on {case.recipe})"
        return location
    return None


# ---------------------------------------------------------------------- summary hook
_CACHE_ATTRIBUTE = "_localise_cache"  # on the suite's candidate object: one run's locations
_GENERIC = {"backward_wrong": "backward", "forward_wrong": "forward", "loss_wrong": "cross_entropy",
            "backward_structure": "backward", "forward_structure": "forward"}


def location_of(candidate: Any, key: str) -> dict[str, Any] | None:
    """The location for a root cause's key (memoised per candidate: the summary is built
    twice, for the terminal and for the JSON report, and the second time an isolated
    candidate's worker is already closed)."""
    from conformance.diagnosis import function_of

    if candidate is None:
        return None
    function = _GENERIC.get(key) or function_of(key)
    if function not in LOCATED_FUNCTIONS:
        return None
    cache = candidate.__dict__.setdefault(_CACHE_ATTRIBUTE, {})
    memo = (function, key)
    if memo not in cache:
        cache[memo] = locate_function(candidate, function, None if key in _GENERIC else key)
    found = cache[memo]
    return found.as_dict() if found is not None else None


def attach(data: dict[str, Any], candidate: Any, keys_by_test: dict[str, list[str]]) -> None:
    """Give each root cause, and each failure without a named cause whose check found wrong
    values, its ``location`` (file:line, the line's text, the values). Never raises."""
    try:
        for cause in data.get("root_causes", []):
            found = location_of(candidate, str(cause.get("bug", "")))
            if found is not None:
                cause["location"] = found
        shown = {(c["location"]["where"], c["location"]["detail"]) for c in data.get("root_causes", [])
                 if "location" in c}
        for entry in data.get("unexplained", []):
            for key in keys_by_test.get(str(entry.get("test")), []):
                if key in _GENERIC:
                    found = location_of(candidate, key)
                    if found is not None and (found["where"], found["detail"]) not in shown:
                        entry["location"] = found  # (shown once: not again under another entry)
                        shown.add((found["where"], found["detail"]))
                        break
    except Exception:  # noqa: BLE001 - text only
        return


def location_lines(location: dict[str, Any] | None, indent: str = "      ") -> list[str]:
    """How the summary shows a location: the line, then what it gives against the section."""
    if not location:
        return []
    if location.get("line"):
        layer = f"   ({location['function']}, {location['layer']})" if location.get("layer") else \
            f"   (in your {location['function']})"
        return [f"{indent}at {location['where']}  {location['text']}{layer}",
                f"{indent}  {location['detail']}"]
    return [f"{indent}{location['detail']}"]

