"""The reference (conformance/reference/mlp.py) is faithful to the textbook section's code.

The section's code is extracted from the section text at test time (conformance.reference.section) and run
side by side with the reference:

* float64: init_params, forward, cross_entropy, backward and train must be BIT-IDENTICAL.
  The reference performs the same floating-point operations in the same order on the same
  operands, so any difference at all means its numerics drifted from the section's.
* float32 (same operations, inputs cast to float32): at most 4 ulps of float32, measured at
  the magnitude of each array (4 * eps32 * max|section value|). The reference may use
  different but value-identical elementwise forms (e.g. a boolean ReLU mask), and float32
  matmuls are where a BLAS could legitimately choose another kernel; 4 ulps is still ~1e6
  times smaller than the O(1) relative error of any real bug (a wrong mask index, a missing
  1/B).

Without the section file the comparison tests skip, except under CI (env CI set), where the
file is always provided and its absence is a failure. The reference's own properties
(shapes, dtypes, normalisation) are tested regardless.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conformance.reference import mlp
from conformance.reference.section import SectionNotFound, load_section

FLOAT32_ULPS = 4  # see the module docstring
PROPERTY_SETTINGS = settings(max_examples=40, deadline=None,
                             suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def section():
    try:
        return load_section()
    except SectionNotFound as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must provide the section text: {exc}", pytrace=False)
        pytest.skip(str(exc))


# ----------------------------------------------------------------------------- helpers


def assert_same(label: str, ref: np.ndarray, sec: np.ndarray, case: str) -> None:
    """``ref`` equals ``sec`` bitwise in float64, within FLOAT32_ULPS at sec's scale in float32."""
    __tracebackhide__ = True
    ref, sec = np.asarray(ref), np.asarray(sec)
    if ref.shape != sec.shape or ref.dtype != sec.dtype:
        pytest.fail(f"{label} has shape {ref.shape} dtype {ref.dtype}, but should have shape "
                    f"{sec.shape} dtype {sec.dtype} like the section's code [{case}]")
    if sec.dtype == np.float32:
        scale = float(np.max(np.abs(sec[np.isfinite(sec)]), initial=0.0))
        allowed = FLOAT32_ULPS * np.finfo(np.float32).eps * scale
        contract = f"{FLOAT32_ULPS} float32 ulps of the array's scale (atol={allowed:.3g})"
    else:
        allowed, contract = 0.0, "bit-identical"
    # Equal values (infinities included) and NaN where the section has NaN are the same result.
    same = (ref == sec) | (np.isnan(ref) & np.isnan(sec))
    with np.errstate(invalid="ignore"):
        diff = np.where(same, 0.0, np.abs(ref.astype(np.float64) - sec))
    bad = ~(diff <= allowed)
    if not bad.any():
        return
    score = np.where(bad, np.nan_to_num(diff, nan=np.inf), -1.0)  # NaN vs number counts as worst
    worst = np.unravel_index(int(np.argmax(score)), diff.shape)
    pytest.fail(
        f"{label}{list(worst)}={ref[worst]!r}, but should be {sec[worst]!r} as in the section's code "
        f"[{case}]\n  contract: {contract}; mismatched {int(bad.sum())} of {bad.size} entries; "
        f"worst |difference| {diff[worst]:.3g}\n  the reference's numerics drifted from the section: "
        "compare conformance/reference/mlp.py with the section operation by operation",
        pytrace=False,
    )


def assert_same_list(label: str, ref: list, sec: list, case: str) -> None:
    __tracebackhide__ = True
    if len(ref) != len(sec):
        pytest.fail(f"{label} has {len(ref)} entries, but should have {len(sec)} [{case}]", pytrace=False)
    for i, (r, s) in enumerate(zip(ref, sec)):
        if isinstance(s, tuple):
            for name, r_part, s_part in zip(("W", "b"), r, s):
                assert_same(f"{label}[{i}].{name}", r_part, s_part, case)
        else:
            assert_same(f"{label}[{i}]", r, s, case)


def make_case(seed: int, batch: int, sizes: list[int], dtype, scale: float = 1.0):
    """Inputs, one-hot targets and params: He-scaled weights and non-zero biases (so the
    bias path is exercised too), all in ``dtype``."""
    rng = np.random.default_rng(seed)
    params = [((rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)).astype(dtype),
               (0.1 * rng.standard_normal(n_out)).astype(dtype))
              for n_in, n_out in zip(sizes[:-1], sizes[1:])]
    X = (scale * rng.standard_normal((batch, sizes[0]))).astype(dtype)
    Y = np.eye(sizes[-1], dtype=dtype)[rng.integers(0, sizes[-1], size=batch)]
    return X, Y, params


layer_sizes = st.lists(st.integers(1, 40), min_size=2, max_size=5)
dtypes = st.sampled_from([np.float64, np.float32])


# ----------------------------------------------------------------------------- init_params


