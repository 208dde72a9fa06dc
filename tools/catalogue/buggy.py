"""Single-bug variants of the reference, each written as a small textual patch.

Every variant is the reference source (``conformance/reference/mlp.py``) with one mistake a student
really makes, applied as ``(old, new, count)`` replacements. ``count`` is how many times
``old`` must occur in the reference: if a refactor of the reference moves or rewords a
line, the patch no longer applies and ``materialize`` fails loudly instead of silently
producing a variant without its bug.

``areas`` lists the check areas (conformance/test_<area>.py) in which the variant MUST
fail, primary area first. It may fail in others too; that is not an error. Areas are
chosen by what each area is *for* (see conformance/SPEC.md), not by what happens to
catch the bug today:

- interface: list lengths, shapes, row-stochastic output, pre-activations before the
  ReLU, no mutated argument, determinism, the optional functions' values (cross_entropy,
  init_params draws: the decided contract, train's full-batch SGD steps);
- gradients: forward vs reference, backward vs finite differences, self-consistency;
- stability: overflow/log(0) guards on huge logits;
- relu_index: the i-1 ReLU-mask bug and its relatives (wrong W, reversed gradients);
- golden: pinned reference values (forward, backward, softmax, cross_entropy, init_params,
  one train step): every bug that changes a value on the fixtures must fail here;
- mnist: training actually learns (the candidate's own ``train`` included).
- efficiency: backward costs a few forward passes, not one per parameter (no numerical
  differentiation).
"""

from __future__ import annotations

from dataclasses import dataclass

# The one-line bug patterns below match conformance/reference/mlp.py as of the catalogue's writing.
# Keep them short (the code, not its comment) so that comment edits do not break them.


@dataclass(frozen=True)
class BugSpec:
    name: str
    description: str  # the bug as a student would recognise it
    areas: tuple[str, ...]  # check areas where it must fail, primary first
    patch: tuple[tuple[str, str, int], ...]  # (old, new, occurrences of old in the reference)
    # Finer than areas: "area::substring" of test node ids of which at least one must fail
    # (e.g. each flavour of the i-1 test). A pattern matching no test is itself an error.
    tests: tuple[str, ...] = ()
    # Text (case-insensitive) some failure message must contain: the suite names the bug
    # or the missing guard, not just the symptom.
    message: str = ""
    # Keys (conformance.diagnosis.named_bugs) of the bugs and guards a message may name for
    # this variant: its own bug, or a catalogue entry it is an instance of. Any other named
    # bug in its messages is a misleading hint.
    names: tuple[str, ...] = ()


def _bug(name: str, description: str, areas: tuple[str, ...] | str, *patch: tuple,
         tests: tuple[str, ...] = (), message: str = "", names: tuple[str, ...] | str = ()) -> BugSpec:
    if isinstance(areas, str):
        areas = (areas,)
    if isinstance(names, str):
        names = (names,)
    full = tuple((p[0], p[1], p[2] if len(p) > 2 else 1) for p in patch)
    return BugSpec(name, description, tuple(areas), full, tests, message, tuple(names))


# Reference lines the patches target (kept here so a reader sees what is being changed).
_SOFTMAX_SHIFT = "z = z - z.max(axis=-1, keepdims=True)"
_SOFTMAX_NORMALISE = "return e / e.sum(axis=-1, keepdims=True)"
_LOSS = "-np.mean(np.sum(Y * np.log(Y_hat + 1e-12), axis=1))"
_LINEAR = "Z = activations[-1] @ W + b"
_NONLINEARITY = "softmax(Z) if i == len(params) - 1 else relu(Z)"
_BATCH = "B = Y.shape[0]"
_DELTA_OUT = "delta = (Y_hat - Y) / B"
_DW = "dW = A_prev.T @ delta"
_DB = "db = delta.sum(axis=0)"
_APPEND = "grads.append((dW, db))"
_PICK_W = "W = params[i][0]"
_PROPAGATE = "delta = (delta @ W.T) * (pre_activations[i - 1] > 0).astype(np.float32)"
_MASK = "(pre_activations[i - 1] > 0).astype(np.float32)"
_LOOP = "for i in reversed(range(len(params))):"
_RETURN_GRADS = "return list(reversed(grads))"
_HE_SCALE = "np.sqrt(2.0 / n_in)"
_DRAW = "rng.standard_normal((n_in, n_out))"
_SEEDED_RNG = "np.random.default_rng(seed)"
_SGD_STEP = "params[j] = (W - lr * dW, b - lr * db)"
_ZERO_BIAS = "b = np.zeros(n_out)"
_BATCH_STARTS = "range(0, n, batch_size)"

