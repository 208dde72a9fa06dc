"""Declared conventions: a candidate's own interface, stated as data.

The suite calls the section's interface (SPEC.md). A *declaration* says how a candidate's
interface differs (layout, labels, bias shape, parameter container, which functions or methods
play forward/backward/..., what they take and return); ``conformance/adapters.py`` then maps
the suite's cases into that interface and the results back with exact operations only.

Two spellings, the same keys (conformance/ADAPTERS.md is the reference):

- a TOML file (``--declaration FILE``; the instructor's assignment file, used by the grader);
- a module-level literal ``CONFORMANCE = {...}`` in the candidate, read from its source with
  ``ast.literal_eval`` (never executed: identical in-process and isolated).

Trust (SECURITY.md's rule: only the instructor's data decides what is checked): an explicit
``--declaration`` (a FILE, or ``section`` for the section's interface) wins and a module's own
``CONFORMANCE`` is then ignored, with a note. A module's own declaration is used only when no
``--declaration`` is given (a student's own ``check``), and a check it limits is skipped with
the kind ``self_declared``, which the grader counts as failed: a declaration the student wrote
can change how the suite calls the code, never earn a neutral skip.

Everything here is pure data handling: no candidate code runs in this module.
"""

from __future__ import annotations

import ast
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

MODULE_NAME = "CONFORMANCE"  # the module-level literal
SECTION = "section"  # --declaration section: the section's interface, module declarations ignored

FUNCTION_ROLES = ("forward", "backward", "softmax", "relu", "cross_entropy", "init_params", "train")
OPTIONAL_ROLES = ("softmax", "relu", "cross_entropy", "init_params", "train")

# key -> allowed values (a tuple) or a type; defaults are the section's interface.
CHOICES: dict[str, tuple[Any, ...]] = {
    "layout": ("rows", "columns"),
    "labels": ("onehot", "integer"),
    "bias": ("flat", "column", "row"),
    "params": ("pairs", "dict", "lists"),
    "grads": ("pairs", "dict", "lists"),
    "output": ("probabilities", "logits"),
    "first_layer": (0, 1),
    "per_sample": (False, True),
    "backward_returns": ("grads", "params", "nothing"),
}
# What each role's arguments and results may be made of (the suite maps each word).
ARG_WORDS: dict[str, tuple[str, ...]] = {
    "forward_args": ("X", "params", "weights", "biases"),
    "forward_returns": ("acts", "zs", "cache", "output"),
    "backward_args": ("acts", "zs", "Y", "params", "weights", "biases", "X", "cache", "output", "lr"),
    "loss_args": ("probs", "logits", "Y"),
    "train_args": ("X", "Y", "X_test", "Y_test", "params", "lr", "epochs", "batch_size"),
    "model_args": ("params", "weights", "biases", "sizes"),
}
DEFAULTS: dict[str, Any] = {
    "layout": "rows", "labels": "onehot", "bias": "flat", "params": "pairs",
    "names": ["W{l}", "b{l}"], "first_layer": 1, "grads": None, "grad_names": None,
    "output": "probabilities", "per_sample": False,
    "model": "", "model_args": ["params"], "model_cache": None,
    "cache": None,
    "forward": "forward", "forward_args": None, "forward_returns": None,
    "backward": "backward", "backward_args": None, "backward_returns": "grads", "model_params": None,
    "softmax": "softmax", "relu": "relu", "cross_entropy": "cross_entropy",
    "init_params": "init_params", "train": "train",
    "loss_args": ["probs", "Y"],
    "train_args": ["X", "Y", "X_test", "Y_test", "params", "lr", "epochs", "batch_size"],
}
KEYS = tuple(DEFAULTS)


class DeclarationError(ValueError):
    """A declaration that is wrong or ambiguous: names the key and what is wrong with it. Never
    a verdict on the candidate: the run stops before any check (a usage error)."""

    def __init__(self, source: str, key: str, problem: str):
        super().__init__(f"declaration {source}: {key}: {problem}")
        self.source, self.key, self.problem = source, key, problem


