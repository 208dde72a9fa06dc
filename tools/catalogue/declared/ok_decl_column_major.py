"""Correct variant judged through a declaration (ok_decl_column_major.toml beside it, no glue):
the existing code of ADAPTERS.md's ok_adapter_column_major.py, unchanged, without its adapter."""


import numpy as np


def _forward(X, weights, biases):
    a, acts, zs = X, [X], []
    for i, (W, b) in enumerate(zip(weights, biases)):
        z = W @ a + b  # (out, batch)
        zs.append(z)
        if i == len(weights) - 1:
            e = np.exp(z - z.max(axis=0, keepdims=True))
            a = e / e.sum(axis=0, keepdims=True)
        else:
            a = np.maximum(z, 0)
        acts.append(a)
    return acts, zs


def _backward(acts, zs, Y, weights):
    m = Y.shape[1]
    delta = (acts[-1] - Y) / m
    dWs, dbs = [], []
    for i in reversed(range(len(weights))):
        dWs.insert(0, delta @ acts[i].T)
        dbs.insert(0, delta.sum(axis=1, keepdims=True))
        if i:
            delta = (weights[i].T @ delta) * (zs[i - 1] > 0)
    return dWs, dbs
