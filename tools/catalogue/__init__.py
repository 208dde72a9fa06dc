"""The variant catalogue: implementations with known verdicts, to validate the suite itself.

- buggy variants: the reference with exactly one student mistake, generated from
  ``conformance/reference/mlp.py`` by the patches in ``tools/catalogue/buggy.py``;
- correct variants: hand-written implementations in other styles and with other legitimate
  numerical choices, in ``tools/catalogue/correct/``; plus ``ok_reference_copy``, the
  unpatched reference, as a control of the machinery itself.

``materialize(dest)`` writes every variant as a standalone ``.py`` file into ``dest`` (one
flat folder: usable as a class of submissions) and returns their descriptions. The files
import only numpy/scipy, never ``reference``, so they also run in an isolated worker.
"""

from __future__ import annotations

import ast

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tools.catalogue.buggy import BUGGY, BugSpec

from conformance.mistakes import AREAS  # the one list of check areas

REPO_ROOT = Path(__file__).resolve().parents[2]
REFERENCE_SOURCE = REPO_ROOT / "conformance" / "reference" / "mlp.py"
CORRECT_DIR = Path(__file__).resolve().parent / "correct"
# Variants judged through a declaration: <name>.py, the student's code as is, and
# <name>.toml beside it, the declaration the suite is given (--declaration), no glue.
DECLARED_DIR = Path(__file__).resolve().parent / "declared"
BUGGY_PREFIX = "bug_"
CORRECT_PREFIX = "ok_"

# Hand-written correct variants: file stem in correct/ -> what makes it different.
CORRECT: dict[str, str] = {
    "ok_oop_network": "class-based network with module-level wrappers; init via rng.normal; "
                      "ReLU by np.clip; its own train loop",
    "ok_postact_mask_tuples": "ReLU mask from the post-activation (activations[i] > 0) via "
                              "np.where; tuples for activations, [dW, db] lists for gradients",
    "ok_relu_prime_one_clipped": "ReLU'(0) = 1 convention (z >= 0); cross-entropy on "
                                 "probabilities clipped to [1e-15, 1]",
    "ok_logsumexp": "softmax as exp(z - logsumexp(z)); loss picks the true-class probability "
                    "by index; returns a 0-d array",
    "ok_per_sample_loops": "per-sample loops accumulating dW/db (a different summation order)",
    "ok_einsum": "every product written with np.einsum; Fortran-ordered gradient arrays",
    "ok_float32_internal": "computes in float32 throughout and returns float32 arrays",
    "ok_scipy_special": "scipy.special.softmax; loss via scipy.special.xlogy with a tiny floor",
    "ok_minimal_forward_backward": "defines only forward and backward (no optional function); "
                                   "ReLU'(0) = 1",
    "ok_column_major": "column-vector maths on transposed arrays (non-contiguous results); "
                       "backward recomputes Y_hat from the logits; long-double softmax; loss "
                       "as a 1-element array",
    "ok_recompute_forward": "backward ignores the given activations and runs forward again "
                            "from X (one extra forward per backward); mask from A > 0",
    "ok_heaviside_half": "ReLU and its derivative via np.heaviside(z, 0.5): ReLU'(0) = 0.5, "
                         "a valid subgradient; loss floored at the smallest normal float",
    "ok_small_guard_1e8": "additive log guard 1e-8 instead of 1e-12 (golden accepts up to 1e-7); "
                          "functional style",
    "ok_mixed_precision_train": "forward/backward in float32 returning float32; train applies the "
                                "float32 gradients to the float64 params (float64 result)",
    "ok_float32_returned_as_float64": "computes in float32 and returns every array cast to "
                                      "float64 (passes, with a precision finding)",
    # conformance/ADAPTERS.md: each recipe wraps existing code of another shape
    "ok_adapter_integer_labels": "existing code on integer labels, adapted with Y.argmax(axis=1)",
    "ok_adapter_row_biases": "existing code with (1, n) biases and keepdims db, reshaped",
    "ok_adapter_column_major": "existing column-major code (W (out, in), X (features, batch)), "
                               "transposed in and out",
    "ok_adapter_class_model": "existing class-based model caching activations, rebuilt per call",
    "ok_adapter_backward_recomputes": "existing backward(X, Y, params) that recomputes forward",
    "ok_adapter_fused_update": "existing training step that updates in place; gradients read "
                               "back as old - new with lr = 1",
    "ok_helpers_opt_out": "module-level relu/softmax helpers with other conventions, opted out "
                          "with CONFORMANCE_OPT_OUT",
}
REFERENCE_CONTROL = "ok_reference_copy"