@dataclass(frozen=True)
class Declaration:
    """A validated declaration: every key filled (``values``), where it came from, and whether it
    is trusted (the instructor's ``--declaration``) or the module's own."""

    values: dict[str, Any]
    source: str  # "--declaration conformance.toml", "CONFORMANCE in mymodule.py", "section"
    trusted: bool
    notes: tuple[str, ...] = field(default=())

    def wire(self) -> dict[str, Any]:
        """The plain JSON data the adapter needs (sent to the isolated worker as data)."""
        return json.loads(json.dumps(self.values))

    @property
    def is_section(self) -> bool:
        return self.values == normalise({}, "section")

    def limits(self) -> dict[str, str]:
        return limits_of(self.values)

    def dropped(self) -> dict[str, str]:
        """Optional roles the declared interface does not give: role -> why."""
        out = {role: f"the declaration maps no function to {role}()" for role in OPTIONAL_ROLES
               if not self.values[role]}
        if "logits" in self.values["loss_args"]:
            out["cross_entropy"] = ("the declared loss takes logits, and the suite's loss checks "
                                    "give probabilities (logits are not recovered from them)")
        return out

    def conventions(self) -> list[str]:
        """What differs from the section's interface, one short phrase each (reports)."""
        return conventions_of(self.values)

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.values, sort_keys=True).encode()).hexdigest()[:12]


def _word_list(source: str, key: str, value: Any) -> list[str]:
    words = ARG_WORDS[key]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise DeclarationError(source, key, f"expected a list of words from {list(words)}, got {value!r}")
    unknown = [v for v in value if v not in words]
    if unknown:
        raise DeclarationError(source, key, f"unknown word(s) {unknown}; allowed: {list(words)}")
    if len(set(value)) != len(value):
        raise DeclarationError(source, key, f"a word appears twice in {list(value)}")
    return list(value)


def _names(source: str, key: str, value: Any) -> list[str]:
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, str) and v.count("{l}") == 1 for v in value)):
        raise DeclarationError(source, key, f"expected two name patterns with one {{l}} each "
                               f"(the layer number), e.g. [\"W{{l}}\", \"b{{l}}\"]; got {value!r}")
    if value[0] == value[1]:
        raise DeclarationError(source, key, f"the weight and bias patterns are the same: {value!r}")
    try:
        [v.format(l=1) for v in value]
    except (KeyError, IndexError, ValueError) as exc:
        raise DeclarationError(source, key, f"{value!r} is not a name pattern: {exc}") from None
    return list(value)


def _identifier(source: str, key: str, value: Any, *, dotted: bool = False) -> str:
    if not isinstance(value, str):
        raise DeclarationError(source, key, f"expected a name (a string), got {value!r}")
    if value and not all(part.isidentifier() for part in value.split(".")):
        raise DeclarationError(source, key, f"{value!r} is not a Python name")
    return value


# The words of a per-layer cache entry (cache = {layers = [...]}): what each item of one layer's
# (possibly nested) tuple holds. "_" is anything else: read past, but the suite cannot build it.
LAYER_WORDS = ("A", "A_out", "Z", "W", "b", "_")


def _layer_pattern(source: str, value: Any, depth: int = 0) -> list[Any]:
    """One layer's cache entry as nested lists of LAYER_WORDS (validated, depth <= 3)."""
    if not isinstance(value, (list, tuple)) or not value or depth > 3:
        raise DeclarationError(source, "cache", "layers: expected a (nested) list of words from "
                               f"{list(LAYER_WORDS)}, e.g. [[\"A\", \"W\", \"b\"], \"Z\"]; got {value!r}")
    out: list[Any] = []
    for item in value:
        if isinstance(item, str):
            if item not in LAYER_WORDS:
                raise DeclarationError(source, "cache", f"layers: unknown word {item!r}; allowed: {list(LAYER_WORDS)}")
            out.append(item)
        else:
            out.append(_layer_pattern(source, item, depth + 1))
    return out


def layer_words(pattern: Any) -> list[str]:
    """The words of a per-layer pattern, flattened in order."""
    return [w for item in pattern for w in (layer_words(item) if isinstance(item, list) else [item])]


