"""Declared conventions: the declaration's parser, the exact adapter, the run's
precedence and trust, and what the grader makes of a limited check."""

from __future__ import annotations

import atexit
import functools
import hashlib
import importlib.util
import json
import shutil
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from conformance.adapters import DeclarationMismatch, InterfaceLimit, adapt_module
from conformance.cases import make_case
from conformance.exact import exact_forward
from conformance.declaration import (KEYS, DeclarationError, from_toml, limits_of,
                                     module_literal, normalise, resolve)
from tests.helpers import run_suite
from tools.catalogue import (DECLARED, DECLARED_DIR, DECLARED_FROM_RECIPES, DECLARED_PATCHES, declared_source,
                             write_declared)
from conformance.grade.score.rubric import Baseline, neutral_skip

USAGE_ERROR = 4

# A correct forward of the section's interface, for the small candidates written by these tests.
FORWARD_SOURCE = '''
def forward(X, params):
    acts, zs = [X], []
    for i, (W, b) in enumerate(params):
        z = acts[-1] @ W + b
        zs.append(z)
        if i == len(params) - 1:
            e = np.exp(z - z.max(axis=1, keepdims=True))
            acts.append(e / e.sum(axis=1, keepdims=True))
        else:
            acts.append(np.maximum(z, 0))
    return acts, zs
'''


@functools.lru_cache(maxsize=None)
def _variants() -> Path:
    """Every declared variant written out once (buggy twins and the recipes' student code are
    generated: tools/catalogue)."""
    folder = Path(tempfile.mkdtemp(prefix="declared-"))
    atexit.register(shutil.rmtree, folder, True)
    for name in DECLARED:
        write_declared(name, folder)
    return folder


def _variant(name: str) -> Path:
    return _variants() / f"{name}.py"


