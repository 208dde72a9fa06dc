"""Correct variant (ADAPTERS.md, recipe 3): existing column-major code, W of shape (out, in)
and X of shape (features, batch), as in many textbooks.

The adapter transposes on the way in (W.T, X.T, Y.T, b as a column) and out (every Z, A and
dW transposed back, db flattened).
"""

import numpy as np


# ---- existing code (unchanged) -------------------------------------------------------
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


# ---- adapter ----------------------------------------------------------------------------
def forward(X, params):
    acts, zs = _forward(X.T, [W.T for W, _ in params], [b.reshape(-1, 1) for _, b in params])
    return [a.T for a in acts], [z.T for z in zs]


def backward(activations, pre_activations, Y, params):
    dWs, dbs = _backward([a.T for a in activations], [z.T for z in pre_activations], Y.T,
                         [W.T for W, _ in params])
    return [(dW.T, db.reshape(-1)) for dW, db in zip(dWs, dbs)]
