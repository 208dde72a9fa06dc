"""Attack: train() ignores its training data and fits the (X_test, Y_test) it is handed,
hoping to be scored on those very images (memorised labels instead of learning).

Honest twin (twins/mnist_fit_test_arguments.py): the same loop on as many rows of its
training data. The suite hands train() rows of its own training data as (X_test, Y_test)
and scores on test images no candidate code sees, so the two must score the same.
"""

import numpy as np


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def forward(X, params):
    activations, pre_activations = [X], []
    for i, (W, b) in enumerate(params):
        Z = activations[-1] @ W + b
        pre_activations.append(Z)
        activations.append(softmax(Z) if i == len(params) - 1 else np.maximum(Z, 0))
    return activations, pre_activations


def backward(activations, pre_activations, Y, params):
    delta = (activations[-1] - Y) / Y.shape[0]
    grads = []
    for i in reversed(range(len(params))):
        grads.append((activations[i].T @ delta, delta.sum(axis=0)))
        if i > 0:
            delta = (delta @ params[i][0].T) * (pre_activations[i - 1] > 0)
    return grads[::-1]


def _sgd(X, Y, params, lr, epochs, batch_size):
    rng = np.random.default_rng(42)
    for _ in range(epochs):
        idx = rng.permutation(X.shape[0])
        for start in range(0, X.shape[0], batch_size):
            rows = idx[start:start + batch_size]
            acts, pres = forward(X[rows], params)
            grads = backward(acts, pres, Y[rows], params)
            params = [(W - lr * dW, b - lr * db) for (W, b), (dW, db) in zip(params, grads)]
    return params


def train(X, Y, X_test, Y_test, params, lr=0.5, epochs=10, batch_size=64):
    return _sgd(X_test, Y_test, params, lr, 3 * epochs, batch_size)  # the test set, 3x over
