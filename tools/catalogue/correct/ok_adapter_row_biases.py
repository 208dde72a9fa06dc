"""Correct variant (ADAPTERS.md, recipe 2): existing code that keeps biases as (1, n) rows.

The student's code stores and returns b and db with shape (1, n) (``keepdims=True``); the
adapter reshapes the suite's (n,) biases on the way in and db to b's shape on the way out.
"""

import numpy as np


# ---- existing code (unchanged) -------------------------------------------------------
def _init(sizes, seed):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((a, c)) * np.sqrt(2.0 / a), np.zeros((1, c)))
            for a, c in zip(sizes[:-1], sizes[1:])]


def _forward(X, params):
    acts, zs = [X], []
    for i, (W, b) in enumerate(params):
        z = acts[-1] @ W + b  # b is (1, n): broadcasts over the batch
        zs.append(z)
        if i == len(params) - 1:
            e = np.exp(z - z.max(axis=1, keepdims=True))
            acts.append(e / e.sum(axis=1, keepdims=True))
        else:
            acts.append(np.maximum(z, 0))
    return acts, zs


def _backward(acts, zs, Y, params):
    delta = (acts[-1] - Y) / Y.shape[0]
    grads = []
    for i in reversed(range(len(params))):
        grads.append((acts[i].T @ delta, delta.sum(axis=0, keepdims=True)))  # db is (1, n)
        if i:
            delta = (delta @ params[i][0].T) * (zs[i - 1] > 0)
    return grads[::-1]


# ---- adapter ----------------------------------------------------------------------------
def _rows(params):
    return [(W, b.reshape(1, -1)) for W, b in params]


def init_params(layer_sizes, seed=0):
    return [(W, b.reshape(-1)) for W, b in _init(layer_sizes, seed)]


def forward(X, params):
    return _forward(X, _rows(params))


def backward(activations, pre_activations, Y, params):
    grads = _backward(activations, pre_activations, Y, _rows(params))
    return [(dW, db.reshape(b.shape)) for (dW, db), (_, b) in zip(grads, params)]
