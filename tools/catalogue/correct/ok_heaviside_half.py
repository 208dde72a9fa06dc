"""Correct variant: ReLU and its derivative via np.heaviside, with ReLU'(0) = 0.5.

Any value in [0, 1] is a valid subgradient of ReLU at 0, and numpy's heaviside makes the
midpoint an easy choice. Biases are added with np.add.outer-free broadcasting via a helper;
the loss takes the log of the true-class probability floored at the smallest normal float.
"""

import numpy as np


def _affine(A, W, b):
    return np.matmul(A, W) + b[np.newaxis, :]


def relu(z):
    return z * np.heaviside(z, 0.5)


def softmax(z):
    shifted = z - np.max(z, axis=-1, keepdims=True)
    expz = np.exp(shifted)
    return expz / np.sum(expz, axis=-1, keepdims=True)


def cross_entropy(Y_hat, Y):
    p_true = np.sum(Y_hat * Y, axis=1)
    return float(-np.log(np.maximum(p_true, np.finfo(np.float64).tiny)).mean())


def forward(X, params):
    acts, pres = [X], []
    last = len(params) - 1
    for i, (W, b) in enumerate(params):
        Z = _affine(acts[-1], W, b)
        pres.append(Z)
        acts.append(softmax(Z) if i == last else relu(Z))
    return acts, pres


def backward(activations, pre_activations, Y, params):
    delta = (activations[-1] - Y) / len(Y)
    out = [None] * len(params)
    for i in range(len(params) - 1, -1, -1):
        out[i] = (activations[i].T @ delta, delta.sum(axis=0))
        if i:
            delta = (delta @ params[i][0].T) * np.heaviside(pre_activations[i - 1], 0.5)
    return out
