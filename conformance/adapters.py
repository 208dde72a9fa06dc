"""The adapter: a declared candidate seen through the section's interface.

``adapt_module(module, declaration)`` returns an object whose ``forward``, ``backward``,
``softmax``, ``relu``, ``cross_entropy``, ``init_params`` and ``train`` take and return what
SPEC.md says, by calling the candidate's own functions (or methods) in its declared
conventions (conformance/declaration.py). Only exact operations touch the numbers on the way
in and out: transposes, reshapes, one-hot <-> integer labels, choosing dict keys, stacking
samples. Two are not plain moves and the report says so (declaration.limits_of): per-sample
gradients (a running sum in the candidate's dtype, divided by the batch size) and losses
(``np.mean``, in their dtype) are averaged.

Runs where the candidate runs: in the test process (in-process mode), or inside the isolated
worker, which executes this file's source before the candidate is imported (so it imports only
numpy and the standard library, never ``conformance``). The declaration arrives as plain data.
A result that does not have the declared shape is passed on unchanged, so the contract check
sees the candidate's mistake instead of a conversion hiding it.
"""

import types

import numpy as np

ROLES = ("forward", "backward", "softmax", "relu", "cross_entropy", "init_params", "train")

# The learning rate a fused step (backward_returns "params" or "nothing") is run with. A power
# of two, so lr * dW is exact; and so large that W - lr * dW is dominated by the step, so
# (W - W_new) / lr gives back dW to within about 2 ulp(dW) + |W| * 2**-116: the candidate's own
# precision (ADAPTERS.md, "fused_update"). With lr = 1 every bit of dW below ulp(W) would be lost.
# 2**64 * |dW| stays finite in float32 for |dW| < 1.8e19.
FUSED_STEP_LR = 2.0 ** 64


class DeclarationMismatch(Exception):
    """The candidate does not have what the declaration says (a missing function, method, class,
    cache key): raised when called, naming the declared key."""


class InterfaceLimit(Exception):
    """The declared interface cannot take these inputs exactly (e.g. integer labels for a Y
    that is not one-hot)."""


def adapt_module(module, d):
    """The section's interface over ``module`` declared by ``d`` (normalised declaration)."""
    return _Adapter(module, d).namespace()


def declared_problems(module, d):
    """What the declaration names for forward/backward (and the model class) that the module
    does not define: each a sentence naming the key. Empty when everything required is there."""
    adapter = _Adapter(module, d)
    problems = []
    if d["model"] and not callable(adapter._get(module, d["model"], None)):
        problems.append(f"model = {d['model']!r}: the module defines no such class")
    for role in ("forward", "backward"):
        if not adapter._exists(d[role]):
            where = f"class {d['model']} nor the module" if d["model"] else "the module"
            problems.append(f"{role} = {d[role]!r}: neither {where} defines it")
    if d["output"] == "logits" and not adapter._exists(d["softmax"]):
        problems.append(f"output = \"logits\" reads probabilities with softmax = {d['softmax']!r}, "
                        "which is not defined")
    return problems


