"""Correct variant judged through a declaration (ok_decl_integer_labels.toml beside it, no glue):
the existing code of ADAPTERS.md's ok_adapter_integer_labels.py, unchanged, without its adapter."""


import numpy as np


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _forward(X, params):
    acts, zs = [X], []
    for i, (W, b) in enumerate(params):
        z = acts[-1] @ W + b
        zs.append(z)
        acts.append(_softmax(z) if i == len(params) - 1 else np.maximum(z, 0))
    return acts, zs


def _backward(acts, zs, y, params):
    n = y.shape[0]
    delta = acts[-1].copy()
    delta[np.arange(n), y] -= 1.0
    delta /= n
    grads = []
    for i in range(len(params) - 1, -1, -1):
        grads.insert(0, (acts[i].T @ delta, delta.sum(axis=0)))
        if i:
            delta = (delta @ params[i][0].T) * (zs[i - 1] > 0)
    return grads


def _loss(probs, y):
    return float(-np.mean(np.log(probs[np.arange(y.shape[0]), y] + 1e-12)))