# Declared variants: name -> (what makes it different, the BugSpec whose mistake it carries or
# None for a correct one: its areas, tests, message and names are that mistake's).
DECLARED: dict[str, tuple[str, str | None]] = {
    "ok_decl_integer_labels": ("ok_adapter_integer_labels's code, declared: integer labels", None),
    "ok_decl_row_biases": ("ok_adapter_row_biases's code, declared: (1, n) biases", None),
    "ok_decl_column_major": ("ok_adapter_column_major's code, declared: columns, two lists", None),
    "ok_decl_class_model": ("ok_adapter_class_model's code, declared: a class caching (acts, zs)", None),
    "ok_decl_backward_recomputes": ("ok_adapter_backward_recomputes's code, declared: "
                                    "backward(X, Y, params), judged on its own forward", None),
    "ok_decl_fused_update": ("ok_adapter_fused_update's code, declared: a step applied in place, "
                             "gradients read back from it", None),
    "bug_decl_fused_update": ("a step applied in place, with the i-1 ReLU bug", "relu_mask_current_layer"),
    "ok_decl_column_dict_cache": ("column-major, parameter dict, forward -> (output, cache)", None),
    "bug_decl_column_dict_cache": ("column-major dict+cache with the i-1 ReLU bug", "relu_mask_current_layer"),
    "ok_decl_layer_cache": ("column-major, parameter dict, a cache of ((A_prev, W, b), Z) per layer", None),
    "bug_decl_layer_cache": ("column-major per-layer-tuple cache, mask from the next layer's Z (i-1 bug)",
                             "relu_mask_current_layer"),
    "ok_decl_sized_class": ("a class built from its layer sizes, params set in its attributes, columns", None),
    "bug_decl_sized_class": ("a class built from its layer sizes, no division by the batch size", "no_batch_mean"),
    "ok_decl_per_sample_columns": ("per-sample column vectors, no batch axis, two lists", None),
    "bug_decl_per_sample_columns": ("per-sample column vectors without the ReLU mask", "missing_relu_mask"),
    "ok_decl_class_methods": ("a class with renamed methods caching A and Z", None),
    "bug_decl_class_methods": ("a class with renamed methods, output error Y - Y_hat",
                               "output_error_sign_flipped"),
    "ok_decl_logits": ("forward returns logits, softmax only in the loss and backward", None),
    "bug_decl_logits": ("logits-only network whose db averages delta instead of summing it", "db_mean_not_sum"),
    "bug_decl_logits_unguarded": ("logits-only network whose one softmax (forward's probabilities and "
                                  "backward's delta) lacks the max subtraction", "softmax_no_max_shift"),
    "ok_decl_int_row": ("integer labels, (1, n) biases, a train with its own signature", None),
    "bug_decl_int_row": ("integer labels and row biases, no division by the batch size", "no_batch_mean"),
    "ok_decl_no_zs": ("forward keeps only the activations; backward(acts, y, params) masks with A > 0", None),
    "bug_decl_no_zs": ("activations only, the ReLU mask from the wrong layer (acts[i + 1] > 0)",
                       "relu_mask_postact_wrong_layer"),
}

# A declared buggy variant is its correct twin with one change (old -> new, found exactly once
# in the twin's code), judged with the twin's declaration: generated, like the buggy catalogue.
DECLARED_PATCHES: dict[str, tuple[str, str, str]] = {
    'bug_decl_fused_update': ('ok_decl_fused_update',
        'delta = (delta @ self.W[i].T) * (self.z[i - 1] > 0)',
        "delta = (delta @ self.W[i].T) * (self.z[i] > 0)  # the i-1 bug: this layer's mask"),
    'bug_decl_column_dict_cache': ('ok_decl_column_dict_cache',
        'dZ = (parameters["W" + str(l)].T @ dZ) * (cache["Z" + str(l - 1)] > 0)',
        'dZ = (parameters["W" + str(l)].T @ dZ) * (cache["Z" + str(l)] > 0)'),
    'bug_decl_layer_cache': ('ok_decl_layer_cache',
        'linear_cache, Z = caches[l]',
        "linear_cache, _ = caches[l]\n        _, Z = caches[l + 1]  # the i-1 bug: the next layer's Z"),
    'bug_decl_sized_class': ('ok_decl_sized_class',
        'm = Y.shape[1]\n        delta = (self.activations[-1] - Y) / m',
        'delta = self.activations[-1] - Y  # no division by the batch size'),
    'bug_decl_per_sample_columns': ('ok_decl_per_sample_columns',
        'delta = (weights[l].T @ delta) * (zs[l - 1] > 0)',
        'delta = weights[l].T @ delta'),
    'bug_decl_class_methods': ('ok_decl_class_methods',
        'delta = (self.A[-1] - Y) / Y.shape[0]',
        'delta = (Y - self.A[-1]) / Y.shape[0]'),
    'bug_decl_logits': ('ok_decl_logits',
        'grads.insert(0, (acts[i].T @ delta, delta.sum(axis=0)))',
        'grads.insert(0, (acts[i].T @ delta, delta.mean(axis=0)))'),
    'bug_decl_logits_unguarded': ('ok_decl_logits',
        'e = np.exp(z - z.max(axis=1, keepdims=True))',
        'e = np.exp(z)'),
    'bug_decl_int_row': ('ok_decl_int_row',
        'delta /= len(y)',
        'pass  # the batch mean is missing'),
    'bug_decl_no_zs': ('ok_decl_no_zs',
        'delta = (delta @ params[i][0].T) * (acts[i] > 0)',
        'delta = (delta @ params[i][0].T) * (acts[i + 1] > 0)'),
}


