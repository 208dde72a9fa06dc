"""The entry-wise finite-difference engine (conformance/gradcheck.py) against plain recomputation.

The engine moves one parameter at a time without recomputing the network: only one column of
one layer's pre-activations moves, the rest of the network is linear in it until a ReLU mask
flips, and the loss change comes from a cumulant series. Each shortcut is checked here against
the straightforward computation it replaces: a full perturbed forward pass, an explicit mask
comparison, the exact log-sum-exp loss.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from conformance.cases import scaled_logits_case
from conformance.exact import exact_cross_entropy, exact_forward, exact_gradients, magnitudes
from conformance.gradcheck import SERIES_MAX_REACH, _loss_change, downstream, fd_tensor
from tests.helpers import REPO_ROOT, run_suite


def random_network(seed: int, near_zero: bool) -> tuple[np.ndarray, np.ndarray, list]:
    """A 1-4 layer network; with ``near_zero``, one hidden unit per layer sits at (or within
    1e-9 or 1e-6 of) zero in the first row, so perturbations of earlier layers flip masks."""
    rng = np.random.default_rng(seed)
    sizes = [4, 5, 5, 5, 3][: rng.integers(2, 6)]
    B = int(rng.integers(1, 5))
    X = rng.standard_normal((B, sizes[0]))
    params = [(rng.standard_normal((a, b)), 0.1 * rng.standard_normal(b)) for a, b in zip(sizes[:-1], sizes[1:])]
    if near_zero:
        for k in range(len(params) - 1):
            pres = exact_forward(X, params)[1]
            j = rng.integers(sizes[k + 1])
            W, b = params[k]
            b = b.copy()
            b[j] -= pres[k][0, j] - rng.choice([0.0, 1e-9, -1e-9, 1e-6])
            params[k] = (W, b)
    Y = np.eye(sizes[-1])[rng.integers(0, sizes[-1], B)]
    return X, Y, params


def full_recompute_losses(X: np.ndarray, Y: np.ndarray, params: list, layer: int, t: int,
                          flat: int, step: float) -> tuple[float, bool]:
    """Loss and 'a mask flipped' after moving one entry, by a full forward pass."""
    moved = [(W.copy(), b.copy()) for W, b in params]
    moved[layer][t].reshape(-1)[flat] += step
    _, base = exact_forward(X, params)
    _, pres = exact_forward(X, moved)
    flipped = any(((z > 0) != (z0 > 0)).any() for z, z0 in zip(pres[:-1], base[:-1]))
    return float(exact_cross_entropy(pres[-1], Y)), flipped


@pytest.mark.parametrize("seed", range(24))
def test_entrywise_estimates_match_exact_backprop_and_a_plain_recomputation(seed: int) -> None:
    X, Y, params = random_network(seed, near_zero=seed % 2 == 1)
    mags = magnitudes(X, Y, params)
    acts, pres = exact_forward(X, params)
    exact0 = exact_gradients(acts, pres, Y, params, 0.0)
    exact1 = exact_gradients(acts, pres, Y, params, 1.0)
    for layer in range(len(params)):
        for t, kind in enumerate("Wb"):
            est = fd_tensor(X, Y, params, layer, kind, mags)
            judged = ~est.excluded
            lo = np.minimum(exact0[layer][t], exact1[layer][t]).reshape(-1)
            hi = np.maximum(exact0[layer][t], exact1[layer][t]).reshape(-1)
            off = judged & ((est.value < lo - est.error) | (est.value > hi + est.error))
            assert not off.any(), (f"{kind}[{layer}] entries {np.flatnonzero(off)}: fd {est.value[off]}, "
                                   f"exact {lo[off]}, error estimate {est.error[off]}")
            # The same central difference by full recomputation, at the step the engine used.
            for flat in np.flatnonzero(judged)[:6]:
                h = est.step[flat]
                up, flip_up = full_recompute_losses(X, Y, params, layer, t, flat, h)
                down, flip_down = full_recompute_losses(X, Y, params, layer, t, flat, -h)
                assert not (flip_up or flip_down), f"{kind}[{layer}] entry {flat}: a flip the engine missed"
                plain = (up - down) / (2 * h)
                assert abs(plain - est.value[flat]) <= est.error[flat], (kind, layer, flat, plain, est.value[flat])


@pytest.mark.parametrize("seed", range(12))
def test_mask_flip_thresholds_agree_with_explicit_recomputation(seed: int) -> None:
    """Moving unit q of row b by c flips a later mask exactly when c crosses a threshold."""
    X, Y, params = random_network(seed, near_zero=True)
    if len(params) < 3:
        params = random_network(seed + 100, near_zero=True)[2]
        X = np.random.default_rng(seed).standard_normal((3, params[0][0].shape[0]))
        Y = np.eye(params[-1][0].shape[1])[[0] * 3]
    acts, pres = exact_forward(X, params)
    after = downstream(params, pres, acts[-1], Y, 0)
    assert after is not None
    rng = np.random.default_rng(seed)
    B, n = pres[0].shape
    for _ in range(200):
        b, q = int(rng.integers(B)), int(rng.integers(n))
        c = float(rng.choice([-1, 1]) * 10.0 ** rng.uniform(-10, 1))
        A1 = acts[1].copy()
        A1[b, q] += c
        Z = A1 @ params[1][0] + params[1][1]
        flipped = False
        for k in range(1, len(params) - 1):
            flipped |= bool(((Z[b] > 0) != (pres[k][b] > 0)).any())
            Z = np.maximum(Z, 0) @ params[k + 1][0] + params[k + 1][1]
        predicted = c > after.flip_up[b, q] or c < after.flip_down[b, q]
        assert predicted == flipped, f"row {b} unit {q} moved by {c:g}: predicted {predicted}, recomputed {flipped}"


def test_loss_series_agrees_with_the_exact_loss_change() -> None:
    rng = np.random.default_rng(5)
    X, Y, params = random_network(7, near_zero=False)
    acts, pres = exact_forward(X, params)
    after = downstream(params, pres, acts[-1], Y, len(params) - 2)
    if after is None:
        pytest.skip("needs a hidden layer")  # random_network(7) has one; guarded for clarity
    B, n = pres[-2].shape
    q = rng.integers(n, size=200)
    # Moves up to the largest the engine sends through the series, where the c^3 and c^4
    # terms are ~1e-8 and ~1e-12 of the first: a wrong coefficient shows far above rtol.
    c = rng.uniform(-1, 1, size=(200, B)) * SERIES_MAX_REACH / after.spread[:, q].T
    slope, k2, k3, k4 = (coef[:, q].T for coef in after.series)
    series = (c * (slope + c * (k2 + c * (k3 + c * k4)))).mean(axis=1)
    exact = _loss_change(pres[-1], acts[-1], Y, c[:, :, None] * after.to_logits[:, q, :].transpose(1, 0, 2))
    assert np.allclose(series, exact, rtol=1e-12, atol=1e-20)


@pytest.mark.parametrize("scale", [30.0, 1e2, 1e4])
def test_entrywise_estimates_hold_for_huge_logits(scale: float) -> None:
    """Logit moves far beyond the series' reach fall back to the exact loss change."""
    case = scaled_logits_case(scale, seed=1)
    mags = magnitudes(case.X, case.Y, case.params)
    acts, pres = exact_forward(case.X, case.params)
    exact = exact_gradients(acts, pres, case.Y, case.params)
    for layer in range(len(case.params)):
        for t, kind in enumerate("Wb"):
            est = fd_tensor(case.X, case.Y, case.params, layer, kind, mags)
            gap = np.abs(est.value - exact[layer][t].reshape(-1))[~est.excluded]
            assert np.all(gap <= est.error[~est.excluded]), (scale, kind, layer, gap.max())


