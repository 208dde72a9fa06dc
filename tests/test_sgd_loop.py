"""The suite's SGD loop (conformance/sgd_loop.py): faithful to the section's train, strict
about what forward/backward return, loud on divergence, and loadable on its own."""

from __future__ import annotations

import re
import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conformance.sgd_loop import SgdLoopError, sgd
from tests.helpers import run_pytest
from conformance.reference import mlp

SGD_LOOP_FILE = Path(__file__).resolve().parent.parent / "conformance" / "sgd_loop.py"


def small_problem(n: int = 150, n_in: int = 12, n_classes: int = 4, seed: int = 3):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n_in))
    Y = np.eye(n_classes)[rng.integers(0, n_classes, n)]
    return X, Y, mlp.init_params([n_in, 10, n_classes], seed)


@pytest.mark.parametrize("batch_size", [1, 32, 150, 400])  # 32: last batch of 22 rows
def test_sgd_reproduces_the_reference_train_bit_for_bit(batch_size: int) -> None:
    X, Y, params = small_problem()
    expected = mlp.train(X, Y, X, Y, [p for p in params], lr=0.3, epochs=2,
                         batch_size=batch_size, shuffle_seed=11, verbose=False)
    got = sgd(mlp.forward, mlp.backward, X, Y, params, lr=0.3, epochs=2, batch_size=batch_size,
              seed=11)
    for (W, b), (eW, eb) in zip(got, expected):
        assert np.array_equal(W, eW) and np.array_equal(b, eb)


def test_sgd_leaves_the_given_params_alone() -> None:
    X, Y, params = small_problem()
    before = [(W.copy(), b.copy()) for W, b in params]
    sgd(mlp.forward, mlp.backward, X, Y, params, lr=0.3, epochs=1, batch_size=16, seed=0)
    assert all(np.array_equal(W, W0) and np.array_equal(b, b0)
               for (W, b), (W0, b0) in zip(params, before))


def test_zero_epochs_returns_the_initial_params() -> None:
    X, Y, params = small_problem()
    got = sgd(mlp.forward, mlp.backward, X, Y, params, lr=0.3, epochs=0, batch_size=16, seed=0)
    assert all(W is W0 for (W, _), (W0, _) in zip(got, params))


def _broken_backward(change):
    def backward(acts, pres, Y, params):
        return change(mlp.backward(acts, pres, Y, params))
    return backward


class Sub(np.ndarray):
    pass


@pytest.mark.parametrize("forward, backward, message", [
    (lambda X, p: mlp.forward(X, p)[0][-1], mlp.backward,
     "forward returned a ndarray, but should return (activations, pre_activations)"),
    (lambda X, p: (mlp.forward(X, p)[0][1:], mlp.forward(X, p)[1]), mlp.backward,
     "forward's activations should be a list of 3 arrays"),
    (mlp.forward, _broken_backward(lambda g: g[:1]),
     "backward's result is a list of length 1, but should be a list of 2 (dW, db) pairs"),
    (mlp.forward, _broken_backward(lambda g: [(dW.T, db) for dW, db in g]),
     "dW[0] has shape (10, 12), but should have shape (12, 10)"),
    (mlp.forward, _broken_backward(lambda g: [(dW.view(Sub), db) for dW, db in g]),
     "dW[0] is a Sub, but should be a numpy.ndarray"),
    (mlp.forward, _broken_backward(lambda g: [(dW, db.astype(int)) for dW, db in g]),
     "db[0] has dtype int64, but should be a floating dtype"),
    (mlp.forward, _broken_backward(lambda g: [dW for dW, db in g]),
     "backward's result[0] is a ndarray, but should be a (dW, db) pair"),
])
def test_wrong_structures_get_a_clear_error(forward, backward, message) -> None:
    X, Y, params = small_problem()
    with pytest.raises(SgdLoopError) as info:
        sgd(forward, backward, X, Y, params, lr=0.3, epochs=1, batch_size=16, seed=0)
    assert message in str(info.value)
    assert "epoch 0, step 0" in str(info.value)


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")
def test_divergence_stops_early_and_says_where() -> None:
    X, Y, params = small_problem()
    calls = []

    def exploding_backward(acts, pres, Y, params):
        calls.append(1)
        grads = mlp.backward(acts, pres, Y, params)
        return [(dW * 1e308 * (len(calls) >= 3), db) for dW, db in grads]

    with pytest.raises(SgdLoopError) as info:
        sgd(mlp.forward, exploding_backward, X, Y, params, lr=10.0, epochs=5, batch_size=16, seed=0)
    text = str(info.value)
    assert "training diverged" in text and "epoch 0, step 2" in text
    assert "non-finite" in text and len(calls) == 3
    assert "wrong gradients diverge too" in text  # not only the guards and the 1/B scale (students F8)