def _cache(source: str, value: Any) -> Any:
    if value is None or value in ("acts_zs", "opaque"):
        return value
    if isinstance(value, Mapping) and set(value) == {"A", "Z"}:
        return {"A": _names(source, "cache", [value["A"], value["Z"]])[0], "Z": value["Z"]}
    if isinstance(value, Mapping) and set(value) == {"layers"}:
        pattern = _layer_pattern(source, value["layers"])
        words = [w for w in layer_words(pattern) if w != "_"]
        twice = sorted({w for w in words if words.count(w) > 1})
        if twice:
            raise DeclarationError(source, "cache", f"layers: {twice} appear twice in one layer's entry")
        if "Z" not in words or not {"A", "A_out"} & set(words):
            raise DeclarationError(source, "cache", "layers: each layer's entry must hold its Z and its "
                                   "input A (or its output A_out), so the suite reads activations and "
                                   f"pre-activations from it; got {pattern!r}")
        return {"layers": pattern}
    raise DeclarationError(source, "cache", "expected \"acts_zs\" (the pair (activations, "
                           "pre_activations)), \"opaque\" (the suite cannot read it), a table "
                           f"{{A = \"A{{l}}\", Z = \"Z{{l}}\"}} of a dict's keys, or {{layers = [...]}}, "
                           f"one entry per layer (e.g. [[\"A\", \"W\", \"b\"], \"Z\"]); got {value!r}")


def cache_buildable(d: Mapping[str, Any]) -> bool:
    """Whether the suite can build the declared cache from its own activations (for the checks
    of backward alone): not an opaque one, nor a per-layer entry holding something unnamed."""
    form = d["cache"]
    if form == "opaque":
        return False
    return not (isinstance(form, Mapping) and "layers" in form and "_" in layer_words(form["layers"]))


