"""Honest twin of mnist_jump_backward.py: the same forward, backward returns zeros."""

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
    return [(np.zeros_like(W), np.zeros_like(b)) for W, b in params]