def _suite(impl: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_suite(impl, "-q", "-k", "every_entry", *extra)


def test_fd_full_checks_every_entry_of_a_full_size_network(tmp_path: Path) -> None:
    """--fd-full 784,128,10: one wrong entry among 101,770 is found and named; the reference
    passes. (Random directions would see that entry only diluted among all the others.)"""
    source = (REPO_ROOT / "conformance" / "reference" / "mlp.py").read_text()
    line = "        db = delta.sum(axis=0)"
    assert line in source
    bad = tmp_path / "one_wrong_entry.py"
    bad.write_text(source.replace(line, line + "; db[3] *= 1.5", 1))
    failed = _suite(bad, "--fd-full", "784,128,10")
    assert failed.returncode == 1, failed.stdout[-3000:]
    assert "db[0][3]=" in failed.stdout and "784, 128, 10" in failed.stdout
    assert "mismatched entries: db[0]: 1/128, db[1]: 1/10; agree: dW[0], dW[1]" in failed.stdout
    passed = _suite(REPO_ROOT / "conformance" / "reference" / "mlp.py", "--fd-full", "784,128,10")
    assert passed.returncode == 0 and "1 passed" in passed.stdout, passed.stdout[-3000:]


@pytest.mark.parametrize("bad", ["784", "784,0,10", "a,b"])
def test_fd_full_sizes_are_validated(bad: str, tmp_path: Path) -> None:
    proc = _suite(REPO_ROOT / "conformance" / "reference" / "mlp.py", f"--fd-full={bad}")
    assert proc.returncode == 4 and "--fd-full: expected comma-separated positive layer sizes" in proc.stderr
