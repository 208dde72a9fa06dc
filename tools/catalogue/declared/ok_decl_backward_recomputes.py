"""Correct variant judged through a declaration (ok_decl_backward_recomputes.toml beside it, no glue):
the existing code of ADAPTERS.md's ok_adapter_backward_recomputes.py, unchanged, without its adapter."""


import numpy as np


def predict(X, params):
    acts, zs = [X], []
    for i, (W, b) in enumerate(params):
        z = acts[-1] @ W + b
        zs.append(z)
        if i == len(params) - 1:
            e = np.exp(z - z.max(axis=1, keepdims=True))
            acts.append(e / e.sum(axis=1, keepdims=True))
        else:
            acts.append(np.maximum(z, 0))
    return acts, zs


def gradients(X, Y, params):
    acts, zs = predict(X, params)  # forward again
    delta = (acts[-1] - Y) / X.shape[0]
    out = []
    for i in reversed(range(len(params))):
        out.append((acts[i].T @ delta, delta.sum(axis=0)))
        if i:
            delta = (delta @ params[i][0].T) * (zs[i - 1] > 0)
    return out[::-1]
