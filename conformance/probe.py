"""``backprop-conformance adapt``: propose the declaration that fits a module, by shapes only.

Run as a script in a subprocess (``python -I probe.py MODULE_FILE OUT_JSON``): it imports the
candidate (untrusted: never in the caller's process), calls its functions on a tiny random
network whose sizes are all different (3 inputs, 4 hidden, 2 classes, batch 5, so every axis
tells which it is) under each convention, and keeps the conventions under which the calls
succeed *and* every shape fits. It never compares values: no verdict. What the shapes cannot
tell apart (e.g. one-hot vs integer labels when both run) is reported as an open question.

Self-contained (numpy and the standard library): the caller (conformance/cli.py) reads the JSON
answer, checks it with conformance/declaration.py and prints TOML.
"""

import importlib.util
import inspect
import itertools
import json
import sys
from typing import Any, NamedTuple

import numpy as np

SIZES, BATCH = [3, 4, 2], 5
FORWARD_NAMES = ("forward", "feedforward", "feed_forward", "forward_pass", "forward_propagation",
                 "L_model_forward", "model_forward", "predict_proba", "predict", "_forward")
BACKWARD_NAMES = ("backward", "backprop", "back_prop", "backpropagation", "backward_pass",
                  "backward_propagation", "L_model_backward", "model_backward", "gradients", "grads",
                  "compute_gradients", "_backward")
WORDS = {  # a parameter's name -> the declaration's word
    "x": "X", "x_batch": "X", "xb": "X", "inputs": "X", "input": "X", "a0": "X", "data": "X",
    "params": "params", "parameters": "params", "theta": "params", "weights_and_biases": "params",
    "weights": "weights", "ws": "weights", "w": "weights", "biases": "biases", "bs": "biases", "b": "biases",
    "activations": "acts", "acts": "acts", "a": "acts", "as_": "acts",
    "pre_activations": "zs", "zs": "zs", "z": "zs", "preacts": "zs",
    "y": "Y", "labels": "Y", "targets": "Y", "y_true": "Y", "t": "Y", "y_batch": "Y",
    "cache": "cache", "caches": "cache",
    "al": "output", "output": "output", "y_hat": "output", "probs": "output", "out": "output",
    "lr": "lr", "learning_rate": "lr", "eta": "lr", "alpha": "lr", "step_size": "lr",
    "sizes": "sizes", "layer_sizes": "sizes", "layers": "sizes", "layer_dims": "sizes", "dims": "sizes",
    "architecture": "sizes", "shape": "sizes",
}
PROBE_LR = 0.5  # a backward that takes lr applies the step: run on copies, only to see what it returns


def _net(rng):
    Ws = [rng.standard_normal((a, b)) for a, b in zip(SIZES[:-1], SIZES[1:])]
    bs = [rng.standard_normal(b) * 0.1 for b in SIZES[1:]]
    X = rng.standard_normal((BATCH, SIZES[0]))
    Y = np.eye(SIZES[-1])[rng.integers(0, SIZES[-1], BATCH)]
    return X, Y, Ws, bs


def _params(Ws, bs, layout, bias, container, names=("W{l}", "b{l}"), first=1):
    Ws = [W.T.copy() if layout == "columns" else W.copy() for W in Ws]
    shape = {"flat": (-1,), "column": (-1, 1), "row": (1, -1)}[bias]
    bs = [b.reshape(shape).copy() for b in bs]
    if container == "pairs":
        return [(W, b) for W, b in zip(Ws, bs)]
    if container == "lists":
        return Ws, bs
    out = {}
    for i, (W, b) in enumerate(zip(Ws, bs)):
        out[names[0].format(l=i + first)], out[names[1].format(l=i + first)] = W, b
    return out


def _shape(x):
    return tuple(np.shape(x)) if isinstance(x, np.ndarray) else None


def _words(fn):
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return None
    out = []
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.default is not p.empty:
            break
        out.append(WORDS.get(p.name.lower().rstrip("_"), "?" + p.name))
    return out


def _act_shapes(layout):
    return [((BATCH, n) if layout == "rows" else (n, BATCH)) for n in SIZES]


