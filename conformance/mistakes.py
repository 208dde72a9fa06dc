"""The one catalogue of mistakes: every key the suite can record, defined once.

Each entry says which function the mistake lives in, what it is, the change that fixes it
(worded for either layout: samples in rows or in columns), its default price in the default
rubric, its family (keys the evidence may name two ways, charged once), how it is replayed on
the exact engine (``backward``/``forward`` switches, conformance/exact.py; replay covers every
accepted convention, see conformance/diagnosis.py ``replay``), and the phrases by which a
message names it (tools/kill_matrix.py audits them: a message naming a mistake the code does
not have is a misleading hint). The diagnosis, the summary, the rubric's default prices and
titles, SPEC.md's table and the kill matrix all read this table: adding a mistake is one entry.

Generic entries (``generic=True``) are findings about a function that no catalogued mistake
explains: wrong values, the wrong structure, or a crash.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from conformance.exact import BackwardBugs, ForwardBugs


# The check areas, in report order: each conformance/test_*.py module declares its own as
# CONFORMANCE_AREA, the grader's rubric scores by them, the summary groups by them.
AREAS: tuple[str, ...] = ("interface", "gradients", "stability", "relu_index", "golden", "mnist", "efficiency")


@dataclass(frozen=True)
class Mistake:
    key: str
    function: str  # the candidate's function it lives in ("" for any)
    description: str  # completes "your <function> ..." (and "an implementation that ...")
    fix: str  # the line as it usually appears and what it should be; "" when the description says it
    price: float  # points in the default rubric
    family: str = ""  # keys charged once together (default: the key alone)
    backward: BackwardBugs | None = None  # its replay on the exact backward
    forward: ForwardBugs | None = None  # its replay on the exact forward
    phrases: tuple[str, ...] = ()  # message phrases that name it (besides its description)
    generic: bool = False  # a generic finding, not a specific mistake
    title: str = ""  # the rubric's title, when not "your <function> <description>: <fix>"

    @property
    def cause(self) -> str:
        """One line: what is wrong, and the change to make."""
        text = f"{self.function} {self.description}" if self.function else self.description
        return f"{text}: {self.fix}" if self.fix else text


def _backward(key: str, description: str, fix: str, price: float, bugs: BackwardBugs, **kw: Any) -> Mistake:
    return Mistake(key, "backward", description, fix, price, backward=bugs, **kw)


def _forward(key: str, description: str, fix: str, price: float, bugs: ForwardBugs, **kw: Any) -> Mistake:
    return Mistake(key, "forward", description, fix, price, forward=bugs, **kw)


_CLASS_AXIS = "the class axis (axis=-1 with samples in rows, axis=0 with samples in columns)"

MISTAKES: tuple[Mistake, ...] = (
    # ----------------------------------------------------------- backward (BP1-BP4)
    _backward("relu_index", "evaluates the ReLU derivative at the wrong layer's pre-activation (the i-1 bug)",
              "`* (pre_activations[i] > 0)` should be `* (pre_activations[i-1] > 0)`", 40,
              BackwardBugs(mask_offset=0), family="relu_mask", phrases=("symptom of the i-1 bug",)),
    _backward("no_batch_mean", "does not divide by the batch size",
              "`delta = Y_hat - Y` should be `delta = (Y_hat - Y) / B`", 25, BackwardBugs(batch_mean=False)),
    _backward("double_batch_mean", "divides by the batch size twice (dW averaged again)",
              "`dW = A_prev.T @ delta / B`: delta is already divided by B", 20, BackwardBugs(dw_mean=True)),
    _backward("db_mean", "averages db over the batch instead of summing it",
              "`db = delta.mean(axis=0)` should be `db = delta.sum(axis=0)`", 10, BackwardBugs(db_mean=True)),
    _backward("missing_mask", "leaves out the ReLU derivative when propagating delta",
              "`delta = delta @ W.T` should be `delta = (delta @ W.T) * (pre_activations[i-1] > 0)`", 40,
              BackwardBugs(mask=False), family="relu_mask"),
    _backward("wrong_weights", "propagates delta through the wrong layer's weights",
              "`W = params[i-1][0]` should be `W = params[i][0]`", 40, BackwardBugs(w_offset=-1)),
    _backward("untransposed_weights", "propagates delta through W instead of W.T",
              "`delta @ W` should be `delta @ W.T`", 35, BackwardBugs(transpose_w=False),
              phrases=("W itself, not W.T",)),
    _backward("reversed_order", "returns the gradients in reverse order (last layer first)",
              "`return grads` should be `return list(reversed(grads))`", 30, BackwardBugs(reverse=True)),
    _backward("transposed_dw", "computes dW transposed",
              "`dW = delta.T @ A_prev` should be `dW = A_prev.T @ delta`", 30, BackwardBugs(dw_transposed=True)),
    _backward("wrong_sign", "uses Y - Y_hat (the gradient's sign is flipped)",
              "`delta = (Y - Y_hat) / B` should be `delta = (Y_hat - Y) / B`", 40, BackwardBugs(sign=-1.0)),
    _backward("delta_not_propagated", "never propagates delta to the earlier layers",
              "the loop must update `delta = (delta @ W.T) * (pre_activations[i-1] > 0)`", 40,
              BackwardBugs(propagate=False)),
    _backward("softmax_jacobian", "multiplies by the softmax derivative Y_hat * (1 - Y_hat) on top of Y_hat - Y",
              "`delta = (Y_hat - Y) / B` already includes the softmax derivative", 30,
              BackwardBugs(softmax_jacobian=True)),
    _backward("dw_from_output", "uses the layer's own output instead of its input in dW",
              "`dW = activations[i+1].T @ delta` should be `dW = activations[i].T @ delta`", 40,
              BackwardBugs(dw_from_output=True)),
    _backward("last_sample_only", "keeps only the last sample's gradient (a per-sample loop that assigns "
              "instead of accumulating)",
              "`dW = np.outer(a, d) / B` inside the loop over samples should be `dW += np.outer(a, d) / B` "
              "(same for db), with dW and db set to zeros before the loop", 35, BackwardBugs(last_sample_only=True)),
    _backward("mean_every_layer", "divides delta by the batch size again at every layer",
              "`delta = (delta @ W.T) * mask / B` should be `delta = (delta @ W.T) * mask`: only the output "
              "error is divided by B", 20, BackwardBugs(mean_every_layer=True)),
    # The per-layer 1/m style (dZ = A - Y undivided, then dW = dZ A^T / m, db = sum(dZ) / m) with
    # the 1/m left out of one of the two lines.
    _backward("dw_no_batch_mean", "divides db by the batch size but not dW (dW is B times too large)",
              "dW needs the division by B that db has: `dW = A_prev.T @ delta` with `delta = (Y_hat - Y) / B`, "
              "or `dW = A_prev.T @ dZ / m` where each layer divides by m", 25, BackwardBugs(dw_times_batch=True)),
    _backward("db_no_batch_mean", "divides dW by the batch size but not db (db is B times too large)",
              "db needs the division by B that dW has: `db = delta.sum(axis=0)` with `delta = (Y_hat - Y) / B`, "
              "or `db = dZ.sum(axis=0) / m` where each layer divides by m", 15, BackwardBugs(db_times_batch=True)),
    # ----------------------------------------------------------- forward
    _forward("no_bias", "leaves out the bias (`Z = A_prev @ W` instead of `A_prev @ W + b`)", "", 25,
             ForwardBugs(bias=False)),
    _forward("relu_output", "applies ReLU to the output layer before the softmax", "", 30,
             ForwardBugs(relu_output=True)),
    _forward("relu_instead_of_softmax", "applies ReLU instead of softmax on the output layer", "", 40,
             ForwardBugs(relu_instead_of_softmax=True)),
    _forward("softmax_batch_axis", "takes the softmax over the batch axis instead of over each sample's classes",
             f"take the max and the sum over {_CLASS_AXIS}", 35, ForwardBugs(softmax_axis=0),
             phrases=("COLUMNS of activations[-1] sum to 1",)),
    _forward("softmax_hidden", "applies softmax on the hidden layers instead of ReLU", "", 35,
             ForwardBugs(softmax_hidden=True)),
    _forward("pre_after_relu", "stores relu(Z) in pre_activations (an in-place ReLU overwrote Z)",
             "compute A = relu(Z) as a new array", 30, ForwardBugs(pre_after_relu=True), phrases=("holds relu(Z)",)),
    _forward("shifted_logits", "stores the logits shifted by their row maximum in pre_activations (an in-place "
             "`z -= z.max(axis=-1, keepdims=True)` inside softmax modified Z)",
             "shift a copy: `z = z - z.max(axis=-1, keepdims=True)`", 10, ForwardBugs(shifted_logits=True)),
    # ----------------------------------------------------------- output guards (replayed on the logits)
    Mistake("max_guard", "forward", "computes the softmax without the per-sample max subtraction: exp overflows "
            "on large logits", f"subtract each sample's max over {_CLASS_AXIS} before exp", 15,
            family="max_guard", phrases=("per-sample max subtraction: softmax must subtract",)),
    # The same missing guard where backward recomputes the softmax of the logits (a network that
    # returns logits, or a backward that ignores activations[-1]): named only when replaying that
    # softmax gives inf/nan in exactly the candidate's entries (checks.nonfinite_backward). One
    # family with max_guard: one unguarded softmax used in both functions is charged once.
    Mistake("backward_max_guard", "backward", "recomputes the softmax of the logits without the per-sample max "
            "subtraction: exp overflows on large logits", f"subtract each sample's max over {_CLASS_AXIS} "
            "before exp in that softmax too", 15, family="max_guard",
            phrases=("a softmax recomputed inside backward without the max subtraction",)),
    Mistake("row_guard", "forward", "subtracts one global max instead of each sample's: samples far below it "
            "become 0/0", f"take the max over {_CLASS_AXIS} of each sample", 15,
            phrases=("the max must be taken per sample, over the classes",)),
    Mistake("log_guard", "cross_entropy", "takes log(0) when a true class has probability 0",
            "add a guard, np.log(Y_hat + 1e-12) or np.clip", 10,
            phrases=("the log(0) guard: cross_entropy must stay finite",)),
    # ----------------------------------------------------------- one function's checks (test_interface.py)
    Mistake("loss_sum", "cross_entropy", "sums over the batch", "use the mean", 5,
            phrases=("equals the SUM over the batch",)),
    Mistake("loss_sign", "cross_entropy", "has the wrong sign", "-mean(log p)", 10,
            phrases=("the sign is flipped",)),
    Mistake("loss_mean_over_classes", "cross_entropy", "averages over the classes too",
            "sum over the classes, average over the batch", 5,
            phrases=("the mean over every entry (batch x classes)",)),
    Mistake("init_zero", "init_params", "returns zero weights", "draw He-scaled normals", 20,
            phrases=("every W is zero",)),
    Mistake("init_fan_out", "init_params", "scales by sqrt(2 / n_out)", "He uses sqrt(2 / n_in)", 5,
            phrases=("(fan-out)",)),
    Mistake("init_one_over_n", "init_params", "scales by sqrt(1 / n_in)", "He uses sqrt(2 / n_in)", 5,
            phrases=("scales by sqrt(1 / n_in)",)),
    Mistake("init_xavier", "init_params", "uses Xavier/Glorot", "He uses sqrt(2 / n_in)", 5,
            phrases=("uses Xavier/Glorot",)),
    Mistake("train_no_update", "train", "never changes the params",
            "store the update, and check that the batch loop visits every batch", 30, family="train",
            phrases=("train returns the initial params unchanged",)),
    Mistake("train_ascent", "train", "adds the gradient", "W - lr * dW", 30, family="train",
            phrases=("gradient ascent",)),
    Mistake("train_ignores_lr", "train", "ignores lr", "W - lr * dW", 10, family="train",
            phrases=("train steps by the raw gradient",)),
    Mistake("mutates_arguments", "", "a function modifies its arguments in place",
            "work on a copy or a new array", 10, phrases=("arguments must not be modified",)),
    # ----------------------------------------------------------- generic findings
    Mistake("backward_wrong", "backward", "returns wrong values that match none of the catalogued mistakes", "",
            40, family="backward", generic=True,
            title="backward's gradients are wrong and match none of the catalogued mistakes"),
    Mistake("backward_structure", "backward", "returns the wrong number or shapes of arrays", "", 50,
            family="backward", generic=True, title="backward returns the wrong number or shapes of gradients"),
    Mistake("backward_crash", "backward", "raises an exception", "", 50, family="backward", generic=True),
    Mistake("forward_wrong", "forward", "returns wrong values that match none of the catalogued mistakes", "",
            40, family="forward", generic=True,
            title="forward's outputs are wrong and match none of the catalogued mistakes"),
    Mistake("forward_structure", "forward", "returns the wrong number or shapes of arrays", "", 50,
            family="forward", generic=True),
    Mistake("forward_crash", "forward", "raises an exception", "", 50, family="forward", generic=True),
    # The generic price of a function is at least the price of its priciest named mistake:
    # turning a named mistake into one no replay explains (or into a crash) never pays.
    Mistake("loss_wrong", "cross_entropy", "returns wrong values that match none of the catalogued mistakes", "",
            10, family="cross_entropy", generic=True,
            title="cross_entropy's value is wrong and matches none of the catalogued mistakes"),
    Mistake("loss_structure", "cross_entropy", "returns something that is not one finite number", "", 10,
            family="cross_entropy", generic=True),
    Mistake("loss_crash", "cross_entropy", "raises an exception", "", 10, family="cross_entropy", generic=True),
    Mistake("init_wrong", "init_params", "returns wrong values that match none of the catalogued mistakes", "",
            20, family="init_params", generic=True,
            title="init_params does not reproduce the section's draws (no catalogued mistake fits)"),
    Mistake("init_structure", "init_params", "returns the wrong number or shapes of arrays", "", 20,
            family="init_params", generic=True),
    Mistake("init_crash", "init_params", "raises an exception", "", 20, family="init_params", generic=True),
    Mistake("train_wrong", "train", "returns params that match none of the catalogued update mistakes, nor "
            "the steps its own forward and backward give", "", 30, family="train", generic=True,
            title="train's result is wrong and matches none of the catalogued mistakes"),
    Mistake("train_structure", "train", "returns the wrong number or shapes of arrays", "", 30, family="train",
            generic=True),
    Mistake("train_crash", "train", "raises an exception", "", 30, family="train", generic=True),
)

BY_KEY: dict[str, Mistake] = {m.key: m for m in MISTAKES}
if len(BY_KEY) != len(MISTAKES):  # pragma: no cover - a catalogue edit gone wrong
    raise RuntimeError("conformance.mistakes: duplicate keys in MISTAKES")


def mistake(key: str) -> Mistake | None:
    return BY_KEY.get(key)
