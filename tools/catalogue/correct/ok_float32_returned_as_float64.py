"""Correct variant: computes everything in float32 and casts each result to float64 before
returning it. Its errors are float32 rounding (about 1e-7 relative), far below any bug's
(1/64 relative at least): it passes, with a finding suggesting to return the float32 arrays
(conformance/SPEC.md, dtype policy).
"""

import numpy as np

F = np.float32


def init_params(layer_sizes, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in), np.zeros(n_out))
            for n_in, n_out in zip(layer_sizes[:-1], layer_sizes[1:])]


def _softmax32(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def softmax(z):
    return _softmax32(np.asarray(z, dtype=F)).astype(np.float64)


def forward(X, params):
    A = np.asarray(X, dtype=F)
    acts, pres = [A], []
    for i, (W, b) in enumerate(params):
        Z = A @ W.astype(F) + b.astype(F)
        pres.append(Z)
        A = _softmax32(Z) if i == len(params) - 1 else np.maximum(Z, F(0))
        acts.append(A)
    return [a.astype(np.float64) for a in acts], [z.astype(np.float64) for z in pres]


def cross_entropy(Y_hat, Y):
    p = np.asarray(Y_hat, dtype=F)
    return float(-np.mean(np.sum(np.asarray(Y, dtype=F) * np.log(p + F(1e-12)), axis=1)))


def backward(activations, pre_activations, Y, params):
    acts = [np.asarray(a, dtype=F) for a in activations]
    delta = (acts[-1] - np.asarray(Y, dtype=F)) / F(Y.shape[0])
    grads = []
    for i in reversed(range(len(params))):
        grads.append(((acts[i].T @ delta).astype(np.float64), delta.sum(axis=0).astype(np.float64)))
        if i > 0:
            delta = (delta @ params[i][0].astype(F).T) * (np.asarray(pre_activations[i - 1]) > 0)
    return grads[::-1]


def train(X, Y, X_test, Y_test, params, lr=0.5, epochs=10, batch_size=64):
    rng = np.random.default_rng(42)
    n = X.shape[0]
    for _ in range(epochs):
        idx = rng.permutation(n)
        for start in range(0, n, batch_size):
            rows = idx[start:start + batch_size]
            acts, zs = forward(X[rows], params)
            grads = backward(acts, zs, Y[rows], params)
            params[:] = [(W - lr * dW, b - lr * db) for (W, b), (dW, db) in zip(params, grads)]
    return params