# Flavours of the i-1 test (conformance/test_relu_index.py) each must catch the index bug.
_I_MINUS_1_FLAVOURS = ("relu_index::test_relu_index_silent", "relu_index::test_relu_index_visible",
                       "relu_index::test_relu_index_width_one", "relu_index::test_relu_index_crash")
# Wording of conformance/diagnosis.py ("your gradients equal those of an implementation that")
_NAMES_INDEX_BUG = "evaluates the ReLU derivative at the wrong layer's pre-activation"
_NAMES_NO_MASK = "leaves out the ReLU derivative"
_INIT_CONTRACT = "must reproduce the section's draws"
_NOT_MUTATED = "must not be modified"
# A mask from the wrong layer is the i-1 bug's relative; where that wrong mask is all ones
# (a softmax output, an all-positive layer) it is identical to no mask at all on that layer,
# and a message saying so is evidence, not a guess.
_WRONG_MASK_NAMES = ("relu_index", "missing_mask")

# --- backward replaced by numerical differentiation (efficiency area) ----------------------
# Each is inserted before ``def accuracy(`` while the reference's backward is renamed away,
# so the variant has no backprop at all; all return the right gradients (checked by the
# gradients area), so only their cost can fail them.
_NO_BACKPROP = ("def backward(", "def _backprop_unused(", 1)
_COMPLEX_STEP_COLUMNS = '''def _loss_per_sample_from(Z, l, params, Y):
    """Each sample's loss, from layer l's (complex) pre-activation Z onwards."""
    for W, b in params[l + 1:]:
        Z = np.where(Z.real > 0, Z, 0) @ W + b
    m = Z.real.max(axis=-1, keepdims=True)
    return np.log(np.exp(Z - m).sum(axis=-1)) + m[:, 0] - (Z * Y).sum(axis=-1)


def backward(activations, pre_activations, Y, params):
    """No backprop: complex step on one pre-activation column at a time, all samples at once."""
    B, h = Y.shape[0], 1e-20
    grads = []
    for l in range(len(params)):
        Z = pre_activations[l].astype(complex)
        delta = np.empty(Z.shape)
        for j in range(Z.shape[1]):
            Z[:, j] += 1j * h
            delta[:, j] = _loss_per_sample_from(Z, l, params, Y).imag / h / B
            Z[:, j] -= 1j * h
        grads.append((activations[l].T @ delta, delta.sum(axis=0)))
    return grads


'''
_FORWARD_MODE = '''def backward(activations, pre_activations, Y, params):
    """No backprop: forward mode. The tangents of every unit of a layer (all samples at once,
    float32 for speed) are pushed to the logits; the loss's derivative is read off there."""
    L, g = len(params), (activations[-1] - Y) / Y.shape[0]
    masks = [(z > 0).astype(np.float32) for z in pre_activations[:-1]]
    Ws = [W.astype(np.float32) for W, _ in params]
    deltas = [None] * (L - 1) + [g]
    for l in range(L - 1):
        T = masks[l].T[:, :, None] * Ws[l + 1][:, None, :]  # T[j, b] = dZ_{l+1}[b] / dZ_l[b, j]
        for k in range(l + 1, L - 1):
            T = (T * masks[k]) @ Ws[k + 1]
        deltas[l] = np.einsum("jbk,bk->bj", T, g.astype(np.float32)).astype(g.dtype)
    return [(activations[l].T @ deltas[l], deltas[l].sum(axis=0)) for l in range(L)]


'''
_SPARSE_FORWARD_MODE = '''def backward(activations, pre_activations, Y, params):
    """No backprop: forward mode per sample, through the active units only (an inactive ReLU
    passes no tangent), in float32: the cheapest numerical scheme that exploits the masks."""
    L, g = len(params), (activations[-1] - Y) / Y.shape[0]
    Ws = [W.astype(np.float32) for W, _ in params]
    deltas = [np.zeros(z.shape) for z in pre_activations[:-1]] + [g]
    for s in range(Y.shape[0]):
        active = [np.flatnonzero(z[s] > 0) for z in pre_activations[:-1]]
        gs = g[s].astype(np.float32)
        for l in range(L - 1):
            T = Ws[l + 1][active[l]]
            for k in range(l + 1, L - 1):
                T = T[:, active[k]] @ Ws[k + 1][active[k]]
            deltas[l][s, active[l]] = T @ gs
    return [(activations[l].T @ deltas[l], deltas[l].sum(axis=0)) for l in range(L)]


'''
# The attack on a cost check that divides by something the candidate controls: CPU burnt in
# forward (the old check's denominator) and in backward on small networks (the old check's
# growth reference). Modest amounts, so the other areas' many calls stay fast.
_CPU_BURN = '''def _burn(rounds):
    """Useless work, ~20 microseconds a round (variants import only numpy: no clock)."""
    x = np.ones(20000)
    for _ in range(rounds):
        x = np.sqrt(x + 1.0)


_forward_unburnt = forward


def forward(X, params):
    if X.shape[0] >= 64:
        _burn(100)
    return _forward_unburnt(X, params)


_backward_unburnt = backward


def backward(activations, pre_activations, Y, params):
    if sum(W.size for W, _ in params) < 20000:
        _burn(250)
    return _backward_unburnt(activations, pre_activations, Y, params)


'''


