"""Correct variant judged through a declaration (no glue): the common column-major style with a
parameter dict (W1, b1, ...; W of shape (out, in), b of shape (out, 1)), samples in columns, a
forward that returns (output, cache) and a backward that reads the cache."""

import numpy as np


def L_model_forward(X, parameters):
    L = len(parameters) // 2
    cache = {"A0": X}
    A = X
    for l in range(1, L + 1):
        Z = parameters["W" + str(l)] @ A + parameters["b" + str(l)]
        if l == L:
            e = np.exp(Z - Z.max(axis=0, keepdims=True))
            A = e / e.sum(axis=0, keepdims=True)
        else:
            A = np.maximum(Z, 0)
        cache["Z" + str(l)], cache["A" + str(l)] = Z, A
    return A, cache


def L_model_backward(AL, Y, parameters, cache):
    L = len(parameters) // 2
    m = Y.shape[1]
    grads = {}
    dZ = (AL - Y) / m
    for l in range(L, 0, -1):
        grads["dW" + str(l)] = dZ @ cache["A" + str(l - 1)].T
        grads["db" + str(l)] = np.sum(dZ, axis=1, keepdims=True)
        if l > 1:
            dZ = (parameters["W" + str(l)].T @ dZ) * (cache["Z" + str(l - 1)] > 0)
    return grads
