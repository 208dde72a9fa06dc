"""Signature check at load: can forward and backward be called the way the suite calls them?

The suite calls ``forward(X, params)`` and ``backward(activations, pre_activations, Y, params)``
with positional arguments. A required function that cannot take those calls fails every check
that uses it with the same TypeError; one message saying so, with the required signature and
the conformance/ADAPTERS.md recipe that fits, replaces them, like a required
function that is missing altogether.

Read from the source, never by running it (identical in-process and isolated), and only where
the answer is certain: a plain module-level ``def`` that nothing else in the module rebinds,
with no decorator. ``*args``, defaults and keyword-only parameters with defaults accept the
call; a callable class, ``functools.partial``, an import, an assignment or a decorator is
never judged (they may well accept it).
"""

from __future__ import annotations

import ast
from pathlib import Path

CONTRACT = {"forward": ("X", "params"), "backward": ("activations", "pre_activations", "Y", "params")}
RETURNS = {"forward": "(activations, pre_activations)",
           "backward": "[(dW1, db1), ..., (dWL, dbL)] in forward order"}
_X_NAMES = {"x", "x_batch", "xb", "inputs", "input", "data", "features", "x_train"}
_LR_NAMES = {"lr", "learning_rate", "eta", "alpha", "step_size"}


def _bindings(tree: ast.Module, name: str) -> list[ast.AST]:
    """Every statement or expression anywhere in the module that binds ``name`` at module level
    (or may: ``global name`` in a function)."""
    found: list[ast.AST] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            found.append(node)
        elif isinstance(node, ast.Name) and node.id == name and isinstance(node.ctx, (ast.Store, ast.Del)):
            found.append(node)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            if any((alias.asname or alias.name.split(".")[0]) == name or alias.name == "*" for alias in node.names):
                found.append(node)
        elif isinstance(node, (ast.Global, ast.Nonlocal)) and name in node.names:
            found.append(node)
    return found


def _accepts(args: ast.arguments, n: int) -> bool:
    positional = len(args.posonlyargs) + len(args.args)
    required = positional - len(args.defaults)
    kw_required = sum(default is None for default in args.kw_defaults)
    return (n <= positional or args.vararg is not None) and n >= required and kw_required == 0


def _shown(node: ast.FunctionDef) -> str:
    try:
        return f"{node.name}({ast.unparse(node.args)})"
    except Exception:  # noqa: BLE001 - an unparsable default: the names suffice
        return f"{node.name}({', '.join(a.arg for a in node.args.args)})"


_Y_NAMES = {"y", "y_batch", "yb", "targets", "target", "labels", "t", "y_true", "y_train"}
_PARAMS_NAMES = {"params", "parameters", "weights", "theta", "layers"}


def _adapted(names: list[str]) -> str:
    """The adapter's call of the student's function: each of its parameters from the suite's
    arguments where its name says which (X is activations[0]), ``...`` where it does not."""
    out = []
    for name in names:
        low = name.lower()
        out.append("activations[0]" if low in _X_NAMES else "Y" if low in _Y_NAMES
                   else "params" if low in _PARAMS_NAMES else "...")
    return ", ".join(out)


def _recipe(function: str, node: ast.FunctionDef) -> str:
    names = [a.arg for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs]
    lowered = {n.lower() for n in names}
    if names and names[0] == "self":
        return ("it looks like a method: build your model from the suite's params in a module-level "
                f"{function} as in conformance/ADAPTERS.md, recipe 4 (a class-based model)")
    if function == "backward" and lowered & _LR_NAMES:
        return ("it takes a learning rate: if it applies the update instead of returning the gradients, "
                "read them back as in conformance/ADAPTERS.md, recipe 6 (the update fused into backward)")
    if function == "backward" and lowered & _X_NAMES and not {"activations", "acts", "cache"} & lowered:
        return ("it takes X and recomputes the forward pass: keep it and add below it, as in "
                "conformance/ADAPTERS.md, recipe 5:\n"
                "    def backward(activations, pre_activations, Y, params):\n"
                f"        return my_backward({_adapted(names)})   # your {node.name}, renamed")
    return ("keep your function under another name and add a module-level adapter with the "
            "contract's signature below it: conformance/ADAPTERS.md shows one for each usual convention")


def signature_problem(path: Path | None, functions: tuple[str, ...] = ("forward", "backward")) -> str | None:
    """The load error for a required function whose own ``def`` cannot accept the suite's call
    (None: every one can, or it cannot be told from the source)."""
    if path is None:
        return None
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8", errors="replace"))
    except (OSError, SyntaxError, ValueError):
        return None
    problems = []
    for function in functions:
        binds = _bindings(tree, function)
        defs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function]
        if len(binds) != 1 or len(defs) != 1 or binds[0] is not defs[0] or defs[0].decorator_list:
            continue
        node = defs[0]
        wanted = CONTRACT[function]
        if _accepts(node.args, len(wanted)):
            continue
        positional = len(node.args.posonlyargs) + len(node.args.args)
        kw_required = [a.arg for a, d in zip(node.args.kwonlyargs, node.args.kw_defaults) if d is None]
        why = (f"it requires the keyword-only argument(s) {', '.join(kw_required)}" if kw_required and
               positional >= len(wanted) else f"it takes {positional} positional parameter(s)")
        problems.append((f"your {_shown(node)} (line {node.lineno}) cannot be called as the suite calls it, "
                         f"{function}({', '.join(wanted)}); required: def {function}({', '.join(wanted)}) "
                         f"-> {RETURNS[function]}",
                         f"  the suite passes {len(wanted)} positional arguments and {why}, so every check "
                         f"that calls {function} would fail with the same TypeError\n  {_recipe(function, node)}"))
    if not problems:
        return None
    return (f"{Path(path).name}: " + "; ".join(first for first, _ in problems) + "\n"
            + "\n".join(rest for _, rest in problems)
            + f"\n  or, with no glue: declare your conventions ('backprop-conformance adapt {Path(path).stem}' "
            "proposes them; conformance/ADAPTERS.md)")