BUGGY: tuple[BugSpec, ...] = (
    # --- the section's "common bugs" -------------------------------------------------
    _bug("no_log_guard", "cross_entropy takes log(Y_hat) without the +1e-12 guard: log(0) = -inf",
         ("stability", "golden"), (_LOSS, "-np.mean(np.sum(Y * np.log(Y_hat), axis=1))"),
         message="log(0) guard", names="log_guard"),
    _bug("softmax_no_max_shift", "softmax exponentiates raw logits (no per-row max subtraction): "
         "exp overflows to inf/nan on large logits", ("stability", "golden"),
         (_SOFTMAX_SHIFT, "z = z"), message="per-sample max subtraction", names="max_guard"),
    _bug("relu_mask_current_layer", "backward evaluates the ReLU derivative at pre_activations[i] "
         "instead of pre_activations[i - 1] (the section's off-by-one)",
         ("relu_index", "gradients", "golden"),
         (_MASK, "(pre_activations[i] > 0).astype(np.float32)"),
         tests=_I_MINUS_1_FLAVOURS, message=_NAMES_INDEX_BUG, names="relu_index"),
    _bug("relu_mask_postact_wrong_layer", "ReLU mask taken from the post-activation of the wrong "
         "layer: activations[i + 1] > 0 instead of activations[i] > 0",
         ("relu_index", "gradients", "golden"),
         (_MASK, "(activations[i + 1] > 0).astype(np.float32)"), tests=_I_MINUS_1_FLAVOURS, names=_WRONG_MASK_NAMES),
    _bug("relu_mask_first_layer", "ReLU mask always taken from the first layer "
         "(pre_activations[0]): right for 2 layers, wrong for deeper networks",
         ("gradients", "relu_index", "golden"),
         (_MASK, "(pre_activations[0] > 0).astype(np.float32)"), names=_WRONG_MASK_NAMES),
    _bug("softmax_global_max", "softmax subtracts the batch's global max instead of each row's: "
         "rows of smaller scale underflow to 0/0", ("stability", "golden"), (_SOFTMAX_SHIFT, "z = z - z.max()"),
         message="max must be taken per sample", names="row_guard"),
    _bug("log_guard_outside_log", "the +1e-12 is added after the log (log(Y_hat) + 1e-12), so "
         "it guards nothing", ("stability", "golden"),
         (_LOSS, "-np.mean(np.sum(Y * (np.log(Y_hat) + 1e-12), axis=1))"), message="log(0) guard", names="log_guard"),
    _bug("mask_from_layer_below", "ReLU mask taken one layer too low: activations[i - 1] > 0",
         ("relu_index", "gradients", "golden"), (_MASK, "(activations[i - 1] > 0).astype(np.float32)"), names=_WRONG_MASK_NAMES),
    # --- forward -------------------------------------------------------------------------
    _bug("forward_no_bias", "forward forgets the bias: Z = A_prev @ W", ("gradients", "golden"),
         (_LINEAR, "Z = activations[-1] @ W"), names="no_bias"),
    _bug("relu_on_output_layer", "forward applies ReLU on the last layer instead of softmax",
         ("interface", "gradients", "golden"), (_NONLINEARITY, "relu(Z)"), names="relu_instead_of_softmax"),
    _bug("softmax_of_relu_output", "forward applies ReLU and then softmax on the last layer",
         ("gradients", "golden"),
         (_NONLINEARITY, "softmax(relu(Z)) if i == len(params) - 1 else relu(Z)"), names="relu_output"),
    _bug("softmax_every_layer", "forward applies softmax on every layer, hidden ones included",
         ("gradients", "golden"), (_NONLINEARITY, "softmax(Z)"), names="softmax_hidden"),
    _bug("softmax_over_batch_axis", "softmax normalises over axis 0 (the batch) instead of the "
         "class axis", ("interface", "gradients", "golden"),
         (_SOFTMAX_SHIFT, "z = z - z.max(axis=0, keepdims=True)"),
         (_SOFTMAX_NORMALISE, "return e / e.sum(axis=0, keepdims=True)"), names="softmax_batch_axis"),
    _bug("activations_without_input", "forward returns the layers' outputs without X as "
         "activations[0]", ("interface", "golden"),
         ("return activations, pre_activations", "return activations[1:], pre_activations")),
    _bug("inplace_relu_overwrites_z", "forward applies ReLU in place on Z, so pre_activations "
         "hold relu(Z) instead of Z", ("interface", "golden"),
         (_NONLINEARITY, "softmax(Z) if i == len(params) - 1 else np.maximum(Z, 0, out=Z)"),
         message="holds relu(Z)", names="pre_after_relu"),
    _bug("forward_uses_x_everywhere", "every layer is fed X instead of the previous layer's "
         "output", ("gradients", "golden"), (_LINEAR, "Z = X @ W + b")),
    _bug("softmax_max_over_batch_axis", "softmax subtracts each column's max (axis 0) instead of "
         "each row's: a different shift per class changes the result",
         ("interface", "gradients", "golden"),
         (_SOFTMAX_SHIFT, "z = z - z.max(axis=0, keepdims=True)"), names="row_guard"),
    # --- loss ----------------------------------------------------------------------------
    _bug("loss_sum_not_mean", "cross_entropy sums over the batch instead of averaging",
         ("interface", "golden"), (_LOSS, "-np.sum(np.sum(Y * np.log(Y_hat + 1e-12), axis=1))"), names="loss_sum"),
    _bug("loss_mean_over_classes_too", "cross_entropy averages over every entry (batch x "
         "classes) instead of over the batch", ("interface", "golden"),
         (_LOSS, "-np.mean(Y * np.log(Y_hat + 1e-12))"), names="loss_mean_over_classes"),
    _bug("loss_wrong_sign", "cross_entropy returns +mean(log p): the loss is negative",
         ("interface", "golden"), (_LOSS, "np.mean(np.sum(Y * np.log(Y_hat + 1e-12), axis=1))"),
         message="sign is flipped", names="loss_sign"),
    _bug("loss_targets_swapped", "cross_entropy swaps Y_hat and Y: sum(Y_hat * log(Y))",
         ("interface", "golden"), (_LOSS, "-np.mean(np.sum(Y_hat * np.log(Y + 1e-12), axis=1))")),
    _bug("loss_ignores_targets", "cross_entropy averages log(Y_hat) over every class, never "
         "multiplying by Y", ("interface", "golden"), (_LOSS, "-np.mean(np.log(Y_hat + 1e-12))")),
    # --- backward ------------------------------------------------------------------------
    _bug("no_batch_mean", "backward does not divide the output error by the batch size",
         ("gradients", "golden"), (_DELTA_OUT, "delta = Y_hat - Y"),
         message="does not divide by the batch size", names="no_batch_mean"),
    _bug("batch_size_from_classes", "backward divides by Y.shape[1] (classes) instead of the "
         "batch size", ("gradients", "golden"), (_BATCH, "B = Y.shape[1]")),
    _bug("output_error_sign_flipped", "backward starts from Y - Y_hat instead of Y_hat - Y",
         ("gradients", "golden"), (_DELTA_OUT, "delta = (Y - Y_hat) / B"),
         message="uses Y - Y_hat", names="wrong_sign"),
    _bug("db_mean_not_sum", "db averages delta over the batch (already divided by B) instead of "
         "summing it", ("gradients", "golden"), (_DB, "db = delta.mean(axis=0)"),
         message="averages db over the batch instead of summing it", names="db_mean"),
    _bug("db_wrong_axis", "db sums delta over axis 1 instead of the batch axis",
         ("interface", "gradients", "golden"), (_DB, "db = delta.sum(axis=1)")),
    _bug("db_keepdims", "db keeps a leading axis: shape (1, n_out) instead of b's (n_out,)",
         ("interface", "gradients", "golden"), (_DB, "db = delta.sum(axis=0, keepdims=True)"), names="db_keepdims"),
    _bug("dw_transposed", "dW = delta.T @ A_prev: the gradient has W's transposed shape",
         ("interface", "gradients", "golden"), (_DW, "dW = delta.T @ A_prev"),
         message="computes dW transposed", names="transposed_dw"),
    _bug("dw_uses_z_not_a", "dW uses the previous layer's pre-activation Z instead of its "
         "ReLU output A", ("gradients", "golden"),
         (_DW, "dW = (A_prev if i == 0 else pre_activations[i - 1]).T @ delta")),
    _bug("dw_for_db", "backward returns dW in place of db", ("interface", "gradients", "golden"),
         (_APPEND, "grads.append((dW, dW))")),
    _bug("propagate_with_wrong_w", "delta is propagated with the previous layer's weights "
         "(params[i - 1]) instead of this layer's", ("relu_index", "gradients", "golden"),
         (_PICK_W, "W = params[i - 1][0]"),
         tests=("relu_index::test_wrong_layer_weights",),
         message="propagates delta through the wrong layer's weights", names="wrong_weights"),
    _bug("propagate_without_transpose", "delta is propagated with delta @ W instead of "
         "delta @ W.T", ("gradients", "relu_index", "golden"),
         (_PROPAGATE, "delta = (delta @ W) * " + _MASK),
         tests=("relu_index::test_untransposed_weights_square",
                "relu_index::test_untransposed_weights_one_hidden_layer"),
         message="propagates delta through W instead of W.T", names="untransposed_weights"),
    _bug("missing_relu_mask", "delta is propagated through W.T but not through the ReLU "
         "derivative", ("gradients", "golden"), (_PROPAGATE, "delta = delta @ W.T"),
         message=_NAMES_NO_MASK, names="missing_mask"),
    _bug("mask_postact_ge_zero", "ReLU mask activations[i] >= 0 on the post-activation, which "
         "is always true: no mask at all", ("gradients", "golden"),
         (_MASK, "(activations[i] >= 0).astype(np.float32)"), message=_NAMES_NO_MASK, names="missing_mask"),
    _bug("mask_times_relu_value", "delta is multiplied by relu(z) instead of relu'(z)",
         ("gradients", "golden"), (_MASK, "relu(pre_activations[i - 1])")),
    _bug("delta_not_propagated", "delta is never propagated: every layer reuses the output "
         "layer's error", ("gradients", "interface", "golden"),
         (_PROPAGATE, "pass  # delta never updated"), message="never propagates delta", names="delta_not_propagated"),
    _bug("grads_reverse_order", "gradients returned last layer first (the final reverse is "
         "missing)", ("relu_index", "interface", "gradients", "golden"),
         (_RETURN_GRADS, "return grads"), tests=("relu_index::test_gradients_in_forward_order",),
         message="returns the gradients in reverse order", names="reversed_order"),
    _bug("loop_skips_first_layer", "the backward loop stops at layer 1: the first layer gets no "
         "gradient", ("interface", "gradients", "golden"),
         (_LOOP, "for i in reversed(range(1, len(params))):")),
    _bug("lr_inside_backward", "backward already multiplies the gradients by the learning rate "
         "0.5", ("gradients", "golden"), (_APPEND, "grads.append((0.5 * dW, 0.5 * db))")),
    _bug("backward_mutates_activations", "backward computes the output error in place in "
         "activations[-1]", "interface",
         (_DELTA_OUT, "delta = Y_hat\n    delta -= Y\n    delta /= B"),
         message=_NOT_MUTATED, names="mutates_arguments"),
    _bug("backward_updates_params", "backward performs the SGD step in place on the weights "
         "(mutates params, and propagates with the updated W)", ("interface", "gradients", "golden"),
         (_APPEND, _APPEND + "\n        W_step = params[i][0]\n        W_step -= 0.5 * dW"),
         message=_NOT_MUTATED, names="mutates_arguments"),
    _bug("dw_double_batch_mean", "dW is divided by the batch size again (delta already is)",
         ("gradients", "golden"), (_DW, "dW = A_prev.T @ delta / B"),
         message="divides by the batch size twice", names="double_batch_mean"),
    # The per-layer 1/m style: the output error undivided, each layer divides dW and db by m.
    _bug("per_layer_mean_dw_undivided", "per-layer 1/m style with the 1/m left out of dW: the "
         "output error is not divided by B, db is, dW is not", ("gradients", "golden"),
         (_DELTA_OUT, "delta = Y_hat - Y"), (_DB, "db = delta.sum(axis=0) / B"),
         message="divides db by the batch size but not dW", names="dw_no_batch_mean"),
    _bug("per_layer_mean_db_undivided", "per-layer 1/m style with the 1/m left out of db: the "
         "output error is not divided by B, dW is, db is not", ("gradients", "golden"),
         (_DELTA_OUT, "delta = Y_hat - Y"), (_DW, "dW = A_prev.T @ delta / B"),
         message="divides dW by the batch size but not db", names="db_no_batch_mean"),
    _bug("per_layer_mean_and_output_mean", "the output error is divided by B and each layer "
         "divides dW and db by B again (two lines of the per-layer 1/m style kept)",
         ("gradients", "golden"),
         (_DW, "dW = A_prev.T @ delta / B"), (_DB, "db = delta.sum(axis=0) / B"),
         message="two of the common mistakes", names=("double_batch_mean", "db_mean")),
    _bug("output_error_times_softmax_derivative", "the output error is multiplied by "
         "Y_hat * (1 - Y_hat) on top of Y_hat - Y (softmax derivative applied twice)",
         ("gradients", "golden"),
         (_DELTA_OUT, "delta = (Y_hat - Y) * Y_hat * (1 - Y_hat) / B"),
         message="softmax derivative", names="softmax_jacobian"),
    _bug("dw_from_output", "dW uses the layer's own output activations[i + 1] instead of its "
         "input", ("interface", "gradients", "golden"), (_DW, "dW = activations[i + 1].T @ delta"),
         message="own output instead of its input", names="dw_from_output"),
    _bug("last_sample_only", "a per-sample loop assigns dW and db instead of accumulating them: "
         "only the last sample's gradient survives", ("gradients", "golden"),
         (_DW, "dW = A_prev[-1:].T @ delta[-1:]"), (_DB, "db = delta[-1]"),
         message="keeps only the last sample's gradient", names="last_sample_only"),
    _bug("delta_averaged_every_layer", "delta is divided by the batch size again at every layer "
         "it is propagated through", ("gradients", "golden"),
         (_PROPAGATE, _PROPAGATE + " / B"),
         message="divides delta by the batch size again at every layer", names="mean_every_layer"),
    _bug("softmax_never_applied", "forward computes the softmax but returns zeros as the last "
         "activation (the result is never assigned)", ("interface", "gradients", "golden"),
         (_NONLINEARITY, "np.zeros_like(Z) if i == len(params) - 1 else relu(Z)")),
    _bug("softmax_shifts_logits_in_place", "softmax subtracts the row max in place (z -= ...), "
         "which also shifts the Z that forward stores in pre_activations",
         ("interface", "gradients", "golden"),
         (_SOFTMAX_SHIFT, "z -= z.max(axis=-1, keepdims=True)"),
         message="shifted by their row maximum", names=("shifted_logits", "mutates_arguments")),
    # --- init_params (decided contract: reproduce the section's draws) -------------------
    _bug("init_scale_one_over_n", "init_params scales by sqrt(1/n_in) instead of He's "
         "sqrt(2/n_in)", ("interface", "golden"), (_HE_SCALE, "np.sqrt(1.0 / n_in)"),
         message=_INIT_CONTRACT, names="init_one_over_n"),
    _bug("init_xavier", "init_params uses Xavier/Glorot sqrt(2/(n_in+n_out)) instead of He",
         ("interface", "golden"), (_HE_SCALE, "np.sqrt(2.0 / (n_in + n_out))"),
         message=_INIT_CONTRACT, names="init_xavier"),
    _bug("init_transposed_draws", "init_params draws an (n_out, n_in) matrix and transposes it: "
         "right shape, different numbers", ("interface", "golden"),
         (_DRAW, "rng.standard_normal((n_out, n_in)).T"), message=_INIT_CONTRACT),
    _bug("init_ignores_seed", "init_params ignores its seed (default_rng() without argument)",
         ("interface", "golden"), (_SEEDED_RNG, "np.random.default_rng()"),
         message=_INIT_CONTRACT),
    _bug("init_random_biases", "init_params draws small random biases instead of zeros (which "
         "also shifts every later draw)", ("interface", "golden"),
         (_ZERO_BIAS, "b = rng.standard_normal(n_out) * 0.01"), message=_INIT_CONTRACT),
    # --- train (interface/golden: exact full-batch steps; mnist: it must learn) ----------
    _bug("train_update_sign", "train adds the gradient (W + lr * dW): gradient ascent",
         ("interface", "golden", "mnist"), (_SGD_STEP, "params[j] = (W + lr * dW, b + lr * db)"), names="train_ascent"),
    _bug("train_update_discarded", "train computes the new (W, b) into local names and never "
         "stores them in params", ("interface", "golden", "mnist"),
         (_SGD_STEP, "W, b = W - lr * dW, b - lr * db"), names="train_no_update"),
    _bug("train_drops_last_batch", "train's batch loop stops one batch early "
         "(range(0, n - batch_size, batch_size)): with batch_size = n it never steps",
         ("interface", "golden"), (_BATCH_STARTS, "range(0, n - batch_size, batch_size)"), names="train_no_update"),
    _bug("train_ignores_lr", "train steps by the raw gradient (W - dW), ignoring lr",
         ("interface", "golden"), (_SGD_STEP, "params[j] = (W - dW, b - db)"), names="train_ignores_lr"),
    # --- no backprop at all (efficiency: right values, the cost of one forward per parameter)
    _bug("numerical_gradients", "backward differentiates the loss numerically through forward "
         "(central differences, two forward passes per parameter) instead of backpropagating",
         ("efficiency",), ("def backward(", "def _backprop_unused(", 1),
         ("def accuracy(", 'def backward(activations, pre_activations, Y, params):\n    """No backprop: central differences of the loss through forward, two passes per parameter."""\n    X = activations[0]\n    grads = []\n    for j, (W, b) in enumerate(params):\n        pair = []\n        for k, theta in enumerate((W, b)):\n            g = np.zeros(theta.shape)\n            for idx in np.ndindex(theta.shape):\n                h = 1e-5 * max(1.0, abs(float(theta[idx])))\n                losses = []\n                for step in (h, -h):\n                    moved = theta.copy()\n                    moved[idx] += step\n                    trial = list(params)\n                    trial[j] = (moved, b) if k == 0 else (W, moved)\n                    losses.append(cross_entropy(forward(X, trial)[0][-1], Y))\n                g[idx] = (losses[0] - losses[1]) / (2 * h)\n            pair.append(g)\n        grads.append((pair[0], pair[1]))\n    return grads\n\n\ndef accuracy(', 1), message="numerical differentiation"),
    _bug("numerical_complex_step_columns", "backward differentiates the loss by complex steps on "
         "one pre-activation column at a time, vectorised over the batch: no backprop, one partial "
         "forward pass per unit", ("efficiency",), _NO_BACKPROP,
         ("def accuracy(", _COMPLEX_STEP_COLUMNS + "def accuracy(", 1), message="numerical differentiation"),
    _bug("numerical_forward_mode", "backward pushes a tangent per unit forward to the logits (forward "
         "mode, every unit of a layer in one float32 batch): no backprop", ("efficiency",), _NO_BACKPROP,
         ("def accuracy(", _FORWARD_MODE + "def accuracy(", 1), message="numerical differentiation"),
    _bug("numerical_sparse_forward_mode", "backward runs forward mode per sample through the active "
         "ReLUs only, in float32: no backprop, the cheapest per-unit scheme", ("efficiency",), _NO_BACKPROP,
         ("def accuracy(", _SPARSE_FORWARD_MODE + "def accuracy(", 1), message="numerical differentiation"),
    _bug("numerical_cpu_burn", "forward-mode backward that burns CPU in forward and, on small networks, "
         "in backward, to shrink a cost ratio and its growth", ("efficiency",), _NO_BACKPROP,
         ("def accuracy(", _FORWARD_MODE + _CPU_BURN + "def accuracy(", 1), message="numerical differentiation"),
)
