"""Measured by tools/bench_efficiency.py (not a catalogue variant). Correct: np.vectorize ReLU and its derivative (a Python call per element)."""
import numpy as np
relu = np.vectorize(lambda v: v if v > 0 else 0.0)
relu_prime = np.vectorize(lambda v: 1.0 if v > 0 else 0.0)

def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)

def forward(X, params):
    A, Z = [X], []
    for i, (W, b) in enumerate(params):
        z = A[-1] @ W + b
        Z.append(z)
        A.append(softmax(z) if i == len(params) - 1 else relu(z))
    return A, Z

def backward(activations, pre_activations, Y, params):
    delta = (activations[-1] - Y) / Y.shape[0]
    grads = [None] * len(params)
    for i in range(len(params) - 1, -1, -1):
        grads[i] = (activations[i].T @ delta, delta.sum(axis=0))
        if i:
            delta = (delta @ params[i][0].T) * relu_prime(pre_activations[i - 1])
    return grads