def _load(name: str) -> tuple[ModuleType, dict]:
    path = _variant(name)
    spec = importlib.util.spec_from_file_location(f"_decl_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, from_toml(path.with_suffix(".toml")).wire()


# --- the declaration: strict, short, defaults = the section's interface ---------------------


def test_an_empty_declaration_is_the_sections_interface() -> None:
    d = normalise({}, "t")
    assert set(d) == set(KEYS)
    assert (d["layout"], d["labels"], d["bias"], d["params"]) == ("rows", "onehot", "flat", "pairs")
    assert d["forward_args"] == ["X", "params"] and d["backward_args"] == ["acts", "zs", "Y", "params"]
    assert limits_of(d) == {}


@pytest.mark.parametrize("raw, key, words", [
    ({"layuot": "columns"}, "layuot", "unknown key"),
    ({"layout": "cols"}, "layout", "not one of"),
    ({"per_sample": "yes"}, "per_sample", "not one of"),
    ({"first_layer": 2}, "first_layer", "not one of"),
    ({"names": ["W", "b{l}"]}, "names", "{l}"),
    ({"forward_args": ["X", "theta"]}, "forward_args", "unknown word"),
    ({"forward_args": ["X", "params", "weights"]}, "forward_args", "either params, or weights"),
    ({"forward_returns": ["output"]}, "forward_returns", "layer by layer"),
    ({"forward_returns": ["zs"]}, "forward_returns", "must return its activations"),
    ({"forward_returns": ["acts"]}, "backward_args", "backward takes zs, but forward keeps no pre-activations"),
    ({"forward_returns": ["acts", "cache"], "cache": "opaque", "backward_args": ["zs", "Y", "params"]},
     "backward_args", "keeps no pre-activations"),
    ({"forward_returns": ["acts"], "backward_args": ["acts", "Y", "params"], "output": "logits"},
     "output", "keeps no pre-activations"),
    ({"forward_returns": ["output", "cache"]}, "cache", "never guesses"),
    ({"cache": "acts_zs"}, "cache", "no forward result"),
    ({"model_cache": "cache"}, "model_cache", "class-based"),
    ({"output": "logits", "softmax": ""}, "output", "softmax"),
    ({"backward_args": ["acts", "zs", "params"]}, "backward_args", "labels"),
    ({"backward": ""}, "backward", "required"),
])
def test_a_wrong_or_ambiguous_declaration_names_the_key(raw: dict, key: str, words: str) -> None:
    with pytest.raises(DeclarationError) as info:
        normalise(raw, "my.toml")
    assert info.value.key == key and words in str(info.value), str(info.value)
    assert str(info.value).startswith("declaration my.toml: " + key)


def test_toml_and_module_literal_are_the_same_keys(tmp_path: Path) -> None:
    toml = DECLARED_DIR / "ok_decl_column_dict_cache.toml"
    module = tmp_path / "mine.py"
    module.write_text("CONFORMANCE = {'layout': 'columns', 'bias': 'column', 'params': 'dict',\n"
                      " 'forward': 'L_model_forward', 'forward_returns': ['output', 'cache'],\n"
                      " 'backward': 'L_model_backward',\n"
                      " 'backward_args': ['output', 'Y', 'params', 'cache'],\n"
                      " 'cache': {'A': 'A{l}', 'Z': 'Z{l}'}}\n")
    own = resolve(None, module)
    assert own is not None and not own.trusted
    assert own.values == from_toml(toml).values


def test_a_computed_module_declaration_is_an_error_not_a_guess(tmp_path: Path) -> None:
    module = tmp_path / "mine.py"
    module.write_text("CONFORMANCE = dict(layout='columns')\n")
    assert module_literal(module)[0] is None
    with pytest.raises(DeclarationError, match="not a literal"):
        resolve(None, module)


def test_bad_toml_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("layout = columns\n")  # unquoted
    with pytest.raises(DeclarationError, match="not valid TOML"):
        from_toml(path)


@pytest.mark.parametrize("name", ["ok_decl_column_dict_cache", "ok_decl_per_sample_columns",
                                  "ok_decl_class_methods", "ok_decl_int_row"])
def test_the_four_named_styles_take_at_most_10_lines(name: str) -> None:
    lines = [ln for ln in (DECLARED_DIR / f"{name}.toml").read_text().splitlines() if ln.strip()]
    assert len(lines) <= 10, lines


def test_every_declared_variant_has_its_declaration(tmp_path: Path) -> None:
    """The correct ones are files; each buggy one is its twin with one change (generated)."""
    correct = set(DECLARED) - set(DECLARED_PATCHES)
    recipes = {f"ok_decl_{r}" for r in DECLARED_FROM_RECIPES}
    assert {p.stem for p in DECLARED_DIR.glob("*.py")} == correct - recipes
    assert {p.stem for p in DECLARED_DIR.glob("*.toml")} == correct
    for name in DECLARED:
        source, _ = declared_source(name)
        from_toml(write_declared(name, tmp_path)[1])  # valid
        if name in DECLARED_PATCHES:
            twin = DECLARED_PATCHES[name][0]
            assert twin in correct and source != declared_source(twin)[0]


# --- exactness: the adapted numbers are the candidate's, moved, never computed -------------


def test_column_dict_cache_adapter_is_bit_exact() -> None:
    module, d = _load("ok_decl_column_dict_cache")
    adapted = adapt_module(module, d)
    case = make_case([5, 4, 3, 3], batch=6, seed=3)
    acts, zs = adapted.forward(case.X, case.params)
    raw_params = {}
    for i, (W, b) in enumerate(case.params, start=1):
        raw_params[f"W{i}"], raw_params[f"b{i}"] = W.T, b.reshape(-1, 1)
    out, cache = module.L_model_forward(case.X.T, raw_params)
    for l, a in enumerate(acts):
        assert np.array_equal(a, (cache[f"A{l}"] if l else case.X.T).T)
    for l, z in enumerate(zs, start=1):
        assert np.array_equal(z, cache[f"Z{l}"].T)
    grads = adapted.backward(acts, zs, case.Y, case.params)
    raw = module.L_model_backward(out, case.Y.T, raw_params, cache)
    for l, (dW, db) in enumerate(grads, start=1):
        assert np.array_equal(dW, raw[f"dW{l}"].T) and np.array_equal(db, raw[f"db{l}"].reshape(-1))
        assert dW.shape == case.params[l - 1][0].shape and db.shape == case.params[l - 1][1].shape


def test_integer_labels_and_row_biases_are_bit_exact() -> None:
    module, d = _load("ok_decl_int_row")
    adapted = adapt_module(module, d)
    case = make_case([4, 5, 3], batch=7, seed=1)
    rows = [(W, b.reshape(1, -1)) for W, b in case.params]
    acts, zs = adapted.forward(case.X, case.params)
    raw_acts, raw_zs = module.forward(case.X, rows)
    assert all(np.array_equal(a, r) for a, r in zip(acts, raw_acts))
    labels = case.Y.argmax(axis=1)
    grads = adapted.backward(acts, zs, case.Y, case.params)
    raw = module.backward(raw_acts, raw_zs, labels, rows)
    for (dW, db), (rW, rb), (_, b) in zip(grads, raw, case.params):
        assert np.array_equal(dW, rW) and np.array_equal(db, rb.reshape(-1)) and db.shape == b.shape
    assert adapted.cross_entropy(acts[-1], case.Y) == module.cross_entropy(raw_acts[-1], labels)


def test_per_sample_forward_stacks_the_samples_exactly() -> None:
    module, d = _load("ok_decl_per_sample_columns")
    adapted = adapt_module(module, d)
    case = make_case([3, 4, 2], batch=5, seed=2)
    acts, zs = adapted.forward(case.X, case.params)
    Ws, bs = [W.T for W, _ in case.params], [b.reshape(-1, 1) for _, b in case.params]
    for i in range(case.X.shape[0]):
        raw_acts, raw_zs = module.feedforward(case.X[i].reshape(-1, 1), Ws, bs)
        assert all(np.array_equal(a[i], r.reshape(-1)) for a, r in zip(acts, raw_acts))
        assert all(np.array_equal(z[i], r.reshape(-1)) for z, r in zip(zs, raw_zs))
    assert "per_sample" in limits_of(d)  # the averaging of per-sample gradients is declared


def test_logits_are_turned_into_the_candidates_own_probabilities() -> None:
    module, d = _load("ok_decl_logits")
    adapted = adapt_module(module, d)
    case = make_case([3, 4, 3], batch=4, seed=5)
    acts, zs = adapted.forward(case.X, case.params)
    assert np.array_equal(acts[-1], module.softmax(zs[-1]))
    assert not hasattr(adapted, "cross_entropy")  # its loss takes logits: never fed probabilities
    raw = module.backward(acts[:-1] + [zs[-1]], zs, case.Y, case.params)
    assert all(np.array_equal(g[0], r[0]) for g, r in zip(adapted.backward(acts, zs, case.Y, case.params), raw))


def test_integer_labels_refuse_a_y_that_is_not_one_hot() -> None:
    module, d = _load("ok_decl_int_row")
    adapted = adapt_module(module, d)
    case = make_case([3, 3, 2], batch=2, seed=0)
    acts, zs = adapted.forward(case.X, case.params)
    with pytest.raises(InterfaceLimit):
        adapted.backward(acts, zs, case.Y * 0.5, case.params)


def test_a_result_of_the_wrong_shape_is_passed_on_unchanged() -> None:
    """The adapter never hides a candidate's mistake: a db that is not the declared shape
    reaches the contract check as the candidate returned it."""
    module = ModuleType("m")
    module.forward = lambda X, params: ([X], [])
    module.backward = lambda acts, zs, Y, params: [(np.zeros((2, 3)), np.zeros((7,)))]
    adapted = adapt_module(module, normalise({"bias": "column"}, "t"))
    (_, db), = adapted.backward([np.zeros((1, 2))], [], np.eye(3)[:1], [(np.zeros((2, 3)), np.zeros(3))])
    assert db.shape == (7,)
    # The declared form with a wrong size: the form is mapped, the size stays wrong for the check
    # to show (and for replay to compare with a mistake's misshapen gradients).
    module.backward = lambda acts, zs, Y, params: [(np.zeros((2, 3)), np.zeros((7, 1)))]
    (_, db), = adapted.backward([np.zeros((1, 2))], [], np.eye(3)[:1], [(np.zeros((2, 3)), np.zeros(3))])
    assert db.shape == (7,)
    module.backward = lambda acts, zs, Y, params: [(np.zeros((2, 3)), np.zeros((1, 3)))]
    (_, db), = adapted.backward([np.zeros((1, 2))], [], np.eye(3)[:1], [(np.zeros((2, 3)), np.zeros(3))])
    assert db.shape == (1, 3)  # a row where a column is declared: as returned


def test_a_declared_key_the_cache_lacks_is_a_mismatch_naming_it() -> None:
    module, d = _load("ok_decl_column_dict_cache")
    d = dict(d, cache={"A": "A{l}", "Z": "pre{l}"})
    adapted = adapt_module(module, d)
    case = make_case([3, 3, 2], batch=2, seed=0)
    with pytest.raises(DeclarationMismatch, match="pre1"):
        adapted.forward(case.X, case.params)


# --- a cache with one tuple per layer (the column-major course style) ------------------------


@pytest.mark.parametrize("layers, words", [
    ([["A", "W", "b"], "Q"], "unknown word 'Q'"),
    ([["A", "W", "b"], "A_out"], "its Z"),
    (["Z", "W", "b"], "its input A"),
    ([["A", "W"], "Z", "A"], "appear twice"),
    ("A, Z", "(nested) list"),
    ([], "(nested) list"),
])
def test_a_per_layer_cache_pattern_is_checked(layers: object, words: str) -> None:
    raw = {"forward_returns": ["output", "cache"], "backward_args": ["output", "Y", "cache"],
           "cache": {"layers": layers}}
    with pytest.raises(DeclarationError) as info:
        normalise(raw, "my.toml")
    assert info.value.key == "cache" and words in str(info.value), str(info.value)


def test_a_per_layer_cache_is_read_and_rebuilt_bit_exactly() -> None:
    """forward's activations and pre-activations are read from the ((A_prev, W, b), Z) tuples as
    they are; backward fed the suite's activations gets a cache built from them that gives the
    same gradients, bit for bit, as the candidate's own cache."""
    module, d = _load("ok_decl_layer_cache")
    assert "backward_alone" not in limits_of(d)
    case = make_case(layer_sizes=[5, 7, 6, 3], batch=4, seed=2)
    raw_params = {}
    for i, (W, b) in enumerate(case.params, start=1):
        raw_params[f"W{i}"], raw_params[f"b{i}"] = W.T, b.reshape(-1, 1)
    AL, caches = module.L_model_forward(case.X.T, raw_params)
    adapted = adapt_module(module, d)
    acts, zs = adapted.forward(case.X, case.params)
    assert all(np.array_equal(a, c[0][0].T) for a, c in zip(acts[:-1], caches))
    assert all(np.array_equal(z, c[1].T) for z, c in zip(zs, caches)) and np.array_equal(acts[-1], AL.T)
    raw = module.L_model_backward(AL, case.Y.T, caches)
    got = adapted.backward(acts, zs, case.Y, case.params)
    for l, (dW, db) in enumerate(got, start=1):
        assert np.array_equal(dW, raw[f"dW{l}"].T) and np.array_equal(db, raw[f"db{l}"].reshape(-1))


def test_a_per_layer_cache_with_an_unnamed_item_limits_backward_alone(tmp_path: Path) -> None:
    """The suite cannot build an entry holding something the declaration does not name ("_"):
    backward is then judged on its own forward only, and the report says so."""
    d = normalise({"layout": "columns", "forward_returns": ["output", "cache"],
                   "backward_args": ["output", "Y", "cache"], "cache": {"layers": [["A", "W", "b"], "Z", "_"]}}, "t")
    assert "backward_alone" in limits_of(d)
    assert "backward_alone" not in limits_of(dict(d, cache={"layers": [["A", "W", "b"], "Z"]}))


def test_a_cache_entry_of_another_shape_is_a_mismatch_naming_the_entry() -> None:
    module, d = _load("ok_decl_layer_cache")
    d = dict(d, cache={"layers": [["A", "W", "b", "_"], "Z"]})
    case = make_case(layer_sizes=[3, 4, 2], batch=2, seed=0)
    with pytest.raises(DeclarationMismatch, match=r"cache\[0\]\[0\] is a tuple of length 3"):
        adapt_module(module, d).forward(case.X, case.params)


# --- a model built from its layer sizes ---------------------------------------------------------


@pytest.mark.parametrize("raw, key, words", [
    ({"model": "Net", "model_args": ["sizes"], "model_cache": ["A", "Z"]}, "model_params", "draws its own"),
    ({"model": "Net", "model_args": ["sizes", "weights"], "model_cache": ["A", "Z"], "model_params": ["W", "b"]},
     "model_args", "either the layer sizes"),
    ({"model": "Net", "model_cache": ["A", "Z"], "model_params": ["W", "b"]}, "model_params", "neither"),
])
def test_a_model_built_from_sizes_must_say_where_its_params_live(raw: dict, key: str, words: str) -> None:
    with pytest.raises(DeclarationError) as info:
        normalise(raw, "my.toml")
    assert info.value.key == key and words in str(info.value), str(info.value)


def test_a_model_whose_backward_takes_the_activations_is_judged_on_the_suites() -> None:
    """The activations are given to its backward method as arguments: backward alone can run
    on the suite's activations, so backward_alone is no limit (it is, with neither that nor a
    model_cache the suite can fill)."""
    d = normalise({"model": "Net", "forward_returns": ["acts"], "backward_args": ["acts", "Y"]}, "t")
    assert "backward_alone" not in limits_of(d) and "pre_activations" in limits_of(d)
    d = normalise({"model": "Net", "forward_returns": ["acts", "zs"], "backward_args": ["Y"]}, "t")
    assert "backward_alone" in limits_of(d)


def test_a_model_built_from_sizes_is_judged_on_the_cases_params() -> None:
    """Its constructor draws its own weights; the suite replaces them with the case's, so the
    numbers judged are the candidate's arithmetic on the case's params, bit for bit."""
    module, d = _load("ok_decl_sized_class")
    case = make_case(layer_sizes=[4, 6, 3], batch=5, seed=4)
    adapted = adapt_module(module, d)
    acts, zs = adapted.forward(case.X, case.params)
    net = module.Network([4, 6, 3])
    net.weights, net.biases = [W.T for W, _ in case.params], [b.reshape(-1, 1) for _, b in case.params]
    out = net.feedforward(case.X.T)
    assert np.array_equal(acts[-1], out.T) and all(np.array_equal(z, zz.T) for z, zz in zip(zs, net.zs))
    nabla_w, nabla_b = net.backprop(case.Y.T)
    got = adapted.backward(acts, zs, case.Y, case.params)
    assert all(np.array_equal(dW, w.T) and np.array_equal(db, b.reshape(-1))
               for (dW, db), w, b in zip(got, nabla_w, nabla_b))
    broken = dict(d, model_params=["weights", "bias"])
    with pytest.raises(DeclarationMismatch, match="no attribute 'bias'"):
        adapt_module(module, broken).forward(case.X, case.params)


# --- a step fused into backward: gradients read back from the step, at their own precision --


@pytest.mark.parametrize("raw, key, words", [
    ({"backward_returns": "nothing"}, "backward_args", "learning rate"),
    ({"backward_args": ["acts", "zs", "Y", "params", "lr"]}, "backward_returns", "lr"),
    ({"backward_returns": "updated"}, "backward_returns", "not one of"),
    ({"backward_returns": "nothing", "backward_args": ["acts", "zs", "Y", "lr"]}, "backward_args", "in place"),
    ({"backward_returns": "nothing", "backward_args": ["acts", "zs", "Y", "weights", "lr"]},
     "backward_args", "weights and biases"),
    ({"backward_returns": "nothing", "backward_args": ["acts", "zs", "Y", "params", "lr"],
      "model_params": "params"}, "model_params", "class-based"),
    ({"backward_returns": "params", "backward_args": ["Y", "lr"], "model": "Net", "model_cache": ["a", "z"],
      "model_params": ["W", "b"]}, "model_params", "neither"),
    ({"backward_returns": "params", "backward_args": ["acts", "zs", "Y", "lr"]}, "backward_args", "stepped params"),
    ({"backward_returns": "nothing", "backward_args": ["Y", "lr"], "model": "Net", "model_cache": ["a", "z"],
      "model_params": ["W", "W"]}, "model_params", "twice"),
    ({"backward_returns": "nothing", "backward_args": ["Y", "lr"], "model": "Net", "model_cache": ["a", "z"],
      "model_args": ["weights"]}, "model_args", "weights alone"),
])
def test_a_fused_step_declaration_names_what_is_missing(raw: dict, key: str, words: str) -> None:
    with pytest.raises(DeclarationError) as info:
        normalise(raw, "my.toml")
    assert info.value.key == key and words in str(info.value), str(info.value)


_STEP_SOURCE = textwrap.dedent("""
    import numpy as np
    SEEN = []  # the gradients each step applied, as the candidate computed them
""") + FORWARD_SOURCE + textwrap.dedent("""

    def grads(acts, zs, Y, params):
        delta = (acts[-1] - Y) / len(Y)
        out = []
        for i in reversed(range(len(params))):
            out.insert(0, (acts[i].T @ delta, delta.sum(axis=0)))
            if i:
                delta = (delta @ params[i][0].T) * (zs[i - 1] > 0)
        SEEN.append(out)
        return out

    def step_returning(acts, zs, Y, params, lr):
        return [(W - lr * dW, b - lr * db) for (W, b), (dW, db) in zip(params, grads(acts, zs, Y, params))]

    def step_in_place(acts, zs, Y, params, lr):
        for (W, b), (dW, db) in zip(params, grads(acts, zs, Y, params)):
            W -= lr * dW
            b -= lr * db

    def step_on_nothing(acts, zs, Y, params, lr):
        grads(acts, zs, Y, params)  # forgets to apply them
""")


def _stepper(tmp_path: Path, backward: str, returns: str) -> tuple[ModuleType, dict]:
    path = tmp_path / "stepper.py"
    path.write_text(_STEP_SOURCE)
    spec = importlib.util.spec_from_file_location(f"_stepper_{backward}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    d = normalise({"backward": backward, "backward_args": ["acts", "zs", "Y", "params", "lr"],
                   "backward_returns": returns}, "t")
    return module, d


