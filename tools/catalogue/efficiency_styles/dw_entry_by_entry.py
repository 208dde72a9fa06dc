"""Measured by tools/bench_efficiency.py (not a catalogue variant). Correct backprop, dW entry by entry (Python loop over every weight)."""
import numpy as np

def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)

def forward(X, params):
    A, Z = [X], []
    for i, (W, b) in enumerate(params):
        z = A[-1] @ W + b
        Z.append(z)
        A.append(softmax(z) if i == len(params) - 1 else np.maximum(z, 0))
    return A, Z

def backward(activations, pre_activations, Y, params):
    delta = (activations[-1] - Y) / Y.shape[0]
    grads = [None] * len(params)
    for i in range(len(params) - 1, -1, -1):
        A = activations[i]
        dW = np.empty(params[i][0].shape)
        for r in range(dW.shape[0]):
            for c in range(dW.shape[1]):
                dW[r, c] = A[:, r] @ delta[:, c]
        grads[i] = (dW, delta.sum(axis=0))
        if i:
            delta = (delta @ params[i][0].T) * (pre_activations[i - 1] > 0)
    return grads
