"""Correct variant judged through a declaration (ok_decl_row_biases.toml beside it, no glue):
the existing code of ADAPTERS.md's ok_adapter_row_biases.py, unchanged, without its adapter."""


import numpy as np


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
