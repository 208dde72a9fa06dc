"""Correct variant: column-major maths, recomputed output, extended precision softmax.

Internally each layer is computed as in the column-vector textbook notation, z = W^T a + b
on transposed arrays, so the returned Z and activations are transposed views (not
C-contiguous). backward ignores activations[-1] and recomputes Y_hat from the logits
pre_activations[-1] (the same numbers); the softmax is evaluated in np.longdouble and
rounded to float64. dW comes from np.tensordot. cross_entropy returns a 1-element array.
"""

import numpy as np


def softmax(z):
    wide = np.asarray(z, dtype=np.longdouble)
    wide = np.exp(wide - wide.max(axis=-1, keepdims=True))
    return (wide / wide.sum(axis=-1, keepdims=True)).astype(np.float64)


def relu(z):
    out = np.array(z, dtype=np.float64, copy=True)
    out[out < 0] = 0.0
    return out


def forward(X, params):
    a_col = X.T  # (features, batch): one column per sample
    activations, pre_activations = [X], []
    for k, (W, b) in enumerate(params):
        z_col = W.T @ a_col + b[:, None]
        pre_activations.append(z_col.T)
        a_col = (softmax(z_col.T) if k == len(params) - 1 else relu(z_col.T)).T
        activations.append(a_col.T)
    return activations, pre_activations


def cross_entropy(Y_hat, Y):
    return np.array([-np.sum(Y * np.log(Y_hat + 1e-12)) / Y.shape[0]])


def backward(activations, pre_activations, Y, params):
    delta = (softmax(pre_activations[-1]) - Y) / Y.shape[0]
    grads = []
    for k in range(len(params) - 1, -1, -1):
        dW = np.tensordot(activations[k], delta, axes=([0], [0]))
        grads.append((dW, np.add.reduce(delta, axis=0)))
        if k > 0:
            delta = (params[k][0] @ delta.T).T * (pre_activations[k - 1] > 0)
    grads.reverse()
    return grads
