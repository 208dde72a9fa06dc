"""Buggy variant judged through a declaration (bug_decl_logits_unguarded.toml beside it): the network
returns logits, and its one softmax (read for the probabilities, and inside the loss and backward)
exponentiates them without subtracting each sample's max."""

import numpy as np


def softmax(z):
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def forward(X, params):
    acts, zs = [X], []
    for i, (W, b) in enumerate(params):
        z = acts[-1] @ W + b
        zs.append(z)
        acts.append(z if i == len(params) - 1 else np.maximum(z, 0))  # logits last
    return acts, zs


def loss(logits, Y):
    return float(-np.mean(np.sum(Y * np.log(softmax(logits) + 1e-12), axis=1)))


def backward(acts, zs, Y, params):
    delta = (softmax(acts[-1]) - Y) / Y.shape[0]
    grads = []
    for i in reversed(range(len(params))):
        grads.insert(0, (acts[i].T @ delta, delta.sum(axis=0)))
        if i:
            delta = (delta @ params[i][0].T) * (zs[i - 1] > 0)
    return grads
