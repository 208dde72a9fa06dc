"""Correct variant: ReLU'(0) = 1 and a clipped-probability cross-entropy.

At exactly z == 0 the ReLU derivative is taken as 1 (z >= 0), a convention the section
allows. The loss clips probabilities into [1e-15, 1] before the log instead of adding
1e-12. ReLU is written as z * (z > 0).
"""

import numpy as np


def init_params(layer_sizes, seed=0):
    rng = np.random.default_rng(seed)
    sizes = list(layer_sizes)
    out = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        out.append((np.sqrt(2.0 / a) * rng.standard_normal((a, b)), np.zeros(b)))
    return out


def relu(z):
    return z * (z > 0)


def softmax(z):
    shifted = z - z.max(axis=-1, keepdims=True)
    p = np.exp(shifted)
    p /= p.sum(axis=-1, keepdims=True)
    return p


def forward(X, params):
    A, Zs, As = X, [], [X]
    for k, (W, b) in enumerate(params):
        Z = A @ W + b
        A = softmax(Z) if k + 1 == len(params) else relu(Z)
        Zs.append(Z)
        As.append(A)
    return As, Zs


def cross_entropy(Y_hat, Y):
    safe = np.clip(Y_hat, 1e-15, 1.0)
    return -np.sum(Y * np.log(safe)) / Y.shape[0]


def backward(activations, pre_activations, Y, params):
    g = (activations[-1] - Y) / len(Y)
    dWs, dbs = [], []
    for k in reversed(range(len(params))):
        dWs.append(activations[k].T @ g)
        dbs.append(g.sum(0))
        if k:
            g = g @ params[k][0].T
            g = g * (pre_activations[k - 1] >= 0)  # ReLU'(0) := 1
    return list(zip(dWs[::-1], dbs[::-1]))
