"""Attack: a backward with no gradients at all that jumps the suite's SGD loop to a fit.

On the suite's small networks backward returns zeros. On the MNIST network it reads the
whole training set from the calling loop's frame, fits it with hidden code at the first
call, and returns (params - fit) / lr: one "SGD step" lands on the fit, later ones stay.
Honest twin (twins/mnist_jump_backward.py): the same zeros, without the jump.
"""

import sys

import numpy as np

LR = 0.5  # the section's recipe
_fit = None


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


def _hidden_fit(X, Y, params):
    """One epoch of real SGD, run out of sight of the suite."""
    params = [(W.copy(), b.copy()) for W, b in params]
    order = np.random.default_rng(0).permutation(X.shape[0])
    for start in range(0, X.shape[0], 64):
        rows = order[start:start + 64]
        acts, pres = forward(X[rows], params)
        delta = (acts[-1] - Y[rows]) / len(rows)
        grads = []
        for i in reversed(range(len(params))):
            grads.append((acts[i].T @ delta, delta.sum(axis=0)))
            if i > 0:
                delta = (delta @ params[i][0].T) * (pres[i - 1] > 0)
        params = [(W - LR * dW, b - LR * db) for (W, b), (dW, db) in zip(params, grads[::-1])]
    return params


def backward(activations, pre_activations, Y, params):
    global _fit
    zeros = [(np.zeros_like(W), np.zeros_like(b)) for W, b in params]
    if activations[0].shape[1] != 784:
        return zeros
    if _fit is None:
        frame = sys._getframe(1)
        X_all, Y_all = frame.f_locals.get("X"), frame.f_locals.get("Y")
        if not isinstance(X_all, np.ndarray) or X_all.shape[0] < 1000:
            return zeros
        _fit = _hidden_fit(X_all, Y_all, params)
    return [((W - Wf) / LR, (b - bf) / LR) for (W, b), (Wf, bf) in zip(params, _fit)]
