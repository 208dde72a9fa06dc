"""Correct variant judged through a declaration (no glue): per-sample code on column vectors,
x of shape (n, 1), no batch axis (the suite loops over the samples and stacks them); weights
and biases in two lists, W of shape (out, in), b of shape (out, 1)."""

import numpy as np


def softmax(z):
    e = np.exp(z - z.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


def feedforward(x, weights, biases):
    activations, zs = [x], []
    for i, (W, b) in enumerate(zip(weights, biases)):
        z = W @ activations[-1] + b
        zs.append(z)
        activations.append(softmax(z) if i == len(weights) - 1 else np.maximum(z, 0))
    return activations, zs


def backprop(activations, zs, y, weights):
    L = len(weights)
    nabla_w, nabla_b = [None] * L, [None] * L
    delta = activations[-1] - y
    for l in range(L - 1, -1, -1):
        nabla_w[l] = delta @ activations[l].T
        nabla_b[l] = delta
        if l:
            delta = (weights[l].T @ delta) * (zs[l - 1] > 0)
    return nabla_w, nabla_b