def _read_forward(result, layout, per_sample=False):
    """(forward_returns, cache form or None) when the result's shapes fit ``layout``."""
    want = _act_shapes(layout)
    if per_sample:
        want = [((n,) if layout == "rows" else (n, 1)) for n in SIZES]

    def acts_like(seq, first=0):
        return (isinstance(seq, (list, tuple)) and len(seq) == len(want) - first
                and all(_shape(a) == w for a, w in zip(seq, want[first:])))

    if acts_like(result) and len(want) != 2:
        return ["acts"], None  # the activations alone: no pre-activations kept
    if isinstance(result, tuple) and len(result) == 2:
        a, b = result
        if acts_like(a) and acts_like(b, 1):
            return ["acts", "zs"], None
        if _shape(a) == want[-1] and isinstance(b, dict):
            keys = {str(k) for k in b}
            for A, Z in (("A{l}", "Z{l}"), ("a{l}", "z{l}"), ("A{l}", "z{l}")):
                if Z.format(l=1) in keys and all(_shape(b.get(Z.format(l=l))) == want[l] for l in range(1, len(SIZES))):
                    return ["output", "cache"], {"A": A, "Z": Z}
            return ["output", "cache"], "opaque"
        if _shape(a) == want[-1]:
            layers = None if per_sample else _layer_pattern_of(b, layout)
            return ["output", "cache"], ({"layers": layers} if layers else "opaque")
    if _shape(result) == want[-1]:
        return ["output"], None
    return None


def _layer_pattern_of(cache, layout):
    """A cache holding one (nested) tuple per layer: each item named by its shape (the layer's
    input A, its Z or output A_out, its W and b; "_" for anything else), the same for every
    layer. Z and A_out share a shape: Z is the one with a negative entry (A_out = relu(Z) or the
    softmax has none). None when the cache is not such a list."""
    L = len(SIZES) - 1
    if not (isinstance(cache, (list, tuple)) and len(cache) == L):
        return None
    acts = _act_shapes(layout)
    patterns = []
    for l, entry in enumerate(cache):
        n_in, n_out = SIZES[l], SIZES[l + 1]
        W = (n_in, n_out) if layout == "rows" else (n_out, n_in)
        names = {acts[l]: "A", W: "W", (n_out,): "b", (n_out, 1): "b", (1, n_out): "b"}
        pattern = _name_items(entry, names, acts[l + 1]) if isinstance(entry, (list, tuple)) else None
        if not pattern or None in pattern:
            return None
        patterns.append(pattern)
    first = patterns[0]
    flat = _flat(first)
    if flat.count("Z") != 1 or not {"A", "A_out"} & set(flat) or any(
            _structure(p) != _structure(first) for p in patterns[1:]):
        return None
    return first


def _name_items(item, names, out_shape, depth=0):
    """One cache entry's items named by shape (nested lists kept, at most 3 deep)."""
    if isinstance(item, (list, tuple)):
        return [_name_items(x, names, out_shape, depth + 1) for x in item] if depth < 3 and item else None
    shape = _shape(item)
    if shape == out_shape:
        return "Z" if np.any(np.asarray(item) < 0) else "A_out"
    return names.get(shape, "_")


def _flat(pattern):
    return [w for item in pattern for w in (_flat(item) if isinstance(item, list) else [item])]


def _structure(pattern):
    return [(_structure(item) if isinstance(item, list) else 0) for item in pattern]


def probe(module):
    first = _probe(module, False)
    if first.get("settled"):
        return first
    second = _probe(module, True)
    return second if second.get("settled") else first


class _Fit(NamedTuple):
    """One convention under which forward ran and its result's shapes fit."""

    layout: str
    bias: str
    container: str
    per_sample: bool
    read: tuple[list[str], Any]  # (forward_returns, cache form or None), from _read_forward
    result: Any  # forward's own result


# train's parameter names -> train_args words (another signature than forward's: read by name)
TRAIN_WORDS = {"x": "X", "x_train": "X", "y": "Y", "y_train": "Y", "labels": "Y", "x_test": "X_test",
               "y_test": "Y_test", "params": "params", "parameters": "params", "lr": "lr",
               "learning_rate": "lr", "eta": "lr", "epochs": "epochs", "n_epochs": "epochs",
               "batch_size": "batch_size"}