# The glue recipes' student code, judged through a declaration instead of its adapter: the
# recipe's module (tools/catalogue/correct/ok_adapter_<x>.py) without its "# ---- adapter" part.
DECLARED_FROM_RECIPES = ("integer_labels", "row_biases", "column_major", "class_model",
                         "backward_recomputes", "fused_update")


def _recipe_code(recipe: str) -> str:
    source = (CORRECT_DIR / f"ok_adapter_{recipe}.py").read_text()
    body = ast.parse(source).body
    start = body[0].end_lineno if body and isinstance(body[0], ast.Expr) else 0  # its docstring
    code = "\n".join(source.splitlines()[start:]).lstrip("\n")
    if code.count("# ---- adapter") != 1:
        raise VariantPatchError(f"ok_adapter_{recipe}.py: expected one '# ---- adapter' line before its glue")
    return code[:code.index("# ---- adapter")].rstrip() + "\n"


def declared_source(name: str) -> tuple[str, str]:
    """(module source, declaration TOML) of a declared variant: the files in declared/ for a
    correct one (a glue recipe's: its student code, the recipe without its adapter); for a buggy
    one, its twin's code with the patch applied, and the twin's TOML."""
    toml = (DECLARED_DIR / f"{name}.toml").read_text() if name not in DECLARED_PATCHES else ""
    recipe = name.removeprefix("ok_decl_")
    if recipe in DECLARED_FROM_RECIPES:
        return (f'"""Correct variant judged through a declaration ({name}.toml, no glue): the student code of '
                f'ADAPTERS.md\'s ok_adapter_{recipe}.py, unchanged, without its adapter."""\n\n'
                + _recipe_code(recipe)), toml
    if name not in DECLARED_PATCHES:
        return (DECLARED_DIR / f"{name}.py").read_text(), toml
    twin, old, new = DECLARED_PATCHES[name]
    code = declared_source(twin)[0]
    if code.count(old) != 1:
        raise VariantPatchError(f"declared variant {name!r}: expected 1 occurrence of {old!r} in {twin}.py, "
                                f"found {code.count(old)}: update DECLARED_PATCHES so it still carries its bug")
    body = ast.parse(code).body
    start = body[0].end_lineno if body and isinstance(body[0], ast.Expr) else 0  # the twin's docstring
    rest = "\n".join(code.splitlines()[start:]).lstrip("\n").replace(old, new)
    source = (_header("buggy", DECLARED[name][0]) + f'"""Buggy variant judged through a declaration ({twin}.toml): '
              f'{DECLARED[name][0]}."""\n\n' + rest + "\n")
    compile(source, f"{name}.py", "exec")
    return source, (DECLARED_DIR / f"{twin}.toml").read_text()


def write_declared(name: str, dest: Path) -> tuple[Path, Path]:
    """Writes the declared variant ``name`` into ``dest`` as NAME.py and NAME.toml."""
    source, toml = declared_source(name)
    dest.mkdir(parents=True, exist_ok=True)
    path, declaration = dest / f"{name}.py", dest / f"{name}.toml"
    path.write_text(source)
    declaration.write_text(toml)
    return path, declaration


# What else a declared buggy variant's messages may name: the same mistake seen in another
# function its interface gives (a logits-only network's backward runs its own softmax).
DECLARED_ALSO_NAMED: dict[str, tuple[str, ...]] = {"bug_decl_logits_unguarded": ("backward_max_guard",)}


def catalogue_names(*, include_control: bool = True) -> list[str]:
    """Every variant's name, without writing any file (for test parametrisation)."""
    names = [BUGGY_PREFIX + spec.name for spec in BUGGY] + list(CORRECT) + list(DECLARED)
    return names + [REFERENCE_CONTROL] if include_control else names


