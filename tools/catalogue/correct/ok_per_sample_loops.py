"""Correct variant: backward accumulates the gradients one sample at a time.

Each sample's error is propagated on its own and its outer products are added into running
sums, so the floating-point summation order differs from a single batched matmul. Forward
is vectorised per layer but builds Z column block by column block.
"""

import numpy as np


def init_params(layer_sizes, seed=0):
    rng = np.random.default_rng(seed)
    result = []
    for n_in, n_out in zip(layer_sizes[:-1], layer_sizes[1:]):
        result.append((rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in),
                       np.zeros(n_out)))
    return result


def relu(z):
    return np.maximum(0.0, z)


def softmax(z):
    z = np.asarray(z)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def forward(X, params):
    activations, pre_activations = [X], []
    for i, (W, b) in enumerate(params):
        Z = np.empty((X.shape[0], W.shape[1]), dtype=np.result_type(X, W, b))
        for j in range(W.shape[1]):
            Z[:, j] = activations[-1] @ W[:, j] + b[j]
        pre_activations.append(Z)
        activations.append(softmax(Z) if i == len(params) - 1 else relu(Z))
    return activations, pre_activations


def cross_entropy(Y_hat, Y):
    total = 0.0
    for p_row, y_row in zip(Y_hat, Y):
        total -= float(np.sum(y_row * np.log(p_row + 1e-12)))
    return total / len(Y)


def backward(activations, pre_activations, Y, params):
    batch = Y.shape[0]
    sums = [[np.zeros_like(W, dtype=np.float64), np.zeros_like(b, dtype=np.float64)]
            for W, b in params]
    for s in range(batch):
        err = (activations[-1][s] - Y[s]) / batch
        for i in range(len(params) - 1, -1, -1):
            sums[i][0] += np.outer(activations[i][s], err)
            sums[i][1] += err
            if i > 0:
                err = (params[i][0] @ err) * (pre_activations[i - 1][s] > 0)
    return [(dW, db) for dW, db in sums]


def train(X, Y, X_test, Y_test, params, lr=0.5, epochs=10, batch_size=64):
    rng = np.random.default_rng(42)
    for epoch in range(epochs):
        perm = rng.permutation(X.shape[0])
        for lo in range(0, X.shape[0], batch_size):
            rows = perm[lo:lo + batch_size]
            acts, pres = forward(X[rows], params)
            grads = backward(acts, pres, Y[rows], params)
            params[:] = [(W - lr * dW, b - lr * db) for (W, b), (dW, db) in zip(params, grads)]
        acc = np.mean(forward(X_test, params)[0][-1].argmax(1) == Y_test.argmax(1))
        print(f"epoch {epoch}: test acc = {acc:.4f}")
    return params
