"""Honest twin of fake_relu_flips.py: an honest forward, the same mask-less backward."""

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
            delta = delta @ params[i][0].T  # no ReLU derivative
    return grads[::-1]