@pytest.mark.parametrize("sizes", [[784, 128, 10], [784, 256, 64, 10], [3, 5, 2], [1, 1], [7, 7, 7, 7]])
@pytest.mark.parametrize("seed", [0, 1, 42, 2**31 + 5])
def test_init_params_bit_identical_to_section(section, sizes: list[int], seed: int) -> None:
    case = f"init_params({sizes}, seed={seed})"
    assert_same_list("params", mlp.init_params(sizes, seed), section.init_params(sizes, seed), case)


def test_init_params_float32_is_the_float64_draws_rounded(section) -> None:
    sec = section.init_params([20, 9, 4], 3)
    ref = mlp.init_params([20, 9, 4], 3, dtype=np.float32)
    assert_same_list("params", ref, [(W.astype(np.float32), b.astype(np.float32)) for W, b in sec],
                     "init_params([20, 9, 4], seed=3, dtype=float32)")


# ----------------------------------------------------------------------------- forward / loss / backward


def compare_pass(section, X, Y, params, case: str) -> None:
    __tracebackhide__ = True
    ref_acts, ref_pre = mlp.forward(X, copy.deepcopy(params))
    sec_acts, sec_pre = section.forward(X.copy(), copy.deepcopy(params))
    assert_same_list("activations", ref_acts, sec_acts, f"forward({case})")
    assert_same_list("pre_activations", ref_pre, sec_pre, f"forward({case})")
    assert_same("loss", mlp.cross_entropy(sec_acts[-1], Y), section.cross_entropy(sec_acts[-1], Y),
                f"cross_entropy({case})")
    ref_grads = mlp.backward(sec_acts, sec_pre, Y, copy.deepcopy(params))
    sec_grads = section.backward(sec_acts, sec_pre, Y, copy.deepcopy(params))
    assert_same_list("grads", [(dW, db) for dW, db in ref_grads], sec_grads, f"backward({case})")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("sizes, batch", [([784, 128, 10], 64), ([784, 128, 10], 1), ([784, 256, 64, 10], 37)])
def test_mnist_shaped_pass_matches_section(section, dtype, sizes: list[int], batch: int) -> None:
    X, Y, params = make_case(7, batch, sizes, dtype)
    X = np.abs(X) / np.abs(X).max()  # pixel-like inputs in [0, 1]
    compare_pass(section, X, Y, params, f"sizes={sizes}, batch={batch}, {np.dtype(dtype).name}")


@PROPERTY_SETTINGS
@given(seed=st.integers(0, 2**32 - 1), batch=st.integers(1, 70), sizes=layer_sizes, dtype=dtypes,
       scale=st.sampled_from([1e-3, 1.0, 30.0, 1e3]))
def test_random_shapes_and_scales_match_section(section, seed: int, batch: int, sizes: list[int],
                                                dtype, scale: float) -> None:
    # scale 1e3 drives logits far apart: softmax underflows to exact zeros and the loss
    # depends on the 1e-12 guard, the two stability lines must match too.
    X, Y, params = make_case(seed, batch, sizes, dtype, scale)
    compare_pass(section, X, Y, params,
                 f"seed={seed}, batch={batch}, sizes={sizes}, scale={scale}, {np.dtype(dtype).name}")


def test_relu_and_softmax_match_section_on_edge_values(section) -> None:
    z = np.array([[-0.0, 0.0, -1e-300, 1e-300, 5.0], [1e308, -1e308, 0.0, 1.0, -1.0], [710.0, 0, 0, 0, 0]])
    for dtype in (np.float64, np.float32):
        with np.errstate(all="ignore"):  # 1e308 -> inf in float32; inf - inf = nan in softmax
            zz = z.astype(dtype)
            ref_softmax, sec_softmax = mlp.softmax(zz), section.softmax(zz)
        assert_same("relu", mlp.relu(zz), section.relu(zz), f"relu({np.dtype(dtype).name} edge values)")
        assert_same("softmax", ref_softmax, sec_softmax,
                    f"softmax({np.dtype(dtype).name} edge values)")


# ----------------------------------------------------------------------------- train


def run_both(section, X, Y, X_test, Y_test, params, **kwargs):
    outputs = []
    for train in (mlp.train, section.train):
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            trained = train(X, Y, X_test, Y_test, copy.deepcopy(params), **kwargs)
        outputs.append((trained, buffer.getvalue()))
    return outputs