@pytest.mark.parametrize("backward, returns", [("step_returning", "params"), ("step_in_place", "nothing")])
def test_a_fused_step_gives_back_the_gradients_it_applied(tmp_path: Path, backward: str, returns: str) -> None:
    """Weights of 1e3 and gradients near 1e-9: read back after a step with lr = 1, every bit of
    dW below ulp(W) ~ 1e-13 would be lost; with the suite's lr the read-back is within 2 ulp of
    what the candidate applied, and the suite's params are untouched."""
    module, d = _stepper(tmp_path, backward, returns)
    assert "fused_update" in limits_of(d)
    case = make_case(layer_sizes=[5, 7, 4], batch=6, seed=3)
    params = [(W * 1e3, b + 1e3) for W, b in case.params]
    X = case.X * 1e-9  # tiny inputs: tiny gradients of the first layer
    before = [(W.copy(), b.copy()) for W, b in params]
    adapted = adapt_module(module, d)
    acts, zs = adapted.forward(X, params)
    got = adapted.backward(acts, zs, case.Y, params)
    applied = module.SEEN[-1]
    for (gW, gb), (dW, db) in zip(got, applied):
        for g, want in ((gW, dW), (gb, db)):
            assert g.dtype == want.dtype and g.shape == want.shape
            assert np.all(np.abs(g - want) <= 2 * np.spacing(np.abs(want))), np.max(np.abs(g - want))
    # The case is a hard one: what a step with lr = 1 gives back is far outside 2 ulp.
    W1, dW1 = params[0][0], applied[0][0]
    assert np.max(np.abs(((W1 - (W1 - dW1)) - dW1) / np.spacing(np.abs(dW1)))) > 1e3
    assert all(np.array_equal(W, W0) and np.array_equal(b, b0) for (W, b), (W0, b0) in zip(params, before))


