"""Test inputs (X, Y, params) that can be rebuilt from one short expression.

Every case the suite feeds a candidate is a ``Case`` built by ``make_case``; its ``repr`` is
the exact call that rebuilds it, so a failing hypothesis example prints as something a
student can paste (see ``Case.snippet``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

Params = list[tuple[np.ndarray, np.ndarray]]
LAYOUTS = ("C", "F", "strided")


@dataclass(frozen=True, eq=False)
class Case:
    """Inputs for forward/backward plus the recipe that rebuilds them."""

    X: np.ndarray
    Y: np.ndarray
    params: Params
    recipe: str = field(default="<hand-built case>")
    seed: int = 0  # seeds the suite's own random choices for this case (FD directions)

    def __repr__(self) -> str:
        return self.recipe

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """hypothesis prints failing examples with its pretty-printer: the recipe, never the arrays."""
        printer.text(self.recipe)

    @property
    def layer_sizes(self) -> list[int]:
        return [self.params[0][0].shape[0]] + [W.shape[1] for W, _ in self.params]

    @property
    def batch(self) -> int:
        return self.X.shape[0]

    @property
    def n_params(self) -> int:
        return sum(W.size + b.size for W, b in self.params)

    def snippet(self, module: str = "mymodule") -> str:
        """A few lines that reproduce the failing call outside pytest (importing the builder
        the recipe calls: make_case, scaled_logits_case, ...)."""
        builder = self.recipe.partition("(")[0]
        if not builder.isidentifier():  # "<MNIST batch ...>": no call rebuilds it
            return ""
        return (
            f"    from conformance.cases import {builder}  # part of the installed suite\n"
            + "\n".join(impl_import(module)) + "\n"
            f"    case = {self.recipe}\n"
            f"    activations, pre_activations = impl.forward(case.X, case.params)\n"
            f"    grads = impl.backward(activations, pre_activations, case.Y, case.params)"
        )


# The conventions a session's candidate is declared with (conformance/declaration.py): its keys
# that differ from the section's interface, by module name. A reproducer then builds ``impl``
# through the adapter, so its lines run as they read. Set once per session (hooks.py).
REPRODUCER_DECLARATIONS: dict[str, dict[str, Any]] = {}


def impl_import(module: str) -> list[str]:
    """The reproducer's lines that make ``impl``: the module itself, or the module seen through
    its declared conventions (the same adapter the suite used)."""
    raw = REPRODUCER_DECLARATIONS.get(module)
    where = f"  # run from the directory that holds {module}.py"
    if raw is None:
        return [f"    import {module} as impl{where}"]
    return [f"    import {module}{where}",
            "    from conformance.adapters import adapt_module  # part of the installed suite",
            "    from conformance.declaration import normalise",
            f"    impl = adapt_module({module}, normalise({raw!r}, 'reproducer'))  # the declared conventions"]


def strided_copy(a: np.ndarray) -> np.ndarray:
    """A copy of ``a`` (at least 1-d) as a non-contiguous view: every other element along the
    last axis of a buffer twice as long, so neither C- nor Fortran-contiguous."""
    view = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), dtype=a.dtype)[..., ::2]
    view[...] = a
    return view


def _layout(a: np.ndarray, layout: str) -> np.ndarray:
    """The same values stored C-ordered, Fortran-ordered or as a strided (non-contiguous) view."""
    if layout == "C":
        return np.ascontiguousarray(a)
    if layout == "F":
        return np.asfortranarray(a)
    if layout == "strided":
        return strided_copy(a)
    raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")


def make_case(
    layer_sizes: Sequence[int],
    batch: int,
    seed: int,
    *,
    weight_scale: float = 1.0,
    bias_scale: float = 0.5,
    input_scale: float = 1.0,
    zero_rows: int = 0,
    layout: str = "C",
) -> Case:
    """Random float64 inputs: X ~ N(0, input_scale²), one-hot Y, He-scaled W times
    ``weight_scale``, biases ~ N(0, bias_scale²).

    ``zero_rows`` zeroes the first rows of X and makes every bias exactly 0, so those rows
    give exactly-zero pre-activations in every layer: the ReLU'(0) convention then matters
    and the suite must accept both. ``layout`` stores X, Y and every W as C-, F-ordered or
    non-contiguous arrays (same values).
    """
    sizes = [int(n) for n in layer_sizes]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"layer_sizes needs >= 2 positive sizes, got {sizes}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((batch, sizes[0])) * input_scale
    X[: min(zero_rows, batch)] = 0.0
    labels = rng.integers(0, sizes[-1], size=batch)
    Y = np.eye(sizes[-1])[labels]
    params = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        W = rng.standard_normal((n_in, n_out)) * (weight_scale * np.sqrt(2.0 / n_in))
        b = rng.standard_normal(n_out) * bias_scale
        if zero_rows:
            b[:] = 0.0
        params.append((_layout(W, layout), b))
    options = [f"layer_sizes={sizes}", f"batch={batch}", f"seed={seed}"]
    defaults = {"weight_scale": 1.0, "bias_scale": 0.5, "input_scale": 1.0, "zero_rows": 0,
                "layout": "C"}
    given = {"weight_scale": weight_scale, "bias_scale": bias_scale, "input_scale": input_scale,
             "zero_rows": zero_rows, "layout": layout}
    options += [f"{k}={v!r}" for k, v in given.items() if v != defaults[k]]
    return Case(_layout(X, layout), _layout(Y, layout), params,
                recipe=f"make_case({', '.join(options)})", seed=seed)


def case_from_arrays(X: np.ndarray, Y: np.ndarray, params: Params, recipe: str, seed: int = 0) -> Case:
    """A hand-built case (targeted tests); ``recipe`` names the builder that made it."""
    return Case(np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64),
                [(np.asarray(W, dtype=np.float64), np.asarray(b, dtype=np.float64)) for W, b in params],
                recipe=recipe, seed=seed)


def scaled_logits_case(scale: float, seed: int = 0, layer_sizes: Sequence[int] = (5, 6, 4),
                       batch: int = 6) -> Case:
    """A network whose largest |logit| is exactly ``scale`` (last layer's W and b rescaled):
    its softmax overflows a naive exp once ``scale`` > 709 (float64) or > 88 (float32)."""
    base = make_case(layer_sizes, batch, seed)
    Z = base.X
    for W, b in base.params[:-1]:
        Z = np.maximum(Z @ W + b, 0.0)
    W, b = base.params[-1]
    factor = scale / float(np.abs(Z @ W + b).max())
    params = base.params[:-1] + [(W * factor, b * factor)]
    recipe = f"scaled_logits_case({scale!r}, seed={seed}, layer_sizes={list(layer_sizes)}, batch={batch})"
    return Case(base.X, base.Y, params, recipe=recipe, seed=seed)


def true_class_underflow_case(seed: int = 0) -> Case:
    """Every sample's true class sits ~1000 below the best logit: its softmax probability is
    exactly 0.0 in float64, so -log(p) needs the log(0) guard."""
    base = scaled_logits_case(1.0, seed, layer_sizes=(4, 3), batch=5)
    X = base.X
    W, b = base.params[0]
    Z = X @ W + b
    labels = np.argmin(Z, axis=1)  # the least likely class is the true one
    params = [(W * 1000.0 / float(np.ptp(Z, axis=1).min()), b * 1000.0 / float(np.ptp(Z, axis=1).min()))]
    Y = np.eye(W.shape[1])[labels]
    return Case(X, Y, params, recipe=f"true_class_underflow_case(seed={seed})", seed=seed)


def masks_differ_case() -> Case:
    """3 layers of width 4: Z1 > 0 everywhere, Z2 < 0 on half its units, logits of both signs.
    With pre_activations[i] in place of [i-1], layer 2's mask replaces layer 1's (all ones)
    and the logits' signs replace layer 2's: dW[0] and dW[1] change for certain."""
    rng = np.random.default_rng(2024)
    X = np.abs(rng.standard_normal((5, 3))) + 0.5
    W1, b1 = np.abs(rng.standard_normal((3, 4))) + 0.1, np.full(4, 1.0)  # Z1 > 0
    W2 = np.abs(rng.standard_normal((4, 4))) * 0.5
    b2 = np.array([3.0, -50.0, 3.0, -50.0])  # units 1 and 3 dead on every sample
    W3 = rng.standard_normal((4, 4))
    b3 = np.array([-40.0, 40.0, -40.0, 40.0])  # logits' signs alternate by class
    Y = np.eye(4)[rng.integers(0, 4, 5)]
    return case_from_arrays(X, Y, [(W1, b1), (W2, b2), (W3, b3)], recipe="masks_differ_case()")


def rows_of_different_scale_case(seed: int = 3) -> Case:
    """One batch whose rows reach logits of ~1, ~100 and ~1e4 (X rows scaled, huge last layer)."""
    base = scaled_logits_case(1e4, seed=seed, batch=4)
    X = base.X * np.array([[1e-4], [1e-2], [1.0], [1.0]])
    return Case(X, base.Y, base.params, recipe=f"rows_of_different_scale_case(seed={seed})", seed=seed)
