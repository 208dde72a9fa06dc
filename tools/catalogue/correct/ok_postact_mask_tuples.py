"""Correct variant: ReLU derivative read from the post-activation, tuple-heavy return types.

The mask is np.where(activations[i] > 0, 1.0, 0.0) (equal to the pre-activation mask
everywhere, including at z == 0); activations and pre-activations come back as tuples and
the gradients as a tuple of [dW, db] lists. cross_entropy returns a numpy float64 scalar.
"""

import numpy as np


def relu(z):
    return np.where(z > 0, z, 0.0)


def softmax(z):
    top = np.amax(z, axis=-1, keepdims=True)
    unnormalised = np.exp(z - top)
    return unnormalised / unnormalised.sum(axis=-1, keepdims=True)


def forward(X, params):
    acts, zs = (X,), ()
    depth = len(params)
    for layer, (W, b) in enumerate(params, start=1):
        z = acts[-1] @ W + b
        zs += (z,)
        acts += (softmax(z) if layer == depth else relu(z),)
    return acts, zs


def cross_entropy(Y_hat, Y):
    return np.float64(-(Y * np.log(Y_hat + 1e-12)).sum(axis=1).mean())


def backward(activations, pre_activations, Y, params):
    n = Y.shape[0]
    delta = (activations[-1] - Y) / n
    grads = []
    for layer in range(len(params) - 1, -1, -1):
        grads.insert(0, [activations[layer].T @ delta, delta.sum(axis=0)])
        if layer > 0:
            active = np.where(activations[layer] > 0, 1.0, 0.0)
            delta = (delta @ params[layer][0].T) * active
    return tuple(grads)