def test_nan_probabilities_stop_training() -> None:
    X, Y, params = small_problem()

    def nan_forward(X, p):
        acts, pres = mlp.forward(X, p)
        acts[-1] = acts[-1] * np.nan
        return acts, pres

    with pytest.raises(SgdLoopError, match=r"activations\[-1\]\[0, 0\] = nan \(64 non-finite"):
        sgd(nan_forward, mlp.backward, X, Y, params, lr=0.1, epochs=1, batch_size=16, seed=0)


@pytest.mark.parametrize("kwargs, message", [
    ({"epochs": -1}, "epochs must be a non-negative int"),
    ({"batch_size": 0}, "batch_size must be a positive int"),
    ({"batch_size": 2.5}, "batch_size must be a positive int"),
])
def test_bad_arguments_are_refused(kwargs, message) -> None:
    X, Y, params = small_problem()
    args = {"lr": 0.1, "epochs": 1, "batch_size": 8, "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        sgd(mlp.forward, mlp.backward, X, Y, params, **args)


def test_sgd_loop_imports_only_numpy_and_the_standard_library() -> None:
    tree = ast.parse(SGD_LOOP_FILE.read_text())
    modules = {alias.name.split(".")[0] for node in ast.walk(tree)
               if isinstance(node, ast.Import) for alias in node.names}
    modules |= {node.module.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.module}
    assert modules <= {"__future__", "typing", "numpy"}, modules


def test_sgd_loop_runs_when_loaded_by_path_in_an_isolated_interpreter(tmp_path: Path) -> None:
    # What the isolated worker does: python -I, cwd elsewhere, load the file by path.
    code = (
        "import importlib.util, sys, numpy as np\n"
        f"spec = importlib.util.spec_from_file_location('sgd_loop', {str(SGD_LOOP_FILE)!r})\n"
        "h = importlib.util.module_from_spec(spec); spec.loader.exec_module(h)\n"
        "def forward(X, p):\n"
        "    Z = X @ p[0][0] + p[0][1]; e = np.exp(Z - Z.max(1, keepdims=True))\n"
        "    return [X, e / e.sum(1, keepdims=True)], [Z]\n"
        "def backward(a, z, Y, p):\n"
        "    d = (a[-1] - Y) / len(Y); return [(a[0].T @ d, d.sum(0))]\n"
        "X = np.eye(4); Y = np.eye(4)\n"
        "p = h.sgd(forward, backward, X, Y, [(np.zeros((4, 4)), np.zeros(4))], lr=1.0,\n"
        "          epochs=20, batch_size=2, seed=0)\n"
        "assert (forward(X, p)[0][-1].argmax(1) == np.arange(4)).all()\n"
        "assert 'reference' not in sys.modules and 'conformance' not in sys.modules\n"
        "print('ok')\n")
    result = subprocess.run([sys.executable, "-I", "-c", code], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


# ------------------------------------------------- MNIST checks without the data

def _mnist_tests(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    root = SGD_LOOP_FILE.parent.parent
    return run_pytest("conformance/test_mnist.py", "-rs", "--mnist-dir", str(tmp_path / "no-mnist"),
                      *args, cwd=root, timeout=300)


def test_mnist_checks_without_data_are_skipped_saying_they_did_not_run(tmp_path: Path) -> None:
    result = _mnist_tests(tmp_path=tmp_path)
    assert result.returncode == 0, result.stdout
    closing = result.stdout.strip().splitlines()[-1]  # pytest's closing line: skipped, none passed
    skipped = re.search(r"(\d+) skipped", closing)
    assert skipped and int(skipped.group(1)) >= 2 and "passed" not in closing, result.stdout
    assert "no check area ran" in result.stdout  # the summary does not call a skip a pass
    assert "MNIST data not found" in result.stdout and "did NOT run" in result.stdout
    assert "backprop-conformance fetch-mnist" in result.stdout  # works installed, no checkout needed


def test_require_mnist_turns_missing_data_into_a_failure(tmp_path: Path) -> None:
    result = _mnist_tests("--require-mnist", tmp_path=tmp_path)
    assert result.returncode == 1, result.stdout
    assert "2 failed" in result.stdout and "--require-mnist makes this a failure" in result.stdout
