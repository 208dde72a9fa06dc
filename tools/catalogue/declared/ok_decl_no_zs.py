"""Correct variant judged through a declaration (ok_decl_no_zs.toml beside it, no glue): a
student style that keeps only the activations and takes the ReLU derivative from them
(A > 0 exactly where Z > 0), with integer labels."""

import numpy as np


def relu(z):
    return np.maximum(z, 0)


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def feedforward(X, params):
    acts = [X]
    for i, (W, b) in enumerate(params):
        z = acts[-1] @ W + b
        acts.append(softmax(z) if i == len(params) - 1 else relu(z))
    return acts


def backprop(acts, y, params):
    m = y.shape[0]
    delta = acts[-1].copy()
    delta[np.arange(m), y] -= 1
    delta /= m
    grads = [None] * len(params)
    for i in reversed(range(len(params))):
        grads[i] = (acts[i].T @ delta, delta.sum(axis=0))
        if i > 0:
            delta = (delta @ params[i][0].T) * (acts[i] > 0)
    return grads


def cross_entropy(probs, y):
    return float(-np.mean(np.log(probs[np.arange(y.shape[0]), y] + 1e-12)))