def _probe(module: Any, only_per_sample: bool) -> dict[str, Any]:
    """One probe, on whole batches or on single samples: forward's conventions from the shapes
    of its results, then backward's from the shapes of its gradients. ``settled`` only when
    both were found (a class-based model: when the class was found)."""
    X, Y, Ws, bs = _net(np.random.default_rng(0))
    functions, classes = _module_functions(module), _module_classes(module)
    forward = next((n for n in FORWARD_NAMES if n in functions), None)
    if forward is None:
        return _probe_classes(classes, X, Y, Ws, bs)
    fwords = _forward_words(functions[forward])
    fits = _forward_fits(functions[forward], fwords, X, Ws, bs, only_per_sample)
    if not fits:
        return {"questions": [f"{forward}{tuple(fwords)} ran under no convention with fitting shapes "
                              "(layouts rows/columns, biases flat/column/row, params pairs/dict/lists)"]}
    questions: list[str] = []
    fit, biases = _choose_forward_fit(fits, questions)
    found = _forward_declaration(forward, fwords, fit)
    _check_output_sums_to_one(fit, functions, found, questions)
    _check_helpers(functions, fit, found)
    _read_train_args(functions, found, questions)
    return _probe_backward(functions, fits, fit, biases, found, questions, X, Y, Ws, bs)


def _module_functions(module: Any) -> dict[str, Any]:
    """The module's callables that are not classes (imported ones included: a helper module's)."""
    return {n: getattr(module, n) for n in dir(module) if callable(getattr(module, n, None))
            and not isinstance(getattr(module, n), type)}


def _module_classes(module: Any) -> dict[str, type]:
    """The classes the module defines itself (an imported class is not the candidate's model)."""
    return {n: getattr(module, n) for n in dir(module) if isinstance(getattr(module, n, None), type)
            and getattr(getattr(module, n), "__module__", None) == module.__name__}


def _probe_classes(classes: dict[str, type], X: Any, Y: Any, Ws: list[Any], bs: list[Any]) -> dict[str, Any]:
    """No forward function: the first class with a forward method is the model."""
    for cname, cls in classes.items():
        if any(callable(getattr(cls, m, None)) for m in FORWARD_NAMES):
            return dict(_probe_class(cname, cls, X, Y, Ws, bs), settled=True)
    return {"questions": ["no forward function or class with a forward method was found (looked for "
                          + ", ".join(FORWARD_NAMES) + ")"]}


def _forward_words(fn: Any) -> list[str]:
    """forward's arguments as words; the section's (X, params) when its names do not say."""
    fwords = _words(fn)
    if not fwords or "X" not in fwords:
        fwords = ["X", "params"]
    return fwords


def _forward_fits(fn: Any, fwords: list[str], X: Any, Ws: list[Any], bs: list[Any],
                  only_per_sample: bool) -> list[_Fit]:
    """Every layout/bias/container under which forward runs and returns fitting shapes, in the
    order tried (the first is proposed)."""
    fits = []
    for layout, bias, container, per_sample in itertools.product(("rows", "columns"), ("flat", "column", "row"),
                                                                  ("pairs", "dict", "lists"), (only_per_sample,)):
        params = _params(Ws, bs, layout, bias, container)
        if container == "lists" and "weights" in fwords:
            values = {"weights": params[0], "biases": params[1]}
        else:
            values = {"params": params, "weights": params, "biases": params}
        x = X if layout == "rows" else X.T
        if per_sample:
            x = x[0] if layout == "rows" else x[:, :1]
        try:
            result = fn(*[x if w == "X" else values.get(w) for w in fwords])
        except Exception:  # noqa: BLE001 - a convention the code does not take
            continue
        read = _read_forward(result, layout, per_sample)
        if read is not None:
            fits.append(_Fit(layout, bias, container, per_sample, read, result))
    return fits


