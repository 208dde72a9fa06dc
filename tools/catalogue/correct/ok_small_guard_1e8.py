"""Correct variant: a larger (still tiny) additive log guard, 1e-8 instead of 1e-12.

SPEC.md allows any numerically sound cross-entropy, and the golden fixtures accept additive
guards up to 1e-7; here -log(p + 1e-8) differs from -log(p) by at most 1e-8 / p. The rest is
written functionally: layers as (W, b, activation) triples, np.matmul, list comprehensions.
"""

import numpy as np

GUARD = 1e-8


def relu(z):
    return np.maximum(z, 0.0)


def softmax(z):
    e = np.exp(z - np.max(z, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


def cross_entropy(Y_hat, Y):
    return -np.mean(np.sum(Y * np.log(Y_hat + GUARD), axis=-1))


def forward(X, params):
    layers = [(W, b, softmax if k == len(params) - 1 else relu) for k, (W, b) in enumerate(params)]
    activations, pre_activations = [X], []
    for W, b, activation in layers:
        pre_activations.append(np.matmul(activations[-1], W) + b)
        activations.append(activation(pre_activations[-1]))
    return activations, pre_activations


def backward(activations, pre_activations, Y, params):
    delta = (activations[-1] - Y) / Y.shape[0]
    grads = []
    for k in reversed(range(len(params))):
        grads = [(np.matmul(activations[k].T, delta), np.sum(delta, axis=0))] + grads
        if k:
            delta = np.matmul(delta, params[k][0].T) * (pre_activations[k - 1] > 0.0)
    return grads
