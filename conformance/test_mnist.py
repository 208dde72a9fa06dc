"""Contract area: MNIST. The candidate's backprop actually learns: the section's recipe
(784-128-10, lr 0.5, batch 64) reaches the accuracy calibrated from the reference
(fixtures/mnist_thresholds.json, written by ``python -m tools.calibrate_mnist``).

Two loops are checked: the suite's own SGD loop (conformance/harness.py) driven by the
candidate's forward/backward, and the candidate's ``train`` when it has one. Accuracy is
always computed here, with the reference's forward on the returned parameters, never taken
from the candidate. Quick check: 1 epoch; ``--mnist-full`` adds the full 10 epochs.

Without the data these tests are SKIPPED with a reason saying they did not run (never
passed); ``--require-mnist`` makes that a failure.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from conformance import golden
from conformance.candidate import Candidate, CandidateError
from conformance.golden import Mismatch

CONFORMANCE_AREA = "mnist"  # the check area graded by this module (conformance/plugin.py)

pytestmark = pytest.mark.mnist

THRESHOLDS_FILE = golden.FIXTURES_DIR / "mnist_thresholds.json"
LAYER_SIZES = [784, 128, 10]
LR, BATCH_SIZE = 0.5, 64
INIT_SEED, SHUFFLE_SEED = 0, 42  # the section's: init_params(..., seed=0), default_rng(42)
HOW_TO_GET = ("get the data with `python -m tools.fetch_mnist`, or point to a directory holding "
              "the four IDX files with --mnist-dir DIR or $BACKPROP_MNIST_DIR")


@pytest.fixture(scope="session")
def mnist(request: pytest.FixtureRequest) -> Any:
    """The data (loaded once per session, one-hot targets) or the reason it is unavailable."""
    from reference.mnist import MNISTError, find_mnist_dir, load_mnist, one_hot

    option = request.config.getoption("mnist_dir")
    try:
        directory = find_mnist_dir(option)
    except MNISTError as exc:
        return f"MNIST not usable: {exc}"
    if directory is None:
        where = f"--mnist-dir {option}" if option else "$BACKPROP_MNIST_DIR and the user cache"
        return f"MNIST data not found (looked in {where})"
    try:
        data = load_mnist(directory, download=False, progress=False)
    except MNISTError as exc:
        return f"MNIST in {directory} could not be loaded: {exc}"
    return data._replace(y_train=one_hot(data.y_train), y_test=one_hot(data.y_test))


def _data(request: pytest.FixtureRequest, mnist: Any) -> Any:
    __tracebackhide__ = True
    if isinstance(mnist, str):
        message = f"{mnist}; the MNIST checks did NOT run: {HOW_TO_GET}"
        if request.config.getoption("require_mnist"):
            pytest.fail(message + " (--require-mnist makes this a failure)", pytrace=False)
        pytest.skip(message)
    return mnist


@pytest.fixture(scope="session")
def thresholds() -> dict:
    if not THRESHOLDS_FILE.is_file():
        pytest.fail(f"{THRESHOLDS_FILE} is missing: run `python -m tools.calibrate_mnist` "
                    "(never auto-created)", pytrace=False)
    return json.loads(THRESHOLDS_FILE.read_text())


def _checked_params(value: Any, where: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """Trained params as plain arrays of the recipe's shapes (validated before any use)."""
    __tracebackhide__ = True
    layers = golden.checked_sequence(value, "the trained params", len(LAYER_SIZES) - 1, where)
    params = []
    for j, pair in enumerate(layers):
        W, b = golden.checked_sequence(pair, f"params[{j}] (W, b)", 2, where)
        params.append((golden.checked_array(W, f"W[{j}]", where, (LAYER_SIZES[j], LAYER_SIZES[j + 1])),
                       golden.checked_array(b, f"b[{j}]", where, (LAYER_SIZES[j + 1],))))
    return params


def _accuracy(params: list, data: Any) -> float:
    from reference.mlp import forward

    with np.errstate(all="ignore"):  # non-finite params just give a low accuracy here
        probs = forward(data.X_test, [(W.astype(np.float64), b.astype(np.float64))
                                      for W, b in params])[0][-1]
    return float((probs.argmax(axis=1) == data.y_test.argmax(axis=1)).mean())


