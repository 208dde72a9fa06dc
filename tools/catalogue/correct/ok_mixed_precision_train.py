"""Correct variant: mixed precision. forward/backward compute in float32 and return float32
arrays; train applies those float32 gradients to the float64 params it was given
(``W - lr * dW``: numpy promotes the result to float64), so train returns float64 params
whose step carries float32 rounding. A result built from float32 gradients is judged at
float32 precision (conformance/SPEC.md, dtype policy): this must pass everything.
"""

import numpy as np

F = np.float32


def init_params(layer_sizes, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in), np.zeros(n_out))
            for n_in, n_out in zip(layer_sizes[:-1], layer_sizes[1:])]


def relu(z):
    return np.maximum(z, 0)


def softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def forward(X, params):
    A = np.asarray(X, dtype=F)
    activations, pre_activations = [A], []
    for i, (W, b) in enumerate(params):
        Z = A @ W.astype(F) + b.astype(F)
        pre_activations.append(Z)
        A = softmax(Z) if i == len(params) - 1 else relu(Z)
        activations.append(A)
    return activations, pre_activations


def cross_entropy(Y_hat, Y):
    return -np.mean(np.sum(Y * np.log(Y_hat + 1e-12), axis=1))


def backward(activations, pre_activations, Y, params):
    acts = [np.asarray(a, dtype=F) for a in activations]
    delta = (acts[-1] - Y.astype(F)) / F(Y.shape[0])
    grads = []
    for i in reversed(range(len(params))):
        grads.append((acts[i].T @ delta, delta.sum(axis=0)))
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
            for j, (dW, db) in enumerate(grads):
                W, b = params[j]
                params[j] = (W - lr * dW, b - lr * db)  # float64 params, float32 steps
    return params
