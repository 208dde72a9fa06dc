"""Correct variant: computes in float32 throughout (a legitimate choice under the dtype
policy: float32 results are judged with float32 tolerances).

Inputs are cast to float32 on entry; every returned array is float32. init_params draws in
float64 exactly as specified and returns the float32 rounding of those draws.
"""

import numpy as np

F = np.float32


def init_params(layer_sizes, seed=0):
    rng = np.random.default_rng(seed)
    params = []
    for n_in, n_out in zip(layer_sizes[:-1], layer_sizes[1:]):
        W = rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)
        params.append((W.astype(F), np.zeros(n_out, dtype=F)))
    return params


def relu(z):
    z = np.asarray(z, dtype=F)
    return np.maximum(z, F(0))


def softmax(z):
    z = np.asarray(z, dtype=F)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def forward(X, params):
    A = np.asarray(X, dtype=F)
    activations, pre_activations = [A], []
    for i, (W, b) in enumerate(params):
        Z = A @ np.asarray(W, dtype=F) + np.asarray(b, dtype=F)
        pre_activations.append(Z)
        A = softmax(Z) if i == len(params) - 1 else relu(Z)
        activations.append(A)
    return activations, pre_activations


def cross_entropy(Y_hat, Y):
    Y_hat = np.asarray(Y_hat, dtype=F)
    Y = np.asarray(Y, dtype=F)
    return float(-np.mean(np.sum(Y * np.log(Y_hat + F(1e-12)), axis=1)))


def backward(activations, pre_activations, Y, params):
    acts = [np.asarray(a, dtype=F) for a in activations]
    delta = (acts[-1] - np.asarray(Y, dtype=F)) / F(Y.shape[0])
    grads = []
    for i in reversed(range(len(params))):
        grads.append((acts[i].T @ delta, delta.sum(axis=0)))
        if i > 0:
            W = np.asarray(params[i][0], dtype=F)
            delta = (delta @ W.T) * (np.asarray(pre_activations[i - 1]) > 0).astype(F)
    return grads[::-1]


def train(X, Y, X_test, Y_test, params, lr=0.5, epochs=10, batch_size=64):
    rng = np.random.default_rng(42)
    n = X.shape[0]
    for epoch in range(epochs):
        idx = rng.permutation(n)
        for start in range(0, n, batch_size):
            batch = idx[start:start + batch_size]
            acts, zs = forward(X[batch], params)
            grads = backward(acts, zs, Y[batch], params)
            params[:] = [(np.asarray(W, dtype=F) - F(lr) * dW, np.asarray(b, dtype=F) - F(lr) * db)
                         for (W, b), (dW, db) in zip(params, grads)]
        acc = (forward(X_test, params)[0][-1].argmax(axis=1) == Y_test.argmax(axis=1)).mean()
        print(f"epoch {epoch}: test acc = {acc:.4f}")
    return params