def _one_blas_thread() -> Any:
    """Training in one BLAS thread: on a busy 2-core machine OpenBLAS's spinning threads make
    these small products several times slower (tools/bench_mnist.py measures both); results
    and verdicts do not depend on it. A no-op without threadpoolctl."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1)


def _run(train: Callable[[], Any], where: str) -> Any:
    __tracebackhide__ = True
    try:
        with _one_blas_thread():
            return train()
    except CandidateError as exc:
        raise Mismatch(f"training failed: {exc.reason} [{where}]") from exc
    except Exception as exc:  # noqa: BLE001 - HarnessError or anything the candidate raised
        raise Mismatch(f"training failed: {type(exc).__name__}: {exc} [{where}]") from exc


def _assert_reaches(accuracy: float, check: dict, loop: str, where: str, hint: str,
                    record_property: Callable[[str, Any], None]) -> None:
    __tracebackhide__ = True
    record_property("mnist_accuracy", accuracy)
    record_property("mnist_threshold", check["threshold"])
    if accuracy >= check["threshold"]:
        return
    raise Mismatch(
        f"test accuracy={accuracy:.4f}, but should be >= {check['threshold']:.4f} [{where}]\n"
        f"  compared: accuracy on the 10,000 MNIST test images after {check['epochs']} epoch(s) "
        f"of {loop}, computed by the suite with the reference's forward\n"
        f"  contract: threshold = min over {len(check['accuracies'])} reference seeds "
        f"({check['min']:.4f}) - margin {check['margin']:.4f} (seed spread: mean {check['mean']:.4f}, "
        f"std {check['std']:.4f}), from fixtures/mnist_thresholds.json\n"
        f"  next: {hint}")


def _initial_params() -> list:
    from reference.mlp import init_params

    return init_params(LAYER_SIZES, INIT_SEED)


HARNESS_HINT = ("the suite trained with its own SGD loop, so the gradients your backward returns "
                "do not lead downhill: run `pytest conformance -k 'gradients or golden'` to find "
                "the wrong one (an accuracy near 0.1 means nothing was learned; a few points "
                "short usually means a scaled or partly wrong gradient).")
TRAIN_HINT = ("your forward/backward are judged separately; here your train loop is at fault if "
              "the harness check passes: it must update every batch with W - lr * dW, b - lr * db, "
              "use the lr, epochs and batch_size it is given, and return the trained params.")


def _quick_or_full(request: pytest.FixtureRequest, which: str) -> None:
    if which == "full" and not request.config.getoption("mnist_full"):
        pytest.skip("full 10-epoch MNIST recipe not requested (--mnist-full)")


@pytest.mark.parametrize("which", ["quick", "full"])
def test_harness_sgd_learns_mnist(candidate: Candidate, request: pytest.FixtureRequest, mnist: Any,
                                  thresholds: dict, record_property: Any, which: str) -> None:
    """The suite's SGD loop with the candidate's forward/backward reaches the threshold."""
    _quick_or_full(request, which)
    data = _data(request, mnist)
    check = thresholds[which]
    where = (f"suite SGD loop, {which}: {check['epochs']} epoch(s), lr {LR}, batch {BATCH_SIZE}, "
             f"init seed {INIT_SEED}, shuffle seed {SHUFFLE_SEED}")
    trained = _run(lambda: candidate.run_sgd(data.X_train, data.y_train, _initial_params(), lr=LR,
                                             epochs=check["epochs"], batch_size=BATCH_SIZE,
                                             seed=SHUFFLE_SEED), where)
    params = _checked_params(trained, where)
    _assert_reaches(_accuracy(params, data), check,
                    "the suite's SGD loop driven by your forward/backward", where, HARNESS_HINT,
                    record_property)


@pytest.mark.parametrize("which", ["quick", "full"])
def test_own_train_learns_mnist(candidate: Candidate, request: pytest.FixtureRequest, mnist: Any,
                                thresholds: dict, record_property: Any, which: str) -> None:
    """The candidate's own train loop reaches the threshold (accuracy measured by the suite)."""
    if not candidate.has("train"):
        pytest.skip("candidate defines no train (optional): its own loop was not checked")
    _quick_or_full(request, which)
    data = _data(request, mnist)
    check = thresholds[which]
    where = (f"train(X_train, Y_train, X_test, Y_test, init_params({LAYER_SIZES}, "
             f"{INIT_SEED}), {LR}, {check['epochs']}, {BATCH_SIZE})")
    trained = _run(lambda: candidate.call("train", data.X_train, data.y_train, data.X_test,
                                          data.y_test, _initial_params(), LR, check["epochs"],
                                          BATCH_SIZE), where)
    params = _checked_params(trained, where)
    _assert_reaches(_accuracy(params, data), check, "your train", where, TRAIN_HINT,
                    record_property)