class _Adapter:
    def __init__(self, module, d):
        self.module, self.d = module, d
        self.columns = d["layout"] == "columns"

    # ------------------------------------------------------------------ lookup
    def namespace(self):
        ns = types.SimpleNamespace()
        ns.__declared_by__ = self.d
        for role in ROLES:
            name = self.d[role]
            if not name or (role == "cross_entropy" and "logits" in self.d["loss_args"]):
                continue  # not given (a loss on logits cannot take the suite's probabilities)
            if role in ("forward", "backward") or self._exists(name):
                setattr(ns, role, self._wrapper(role))
        return ns

    def _exists(self, name):
        if self.d["model"]:
            cls = self._get(self.module, self.d["model"], None)
            if cls is not None and callable(self._get(cls, name, None)):
                return True
        return callable(self._get(self.module, name, None))

    @staticmethod
    def _get(obj, dotted, default):
        try:
            for part in dotted.split("."):
                obj = getattr(obj, part)
            return obj
        except Exception:  # noqa: BLE001 - candidate attribute access may raise anything
            return default

    def _function(self, role, model=None):
        name = self.d[role]
        if model is not None:
            method = self._get(model, name, None)
            if callable(method):
                return method
        found = self._get(self.module, name, None)
        if not callable(found):
            where = f"class {self.d['model']} nor the module" if self.d["model"] else "the module"
            raise DeclarationMismatch(f"declared {role} = {name!r}, but neither {where} defines it")
        return found

    def _wrapper(self, role):
        method = getattr(self, "_" + role)

        def call(*args, **kwargs):
            return method(*args, **kwargs)

        call.__name__ = call.__qualname__ = role
        return call

    # ------------------------------------------------------------------ exact conversions
    def x_in(self, X):
        return X.T if self.columns else X

    def y_in(self, Y):
        if self.d["labels"] == "integer":
            Y = np.asarray(Y)
            hot = Y == 1
            if Y.ndim != 2 or not (np.all(hot.sum(axis=1) == 1) and np.all((Y == 0) | hot)):
                raise InterfaceLimit("the declared integer labels need one-hot Y rows (exactly one 1, "
                                     "zeros elsewhere)")
            return hot.argmax(axis=1)
        return Y.T if self.columns else Y

    def w_in(self, W):
        return W.T if self.columns else W

    def b_in(self, b):
        shape = {"flat": (-1,), "column": (-1, 1), "row": (1, -1)}[self.d["bias"]]
        return b.reshape(shape)

    def params_in(self, params):
        Ws = [self.w_in(W) for W, _ in params]
        bs = [self.b_in(b) for _, b in params]
        kind = self.d["params"]
        if kind == "pairs":
            return [(W, b) for W, b in zip(Ws, bs)]
        if kind == "lists":
            return Ws, bs
        wn, bn = self.d["names"]
        first, out = self.d["first_layer"], {}
        for i, (W, b) in enumerate(zip(Ws, bs)):
            out[wn.format(l=i + first)] = W
            out[bn.format(l=i + first)] = b
        return out

    def a_out(self, A):
        A = np.asarray(A) if isinstance(A, (list, tuple)) else A
        return A.T if self.columns and getattr(A, "ndim", 0) == 2 else A

    def b_out(self, db, n):
        """A bias gradient of the declared form ((k,), (k, 1) or (1, k)) as the contract's (k,).
        Only the form is mapped: a wrong size k stays for the contract check to show, and any
        other form is passed on as the candidate returned it."""
        shape = getattr(db, "shape", None)
        if shape is None:
            return db
        form = self.d["bias"]
        if (form == "flat" and len(shape) == 1) or (len(shape) == 2 and shape[1 if form == "column" else 0] == 1
                                                    and form != "flat"):
            return db.reshape(-1)
        return db  # not the declared form: the contract check shows it as it is

    def w_out(self, dW):
        return dW.T if self.columns and getattr(dW, "ndim", 0) == 2 else dW

    def pairs_out(self, result, kind, names, sizes):
        """A declared parameter (or gradient) container as the contract's [(W, b), ...]."""
        L = len(sizes)
        if kind == "pairs":
            if not isinstance(result, (list, tuple)):
                return result
            pairs = list(result)
        elif kind == "lists":
            if not (isinstance(result, (list, tuple)) and len(result) == 2):
                raise DeclarationMismatch(f"declared a container of two lists (Ws, bs), got {type(result).__name__}")
            pairs = list(zip(result[0], result[1]))
        else:
            if not isinstance(result, dict):
                raise DeclarationMismatch(f"declared a dict ({names[0]}, {names[1]}, ...), got {type(result).__name__}")
            wn, bn = names
            first, pairs = self.d["first_layer"], []
            for i in range(L):
                keys = (wn.format(l=i + first), bn.format(l=i + first))
                missing = [k for k in keys if k not in result]
                if missing:
                    raise DeclarationMismatch(f"declared the key(s) {missing} (names {names}, "
                                              f"first_layer = {first}); the result has {sorted(map(str, result))[:12]}")
                pairs.append((result[keys[0]], result[keys[1]]))
        out = []
        for i, pair in enumerate(pairs):
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
                out.append(pair)
                continue
            n = sizes[i] if i < L else -1
            moved = (self.w_out(pair[0]), self.b_out(pair[1], n))
            out.append(list(moved) if type(pair) is list else moved)  # a list stays a list, any tuple a tuple
        return out

    def word(self, word, params, x=None, containers=None):
        """The value of a declared argument word (X: already in the candidate's layout).
        ``containers`` (a dict) keeps each parameter container built, so a step taken in place
        can be read back from the very objects the candidate was given."""
        if word == "X":
            return x
        if containers is not None and word in containers:
            return containers[word]
        if word == "weights":
            value = [self.w_in(W) for W, _ in params]
        elif word == "biases":
            value = [self.b_in(b) for _, b in params]
        else:
            value = self.params_in(params)
        if containers is not None:
            containers[word] = value
        return value

    # ------------------------------------------------------------------ caches
    def read_cache(self, cache, X, output):
        """(acts, zs) in the candidate's layout from a declared cache."""
        form = self.d["cache"]
        if form == "acts_zs":
            if not (isinstance(cache, (list, tuple)) and len(cache) == 2):
                raise DeclarationMismatch(f"declared cache = \"acts_zs\" (a pair), got {type(cache).__name__}")
            return list(cache[0]), list(cache[1])
        if "layers" in form:
            return self._read_layers(cache, form["layers"], X, output)
        if not isinstance(cache, dict):
            raise DeclarationMismatch(f"declared a dict cache ({form['A']}, {form['Z']}), got {type(cache).__name__}")
        zs, l = [], 1
        while form["Z"].format(l=l) in cache:
            zs.append(cache[form["Z"].format(l=l)])
            l += 1
        if not zs:
            raise DeclarationMismatch(f"declared the cache key {form['Z'].format(l=1)!r}; the cache has "
                                      f"{sorted(map(str, cache))[:12]}")
        acts = [cache.get(form["A"].format(l=0), X)]
        for l in range(1, len(zs) + 1):
            key = form["A"].format(l=l)
            if key in cache:
                acts.append(cache[key])
            elif l == len(zs) and output is not None:
                acts.append(output)
            else:
                raise DeclarationMismatch(f"declared the cache key {key!r}; the cache has "
                                          f"{sorted(map(str, cache))[:12]}")
        return acts, zs

    def _read_layers(self, cache, pattern, X, output):
        """(acts, zs) from a list with one entry per layer, each shaped like ``pattern``."""
        if not isinstance(cache, (list, tuple)) or not cache:
            raise DeclarationMismatch(f"declared cache = {{layers = {pattern}}} (a list, one entry per "
                                      f"layer), got {type(cache).__name__}")
        found = [self._match(entry, pattern, f"cache[{l}]") for l, entry in enumerate(cache)]
        zs = [f["Z"] for f in found]
        if "A" in found[0]:
            acts = [f["A"] for f in found]
            last = found[-1].get("A_out", output)
        else:
            acts = [X] + [f["A_out"] for f in found[:-1]]
            last = found[-1]["A_out"]
        if last is None:
            raise DeclarationMismatch(f"declared cache = {{layers = {pattern}}} holds no layer's output "
                                      "(A_out): forward must also return its output")
        return acts + [last], zs

    def _match(self, entry, pattern, where):
        """The named items of one cache entry, matched against its declared (nested) pattern."""
        if not (isinstance(entry, (list, tuple)) and len(entry) == len(pattern)):
            got = f"{type(entry).__name__} of length {len(entry)}" if isinstance(entry, (list, tuple)) else type(entry).__name__
            raise DeclarationMismatch(f"declared each cache entry as {pattern}, but {where} is a {got}")
        out = {}
        for i, (item, word) in enumerate(zip(entry, pattern)):
            if isinstance(word, list):
                out.update(self._match(item, word, f"{where}[{i}]"))
            elif word != "_":
                out[word] = item
        return out

    def build_cache(self, acts, zs, params):
        """The declared cache holding the suite's activations (candidate's layout) and params."""
        form = self.d["cache"]
        if form == "acts_zs":
            return list(acts), list(zs)
        if "layers" in form:
            def fill(pattern, l):
                values = {"A": acts[l], "A_out": acts[l + 1], "Z": zs[l],
                          "W": self.w_in(params[l][0]), "b": self.b_in(params[l][1])}
                return tuple(fill(w, l) if isinstance(w, list) else values[w] for w in pattern)
            return [fill(form["layers"], l) for l in range(len(zs))]
        out = {form["A"].format(l=l): a for l, a in enumerate(acts)}
        out.update({form["Z"].format(l=l + 1): z for l, z in enumerate(zs)})
        return out

    def cache_buildable(self):
        """declaration.cache_buildable, restated (this file imports nothing from conformance)."""
        form = self.d["cache"]
        if form == "opaque":
            return False
        if isinstance(form, dict) and "layers" in form:
            def words(p):
                return [w for i in p for w in (words(i) if isinstance(i, list) else [i])]
            return "_" not in words(form["layers"])
        return True

    # ------------------------------------------------------------------ models
    def model(self, params, containers=None):
        cls = self._get(self.module, self.d["model"], None)
        if not callable(cls):
            raise DeclarationMismatch(f"declared model = {self.d['model']!r}, which the module does not define")
        if "sizes" not in self.d["model_args"]:
            containers = {} if containers is None else containers
            model = cls(*[self.word(w, params, containers=containers) for w in self.d["model_args"]])
            if self.d["backward_returns"] == "nothing" and not self.d["model_params"]:
                containers["_held_by"] = self._holders(model, containers)
            return model
        # Built from its layer sizes, it draws its own weights: the case's params replace them,
        # in the attribute(s) model_params names (what the model holds is then the case's).
        sizes = [int(np.shape(params[0][0])[0])] + [int(np.size(b)) for _, b in params]
        model = cls(*[sizes for _ in self.d["model_args"]])
        containers = {} if containers is None else containers
        names = self.d["model_params"]
        words = ["params"] if len(names) == 1 else ["weights", "biases"]
        for name, word in zip(names, words):
            if not hasattr(model, name):
                raise DeclarationMismatch(f"declared model_params = {names}, but the model built from "
                                          f"sizes {sizes} has no attribute {name!r}")
            setattr(model, name, self.word(word, params, containers=containers))
        return model

    # ------------------------------------------------------------------ forward
    def keeps_zs(self):
        """Whether forward gives its pre-activations (declaration.keeps_pre_activations, restated:
        this file imports nothing from conformance). When not, forward's zs are None."""
        d, returns = self.d, set(self.d["forward_returns"])
        return ({"acts", "zs"} <= returns
                or (d["cache"] not in (None, "opaque") and ("cache" in returns or d["model_cache"] is not None)))

    def _forward(self, X, params):
        if self.d["per_sample"]:
            return self._per_sample_forward(X, params)
        acts, zs = self._forward_raw(self.x_in(X), params)
        return self._acts_out(acts), None if zs is None else [self.a_out(z) for z in zs]

    def _forward_raw(self, x, params):
        """(acts, zs) in the candidate's layout, the last activation as the candidate gives it."""
        model = self.model(params) if self.d["model"] else None
        fn = self._function("forward", model)
        result = fn(*[self.word(w, params, x) for w in self.d["forward_args"]])
        words = self.d["forward_returns"]
        if len(words) == 1:
            result = (result,)
        elif not (isinstance(result, (list, tuple)) and len(result) == len(words)):
            raise DeclarationMismatch(f"declared forward_returns = {words}, got {type(result).__name__}"
                                      + (f" of length {len(result)}" if isinstance(result, (list, tuple)) else ""))
        got = dict(zip(words, result))
        if not self.keeps_zs():  # forward keeps no pre-activations (limit "pre_activations")
            acts, zs = list(got["acts"]), None
        elif "acts" in got and "zs" in got:
            acts, zs = list(got["acts"]), list(got["zs"])
        else:
            cache = got["cache"] if "cache" in got else self._model_cache(model)
            acts, zs = self.read_cache(cache, x, got.get("output"))
        return acts, zs

    def _model_cache(self, model):
        mc = self.d["model_cache"]
        if isinstance(mc, list):
            return tuple(self._attr(model, name) for name in mc)
        return self._attr(model, mc)

    def _attr(self, model, name, key="model_cache"):
        try:
            return getattr(model, name)
        except AttributeError:
            when = "forward" if key == "model_cache" else "backward"
            raise DeclarationMismatch(f"declared {key} = {name!r}, but the model has no such "
                                      f"attribute after {when}") from None

    def _probs(self, logits):
        """The candidate's own softmax of its logits (output = "logits")."""
        return self._function("softmax")(logits)

    def _acts_out(self, acts):
        acts = list(acts)
        if self.d["output"] == "logits" and acts:
            acts[-1] = self._probs(acts[-1])
        return [self.a_out(a) for a in acts]

    def _sample(self, row):
        return row.reshape(-1, 1) if self.columns else row

    def _per_sample_forward(self, X, params):
        per = [self._forward_raw(self._sample(X[i]), params) for i in range(X.shape[0])]
        keeps = self.keeps_zs()
        L = (len(per[0][1]) if keeps else len(per[0][0]) - 1) if per else 0
        acts = [np.stack([np.asarray(p[0][l]).reshape(-1) for p in per]) for l in range(L + 1)]
        if self.d["output"] == "logits" and per:
            acts[-1] = np.stack([np.asarray(self._probs(p[0][L])).reshape(-1) for p in per])
        if not keeps:
            return acts, None
        zs = [np.stack([np.asarray(p[1][l]).reshape(-1) for p in per]) for l in range(L)]
        return acts, zs

    # ------------------------------------------------------------------ backward
    def _backward(self, activations, pre_activations, Y, params):
        if self.d["per_sample"]:
            return self._per_sample_backward(activations, pre_activations, Y, params)
        acts = [self.x_in(a) for a in activations]
        zs = [self.x_in(z) for z in pre_activations] if self.keeps_zs() else None  # never taken then
        return self._backward_raw(acts, zs, self.y_in(Y), params)

    def _backward_raw(self, acts, zs, y, params):
        if self.d["output"] == "logits" and acts:
            acts = acts[:-1] + [zs[-1]]  # the candidate keeps logits where the suite keeps probabilities
        sizes = [int(np.size(b)) for _, b in params]
        fused = self.d["backward_returns"] != "grads"
        # A fused step runs on copies: the suite's params are never touched.
        given = [(np.array(W, copy=True), np.array(b, copy=True)) for W, b in params] if fused else params
        containers: dict = {}
        model = self.model(given, containers) if self.d["model"] else None
        own_cache = None
        if not self._takes_given(model):
            # Opaque cache, or backward(X, ...): its own forward on the same X (limit "backward_alone").
            fwd = self._function("forward", model)
            result = fwd(*[self.word(w, params, acts[0]) for w in self.d["forward_args"]])
            words = self.d["forward_returns"]
            got = dict(zip(words, result if len(words) > 1 else (result,)))
            own_cache = got.get("cache")
        elif model is not None and self.d["model_cache"] is not None:
            cache = self.build_cache(acts, zs, given)
            mc = self.d["model_cache"]
            if isinstance(mc, list):
                setattr(model, mc[0], list(acts))
                setattr(model, mc[1], list(zs))
            else:
                setattr(model, mc, cache)
        fn = self._function("backward", model)
        args: list = []
        for word in self.d["backward_args"]:
            if word == "acts":
                args.append(list(acts))
            elif word == "zs":
                args.append(list(zs))
            elif word == "Y":
                args.append(y)
            elif word in ("params", "weights", "biases"):
                args.append(self.word(word, given, containers=containers))
            elif word == "X":
                args.append(acts[0])
            elif word == "output":
                args.append(acts[-1])
            elif word == "lr":
                args.append(FUSED_STEP_LR)
            else:
                args.append(own_cache if own_cache is not None else self.build_cache(acts, zs, given))
        before = params
        if fused and self.d["backward_returns"] == "nothing":
            # The params as the candidate holds them when it steps (a model may have converted
            # them, to float32 say): the step is read back against those, not the suite's.
            held = self._stepped_params(None, containers, model, sizes)
            before = [tuple(np.array(t, copy=True) for t in pair) for pair in held]
        result = fn(*args)
        if fused:
            return self._stepped_gradients(result, before, containers, model, sizes)
        return self.pairs_out(result, self.d["grads"], self.d["grad_names"], sizes)

    def _stepped_gradients(self, result, params, containers, model, sizes):
        """(params before - after) / lr, in the stepped arrays' dtype (limit "fused_update")."""
        after = self._stepped_params(result, containers, model, sizes)
        try:
            steps = [[(np.asarray(p, np.asarray(q).dtype) - q) / FUSED_STEP_LR for p, q in zip(old, new)]
                     for old, new in zip(params, after)]
        except Exception:  # noqa: BLE001 - not arrays of the params' shapes: the contract check shows them
            return after
        return [tuple(pair) for pair in steps]

    def _holders(self, model, containers):
        """The model's attributes that hold the containers it was built from (the very list or
        dict, or a list of the very arrays), found right after construction: a step in place is
        read from them, whether it updates the arrays or rebinds the list's items. A model that
        keeps none (it copies them) needs model_params: said at once, whatever the numbers."""
        attrs = vars(model) if hasattr(model, "__dict__") else {}
        held = {}
        for word in ("params", "weights", "biases"):
            given = containers.get(word)
            if given is None:
                continue
            arrays = [id(x) for x in (given.values() if isinstance(given, dict) else given)]
            for name, value in attrs.items():
                if value is given or (isinstance(value, (list, tuple)) and len(value) == len(arrays)
                                      and [id(x) for x in value] == arrays):
                    held[word] = name
                    break
        if not ("params" in held or {"weights", "biases"} <= set(held)):
            raise DeclarationMismatch(f"declared backward_returns = 'nothing' for the model {self.d['model']!r}, "
                                      "but it keeps none of the params it is built from (it copies them): name "
                                      "the attribute(s) holding them with model_params")
        return [held["params"]] if "params" in held else [held["weights"], held["biases"]]

    def _stepped_params(self, result, containers, model, sizes):
        """The params after the candidate's step, as the contract's [(W, b), ...]."""
        names, kind = self.d["names"], self.d["params"]
        if self.d["backward_returns"] == "params":
            if result is None:
                raise DeclarationMismatch("declared backward_returns = 'params' (backward returns the "
                                          "stepped params), but backward returned None: if it updates them in "
                                          "place, declare backward_returns = 'nothing'")
            return self.pairs_out(result, kind, names, sizes)
        mp = self.d["model_params"] or containers.get("_held_by")
        if mp:
            found = [self._attr(model, name, "model_params") for name in mp]
            container = found[0] if len(mp) == 1 else (found[0], found[1])
            kind = kind if len(mp) == 1 else "lists"
        elif "params" in containers:
            container = containers["params"]
        else:
            container, kind = (containers.get("weights"), containers.get("biases")), "lists"
        return self.pairs_out(container, kind, names, sizes)

    def _takes_given(self, model):
        """declaration.backward_takes_given_activations, restated (no import of conformance)."""
        args = set(self.d["backward_args"])
        if "cache" in args:
            return self.cache_buildable()
        takes_them = bool(args & {"acts", "zs", "output"}) and "X" not in args
        if model is not None:
            return (self.d["model_cache"] is not None and self.cache_buildable()) or takes_them
        return takes_them

    def _per_sample_backward(self, activations, pre_activations, Y, params):
        B = Y.shape[0]
        labels = self.y_in(Y) if self.d["labels"] == "integer" else None
        total = None
        for i in range(B):  # a running sum (not a stack: B copies of every dW would be the suite's cost)
            acts = [self._sample(a[i]) for a in activations]
            zs = [self._sample(z[i]) for z in pre_activations] if self.keeps_zs() else None
            y = labels[i] if labels is not None else self._sample(Y[i])
            grads = [(np.asarray(dW), np.asarray(db).reshape(-1)) for dW, db in self._backward_raw(acts, zs, y, params)]
            if total is None:
                # the candidate's dtype: its precision is what the suite holds it to
                total = [(np.array(dW, copy=True), np.array(db, copy=True)) for dW, db in grads]
            else:
                for (sW, sb), (dW, db) in zip(total, grads):
                    sW += dW
                    sb += db
        return [(sW / B, sb / B) for sW, sb in total or []]

    # ------------------------------------------------------------------ the optional roles
    def _softmax(self, z):
        fn = self._function("softmax")
        if self.d["per_sample"]:
            return np.stack([np.asarray(fn(self._sample(row))).reshape(-1) for row in z])
        return self.a_out(fn(self.x_in(z)))

    def _relu(self, z):
        fn = self._function("relu")
        return self.a_out(fn(self.x_in(z)))

    def _cross_entropy(self, Y_hat, Y):
        fn = self._function("cross_entropy")
        if self.d["per_sample"]:
            labels = self.y_in(Y) if self.d["labels"] == "integer" else None
            losses = [fn(*self._loss_args(self._sample(Y_hat[i]),
                                          labels[i] if labels is not None else self._sample(Y[i])))
                      for i in range(Y.shape[0])]
            return np.mean(np.stack([np.asarray(v).reshape(()) for v in losses]))  # in their dtype
        return fn(*self._loss_args(self.x_in(Y_hat), self.y_in(Y)))

    def _loss_args(self, probs, y):
        return [probs if w == "probs" else y for w in self.d["loss_args"]]

    def _init_params(self, layer_sizes, seed=0):
        result = self._function("init_params")(layer_sizes, seed)
        return self.pairs_out(result, self.d["params"], self.d["names"], list(layer_sizes)[1:])

    def _train(self, X, Y, X_test, Y_test, params, lr, epochs, batch_size):
        given = self.params_in(params)
        values = {"X": self.x_in(X), "Y": self.y_in(Y), "X_test": self.x_in(X_test),
                  "Y_test": self.y_in(Y_test), "params": given, "lr": lr, "epochs": epochs,
                  "batch_size": batch_size}
        result = self._function("train")(*[values[w] for w in self.d["train_args"]])
        sizes = [int(np.size(b)) for _, b in params]
        if result is None:  # updated in place: read the container it was given
            result = given
        return self.pairs_out(result, self.d["params"], self.d["names"], sizes)