def synthetic_problem(seed: int, n: int, n_in: int, n_classes: int, dtype=np.float64):
    """A learnable problem: labels from a random linear teacher on Gaussian inputs."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n_in))
    labels = (X @ rng.standard_normal((n_in, n_classes))).argmax(axis=1)
    Y = np.eye(n_classes)[labels]
    return X.astype(dtype), Y.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_train_on_synthetic_data_matches_section(section, dtype) -> None:
    X, Y = synthetic_problem(0, 1000, 20, 5, dtype)
    X_test, Y_test = synthetic_problem(1, 300, 20, 5, dtype)
    params = [(W.astype(dtype), b.astype(dtype)) for W, b in mlp.init_params([20, 16, 5], seed=3)]
    # batch 48 does not divide 1000: the last, short batch is exercised too
    (ref, ref_out), (sec, sec_out) = run_both(section, X, Y, X_test, Y_test, params,
                                              lr=0.3, epochs=3, batch_size=48)
    assert ref_out == sec_out and ref_out.count("\n") == 3
    assert_same_list("trained params", ref, sec, f"train(synthetic, {np.dtype(dtype).name}, 3 epochs)")


@pytest.mark.mnist
def test_train_on_mnist_subset_matches_section(section, real_dir, tmp_path_factory, monkeypatch) -> None:
    from conformance.reference.mnist import MNISTError, load_mnist, one_hot

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "reference-cache"))
    directory = real_dir
    try:
        data = load_mnist(directory, download=False, progress=False)
    except MNISTError as exc:
        pytest.fail(str(exc), pytrace=False)
    X, Y = data.X_train[:3000], one_hot(data.y_train[:3000])
    X_test, Y_test = data.X_test[:1000], one_hot(data.y_test[:1000])
    params = mlp.init_params([784, 128, 10], seed=0)
    (ref, ref_out), (sec, sec_out) = run_both(section, X, Y, X_test, Y_test, params, epochs=2)
    assert ref_out == sec_out, f"printed lines differ:\n{ref_out}\nvs the section's\n{sec_out}"
    assert_same_list("trained params", ref, sec, "train(MNIST first 3000, 2 epochs, section defaults)")


# ----------------------------------------------------------------------------- the reference's own properties


@PROPERTY_SETTINGS
@given(seed=st.integers(0, 2**32 - 1), batch=st.integers(1, 50), sizes=layer_sizes, dtype=dtypes)
def test_reference_shapes_dtypes_and_normalisation(seed: int, batch: int, sizes: list[int], dtype) -> None:
    X, Y, params = make_case(seed, batch, sizes, dtype)
    activations, pre_activations = mlp.forward(X, params)
    assert len(activations) == len(sizes) and len(pre_activations) == len(sizes) - 1
    for A, n in zip(activations, sizes):
        assert A.shape == (batch, n) and A.dtype == dtype
    for Z, n in zip(pre_activations, sizes[1:]):
        assert Z.shape == (batch, n) and Z.dtype == dtype
    for A in activations[1:-1]:
        assert (A >= 0).all()
    P = activations[-1]
    # each row sums to 1 up to rounding: n terms, each sum step adds at most one ulp
    assert np.all(np.abs(P.sum(axis=1) - 1) <= sizes[-1] * np.finfo(dtype).eps)
    loss = mlp.cross_entropy(P, Y)
    # >= -1e-12 rather than >= 0: a probability of exactly 1 gives -log(1 + 1e-12) < 0
    assert np.ndim(loss) == 0 and np.asarray(loss).dtype == dtype and loss >= -2e-12
    grads = mlp.backward(activations, pre_activations, Y, params)
    assert len(grads) == len(params)
    for (dW, db), (W, b) in zip(grads, params):
        assert dW.shape == W.shape and db.shape == b.shape
        assert dW.dtype == dtype and db.dtype == dtype
    # sum over classes of dL/dZ_last is 0 per row, so the last bias gradient sums to ~0
    assert abs(grads[-1][1].sum()) <= 10 * sizes[-1] * np.finfo(dtype).eps


def test_reference_train_keeps_float32_and_does_not_touch_its_inputs() -> None:
    X, Y = synthetic_problem(5, 200, 6, 3, np.float32)
    params = mlp.init_params([6, 8, 3], seed=1, dtype=np.float32)
    originals = copy.deepcopy(params)
    X_before = X.copy()
    trained = mlp.train(X, Y, X, Y, params, lr=0.1, epochs=1, batch_size=32, verbose=False)
    assert all(W.dtype == np.float32 and b.dtype == np.float32 for W, b in trained)
    assert np.array_equal(X, X_before)
    for (W0, b0), (W1, b1) in zip(originals, trained):
        assert not np.array_equal(W0, W1)  # it did train
    assert trained is params  # updated in place, as in the section


def test_training_epoch_by_epoch_on_one_stream_equals_one_call() -> None:
    """conformance/reference/train.py and tools/calibrate_mnist.py train one epoch per call on one
    shuffling Generator (to report every epoch): bit-identical to the section's single call."""
    X, Y = synthetic_problem(6, 100, 4, 3)
    at_once = mlp.train(X, Y, X, Y, mlp.init_params([4, 5, 3]), epochs=3, batch_size=30,
                        shuffle_seed=7, verbose=False)
    stepwise = mlp.init_params([4, 5, 3])
    stream = np.random.default_rng(7)
    for _ in range(3):
        mlp.train(X, Y, X, Y, stepwise, epochs=1, batch_size=30, shuffle_seed=stream, verbose=False)
    for (W0, b0), (W1, b1) in zip(at_once, stepwise):
        assert np.array_equal(W0, W1) and np.array_equal(b0, b1)
    restarted = mlp.init_params([4, 5, 3])
    for _ in range(3):  # a fresh seed each epoch repeats the first shuffle: not the same run
        mlp.train(X, Y, X, Y, restarted, epochs=1, batch_size=30, shuffle_seed=7, verbose=False)
    assert not np.array_equal(restarted[0][0], at_once[0][0])