def test_a_step_declared_to_return_params_that_returns_none_names_the_key(tmp_path: Path) -> None:
    module, d = _stepper(tmp_path, "step_in_place", "params")  # updates in place, returns None
    case = make_case(layer_sizes=[3, 4, 2], batch=2, seed=0)
    adapted = adapt_module(module, d)
    acts, zs = adapted.forward(case.X, case.params)
    with pytest.raises(DeclarationMismatch, match="backward_returns = 'params'.*returned None"):
        adapted.backward(acts, zs, case.Y, case.params)


def test_a_step_that_moves_nothing_is_read_as_zero_gradients_not_refused(tmp_path: Path) -> None:
    """A saturated softmax (probabilities exactly the labels) gives gradients of exactly zero:
    a correct step then changes nothing, which is no sign of a wrong declaration."""
    module, d = _stepper(tmp_path, "step_in_place", "nothing")
    case = make_case(layer_sizes=[3, 4, 2], batch=2, seed=0)
    adapted = adapt_module(module, d)
    acts, zs = adapted.forward(case.X, case.params)
    Y = np.asarray(acts[-1])  # the labels the network already predicts exactly
    acts[-1] = Y
    got = adapted.backward(acts, zs, Y, case.params)
    assert all(not np.any(t) for pair in got for t in pair)


_MODEL_STEP = textwrap.dedent("""
    import numpy as np

    class Net:
        def __init__(self, weights, biases):
            self.W, self.b = HOLD(weights), HOLD(biases)

        def forward(self, X):
            self.a, self.z = [np.asarray(X, np.float32)], []
            for i, (W, b) in enumerate(zip(self.W, self.b)):
                z = self.a[-1] @ W + b
                self.z.append(z)
                if i == len(self.W) - 1:
                    e = np.exp(z - z.max(axis=1, keepdims=True))
                    self.a.append(e / e.sum(axis=1, keepdims=True))
                else:
                    self.a.append(np.maximum(z, 0))
            return self.a[-1]

        def step(self, Y, lr):
            delta, grads = (self.a[-1] - Y) / len(Y), []
            for i in reversed(range(len(self.W))):
                grads.insert(0, (self.a[i].T @ delta, delta.sum(axis=0)))
                if i:
                    delta = (delta @ self.W[i].T) * (self.z[i - 1] > 0)
            for i, (dW, db) in enumerate(grads):
                self.W[i] = self.W[i] - lr * dW  # rebinds the list's items
                self.b[i] = self.b[i] - lr * db
""")
_MODEL_DECL = {"model": "Net", "model_args": ["weights", "biases"], "model_cache": ["a", "z"],
               "backward": "step", "backward_args": ["Y", "lr"], "backward_returns": "nothing"}


