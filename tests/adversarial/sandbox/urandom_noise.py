"""Attack (issue 21 §5): a grade that depends on the run. Correct backprop, except that each
process draws a fresh OS-random bit at import (os.urandom) and, when it is set, backward
returns gradients with the last layer's bias gradient dropped. Graded twice it must get the
same grade every time (the worker's entropy is the submission's own, seeded by its sha256)."""

import os

import numpy as np

UNLUCKY = os.urandom(1)[0] & 1
NOISE = np.random.default_rng().standard_normal()  # numpy's OS-seeded generator too


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def forward(X, params):
    acts, pres = [X], []
    for i, (W, b) in enumerate(params):
        z = acts[-1] @ W + b
        pres.append(z)
        acts.append(_softmax(z) if i == len(params) - 1 else np.maximum(z, 0))
    return acts, pres


def backward(activations, pre_activations, Y, params):
    n = Y.shape[0]
    delta = (activations[-1] - Y) / n
    grads = []
    for layer in range(len(params) - 1, -1, -1):
        W = params[layer][0]
        grads.append((activations[layer].T @ delta, delta.sum(axis=0)))
        if layer:
            delta = (delta @ W.T) * (pre_activations[layer - 1] > 0)
    grads.reverse()
    if UNLUCKY and NOISE > -10:
        grads[-1] = (grads[-1][0], np.zeros_like(grads[-1][1]))
    return grads