def normalise(raw: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Every key filled and checked; raises DeclarationError naming the first problem.

    The steps run in a fixed order, and that order is part of the contract: a declaration with
    several problems reports the same first one whatever is refactored here."""
    _check_known_keys(raw, source)
    d = dict(DEFAULTS)
    d.update(raw)
    _check_choices(d, source)
    _fill_names(d, source)
    _check_function_names(d, source)
    model = bool(d["model"])
    _fill_word_lists(d, source, model)
    _check_forward_backward_args(d, source, model)
    d["cache"] = _cache(source, d["cache"])
    _fill_model_cache(d, source, model)
    _check_cache_is_used(d, source, model)
    _check_model_args(d, source, model)
    _check_activations_readable(d, source)
    _check_roles_fit(d, source, model)
    _check_update_step(d, source, model)
    return d


def _check_known_keys(raw: Any, source: str) -> None:
    """A table whose every key is known: a misspelt key would otherwise silently keep its default."""
    if not isinstance(raw, Mapping):
        raise DeclarationError(source, "(top level)", f"expected a table of keys, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise DeclarationError(source, unknown[0], f"unknown key (known: {', '.join(KEYS)})")


def _check_choices(d: Mapping[str, Any], source: str) -> None:
    """Each choice key is one of its words, of the same type (True is not 1: first_layer, per_sample)."""
    for key, allowed in CHOICES.items():
        if key in ("grads",) and d[key] is None:  # left out: follows params (_fill_names)
            continue
        if d[key] not in allowed or type(d[key]) is not type(allowed[0]):
            raise DeclarationError(source, key, f"{d[key]!r} is not one of {list(allowed)}")


def _fill_names(d: dict[str, Any], source: str) -> None:
    """The parameters' and gradients' name patterns; gradients default to the parameters' own
    container and names with a "d" in front."""
    d["names"] = _names(source, "names", d["names"])
    if d["grads"] is None:
        d["grads"] = d["params"]
    if d["grad_names"] is None:
        d["grad_names"] = ["d" + n for n in d["names"]]
    d["grad_names"] = _names(source, "grad_names", d["grad_names"])


def _check_function_names(d: dict[str, Any], source: str) -> None:
    """Every role a Python name (or empty: not given); forward and backward cannot be left empty."""
    for role in FUNCTION_ROLES + ("model",):
        d[role] = _identifier(source, role, d[role])
    if not d["forward"] or not d["backward"]:
        raise DeclarationError(source, "forward" if not d["forward"] else "backward",
                               "forward and backward are required: name the function (or method)")


def _fill_word_lists(d: dict[str, Any], source: str, model: bool) -> None:
    """Every argument/result list checked; forward's and backward's default to the section's
    functions, or to a model's methods (which hold the params themselves)."""
    d["model_args"] = _word_list(source, "model_args", d["model_args"])
    if d["forward_args"] is None:
        d["forward_args"] = ["X"] if model else ["X", "params"]
    if d["backward_args"] is None:
        d["backward_args"] = ["Y"] if model else ["acts", "zs", "Y", "params"]
    if d["forward_returns"] is None:
        d["forward_returns"] = ["output"] if model else ["acts", "zs"]
    for key in ("forward_args", "forward_returns", "backward_args", "loss_args", "train_args"):
        d[key] = _word_list(source, key, d[key])


def _check_forward_backward_args(d: Mapping[str, Any], source: str, model: bool) -> None:
    """The inputs the suite must be able to give: forward X (and the params, unless a model holds
    them), backward Y."""
    if "X" not in d["forward_args"]:
        raise DeclarationError(source, "forward_args", "forward must take X")
    if not model and not ({"params", "weights"} & set(d["forward_args"])):
        raise DeclarationError(source, "forward_args", "a function forward must take params "
                               "(a class-based model gets them from its constructor: set model)")
    if "Y" not in d["backward_args"]:
        raise DeclarationError(source, "backward_args", "backward must take the labels Y")


def _fill_model_cache(d: dict[str, Any], source: str, model: bool) -> None:
    """Where a model keeps its cache: one attribute (the cache key says its form), or two holding
    activations and pre-activations (then the cache is that pair, and cache must be left out)."""
    mc = d["model_cache"]
    if mc is None:
        return
    if not model:
        raise DeclarationError(source, "model_cache", "only for a class-based model (set model)")
    if isinstance(mc, str):
        _identifier(source, "model_cache", mc)
    elif not (isinstance(mc, (list, tuple)) and len(mc) == 2 and all(isinstance(x, str) and x.isidentifier() for x in mc)):
        raise DeclarationError(source, "model_cache", "expected an attribute name (holding the "
                               f"cache) or two (holding activations and pre-activations); got {mc!r}")
    else:
        d["model_cache"] = list(mc)
        if d["cache"] not in (None, "acts_zs"):
            raise DeclarationError(source, "cache", "two model_cache attributes hold the "
                                   "activations and the pre-activations: cache must be left out")
        d["cache"] = "acts_zs"


def _passes_cache(d: Mapping[str, Any]) -> bool:
    """Whether forward, backward or the model hands a cache around."""
    return ("cache" in d["forward_returns"] or "cache" in d["backward_args"]
            or d["model_cache"] is not None)


def _check_cache_is_used(d: Mapping[str, Any], source: str, model: bool) -> None:
    """A cache is declared exactly when one is passed (the suite never guesses its form), and a
    function backward only takes a cache that forward returns."""
    uses_cache = _passes_cache(d)
    if uses_cache and d["cache"] is None:
        raise DeclarationError(source, "cache", "forward or backward passes a cache: say what it is "
                               "(\"acts_zs\", \"opaque\", or {A = \"A{l}\", Z = \"Z{l}\"}), the suite "
                               "never guesses")
    if not uses_cache and d["cache"] is not None:
        raise DeclarationError(source, "cache", "declared, but no forward result, backward argument "
                               "or model_cache carries a cache")
    if "cache" in d["backward_args"] and "cache" not in d["forward_returns"] and not model:
        raise DeclarationError(source, "backward_args", "backward takes a cache that forward never returns")


def _check_model_args(d: Mapping[str, Any], source: str, model: bool) -> None:
    """A model is built from the params as one container, or from weights and biases: not both."""
    if model and not d["model_args"]:
        raise DeclarationError(source, "model_args", "how is the model built from the params?")
    if set(d["model_args"]) & {"weights", "biases"} and "params" in d["model_args"]:
        raise DeclarationError(source, "model_args", "either params, or weights and biases")
    if "sizes" in d["model_args"] and (set(d["model_args"]) & {"params", "weights", "biases"}):
        raise DeclarationError(source, "model_args", "either the layer sizes (sizes), or the params")
    if "sizes" in d["model_args"] and d["model_params"] is None:
        raise DeclarationError(source, "model_params", "a model built from its layer sizes draws its own "
                               "weights: name the attribute(s) holding them (model_params = [\"weights\", "
                               "\"biases\"], or one holding the params container), so the suite puts its "
                               "case's params there")


def keeps_pre_activations(d: Mapping[str, Any]) -> bool:
    """Whether forward gives its pre-activations: returned as zs, or readable from a cache it
    returns (or the model keeps). When not, the declaration has the limit "pre_activations"."""
    return ({"acts", "zs"} <= set(d["forward_returns"])
            or (d["cache"] not in (None, "opaque")
                and ("cache" in d["forward_returns"] or d["model_cache"] is not None)))


def _check_activations_readable(d: Mapping[str, Any], source: str) -> None:
    """The suite judges forward layer by layer: its activations must be returned (acts), or be
    readable from a cache forward returns or the model keeps. Pre-activations may be never kept
    (forward returns acts only: limit "pre_activations"); then backward cannot take zs, and
    logits cannot be read (the suite keeps probabilities where the candidate keeps logits)."""
    if keeps_pre_activations(d):
        return
    if "acts" not in d["forward_returns"]:
        raise DeclarationError(source, "forward_returns", "the suite judges forward layer by layer: "
                               "forward must return its activations (acts, with or without zs), or a "
                               "cache they can be read from (cache = \"acts_zs\" or {A = ..., Z = ...}); "
                               "a forward that keeps only its output needs glue (ADAPTERS.md)")
    if "zs" in d["backward_args"]:
        raise DeclarationError(source, "backward_args", "backward takes zs, but forward keeps no "
                               "pre-activations (forward_returns has no zs and no readable cache): "
                               "there are none to give it")
    if d["output"] == "logits":
        raise DeclarationError(source, "output", "logits with a forward that keeps no pre-activations: "
                               "the suite keeps probabilities and cannot give backward the logits back")


def _check_roles_fit(d: Mapping[str, Any], source: str, model: bool) -> None:
    """The remaining combinations the adapter cannot serve: logits without a softmax to read
    probabilities, per-sample models, mixed parameter forms, train without params, a loss without
    Y and probabilities (or logits)."""
    if d["output"] == "logits" and not d["softmax"]:
        raise DeclarationError(source, "output", "forward's output is logits: name the candidate's "
                               "softmax so the suite reads its probabilities (the suite never computes "
                               "a candidate's numbers)")
    if d["per_sample"] and model:
        raise DeclarationError(source, "per_sample", "not supported for a class-based model")
    for key in ("forward_args", "backward_args"):
        if "params" in d[key] and {"weights", "biases"} & set(d[key]):
            raise DeclarationError(source, key, "either params, or weights and biases")
    if "params" not in d["train_args"] and d["train"]:
        raise DeclarationError(source, "train_args", "train must take the params")
    if "Y" not in d["loss_args"] or not ({"probs", "logits"} & set(d["loss_args"])):
        raise DeclarationError(source, "loss_args", "the loss takes Y and probs (or logits)")


def _check_update_step(d: dict[str, Any], source: str, model: bool) -> None:
    """A backward that applies the step itself (backward_returns "params" or "nothing") takes
    the learning rate the suite chooses, and the suite must be able to read the stepped params:
    returned, in the containers it passed, or in the model's attributes (model_params)."""
    fused = d["backward_returns"] != "grads"
    if fused and "lr" not in d["backward_args"]:
        raise DeclarationError(source, "backward_args", f"backward_returns = \"{d['backward_returns']}\": "
                               "backward applies the step, so it must take the learning rate (the word "
                               "lr); the suite chooses it to read the gradients back")
    if "lr" in d["backward_args"] and not fused:
        raise DeclarationError(source, "backward_returns", "backward takes lr: say whether it returns "
                               "the updated params (\"params\") or updates them in place (\"nothing\")")
    mp = d["model_params"]
    if mp is not None:
        if not model:
            raise DeclarationError(source, "model_params", "only for a class-based model (set model)")
        if d["backward_returns"] != "nothing" and "sizes" not in d["model_args"]:
            raise DeclarationError(source, "model_params", "used to set the params of a model built from "
                                   "its layer sizes (model_args = [\"sizes\"]) or to read them after a step "
                                   "in place (backward_returns = \"nothing\"): neither is declared")
        names = [mp] if isinstance(mp, str) else mp
        if not (isinstance(names, (list, tuple)) and len(names) in (1, 2)
                and all(isinstance(x, str) and x.isidentifier() for x in names)):
            raise DeclarationError(source, "model_params", "expected an attribute holding the params (in "
                                   f"the declared container) or two holding weights and biases; got {mp!r}")
        d["model_params"] = list(names)
    if mp is not None and len(set(d["model_params"])) != len(d["model_params"]):
        raise DeclarationError(source, "model_params", f"the same attribute twice: {d['model_params']}")
    args = set(d["backward_args"])
    if d["backward_returns"] == "params" and not model and not ("params" in args or {"weights", "biases"} <= args):
        raise DeclarationError(source, "backward_args", "backward returns the stepped params, so it must "
                               "take them: params (or weights and biases)")
    if d["backward_returns"] == "nothing" and model and not d["model_params"] and (
            set(d["model_args"]) & {"weights", "biases"} and not {"weights", "biases"} <= set(d["model_args"])):
        raise DeclarationError(source, "model_args", "a model built from weights alone (or biases alone) that "
                               "steps in place: the suite cannot read the other back; add it, or name "
                               "model_params")
    if d["backward_returns"] == "nothing" and not model and not ("params" in args or {"weights", "biases"} <= args):
        raise DeclarationError(source, "backward_args", "backward updates the params in place, so the "
                               "suite reads them from what it gave: backward must take params (or "
                               "weights and biases)")


def limits_of(d: Mapping[str, Any]) -> dict[str, str]:
    """What the declared interface cannot give, and which checks that limits (reports)."""
    out: dict[str, str] = {}
    if not backward_takes_given_activations(d):
        out["backward_alone"] = ("backward cannot take the suite's activations (it recomputes them, or "
                                 "its cache is opaque or holds something the declaration does not name): "
                                 "it is judged on its own forward only, and the checks of backward alone "
                                 "(on the suite's activations) do not run")
    if not keeps_pre_activations(d):
        out["pre_activations"] = ("forward keeps no pre-activations: the checks of forward's "
                                  "pre-activations do not run; forward is judged on its activations, "
                                  "backward on activations only. Messages name the section's arrays: "
                                  "a ReLU mask `pre_activations[l] > 0` is `activations[l + 1] > 0` in "
                                  "yours (the mask of the layer below the weights is `activations[i] > 0`)")
    if "logits" in d["loss_args"]:
        out["cross_entropy"] = "the loss takes logits: its checks (given probabilities) do not run"
    if d["backward_returns"] != "grads":
        out["fused_update"] = ("backward applies the step itself: the suite runs it on copies with "
                               "lr = 2**64 and reads the gradients back as (params before - after) / lr, "
                               "within 2 ulp of the gradients it applied (a plain step W - lr * dW is "
                               "assumed; a weight changed before delta passes through it shows as a "
                               "gradient ~1e19 too large)")
    if d["per_sample"]:
        out["per_sample"] = ("per-sample code: the suite stacks forward's samples (exact) and averages "
                             "backward's per-sample gradients and the per-sample losses")
        out["efficiency"] = ("per-sample code: the suite's loop over the samples would be timed as "
                             "backward's own cost, so the efficiency check does not run")
    return out


def backward_takes_given_activations(d: Mapping[str, Any]) -> bool:
    args = set(d["backward_args"])
    if "cache" in args:
        return cache_buildable(d)
    takes_them = bool(args & {"acts", "zs", "output"}) and "X" not in args
    if d["model"]:  # the activations set where it keeps them, or given to its backward
        return (d["model_cache"] is not None and cache_buildable(d)) or takes_them
    return takes_them


def conventions_of(d: Mapping[str, Any]) -> list[str]:
    """The keys whose value differs from what they default to (derived defaults included)."""
    model = bool(d["model"])
    base = dict(DEFAULTS, grads=d["params"], grad_names=["d" + n for n in d["names"]],
                forward_args=["X"] if model else ["X", "params"],
                backward_args=["Y"] if model else ["acts", "zs", "Y", "params"],
                forward_returns=["output"] if model else ["acts", "zs"],
                cache="acts_zs" if isinstance(d["model_cache"], list) else None)
    out = [f"{key}={json.dumps(d[key])}" for key in KEYS if d[key] != base[key]]
    return out or ["the section's interface"]


def raw_keys(d: Mapping[str, Any]) -> dict[str, Any]:
    """The keys whose value differs from their (derived) default: a declaration's shortest
    spelling, which ``normalise`` turns back into ``d`` (reproducers print it)."""
    out = {}
    for line in conventions_of(d):
        key, sep, value = line.partition("=")
        if sep:
            out[key] = json.loads(value)
    return out


def from_toml(path: str | Path) -> Declaration:
    path = Path(path)
    from conformance import tomlfile

    try:
        raw = tomlfile.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DeclarationError(str(path), "(file)", f"cannot read it: {exc}") from None
    except tomlfile.TOMLDecodeError as exc:
        raise DeclarationError(str(path), "(file)", f"not valid TOML: {exc}") from None
    source = f"--declaration {path.name}"
    return Declaration(normalise(raw, source), source, trusted=True)


def module_literal(path: Path | None, sha256: str | None = None) -> tuple[dict[str, Any] | None, str]:
    """The module's own ``CONFORMANCE = {...}`` (a literal, read from the bytes that were hashed
    and loaded), and a problem text when there is one that is not a literal."""
    if path is None:
        return None, ""
    try:
        data = Path(path).read_bytes()
        if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
            return None, ""
        tree = ast.parse(data.decode("utf-8", errors="replace"))
    except (OSError, SyntaxError, ValueError, RecursionError, MemoryError):
        return None, ""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == MODULE_NAME
                                                for t in node.targets):
            try:
                value = ast.literal_eval(node.value)
            except (ValueError, TypeError, SyntaxError, RecursionError):
                return None, (f"{MODULE_NAME} (line {node.lineno}) is not a literal dict: the suite "
                              "reads it without running your code")
            if not isinstance(value, dict):
                return None, f"{MODULE_NAME} (line {node.lineno}) is not a dict"
            return value, ""
    return None, ""