def _choose_forward_fit(fits: list[_Fit], questions: list[str]) -> tuple[_Fit, list[str]]:
    """The proposed fit (the first layout; pairs when they run, the first bias) and the biases
    that fit with it (backward decides between them); what shapes cannot tell is a question."""
    layouts = {f[0] for f in fits}
    if len(layouts) > 1:
        questions.append("layout: both rows and columns give fitting shapes")
    layout = fits[0][0]
    per_sample = fits[0][3]
    containers = {f[2] for f in fits if f[0] == layout and f[3] == per_sample}
    container = "pairs" if "pairs" in containers else sorted(containers)[0]
    if len(containers) > 1:
        questions.append(f"params: {sorted(containers)} all run; proposed {container}")
    biases = [f[1] for f in fits if f[0] == layout and f[2] == container and f[3] == per_sample]
    fit = next(f for f in fits if f[0] == layout and f[2] == container and f[1] == biases[0] and f[3] == per_sample)
    return fit, biases


def _forward_declaration(forward: str, fwords: list[str], fit: _Fit) -> dict[str, Any]:
    """The declaration's forward keys (the bias is only settled by backward)."""
    returns, cache = fit.read
    found: dict[str, Any] = {}
    found.update(layout=fit.layout, params=fit.container, forward=forward, per_sample=fit.per_sample,
                 forward_returns=returns, forward_args=fwords)
    if cache is not None:
        found["cache"] = cache
    return found


def _output_value(result: Any, returns: list[str]) -> Any:
    """The network's output in forward's result: the result itself when forward returns only
    its output, else the output in front of the cache, or the last activation."""
    if returns == ["output"]:
        return result
    if returns == ["acts"]:
        return result[-1]
    return result[0] if returns[0] == "output" else result[0][-1]


def _check_output_sums_to_one(fit: _Fit, functions: dict[str, Any], found: dict[str, Any],
                              questions: list[str]) -> None:
    """Probabilities sum to 1 over the classes; anything else is logits (then a softmax is needed)."""
    out = _output_value(fit.result, fit.read[0])
    axis = 1 if fit.layout == "rows" else 0
    if fit.per_sample:
        axis = 0
    if not np.allclose(np.sum(out, axis=axis), 1.0):
        found["output"] = "logits"
        if "softmax" not in functions:
            questions.append("output: forward's last value does not sum to 1 (logits): name the softmax")


LOSS_NAMES = ("cross_entropy", "compute_cost", "compute_loss", "cross_entropy_loss", "loss", "cost")


def _check_helpers(functions: dict[str, Any], fit: _Fit, found: dict[str, Any]) -> None:
    """Module-level relu/softmax that are helpers of another shape (returning (A, Z) pairs, say)
    are mapped to nothing, so the suite does not judge them as the contract's; a loss under a
    usual other name is mapped to cross_entropy."""
    z = np.linspace(-1.0, 1.0, 10).reshape((5, 2) if fit.layout == "rows" else (2, 5))
    for role in ("relu", "softmax"):
        if role in functions:
            try:
                fits = _shape(functions[role](z.copy())) == z.shape
            except Exception:  # noqa: BLE001 - a helper with another signature
                fits = False
            if not fits:
                found[role] = ""
    if "cross_entropy" not in functions:
        probs = np.full(z.shape, 0.5)
        Y = np.eye(2)[[0, 1, 0, 1, 0]]
        for other in (n for n in LOSS_NAMES if n in functions):
            try:  # a loss of (probabilities, one-hot Y) giving one number, in forward's layout
                value = functions[other](probs, Y if fit.layout == "rows" else Y.T)
                if np.ndim(value) == 0 and np.isfinite(float(value)):
                    found["cross_entropy"] = other
                    break
            except Exception:  # noqa: BLE001 - another signature: not the loss the suite calls
                continue