class VariantPatchError(RuntimeError):
    """A buggy variant's patch no longer matches the reference source."""


@dataclass(frozen=True)
class Variant:
    name: str  # module/file stem: bug_<bug> or ok_<style>
    kind: Literal["buggy", "correct"]
    path: Path
    expected_areas: frozenset[str]  # areas where it must fail (empty for correct variants)
    description: str
    primary_area: str | None = None  # the area the bug belongs to (None for correct ones)
    expected_tests: tuple[str, ...] = ()  # "area::substring": some matching test must fail
    expected_message: str = ""  # some failure message must contain this (case-insensitive)
    own_names: tuple[str, ...] = ()  # bugs its messages may name (BugSpec.names)
    declaration: Path | None = None  # judged through this declaration (--declaration)

    @property
    def must_pass(self) -> bool:
        return self.kind == "correct"


def apply_patch(source: str, spec: BugSpec) -> str:
    """The reference source with ``spec``'s replacements; loud when a patch no longer fits."""
    patched = source
    for old, new, expected in spec.patch:
        found = patched.count(old)
        if found != expected:
            raise VariantPatchError(
                f"variant {spec.name!r}: expected {expected} occurrence(s) of {old!r} in "
                f"{REFERENCE_SOURCE.name}, found {found}. The reference changed: update the "
                f"patch in tools/catalogue/buggy.py so the variant still carries its bug."
            )
        patched = patched.replace(old, new)
    if patched == source:
        raise VariantPatchError(f"variant {spec.name!r}: the patch changes nothing")
    try:
        compile(patched, f"{BUGGY_PREFIX}{spec.name}.py", "exec")
    except SyntaxError as exc:
        raise VariantPatchError(f"variant {spec.name!r}: patched source does not compile: {exc}") from exc
    return patched


def _header(kind: str, description: str) -> str:
    return f"# {kind} variant generated by tools/catalogue for the kill matrix: {description}\n"


def _check_specs() -> None:
    names = [spec.name for spec in BUGGY]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise VariantPatchError(f"duplicate buggy variant names: {sorted(duplicates)}")
    for spec in BUGGY:
        unknown = set(spec.areas) - set(AREAS)
        if not spec.areas or unknown:
            raise VariantPatchError(f"variant {spec.name!r}: bad check areas {spec.areas}")
        for pattern in spec.tests:
            area, _, text = pattern.partition("::")
            if area not in spec.areas or not text:
                raise VariantPatchError(f"variant {spec.name!r}: test pattern {pattern!r} must "
                                        "be 'area::substring' with one of its areas")


def materialize(dest: Path, *, include_control: bool = True) -> list[Variant]:
    """Write every variant into ``dest`` as ``<name>.py`` and return them (buggy first).

    ``dest`` is created if needed; files already there with the same names are replaced.
    """
    _check_specs()
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    source = REFERENCE_SOURCE.read_text()
    variants: list[Variant] = []
    for spec in BUGGY:
        name = BUGGY_PREFIX + spec.name
        path = dest / f"{name}.py"
        path.write_text(_header("buggy", spec.description) + apply_patch(source, spec))
        variants.append(Variant(name, "buggy", path, frozenset(spec.areas), spec.description,
                                spec.areas[0], spec.tests, spec.message, spec.names))
    for name, description in CORRECT.items():
        path = dest / f"{name}.py"
        shutil.copyfile(CORRECT_DIR / f"{name}.py", path)
        variants.append(Variant(name, "correct", path, frozenset(), description))
    specs = {spec.name: spec for spec in BUGGY}
    for name, (description, bug) in DECLARED.items():
        path, declaration = write_declared(name, dest)
        if bug is None:
            variants.append(Variant(name, "correct", path, frozenset(), description, declaration=declaration))
        else:
            spec = specs[bug]
            variants.append(Variant(name, "buggy", path, frozenset(spec.areas), description, spec.areas[0],
                                    spec.tests, spec.message, spec.names + DECLARED_ALSO_NAMED.get(name, ()),
                                    declaration=declaration))
    if include_control:
        path = dest / f"{REFERENCE_CONTROL}.py"
        path.write_text(_header("correct", "the unpatched reference (control)") + source)
        variants.append(Variant(REFERENCE_CONTROL, "correct", path, frozenset(),
                                "the unpatched reference, a control of the machinery"))
    return variants


__all__ = [
    "AREAS", "CORRECT", "DECLARED", "REFERENCE_CONTROL", "Variant", "VariantPatchError", "apply_patch",
    "catalogue_names", "materialize",
]