def resolve(option: str | None, module_path: Path | None, sha256: str | None = None) -> Declaration | None:
    """The declaration that counts for a run (module docstring: precedence and trust).

    ``option``: the ``--declaration`` value (a TOML path, ``section``, or None). Returns None
    for the section's interface with nothing declared. Raises DeclarationError for a wrong
    declaration: a usage error, never a verdict."""
    own, problem = module_literal(module_path, sha256)
    name = Path(module_path).name if module_path is not None else "the module"
    if option:
        decl = (Declaration(normalise({}, SECTION), "--declaration section", trusted=True)
                if option == SECTION else from_toml(option))
        if own is not None or problem:
            try:
                same = own is not None and normalise(own, name) == decl.values
            except DeclarationError:
                same = False
            if not same:
                note = (f"{MODULE_NAME} in {name} ignored: {decl.source} decides the conventions "
                        "(only the instructor's declaration counts)")
                decl = Declaration(decl.values, decl.source, True, (note,))
        return None if decl.is_section and not decl.notes and option == SECTION else decl
    if problem:
        raise DeclarationError(f"{MODULE_NAME} in {name}", MODULE_NAME, problem)
    if own is None:
        return None
    return Declaration(normalise(own, f"{MODULE_NAME} in {name}"), f"{MODULE_NAME} in {name}", trusted=False)


def instructor_text(path: str | Path) -> str:
    """The instructor's declaration file as text for the grader's config (validated first: a
    wrong declaration stops the command before any submission is judged)."""
    from_toml(path)
    return Path(path).read_text(encoding="utf-8")


def suite_args(declaration: str | Path | None) -> list[str]:
    """The pytest argument a runner adds (the grader: the instructor's file, or ``section`` so a
    module's own declaration never counts)."""
    return [f"--declaration={declaration if declaration else SECTION}"]


def record(decl: Declaration | None) -> dict[str, Any]:
    """The conventions judged with, for every report (JSON and terminal)."""
    if decl is None:
        return {"source": "the section's interface", "trusted": True, "conventions": ["the section's interface"],
                "limits": {}, "notes": []}
    return {"source": decl.source, "trusted": decl.trusted, "conventions": decl.conventions(),
            "limits": decl.limits(), "notes": list(decl.notes), "fingerprint": decl.fingerprint()}


def summary_line(decl: Declaration | None) -> str:
    rec = record(decl)
    text = f"conventions: {', '.join(rec['conventions'])} ({rec['source']})"
    if rec["limits"]:
        text += "; limited: " + ", ".join(sorted(rec["limits"]))
    return text
