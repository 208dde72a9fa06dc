"""Correct variant (SPEC.md, "Functions"): module-level helpers named relu and softmax with
other conventions (softmax over axis 0 for column vectors, relu returning its mask too) opt
out of being judged as the contract's optional functions with CONFORMANCE_OPT_OUT.
"""

import numpy as np

CONFORMANCE_OPT_OUT = ("relu", "softmax")


def relu(z):
    return np.maximum(z, 0), z > 0  # (value, mask): not the contract's relu(z)


def softmax(z):  # column vectors: normalises over axis 0
    e = np.exp(z - z.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


def forward(X, params):
    acts, zs = [X], []
    for i, (W, b) in enumerate(params):
        z = acts[-1] @ W + b
        zs.append(z)
        acts.append(softmax(z.T).T if i == len(params) - 1 else relu(z)[0])
    return acts, zs


def backward(activations, pre_activations, Y, params):
    delta = (activations[-1] - Y) / Y.shape[0]
    grads = []
    for i in reversed(range(len(params))):
        grads.append((activations[i].T @ delta, delta.sum(axis=0)))
        if i:
            delta = (delta @ params[i][0].T) * relu(pre_activations[i - 1])[1]
    return grads[::-1]