def _read_train_args(functions: dict[str, Any], found: dict[str, Any], questions: list[str]) -> None:
    """train's arguments, by their names (its signature is not forward's): train_args when every
    name maps to a distinct word, a question otherwise."""
    if "train" not in functions:
        return
    try:
        raw = [p.name.lower() for p in inspect.signature(functions["train"]).parameters.values()
               if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        raw = []
    mapped = [TRAIN_WORDS.get(n) for n in raw]
    if raw and all(mapped) and len(set(mapped)) == len(mapped):
        found["train_args"] = mapped
    elif raw:
        questions.append(f"train({', '.join(raw)}): which argument is which? (train_args words: "
                         "X, Y, X_test, Y_test, params, lr, epochs, batch_size)")


def _unsettled(found: dict[str, Any], questions: list[str], bias: str) -> dict[str, Any]:
    """What forward told, with the first fitting bias, when backward's conventions were not found."""
    found["bias"] = bias
    return {"declaration": found, "questions": questions}


def _probe_backward(functions: dict[str, Any], fits: list[_Fit], fit: _Fit, biases: list[str],
                    found: dict[str, Any], questions: list[str],
                    X: Any, Y: Any, Ws: list[Any], bs: list[Any]) -> dict[str, Any]:
    """backward's conventions (bias, labels, gradients' container and names), on forward's
    results under the proposed fit; settles the probe when its gradients fit."""
    backward = next((n for n in BACKWARD_NAMES if n in functions), None)
    if backward is None:
        questions.append("no backward function found (looked for " + ", ".join(BACKWARD_NAMES) + ")")
        return _unsettled(found, questions, biases[0])
    bwords = _words(functions[backward]) or []
    unknown = [w for w in bwords if w.startswith("?")]
    if unknown:
        questions.append(f"backward's parameter(s) {', '.join(w[1:] for w in unknown)}: which value is each? "
                         "(backward_args words: acts, zs, Y, params, weights, biases, X, cache, output)")
        return _unsettled(found, questions, biases[0])
    label_fits, grads_seen = _backward_fits(functions[backward], bwords, fits, fit, biases, X, Y, Ws, bs)
    if not label_fits:
        questions.append(f"{backward}{tuple(bwords)} ran under no convention with gradients of W's and b's shapes")
        return _unsettled(found, questions, biases[0])
    bias, labels = label_fits[0]
    if len({lf[1] for lf in label_fits}) > 1:
        questions.append("labels: both one-hot and integer labels give gradients of the right shapes "
                         "(shapes cannot tell; say which)")
    if len({lf[0] for lf in label_fits}) > 1:
        questions.append(f"bias: {sorted({lf[0] for lf in label_fits})} all fit; proposed {bias}")
    grads, grad_names = grads_seen[(bias, labels)]
    found.update(bias=bias, labels=labels, backward=backward, backward_args=bwords)
    if "lr" in bwords:
        found["backward_returns"] = grads  # "params" or "nothing" (_backward_fits)
    else:
        found["grads"] = grads
    if grad_names:
        found["grad_names"] = grad_names
    if "X" in bwords and not {"acts", "zs", "cache"} & set(bwords):
        questions.append("backward recomputes the forward pass: it will be judged on its own forward only")
    return {"declaration": found, "questions": questions, "settled": True}


def _backward_fits(fn: Any, bwords: list[str], fits: list[_Fit], fit: _Fit, biases: list[str],
                   X: Any, Y: Any, Ws: list[Any], bs: list[Any],
                   ) -> tuple[list[tuple[str, str]], dict[tuple[str, str], tuple[str, Any]]]:
    """Every (bias, labels) under which backward runs on forward's results and returns gradients
    of the parameters' shapes, in the order tried, with the gradients' (container, names)."""
    layout, container, per_sample = fit.layout, fit.container, fit.per_sample
    returns = fit.read[0]  # the proposed fit's: the other biases' forward returned the same kinds
    label_fits, grads_seen = [], {}
    for bias in biases:
        fwd = next(f for f in fits if f[0] == layout and f[2] == container and f[1] == bias and f[3] == per_sample)
        params = _params(Ws, bs, layout, bias, container)
        for labels in ("onehot", "integer"):
            values = _backward_values(fwd.result, returns, params, labels, fit, X, Y)
            try:
                grads = fn(*[values[w] for w in bwords])
            except Exception:  # noqa: BLE001
                continue
            if "lr" in bwords:  # a step: it returns the updated params, or nothing (in place)
                kind = ("nothing", None) if grads is None else _grads_kind(grads, layout, bias)
                kind = None if kind is None else (("nothing", None) if grads is None else ("params", None))
            else:
                kind = _grads_kind(grads, layout, bias)
            if kind is not None:
                label_fits.append((bias, labels))
                grads_seen[(bias, labels)] = kind
    return label_fits, grads_seen


def _backward_values(result: Any, returns: list[str], params: Any, labels: str, fit: _Fit,
                     X: Any, Y: Any) -> dict[str, Any]:
    """The value each backward_args word stands for, from forward's result, under ``labels``."""
    layout, container = fit.layout, fit.container
    acts, zs = (result if returns == ["acts", "zs"] else (result, None) if returns == ["acts"] else (None, None))
    y = (Y if layout == "rows" else Y.T) if labels == "onehot" else Y.argmax(axis=1)
    if fit.per_sample:
        y = (y[0] if layout == "rows" else y[:, :1]) if labels == "onehot" else y[0]
    return {"acts": acts, "zs": zs, "Y": y, "params": params, "X": (X if layout == "rows" else X.T),
            "cache": result[1] if returns == ["output", "cache"] else None,
            "output": _output_value(result, returns) if returns[0] == "output" else (acts[-1] if acts else None),
            "weights": params[0] if container == "lists" else None,
            "biases": params[1] if container == "lists" else None, "lr": PROBE_LR}


def _grads_kind(grads: Any, layout: str, bias: str) -> tuple[str, list[str] | None] | None:
    """(grads container, grad_names or None) when the gradients have the parameters' shapes."""
    wshape, bshape = _param_shapes(layout, bias)
    if isinstance(grads, dict):
        names = _grad_dict_names(grads, wshape, bshape)
        return None if names is None else ("dict", names)
    if not isinstance(grads, (list, tuple)):
        return None
    if _are_grad_lists(grads, wshape, bshape):
        return "lists", None
    if _are_grad_pairs(grads, wshape, bshape):
        return "pairs", None
    return None


def _param_shapes(layout: str, bias: str) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
    """Each layer's weight and bias shapes under ``layout`` and ``bias`` (their gradients' too)."""
    wshape: list[tuple[int, ...]] = [((a, b) if layout == "rows" else (b, a)) for a, b in zip(SIZES[:-1], SIZES[1:])]
    bshape = [{"flat": (n,), "column": (n, 1), "row": (1, n)}[bias] for n in SIZES[1:]]
    return wshape, bshape


def _grad_dict_names(grads: dict[Any, Any], wshape: list[tuple[int, ...]],
                     bshape: list[tuple[int, ...]]) -> list[str] | None:
    """The first usual key pattern under which every layer's gradients have the right shapes."""
    for names in (("dW{l}", "db{l}"), ("W{l}", "b{l}"), ("dw{l}", "db{l}")):
        if all(_shape(grads.get(names[0].format(l=l + 1))) == wshape[l]
               and _shape(grads.get(names[1].format(l=l + 1))) == bshape[l] for l in range(len(wshape))):
            return list(names)
    return None


def _are_grad_lists(grads: Any, wshape: list[tuple[int, ...]], bshape: list[tuple[int, ...]]) -> bool:
    """(weights' gradients, biases' gradients): two lists, one entry per layer."""
    return bool(len(grads) == 2 and all(isinstance(g, (list, tuple)) and len(g) == len(wshape) for g in grads)
                and all(_shape(g) == w for g, w in zip(grads[0], wshape))
                and all(_shape(g) == s for g, s in zip(grads[1], bshape)))


def _are_grad_pairs(grads: Any, wshape: list[tuple[int, ...]], bshape: list[tuple[int, ...]]) -> bool:
    """One (weight's gradient, bias's gradient) pair per layer."""
    return bool(len(grads) == len(wshape)
                and all(isinstance(p, (list, tuple)) and len(p) == 2 and _shape(p[0]) == w
                        and _shape(p[1]) == s for p, w, s in zip(grads, wshape, bshape)))


def _probe_class(cname: str, cls: type, X: Any, Y: Any, Ws: list[Any], bs: list[Any]) -> dict[str, Any]:
    """A class-based model: the first layout/bias/container from which its constructor builds a
    model whose forward method returns the output's shape; then where it keeps its cache."""
    fwd = next(m for m in FORWARD_NAMES if callable(getattr(cls, m, None)))
    bwd = next((m for m in BACKWARD_NAMES if callable(getattr(cls, m, None))), None) or _backward_like(cls)
    init = _words(cls.__init__)  # type: ignore[misc]  # only its signature is read
    init = [w for w in (init or [])[1:]]  # without self
    if init == ["sizes"]:
        return _probe_sized_class(cname, cls, fwd, bwd, X)
    if not init or any(w.startswith("?") for w in init):
        return {"questions": [f"class {cname}: its constructor {init} is not built from parameters "
                              "(model_args words: params, weights, biases, or sizes alone)"]}
    for layout, bias, container in itertools.product(("rows", "columns"), ("flat", "column", "row"),
                                                     ("pairs", "dict", "lists")):
        model = _build_and_run(cls, init, fwd, X, Ws, bs, layout, bias, container)
        if model is not None:
            return _class_declaration(cname, cls, model, init, fwd, bwd, layout, bias, container)
    return {"questions": [f"class {cname}: no layout/bias/container built it and ran {fwd} with fitting shapes"]}


def _probe_sized_class(cname: str, cls: type, fwd: str, bwd: str | None, X: Any) -> dict[str, Any]:
    """A model built from its layer sizes: its weights and biases are found among its list
    attributes by shape (which also tells the layout and the bias shape); the suite will put
    its case's params there (model_params)."""
    try:
        model = cls(list(SIZES))
    except Exception as exc:  # noqa: BLE001
        return {"questions": [f"class {cname}({SIZES}) raised {type(exc).__name__}: {exc}"[:500]]}
    lists = {k: v for k, v in vars(model).items() if isinstance(v, (list, tuple)) and len(v) == len(SIZES) - 1}
    for layout in ("rows", "columns"):
        wshape, _ = _param_shapes(layout, "flat")
        weights = next((k for k, v in lists.items() if [_shape(w) for w in v] == wshape), None)
        for bias in ("flat", "column", "row"):
            _, bshape = _param_shapes(layout, bias)
            biases = next((k for k, v in lists.items() if [_shape(b) for b in v] == bshape), None)
            if weights is None or biases is None:
                continue
            try:
                out = getattr(model, fwd)(X if layout == "rows" else X.T)
            except Exception:  # noqa: BLE001
                continue
            if _shape(out) == _act_shapes(layout)[-1]:
                found = _class_declaration(cname, cls, model, ["sizes"], fwd, bwd, layout, bias, "lists")
                found["declaration"]["model_params"] = [weights, biases]
                return found
    return {"questions": [f"class {cname}: built from its layer sizes, but no list attributes of its weights "
                          "and biases were found by shape (model_params), or its forward did not run"]}


def _build_and_run(cls: type, init: list[str], fwd: str, X: Any, Ws: list[Any], bs: list[Any],
                   layout: str, bias: str, container: str) -> Any:
    """The model built under this convention, when its forward method ran and returned the
    output's shape; None otherwise (including when the constructor takes weights and biases,
    which only a lists container gives)."""
    params = _params(Ws, bs, layout, bias, container)
    values = {"params": params, "weights": params[0] if container == "lists" else None,
              "biases": params[1] if container == "lists" else None}
    if container != "lists" and {"weights", "biases"} & set(init):
        return None
    try:
        model = cls(*[values[w] for w in init])
        out = getattr(model, fwd)(X if layout == "rows" else X.T)
    except Exception:  # noqa: BLE001
        return None
    if _shape(out) != _act_shapes(layout)[-1]:
        return None
    return model


def _backward_like(cls: type) -> str | None:
    """A method named like backprop without being one of the usual names (backprop_and_step,
    compute_grads_and_update, ...): the first, in name order, whose name says backward or grad."""
    names = sorted(n for n in dir(cls) if not n.startswith("__") and callable(getattr(cls, n, None)))
    return next((n for n in names if any(part in n.lower() for part in ("backprop", "backward", "grad"))), None)


def _class_declaration(cname: str, cls: type, model: Any, init: list[str], fwd: str, bwd: str | None,
                       layout: str, bias: str, container: str) -> dict[str, Any]:
    """The declaration of a model that ran: where it keeps its activations after forward (one
    attribute holding the pair, or two lists), and its backward method's arguments."""
    questions = []
    pair, acts, zs = _model_cache_attributes(model, layout)
    decl: dict[str, Any] = {"model": cname, "model_args": init, "forward": fwd, "layout": layout, "bias": bias}
    if "params" in init:
        decl["params"] = container
    if pair is not None:
        decl.update(model_cache=pair, cache="acts_zs")
    elif acts and zs:
        decl["model_cache"] = [acts, zs]
    else:
        questions.append(f"class {cname}: forward keeps no list of activations and pre-activations the "
                         "suite can read (model_cache)")
    if bwd is None:
        questions.append(f"class {cname}: no backward method found")
    else:
        decl["backward"] = bwd
        words = _words(getattr(cls, bwd))
        if words and words[1:] != ["Y"]:
            decl["backward_args"] = words[1:]
        if words and "lr" in words:
            decl["backward_returns"] = _model_step_returns(model, bwd, words[1:], layout)
        elif words and words[1:] in (["Y"], []):
            kind = _model_grads_kind(model, bwd, layout, bias)
            if kind is not None and kind[0] != decl.get("params", "pairs"):
                decl["grads"] = kind[0]
            if kind is not None and kind[1]:
                decl["grad_names"] = kind[1]
    return {"declaration": decl, "questions": questions}


def _model_grads_kind(model: Any, bwd: str, layout: str, bias: str) -> tuple[str, list[str] | None] | None:
    """The container a model's backward(Y) returns its gradients in (after the probe's forward)."""
    _, Y, _, _ = _net(np.random.default_rng(0))
    try:
        return _grads_kind(getattr(model, bwd)(Y if layout == "rows" else Y.T), layout, bias)
    except Exception:  # noqa: BLE001 - the suite's own run will say what is wrong
        return None


def _model_step_returns(model: Any, bwd: str, words: list[str], layout: str) -> str:
    """A model's backward that takes lr applies the step: "nothing" when it returns None (the
    weights change in place), "params" otherwise. Run once on the probe's own model."""
    _, Y, _, _ = _net(np.random.default_rng(0))
    values = {"Y": Y if layout == "rows" else Y.T, "lr": PROBE_LR}
    try:
        result = getattr(model, bwd)(*[values.get(w) for w in words])
    except Exception:  # noqa: BLE001 - the declaration's own check will name what is missing
        return "nothing"
    return "nothing" if result is None else "params"


def _model_cache_attributes(model: Any, layout: str) -> tuple[Any, Any, Any]:
    """The model's list attributes, by shape: one holding (activations, pre-activations), and
    those holding the activations and the pre-activations (each None when there is none)."""
    want = _act_shapes(layout)
    lists = {k: v for k, v in vars(model).items() if isinstance(v, (list, tuple))}
    acts = next((k for k, v in lists.items() if len(v) == len(want) and all(_shape(a) == w for a, w in zip(v, want))), None)
    zs = next((k for k, v in lists.items() if k != acts and len(v) == len(want) - 1
               and all(_shape(a) == w for a, w in zip(v, want[1:]))), None)
    pair = next((k for k, v in lists.items() if len(v) == 2 and isinstance(v[0], (list, tuple))
                 and len(v[0]) == len(want)), None)
    return pair, acts, zs


def main():
    path, out = sys.argv[1], sys.argv[2]
    sys.path.insert(0, __import__("os").path.dirname(path))
    spec = importlib.util.spec_from_file_location(__import__("os").path.basename(path)[:-3], path)
    try:
        if spec is None or spec.loader is None:  # (cli.py passes a .py file: a source loader)
            raise ImportError(f"{path} is not a Python source file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        answer = probe(module)
    except BaseException as exc:  # noqa: BLE001 - the candidate's: reported, never raised
        answer = {"questions": [f"the module could not be probed: {type(exc).__name__}: {exc}"[:2000]]}
    with open(out, "w") as handle:
        json.dump(answer, handle)


if __name__ == "__main__":
    main()