@pytest.mark.parametrize("hold, declared, refused", [
    ("list", {}, False),  # list(weights): the same arrays in another list, found by identity
    ("(lambda xs: [np.array(x, np.float32) for x in xs])", {}, True),  # copies: model_params needed
    ("(lambda xs: [np.array(x, np.float32) for x in xs])", {"model_params": ["W", "b"]}, False),
])
def test_a_model_step_is_read_where_the_model_keeps_its_params(tmp_path: Path, hold: str, declared: dict,
                                                               refused: bool) -> None:
    """A model's step in place is read from the attributes that hold what it was built from,
    or from model_params; against what it held before the step (float32 copies included), so
    the gradients read back are the ones it applied. A model that copies its params without
    model_params is refused at once, naming the key, whatever the numbers."""
    path = tmp_path / "netmod.py"
    path.write_text(_MODEL_STEP.replace("HOLD", hold))
    spec = importlib.util.spec_from_file_location(f"_net_{len(declared)}_{refused}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    adapted = adapt_module(module, normalise({**_MODEL_DECL, **declared}, "t"))
    case = make_case(layer_sizes=[4, 5, 3], batch=3, seed=6)
    acts, zs = [np.asarray(a) for a in exact_forward(case.X, case.params)[0]], exact_forward(case.X, case.params)[1]
    if refused:
        with pytest.raises(DeclarationMismatch, match="model_params"):
            adapted.backward(acts, zs, case.Y, case.params)
        return
    got = adapted.backward(acts, zs, case.Y, case.params)
    net = module.Net([W for W, _ in case.params], [b for _, b in case.params])
    net.a, net.z = list(acts), list(zs)
    held = [(np.asarray(W).copy(), np.asarray(b).copy()) for W, b in zip(net.W, net.b)]
    net.step(case.Y, 2.0 ** 64)
    want = [((W0 - W1) / 2.0 ** 64, (b0 - b1) / 2.0 ** 64) for (W0, b0), W1, b1 in zip(held, net.W, net.b)]
    assert all(np.array_equal(g, w) for pair, wpair in zip(got, want) for g, w in zip(pair, wpair))


def test_the_fused_update_recipe_passes_through_its_declaration() -> None:
    """ADAPTERS.md's recipe 6 (a model whose step updates its weights in place) with no glue:
    the gradients read back equal the recipe's own glue's to the bit on a plain case."""
    module, d = _load("ok_decl_fused_update")
    assert len((DECLARED_DIR / "ok_decl_fused_update.toml").read_text().splitlines()) <= 10
    case = make_case(layer_sizes=[4, 6, 5, 3], batch=5, seed=1)
    adapted = adapt_module(module, d)
    acts, zs = adapted.forward(case.X, case.params)
    got = adapted.backward(acts, zs, case.Y, case.params)
    from conformance.reference import mlp

    want = mlp.backward(acts, zs, case.Y, case.params)
    for (gW, gb), (wW, wb) in zip(got, want):
        np.testing.assert_allclose(gW, wW, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(gb, wb, rtol=1e-12, atol=1e-15)


# --- one mistake, one price, whatever the interface ---------------------------------------


def test_an_unguarded_softmax_a_logits_network_uses_twice_is_charged_once(tmp_path: Path) -> None:
    """A network that returns logits runs its own softmax in backward too: without the max
    subtraction, backward's gradients are inf/nan on large logits. Replay shows exactly where,
    so backward's failure is named (backward_max_guard), one family with forward's max_guard:
    charged once, the price of the same mistake in the section's interface, not a second 40."""
    from conformance.grade.score.rubric import load_rubric, score

    name = "bug_decl_logits_unguarded"
    report = tmp_path / "report.json"
    module, toml = write_declared(name, tmp_path)
    run = run_suite(module, f"--declaration={toml}",
                    "--conformance-report", str(report), "-k", "golden and large_logits")
    assert run.returncode == 1, run.stdout[-3000:]
    tests = json.loads(report.read_text())["tests"]
    backward = [x for x in tests if "test_backward_matches_golden" in x["nodeid"] and x["outcome"] == "failed"]
    assert backward and all("backward_max_guard" in x["properties"]["diagnoses"] for x in backward)
    grade = score(load_rubric(), "graded", tests)
    charged = {k: v for k, v in grade.deductions().items() if v}
    assert charged in ({"max_guard": 15.0}, {"backward_max_guard": 15.0}), grade.deductions()


# --- runs: a wrong declaration is never a verdict; the report names the conventions ---------


def test_a_wrong_declaration_stops_the_run_as_a_usage_error(tmp_path: Path) -> None:
    toml = tmp_path / "assignment.toml"
    toml.write_text('layout = "columns"\nbias = "colum"\n')
    report = tmp_path / "report.json"
    run = run_suite(_variant("ok_decl_column_dict_cache"), f"--declaration={toml}",
                    "--conformance-report", str(report), "-k", "golden")
    assert run.returncode == USAGE_ERROR, run.stdout + run.stderr
    assert "bias" in run.stderr and "colum" in run.stderr
    assert "passed" not in run.stdout and "failed" not in run.stdout


def test_a_module_that_does_not_fit_the_declaration_is_told_which_key(tmp_path: Path) -> None:
    module = tmp_path / "mine.py"
    module.write_text("def forward(X, params):\n    return [X], []\n")
    toml = tmp_path / "a.toml"
    toml.write_text('backward = "backprop"\n')
    from conformance.candidate import InProcessCandidate

    cand = InProcessCandidate.load(str(module), str(toml))
    assert cand.load_error is not None and "backward = 'backprop'" in cand.load_error


@pytest.mark.parametrize("isolate", [False, True])
def test_a_declared_bug_is_named_and_the_report_states_the_conventions(tmp_path: Path, isolate: bool) -> None:
    name = "bug_decl_column_dict_cache"
    report = tmp_path / "report.json"
    module, toml = write_declared(name, tmp_path)
    args = [f"--declaration={toml}", "--conformance-report", str(report),
            "-k", "relu_index_silent or relu_index_visible"] + (["--isolate"] if isolate else [])
    run = run_suite(module, *args)
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr[-2000:]
    data = json.loads(report.read_text())
    assert data["conventions"]["source"] == f"--declaration {name}.toml"
    assert 'layout="columns"' in data["conventions"]["conventions"]
    failed = [t for t in data["tests"] if t["outcome"] == "failed"]
    assert failed and all("relu_index" in (t.get("properties") or {}).get("diagnoses", []) for t in failed)
    assert "conventions: " in run.stdout and "i-1 bug" in run.stdout


@pytest.mark.parametrize("name, select", [("bug_decl_column_dict_cache", "relu_index_silent_equal_widths and 0"),
                                          ("bug_decl_no_zs", "golden and backward and f64_depth2")])
def test_a_declared_candidates_reproducer_runs_as_it_reads(tmp_path: Path, name: str, select: str) -> None:
    """The reproducer of a failure builds impl through the declared conventions (the module
    itself has no forward/backward of the section's names): its lines run, from the module's
    folder, and end at the call that failed, not at an AttributeError."""
    module, toml = write_declared(name, tmp_path)
    run = run_suite(module, f"--declaration={toml}", "-k", select)
    assert run.returncode == 1, run.stdout[-3000:]
    text = run.stdout.split("reproduce:\n", 1)[1]
    lines = []
    for line in text.splitlines():
        if not line.startswith("    "):
            break
        lines.append(line[4:])
    assert any("adapt_module" in line for line in lines), lines
    done = subprocess.run([sys.executable, "-c", "\n".join(lines)], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}, timeout=120)
    # It runs to the end, or fails where the suite saw it fail: in the candidate's own code.
    frames = [line for line in done.stderr.splitlines() if line.strip().startswith('File "')]
    assert done.returncode == 0 or (frames and f"{name}.py" in frames[-1]), done.stderr[-2000:]


def test_an_interface_limit_inside_a_hypothesis_example_reads_as_a_skip(tmp_path: Path) -> None:
    """hypothesis notes any exception of an explicit example, a skip included: the skip of an
    interface limit must not read "Failing explicit example" on a run that passed."""
    name = "ok_decl_backward_recomputes"
    report = tmp_path / "r.json"
    run = run_suite(_variant(name), f"--declaration={DECLARED_DIR / (name + '.toml')}",
                    "--conformance-report", str(report), "-rs", "-k", "finite_differences")
    assert run.returncode == 0, run.stdout[-3000:]
    assert "Failing explicit example" not in run.stdout + report.read_text()
    skipped = [t for t in json.loads(report.read_text())["tests"] if t["outcome"] == "skipped"]
    assert skipped and {t["properties"].get("skip_kind") for t in skipped} == {"interface_limit"}


# --- trust: a module's own declaration never reduces what a graded run checks ---------------

HOSTILE = '''
import numpy as np
CONFORMANCE = {"backward": "gradients", "backward_args": ["X", "Y", "params"], "train": ""}

''' + FORWARD_SOURCE + '''
def gradients(X, Y, params):
    acts, zs = forward(X, params)
    delta = (acts[-1] - Y) / len(Y)
    grads = []
    for i in reversed(range(len(params))):
        grads.insert(0, (acts[i].T @ delta, delta.sum(axis=0)))
        if i:
            delta = (delta @ params[i][0].T) * (zs[i] > 0)  # the i-1 bug
    return grads

def backward(activations, pre_activations, Y, params):
    return gradients(activations[0], Y, params)
'''


def _kinds(report: Path) -> dict[str, str]:
    data = json.loads(report.read_text())
    return {t["nodeid"]: (t.get("properties") or {}).get("skip_kind", t["outcome"]) for t in data["tests"]}


def test_a_module_declaration_is_ignored_when_the_instructor_declares(tmp_path: Path) -> None:
    module = tmp_path / "hostile.py"
    module.write_text(HOSTILE)
    report = tmp_path / "graded.json"
    run = run_suite(module, "--declaration=section", "--conformance-report", str(report), "-k", "relu_index")
    data = json.loads(report.read_text())
    assert data["conventions"]["notes"] and "ignored" in data["conventions"]["notes"][0]
    kinds = _kinds(report)
    assert kinds and "interface_limit" not in kinds.values() and "self_declared" not in kinds.values()
    assert "failed" in kinds.values(), run.stdout[-2000:]


def test_a_module_declaration_limits_only_with_a_non_neutral_kind(tmp_path: Path) -> None:
    module = tmp_path / "hostile.py"
    module.write_text(HOSTILE)
    report = tmp_path / "own.json"
    run_suite(module, "--conformance-report", str(report), "-k", "relu_index")
    data = json.loads(report.read_text())
    assert data["conventions"]["trusted"] is False
    skipped = [t for t in data["tests"] if t["outcome"] == "skipped"]
    assert skipped and all(t["properties"]["skip_kind"] == "self_declared" for t in skipped)
    baseline = Baseline(areas={t["nodeid"]: t["area"] for t in skipped})  # the reference ran them
    assert not any(neutral_skip(t, baseline) for t in skipped)  # the grader counts them as failed


def test_an_instructor_declared_limit_is_neutral_for_the_grader() -> None:
    baseline = Baseline(areas={"x": "relu_index"})  # the reference ran x
    assert neutral_skip({"nodeid": "x", "properties": {"skip_kind": "interface_limit"}}, baseline)
    assert not neutral_skip({"nodeid": "x", "properties": {"skip_kind": "self_declared"}}, baseline)
    # Without a reference run (a Gradescope autograder, a score of a bare report) too: a limit the
    # submission's own declaration asked for is never neutral.
    assert neutral_skip({"nodeid": "x", "properties": {"skip_kind": "interface_limit"}}, None)
    assert not neutral_skip({"nodeid": "x", "properties": {"skip_kind": "self_declared"}}, None)


# --- adapt: propose the declaration from shapes alone -----------------------------------------


def _adapt(path: Path) -> tuple[int, str]:
    from tests.helpers import run_command

    run = run_command([sys.executable, "-m", "conformance.cli", "adapt", str(path)])
    return run.returncode, run.stdout


@pytest.mark.parametrize("name", ["ok_decl_column_dict_cache", "ok_decl_column_major", "ok_decl_class_model",
                                  "ok_decl_class_methods", "ok_decl_int_row", "ok_decl_no_zs",
                                  "ok_decl_fused_update", "ok_decl_sized_class"])
def test_adapt_proposes_the_declaration_that_fits(tmp_path: Path, name: str) -> None:
    status, text = _adapt(_variant(name))
    assert status == 0, text
    proposed = tmp_path / "proposed.toml"
    proposed.write_text(text)
    assert from_toml(proposed).values == from_toml(DECLARED_DIR / f"{name}.toml").values, text


@pytest.mark.parametrize("body, returns", [
    ("return [(W - lr * dW, b - lr * db) for (W, b), (dW, db) in zip(params, g)]", "params"),
    ("for (W, b), (dW, db) in zip(params, g):\n        W -= lr * dW\n        b -= lr * db", "nothing"),
])
def test_adapt_tells_a_step_that_returns_the_params_from_one_in_place(tmp_path: Path, body: str,
                                                                      returns: str) -> None:
    module = tmp_path / "stepper.py"
    module.write_text(_STEP_SOURCE + textwrap.dedent("""
        def backward(acts, zs, Y, params, lr):
            g = grads(acts, zs, Y, params)
        """) + "    " + body + "\n")
    status, text = _adapt(module)
    assert status in (0, 1) and "open question: bias" in text or status == 0, text  # (b broadcasts either way)
    proposed = tmp_path / "proposed.toml"
    proposed.write_text(text)
    d = from_toml(proposed).values
    assert d["backward_returns"] == returns and d["backward_args"][-1] == "lr", text


def test_adapt_proposes_a_per_layer_cache_and_maps_helpers_away(tmp_path: Path) -> None:
    """The course style: the ((A_prev, W, b), Z) cache is named from shapes, relu/softmax helpers
    returning (A, Z) are mapped to nothing, compute_cost becomes the loss; only the labels stay a
    question (AL - Y runs with integer labels too)."""
    status, text = _adapt(_variant("ok_decl_layer_cache"))
    questions = [line for line in text.splitlines() if line.startswith("# open question")]
    assert status == 1 and len(questions) == 1 and "labels" in questions[0], text
    proposed = tmp_path / "proposed.toml"
    proposed.write_text(text)
    assert from_toml(proposed).values == from_toml(DECLARED_DIR / "ok_decl_layer_cache.toml").values, text


def test_adapt_says_which_question_it_cannot_settle(tmp_path: Path) -> None:
    status, text = _adapt(_variant("ok_decl_per_sample_columns"))
    assert status == 1 and "open question: labels" in text and "per_sample = true" in text
    module = tmp_path / "nothing.py"
    module.write_text("def hello(x):\n    return x\n")
    status, text = _adapt(module)
    assert status == 1 and "no forward function" in text


def test_adapt_names_a_forward_that_returns_only_its_output(tmp_path: Path) -> None:
    """A forward that keeps nothing but the output (no activations, no pre-activations): the
    probe says a declaration cannot express it, instead of failing on the output's first row."""
    module = tmp_path / "output_only.py"
    module.write_text(textwrap.dedent("""
        import numpy as np

        def forward(X, params):
            a = X
            for i, (W, b) in enumerate(params):
                z = a @ W + b
                a = np.maximum(z, 0) if i < len(params) - 1 else np.exp(z - z.max(1, keepdims=True))
            return a / a.sum(1, keepdims=True)

        def backward(X, Y, params):
            return [(np.zeros_like(W), np.zeros_like(b)) for W, b in params]
    """))
    status, text = _adapt(module)
    assert status == 1 and "could not be probed" not in text, text
    assert "forward_returns = ['output'], which a declaration cannot express" in text, text


def test_adapt_never_runs_the_module_in_its_own_process(tmp_path: Path) -> None:
    module = tmp_path / "loud.py"
    marker = tmp_path / "ran"
    module.write_text(f"import os\nopen({str(marker)!r}, 'w').write(str(os.getpid()))\n")
    _adapt(module)
    assert marker.exists() and marker.read_text() != str(__import__("os").getpid())


# --- the grader: the instructor's declaration, one config field -----------------------------


def test_the_grader_judges_a_class_with_the_instructors_declaration(tmp_path: Path) -> None:
    from conformance.grade.run.jobs import GradeConfig, pytest_command
    from conformance.grade.run.jobs import Job
    from conformance.grade.run.runner import reference_job, run_job

    text = (DECLARED_DIR / "ok_decl_column_dict_cache.toml").read_text()
    config = GradeConfig(require_mnist=False, isolate=False, declaration=text,
                         extra_args=("-m", "not mnist", "-k", "relu_index_visible or candidate_loads"))
    assert config.key() != GradeConfig(require_mnist=False, isolate=False, extra_args=config.extra_args).key()
    (tmp_path / "out").mkdir()
    cmd = pytest_command(config, tmp_path / "m.py", tmp_path / "out" / "r.json", tmp_path / "out" / "j.xml")
    assert f"--declaration={tmp_path / 'out' / 'declaration.toml'}" in cmd
    assert (tmp_path / "out" / "declaration.toml").read_text() == text
    plain = pytest_command(GradeConfig(), tmp_path / "m.py", tmp_path / "out" / "r.json", tmp_path / "out" / "j.xml")
    assert "--declaration=section" in plain  # a submission's own literal never counts
    assert reference_job(config).config.declaration == ""  # the reference has the section's interface
    results = {}
    for name in ("ok_decl_column_dict_cache", "bug_decl_column_dict_cache"):
        data = declared_source(name)[0].encode()
        results[name] = run_job(Job(name=name, sha256=hashlib.sha256(data).hexdigest(), files={"mlp.py": data},
                                    module="mlp.py", config=config))
    ok, bug = results["ok_decl_column_dict_cache"], results["bug_decl_column_dict_cache"]
    assert ok.status == "graded" and bug.status == "graded", (ok.message, bug.message)
    assert ok.report["conventions"]["source"] == "--declaration declaration.toml"
    outcomes = {t["outcome"] for t in ok.report["tests"]}
    assert outcomes == {"passed"}, ok.report["tests"]
    assert any(t["outcome"] == "failed" for t in bug.report["tests"])


def test_the_gradescope_bundle_ships_the_instructors_declaration(tmp_path: Path) -> None:
    import zipfile

    from conformance.grade import gradescope

    out = tmp_path / "autograder.zip"
    toml = DECLARED_DIR / "ok_decl_column_dict_cache.toml"
    assert gradescope.main(["bundle", str(out), "--no-mnist", "--declaration", str(toml)]) == 0
    with zipfile.ZipFile(out) as zf:
        assert zf.read("declaration.toml").decode() == toml.read_text()
        assert '"$ROOT/source/declaration.toml"' in zf.read("run_autograder").decode()
        assert json.loads(zf.read("bundle.json"))["declared"] is True
    bad = tmp_path / "bad.toml"
    bad.write_text('layout = "diagonal"\n')
    assert gradescope.main(["bundle", str(tmp_path / "no.zip"), "--no-mnist", "--declaration", str(bad)]) == 2
    assert not (tmp_path / "no.zip").exists()


# --- pre-activations that are never kept: forward_returns = ["acts"] ------------------------

NO_ZS = {"forward_returns": ["acts"], "backward_args": ["acts", "Y", "params"]}


def test_a_forward_that_keeps_no_pre_activations_is_declarable_with_its_limit() -> None:
    d = normalise(NO_ZS, "t")
    assert "pre_activations" in limits_of(d) and "backward_alone" not in limits_of(d)
    assert "pre-activations" in limits_of(d)["pre_activations"]
    assert "pre_activations" not in limits_of(normalise({}, "t"))  # the section's interface keeps them
    declared = from_toml(DECLARED_DIR / "ok_decl_no_zs.toml")
    assert set(declared.limits()) == {"pre_activations"}
    assert 'forward_returns=["acts"]' in declared.conventions()


def test_no_zs_adapter_gives_none_and_drops_the_zs_it_is_given() -> None:
    from conformance.reference import mlp

    module, d = _load("ok_decl_no_zs")
    adapted = adapt_module(module, d)
    case = make_case([4, 5, 6, 3], batch=5, seed=0)
    acts, zs = adapted.forward(case.X, case.params)
    ref_acts, ref_zs = mlp.forward(case.X, case.params)
    assert zs is None and all(np.array_equal(a, r) for a, r in zip(acts, ref_acts))
    for given in (ref_zs, None):  # the suite may give any zs: a backward that takes none never sees them
        grads = adapted.backward(ref_acts, given, case.Y, case.params)
        for (dW, db), (rW, rb) in zip(grads, mlp.backward(ref_acts, ref_zs, case.Y, case.params)):
            assert np.allclose(dW, rW, rtol=1e-12, atol=1e-15) and np.allclose(db, rb, rtol=1e-12, atol=1e-15)


PER_SAMPLE_NO_ZS = """
import numpy as np

def predict(x, params):
    acts = [x]
    for i, (W, b) in enumerate(params):
        z = acts[-1] @ W + b
        if i == len(params) - 1:
            e = np.exp(z - z.max())
            acts.append(e / e.sum())
        else:
            acts.append(np.maximum(z, 0))
    return acts

def grads_of(acts, y, params):
    delta, out = acts[-1] - y, []
    for i in reversed(range(len(params))):
        out.insert(0, (np.outer(acts[i], delta), delta))
        if i:
            delta = (params[i][0] @ delta) * (acts[i] > 0)
    return out
"""


def test_per_sample_code_may_keep_no_pre_activations(tmp_path: Path) -> None:
    from conformance.reference import mlp

    path = tmp_path / "per_sample_no_zs.py"
    path.write_text(PER_SAMPLE_NO_ZS)
    spec = importlib.util.spec_from_file_location("per_sample_no_zs", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    d = normalise(dict(NO_ZS, per_sample=True, forward="predict", backward="grads_of"), "t")
    assert {"pre_activations", "per_sample"} <= set(limits_of(d))
    adapted = adapt_module(module, d)
    case = make_case([3, 4, 2], batch=3, seed=1)
    acts, zs = adapted.forward(case.X, case.params)
    ref_acts, ref_zs = mlp.forward(case.X, case.params)
    assert zs is None and all(np.allclose(a, r, rtol=1e-12, atol=0) for a, r in zip(acts, ref_acts))
    grads = adapted.backward(ref_acts, ref_zs, case.Y, case.params)
    for (dW, db), (rW, rb) in zip(grads, mlp.backward(ref_acts, ref_zs, case.Y, case.params)):
        assert np.allclose(dW, rW, rtol=1e-10, atol=1e-14) and np.allclose(db, rb, rtol=1e-10, atol=1e-14)


def test_a_declared_no_zs_forward_passes_with_its_zs_checks_skipped_as_limits(tmp_path: Path) -> None:
    name = "ok_decl_no_zs"
    report = tmp_path / "report.json"
    run = run_suite(_variant(name), f"--declaration={DECLARED_DIR / (name + '.toml')}",
                    "--conformance-report", str(report))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    data = json.loads(report.read_text())
    assert "pre_activations" in data["conventions"]["limits"]
    assert not [t for t in data["tests"] if t["outcome"] == "failed"]
    kinds = _kinds(report)
    assert kinds["conformance/test_interface.py::test_pre_activations_hold_z_before_relu"] == "interface_limit"
    limited = [n for n, k in kinds.items() if k == "interface_limit"]
    assert limited == ["conformance/test_interface.py::test_pre_activations_hold_z_before_relu"], limited
    ran = {(t.get("properties") or {}).get("area") for t in data["tests"] if t["outcome"] == "passed"}
    assert {"interface", "gradients", "stability", "relu_index", "golden", "efficiency"} <= ran
    assert any("test_forward_backward_self_consistent" in n and k == "passed" for n, k in kinds.items())


def test_a_declared_no_zs_bug_fails_and_is_named(tmp_path: Path) -> None:
    name = "bug_decl_no_zs"
    report = tmp_path / "report.json"
    module, toml = write_declared(name, tmp_path)
    run = run_suite(module, f"--declaration={toml}",
                    "--conformance-report", str(report), "-k", "relu_index")
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr[-2000:]
    data = json.loads(report.read_text())
    failed = [t for t in data["tests"] if t["outcome"] == "failed"]
    named_keys = {k for t in failed for k in (t.get("properties") or {}).get("diagnoses", [])}
    assert failed and "relu_index" in named_keys, named_keys


OWN_NO_ZS = declared_source("ok_decl_no_zs")[0] + """
CONFORMANCE = {"labels": "integer", "forward": "feedforward", "forward_returns": ["acts"],
               "backward": "backprop", "backward_args": ["acts", "Y", "params"]}
"""


def test_a_modules_own_no_zs_declaration_limits_with_a_non_neutral_kind(tmp_path: Path) -> None:
    module = tmp_path / "own_no_zs.py"
    module.write_text(OWN_NO_ZS)
    report = tmp_path / "own.json"
    run_suite(module, "--conformance-report", str(report), "-k", "pre_activations_hold or forward_structure")
    data = json.loads(report.read_text())
    assert data["conventions"]["trusted"] is False and "pre_activations" in data["conventions"]["limits"]
    kinds = _kinds(report)
    assert kinds["conformance/test_interface.py::test_pre_activations_hold_z_before_relu"] == "self_declared"
    assert "interface_limit" not in kinds.values()
    skipped = [t for t in data["tests"] if t["outcome"] == "skipped"]
    baseline = Baseline(areas={t["nodeid"]: t["area"] for t in skipped})
    assert skipped and not any(neutral_skip(t, baseline) for t in skipped)


DODGER = """
import numpy as np

def forward(X, params):
    acts = [X]
    for i, (W, b) in enumerate(params):
        z = acts[-1] @ W + b
        if i == len(params) - 1:
            e = np.exp(z - z.max(axis=1, keepdims=True))
            acts.append(e / e.sum(axis=1, keepdims=True))
        else:
            acts.append(np.maximum(z, 0))
    return acts, None  # no zs: must not skip the zs checks

def backward(activations, pre_activations, Y, params):
    delta, grads = (activations[-1] - Y) / len(Y), []
    for i in reversed(range(len(params))):
        grads.insert(0, (activations[i].T @ delta, delta.sum(axis=0)))
        if i:
            delta = (delta @ params[i][0].T) * (activations[i] > 0)
    return grads
"""


@pytest.mark.parametrize("declaration", [None, "section"])
def test_an_undeclared_forward_returning_none_zs_cannot_dodge_their_checks(tmp_path: Path,
                                                                          declaration: str | None) -> None:
    module = tmp_path / "dodger.py"
    module.write_text(DODGER)
    report = tmp_path / "report.json"
    args = ["--conformance-report", str(report), "-k", "pre_activations_hold or test_forward_structure"]
    run = run_suite(module, *args + ([f"--declaration={declaration}"] if declaration else []))
    assert run.returncode == 1, run.stdout[-3000:]
    kinds = _kinds(report)
    assert kinds["conformance/test_interface.py::test_pre_activations_hold_z_before_relu"] == "failed"
    assert kinds["conformance/test_interface.py::test_forward_structure"] == "failed"
    assert "interface_limit" not in kinds.values() and "self_declared" not in kinds.values()
    assert "pre_activations is a NoneType" in run.stdout
